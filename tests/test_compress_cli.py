"""``colakit compress`` end to end on a tiny model directory with an offline word-level tokenizer."""

import json

import pytest
import torch
from typer.testing import CliRunner

from colakit.calibset import CalibrationSet
from colakit.cli import app
from colakit.errors import ColakitError
from tiny_models import tiny_model


def word_tokenizer(words=256, prefix="w"):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{f"{prefix}{i}": i for i in range(3, words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")


@pytest.fixture
def setup(tmp_path):
    model_dir, calib_dir = tmp_path / "tiny", tmp_path / "calib"
    tok = word_tokenizer()
    tiny_model("llama").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 256, (n,), generator=g).tolist() for n in (24, 24, 16, 9)]
    CalibrationSet.from_token_ids(seqs, tokenizer=tok, model=str(model_dir)).save(calib_dir)
    return tmp_path, model_dir, calib_dir


def invoke(*args):
    return CliRunner().invoke(app, ["compress", *map(str, args)])


def test_cli_writes_a_reloadable_model_and_report(setup):
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig

    tmp, model_dir, calib_dir = setup
    out = tmp / "out"
    result = invoke("--model", model_dir, "--calib", calib_dir, "--method", "sparsegpt", "--pattern", "2:4",
                    "--bits", "4", "--group-size", "16", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "compression.json").read_text())
    assert report["method"] == "sparsegpt" and report["config"]["pattern"] == "2:4"
    assert report["calibration"]["content_hash"] == CalibrationSet.load(calib_dir).content_hash
    assert report["calibration"]["tokens"] == 24 + 24 + 16 + 9
    assert len(report["blocks"]) == 2 and all("rel_error" in b for b in report["blocks"])
    assert report["wall_time_s"] > 0 and report["save_format"] == "compressed-tensors"  # packed by default
    assert json.loads((out / "config.json").read_text())["quantization_config"]["format"] == "pack-quantized"
    reloaded = AutoModelForCausalLM.from_pretrained(out, quantization_config=CompressedTensorsConfig(dequantize=True))
    w = reloaded.model.layers[1].mlp.down_proj.weight
    assert ((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2).all()
    assert (out / "tokenizer.json").exists()


def test_cli_refuses_existing_output_and_bad_group_size(setup):
    tmp, model_dir, calib_dir = setup
    existing = tmp / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    result = invoke("--model", model_dir, "--calib", calib_dir, "--method", "wanda", "--out", existing)
    assert isinstance(result.exception, ColakitError) and "already exists" in str(result.exception)
    assert (existing / "keep.txt").read_text() == "mine"
    result = invoke("--model", model_dir, "--calib", calib_dir, "--method", "gptq", "--group-size", "128",
                    "--out", tmp / "new")
    assert isinstance(result.exception, ColakitError) and "--group-size 64" in str(result.exception)
    assert not (tmp / "new").exists()
    result = invoke("--model", model_dir, "--calib", calib_dir, "--method", "gptq", "--group-size", "sixty",
                    "--out", tmp / "new")
    assert isinstance(result.exception, ColakitError) and "not a number" in str(result.exception)


def test_cli_default_group_size_is_auto_and_recorded(setup):
    tmp, model_dir, calib_dir = setup
    result = invoke("--model", model_dir, "--calib", calib_dir, "--method", "gptq", "--out", tmp / "q")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp / "q" / "compression.json").read_text())
    assert report["config"]["group_size"] == 64  # the tiny model's hidden size is 64: 128 cannot divide it
    assert any("chose 64" in note for note in report["notes"])
    assert report["config"]["value_hessian"] == "attention"
    assert report["blocks"][0]["linears"]["self_attn.v_proj"]["value_hessian"] == "attention"
    result = invoke("--model", model_dir, "--calib", calib_dir, "--method", "gptq", "--value-hessian", "rows",
                    "--out", tmp / "r")
    assert isinstance(result.exception, ColakitError) and "attention, tokens" in str(result.exception)
    assert not (tmp / "r").exists()


def test_cli_refuses_an_option_the_method_does_not_take(setup):
    tmp, model_dir, calib_dir = setup
    result = invoke("--model", model_dir, "--calib", calib_dir, "--method", "gptq", "--sparsity", "0.5",
                    "--out", tmp / "g")
    assert isinstance(result.exception, ColakitError)
    assert "sparsity applies to pruning, not gptq" in str(result.exception) and "act_order" in result.exception.hint
    result = invoke("--model", model_dir, "--method", "rtn", "--no-awq-clip", "--out", tmp / "r")
    assert isinstance(result.exception, ColakitError) and "awq_clip applies to awq" in str(result.exception)
    result = invoke("--model", model_dir, "--method", "rtn", "-p", "bits=3", "--out", tmp / "r")
    assert isinstance(result.exception, ColakitError) and "use --bits" in str(result.exception)
    assert not (tmp / "g").exists() and not (tmp / "r").exists()


def test_cli_params_reach_the_method_keys_without_an_option(setup):
    tmp, model_dir, calib_dir = setup
    result = invoke("--model", model_dir, "--calib", calib_dir, "--method", "awq", "-p", "awq_grid=4",
                    "--param", "awq_max_shrink=0.25", "--out", tmp / "a")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp / "a" / "compression.json").read_text())
    assert (report["config"]["awq_grid"], report["config"]["awq_max_shrink"]) == (4, 0.25)
    assert report["config"]["group_size"] == 64  # the command's default, auto, still applies


def test_cli_refuses_calibration_from_another_tokenizer(setup):
    tmp, model_dir, _ = setup
    other = tmp / "other-calib"
    CalibrationSet.from_token_ids([[5, 6, 7]], tokenizer=word_tokenizer(prefix="v"), model="other").save(other)
    result = invoke("--model", model_dir, "--calib", other, "--method", "wanda", "--out", tmp / "o")
    assert isinstance(result.exception, ColakitError) and "tokenizer" in str(result.exception)
    assert not (tmp / "o").exists()
