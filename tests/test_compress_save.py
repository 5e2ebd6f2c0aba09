"""Packed checkpoints (compressed-tensors): colakit's solved weights, bit for bit, in the format
vLLM, transformers and llm-compressor share; and colakit loading them back as dense models."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.utils.quantization_config import CompressedTensorsConfig

from colakit.calibset import CalibrationSet
from colakit.compress import CompressionConfig, compress, compress_to_dir, save_compressed
from colakit.compress.packed import check_packable
from colakit.errors import ColakitError
from colakit.model.layers import find_decoder, weight_matrix
from colakit.model.load import load_model
from test_compress_cli import word_tokenizer
from tiny_models import tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:You passed `quantization_config`:UserWarning")  # dequantize=True

# every built-in method that quantizes, across the grid's variants: asymmetric and symmetric,
# 3 and 4 bits, act-order, attention value Hessians (GPTQ's default), joint 2:4 + 4-bit
CASES = {
    "rtn": ("rtn", dict(bits=4, group_size=16)),
    "gptq": ("gptq", dict(bits=3, group_size=32, sym=True, act_order=True)),
    "awq": ("awq", dict(bits=4, group_size=16, sym=True)),
    "sparsegpt-2:4-w4": ("sparsegpt", dict(pattern="2:4", bits=4, group_size=16)),
}


def tokens(seed, n=4, length=24):
    return torch.randint(3, 256, (n, length), generator=torch.Generator().manual_seed(seed))


def linears(model) -> dict[str, torch.Tensor]:
    layout = find_decoder(model)
    return {f"{i}.{name}": weight_matrix(lin) for i in range(layout.num_layers)
            for name, lin in layout.linears(i).items()}


@torch.no_grad()
def heldout_loss(model) -> float:
    ids = tokens(seed=99)  # not the calibration tokens
    return float(model(input_ids=ids, labels=ids).loss)


def decompressed(path):
    """The packed directory as transformers loads it, decompressing."""
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                quantization_config=CompressedTensorsConfig(dequantize=True)).eval()


def weights_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


@pytest.mark.parametrize("case", CASES)
def test_packed_checkpoint_holds_the_solved_weights_bit_for_bit(family, case, tmp_path):
    method, params = CASES[case]
    model, config = tiny_model(family), CompressionConfig(method, **params)
    if family == "gpt2":  # Conv1D: refused before any weight changes
        with pytest.raises(ColakitError, match="Conv1D.*--save-format fake-quant"):
            check_packable(config.method, model)
        return
    report = compress(model, tokens(seed=0), None, config)
    solved, tok = linears(model), word_tokenizer()
    fake = save_compressed(model, tok, tmp_path / "fake", report.to_dict())
    packed = save_compressed(model, tok, tmp_path / "packed", report.to_dict(), grids=report.grids)
    scheme = json.loads((packed / "config.json").read_text())["quantization_config"]
    assert scheme["format"] == "pack-quantized" and scheme["quant_method"] == "compressed-tensors"
    assert scheme["config_groups"]["group_0"]["weights"]["num_bits"] == params["bits"]
    assert weights_bytes(packed) < 0.6 * weights_bytes(fake)

    reloaded = decompressed(packed)
    for name, w in linears(reloaded).items():
        assert torch.equal(w, solved[name]), name
    assert heldout_loss(reloaded) == heldout_loss(AutoModelForCausalLM.from_pretrained(fake)) == heldout_loss(model)

    # colakit's own loader: a plain dense model, the same state dict as the fake-quant directory's, in order
    ours, theirs = load_model(str(packed), device="cpu"), load_model(str(fake), device="cpu")
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    for module in ours.modules():
        assert not hasattr(module, "quantization_scheme") and module.forward.__func__ is type(module).forward


@pytest.mark.parametrize("method, params", [
    ("rtn", dict(bits=8, group_size=-1)),  # one group per row: the format's channel strategy
    ("rtn", dict(bits=2, group_size=32, sym=True)),
    ("wanda", dict(sparsity=0.5, bits=4, group_size=16)),
    ("magnitude", dict(pattern="2:4", bits=5, group_size=32, sym=True)),
])
def test_other_grids_pack_exactly(method, params, tmp_path):
    model = tiny_model("qwen2")  # linears with biases
    report = compress(model, tokens(seed=0), None, CompressionConfig(method, **params))
    packed = save_compressed(model, None, tmp_path / "packed", report.to_dict(), grids=report.grids)
    reloaded = decompressed(packed)
    assert all(torch.equal(w, linears(model)[name]) for name, w in linears(reloaded).items())


@pytest.fixture
def tiny_dirs(tmp_path):
    model_dir, calib_dir = tmp_path / "tiny", tmp_path / "calib"
    tok = word_tokenizer()
    tiny_model("llama").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    CalibrationSet.from_token_ids(tokens(seed=0).tolist(), tokenizer=tok, model=str(model_dir)).save(calib_dir)
    return model_dir, calib_dir


def test_pruning_alone_has_nothing_to_pack_and_stays_dense(tiny_dirs, tmp_path):
    model_dir, calib_dir = tiny_dirs
    report = compress_to_dir(str(model_dir), calib_dir, tmp_path / "out", CompressionConfig("wanda", pattern="2:4"),
                             device="cpu")
    assert report["save_format"] == "dense" and any("nothing to pack" in n for n in report["notes"])
    assert "quantization_config" not in json.loads((tmp_path / "out" / "config.json").read_text())
    w = load_model(str(tmp_path / "out"), device="cpu").model.layers[0].mlp.down_proj.weight
    assert ((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2).all()


def test_bad_save_formats_are_refused_before_the_model_loads(tiny_dirs, tmp_path, monkeypatch):
    from colakit.model import load

    model_dir, calib_dir = tiny_dirs
    monkeypatch.setattr(load, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    config = CompressionConfig("rtn", bits=4, group_size=16)
    with pytest.raises(ColakitError, match="unknown save format 'gguf'.*use --save-format compressed-tensors or"):
        compress_to_dir(str(model_dir), None, tmp_path / "a", config, save_format="gguf")
    with pytest.raises(ColakitError, match="llm-compressor backend writes compressed-tensors checkpoints only"):
        compress_to_dir(str(model_dir), calib_dir, tmp_path / "b", CompressionConfig("wanda"), backend="llmcompressor",
                        save_format="fake-quant")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_conv1d_models_are_refused_before_compressing_and_fake_quant_still_works(tmp_path, monkeypatch):
    from colakit.compress import output

    model_dir = tmp_path / "gpt2"
    tiny_model("gpt2").save_pretrained(model_dir)
    word_tokenizer().save_pretrained(model_dir)
    config = CompressionConfig("rtn", bits=4, group_size=16)
    with monkeypatch.context() as patch:
        patch.setattr(output, "compress", lambda *a, **k: pytest.fail("compression started"))
        with pytest.raises(ColakitError, match="GPT2LMHeadModel's Conv1D layers"):
            compress_to_dir(str(model_dir), None, tmp_path / "packed", config, device="cpu")
    report = compress_to_dir(str(model_dir), None, tmp_path / "fake", config, device="cpu", save_format="fake-quant")
    assert report["save_format"] == "fake-quant" and not (tmp_path / "packed").exists()


def test_an_llmcompressor_style_checkpoint_loads_as_the_same_dense_model(tmp_path):
    """What llm-compressor's save does (compressed-tensors' model-level API: schemes on the modules,
    compress_model, save_pretrained, update_config), fed colakit's grids: colakit loads it dense."""
    from compressed_tensors.compressors.model_compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config

    model = tiny_model("llama")
    report = compress(model, tokens(seed=0), None, CompressionConfig("gptq", bits=4, group_size=16))
    fake = save_compressed(model, None, tmp_path / "fake", report.to_dict())
    weights = {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 16}
    apply_quantization_config(model, QuantizationConfig(config_groups={"group_0": {"targets": ["Linear"],
                                                                                 "weights": weights}},
                                                        ignore=["lm_head"]))
    for name, grid in report.grids.items():
        module = model.get_submodule(name)
        module.weight_scale.data.copy_(grid.scale)
        module.weight_zero_point.data.copy_(grid.zero - 8)  # the format's signed zero points
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    model.save_pretrained(tmp_path / "llmc")
    compressor.update_config(str(tmp_path / "llmc"))
    scheme = json.loads((tmp_path / "llmc" / "config.json").read_text())["quantization_config"]
    assert scheme["format"] == "pack-quantized"
    a = load_model(str(tmp_path / "llmc"), device="cpu").state_dict()
    b = load_model(str(fake), device="cpu").state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_grid_configs_choose_the_format_per_compression_and_bad_ones_fail_at_parse_time():
    from colakit.grid import parse_grid

    base = {"model": "m", "curation": {"r": {"method": "random", "sources": ["c4"]}},
            "evaluate": {"tasks": "ppl_wiki:2"}}
    grid = parse_grid({**base, "compression": {"packed": {"method": "rtn"},
                                               "fake": {"method": "rtn", "save_format": "fake-quant"}}})
    assert "save_format" not in grid.compression["packed"].params  # the default; an older grid's digest stays
    assert grid.compression["fake"].params["save_format"] == "fake-quant"
    with pytest.raises(ColakitError, match="compression 'x': unknown save format 'int4'"):
        parse_grid({**base, "compression": {"x": {"method": "rtn", "save_format": "int4"}}})
