"""The llm-compressor backend: recipes, clear errors, and one tiny oneshot run when the extra is installed."""

import builtins
import sys

import pytest

from colakit.compress import CompressionConfig
from colakit.compress.llmcompressor_backend import build_recipe
from colakit.errors import ColakitError


def test_missing_package_names_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def no_llmcompressor(name, *a, **k):
        if name.startswith("llmcompressor"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "llmcompressor", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_llmcompressor)
    with pytest.raises(ColakitError, match="pip install"):
        build_recipe(CompressionConfig("wanda"))


def test_awq_on_cpu_points_to_the_builtin_backend():
    import torch

    if torch.cuda.is_available():
        pytest.skip("an accelerator is present")
    with pytest.raises(ColakitError, match="--backend builtin --save-format compressed-tensors"):
        build_recipe(CompressionConfig("awq", group_size=64))


def test_awq_recipe_is_the_transform_then_the_quantization_modifier(monkeypatch):
    """llm-compressor 0.14's AWQ: the scale search (modifiers.transform.awq), then QuantizationModifier
    with colakit's grid; the old llmcompressor.modifiers.awq import is a deprecated shim."""
    import torch

    from colakit.compress.methods import get_method

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    steps = get_method("awq")(group_size=64).llmcompressor_recipe()
    assert [(s.module, s.name) for s in steps] == [("llmcompressor.modifiers.transform.awq", "AWQModifier"),
                                                   ("llmcompressor.modifiers.quantization", "QuantizationModifier")]
    weights = steps[1].kwargs["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"]) == (4, 64, False)


def test_attention_value_hessians_are_refused_naming_the_builtin_packed_output():
    for method in ("gptq", "sparsegpt"):
        with pytest.raises(ColakitError, match="tokens") as err:
            build_recipe(CompressionConfig(method, value_hessian="attention"))
        assert "--backend builtin --save-format compressed-tensors" in err.value.hint


@pytest.fixture
def no_weights(monkeypatch):
    """Loading any model's weights fails the test: the backend's refusals come first."""
    from colakit.model import load

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(load, "load_model", refuse)


def test_backend_refusals_come_before_the_model_loads_without_llmcompressor(tmp_path, no_weights, monkeypatch):
    import torch
    from typer.testing import CliRunner

    from colakit.calibset import CalibrationSet
    from colakit.cli import app
    from test_compress_cli import word_tokenizer
    from tiny_models import tiny_model

    monkeypatch.setitem(sys.modules, "llmcompressor", None)  # not installed, whatever this machine has
    model_dir, calib_dir = tmp_path / "tiny", tmp_path / "calib"
    tok = word_tokenizer()
    tiny_model("llama").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    CalibrationSet.from_token_ids([list(range(3, 20))], tokenizer=tok, model=str(model_dir)).save(calib_dir)

    def run(*args):
        result = CliRunner().invoke(app, ["compress", "--model", str(model_dir), "--calib", str(calib_dir),
                                          "--backend", "llmcompressor", "--out", str(tmp_path / "out"), *args])
        assert isinstance(result.exception, ColakitError), result.output
        assert not (tmp_path / "out").exists()
        return result.exception

    assert "value_hessian 'attention'" in str(run("--method", "gptq", "--value-hessian", "attention"))
    # without the option the command asks llm-compressor for its own kind: token Hessians
    assert "pip install" in str(run("--method", "gptq"))
    assert "writes compressed-tensors checkpoints only" in str(run("--method", "wanda", "--save-format", "fake-quant"))
    if not torch.cuda.is_available():
        assert "--save-format compressed-tensors" in run("--method", "awq").hint


def test_recipes_match_the_config():
    pytest.importorskip("llmcompressor")
    tokens = {"value_hessian": "tokens"}  # llm-compressor's only kind (attention is refused above)
    (sgpt,) = build_recipe(CompressionConfig("sparsegpt", pattern="2:4", damp=0.02, **tokens))
    assert type(sgpt).__name__ == "SparseGPTModifier" and sgpt.mask_structure == "2:4" and sgpt.dampening_frac == 0.02
    (wanda,) = build_recipe(CompressionConfig("wanda", sparsity=0.6))
    assert wanda.sparsity == 0.6 and wanda.mask_structure == "0:0"
    (gptq,) = build_recipe(CompressionConfig("gptq", bits=3, group_size=64, sym=True, **tokens))
    weights = gptq.config_groups["group_0"].weights
    assert (weights.num_bits, weights.group_size, weights.symmetric) == (3, 64, True)
    # llm-compressor's GPTQ would refill pruned weights: pruning + bits rounds the kept weights instead
    for method, extra in (("sparsegpt", tokens), ("wanda", {})):
        pruned_then_rounded = build_recipe(CompressionConfig(method, bits=4, group_size=32, **extra))
        assert [type(m).__name__ for m in pruned_then_rounded] == [type(sgpt if method == "sparsegpt" else wanda)
                                                                  .__name__, "QuantizationModifier"]
    with pytest.raises(ColakitError, match="resolve"):
        build_recipe(CompressionConfig("gptq", group_size="auto", **tokens))


def test_sparsegpt_2of4_with_bits_end_to_end_keeps_the_pattern(tmp_path):
    """oneshot on a tiny model: a packed checkpoint that dequantizes to 2:4 weights on a 4-bit grid."""
    pytest.importorskip("llmcompressor")
    import json

    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig

    from colakit.calibset import CalibrationSet
    from colakit.compress import compress_to_dir
    from colakit.model.load import load_model
    from test_compress_cli import word_tokenizer
    from tiny_models import tiny_model

    model_dir, calib_dir, out = tmp_path / "tiny", tmp_path / "calib", tmp_path / "out"
    tok = word_tokenizer()
    tiny_model("llama").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    g = torch.Generator().manual_seed(0)
    CalibrationSet.from_token_ids([torch.randint(3, 256, (n,), generator=g).tolist() for n in (24, 24, 16, 9)],
                                  tokenizer=tok, model=str(model_dir)).save(calib_dir)
    config = CompressionConfig("sparsegpt", pattern="2:4", bits=4, group_size="auto", value_hessian="tokens")
    report = compress_to_dir(str(model_dir), calib_dir, out, config, device="cpu", backend="llmcompressor")
    saved = json.loads((out / "compression.json").read_text())
    assert saved["backend"] == "llmcompressor" and saved["config"]["group_size"] == 64
    assert saved["save_format"] == "compressed-tensors" and saved["config"]["value_hessian"] == "tokens"
    assert [r.split("(")[0] for r in saved["recipe"]] == ["SparseGPTModifier", "QuantizationModifier"]
    assert abs(report["sparsity"] - 0.5) < 1e-3
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                    quantization_config=CompressedTensorsConfig(dequantize=True))
    for layer in reloaded.model.layers:
        for lin in (layer.self_attn.q_proj, layer.mlp.down_proj):
            w = lin.weight
            assert ((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2).all()
            assert max(len(torch.unique(row)) for row in w.reshape(-1, 64)) <= 16
    # colakit's loader (colakit evaluate, --model): the same weights, as a plain dense model
    ours = load_model(str(out), device="cpu")
    assert not any(hasattr(m, "quantization_scheme") for m in ours.modules())
    theirs = {k: v for k, v in reloaded.state_dict().items() if not k.rpartition(".")[2].startswith("weight_")}
    assert list(ours.state_dict()) == list(theirs)
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())
