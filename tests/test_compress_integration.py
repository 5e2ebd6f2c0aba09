"""The built-in engine on the real default model with a real (tiny) CalibrationSet (marked integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration


@torch.no_grad()
def mean_loss(model, ids: torch.Tensor) -> float:
    return float(model(input_ids=ids, labels=ids).loss)


def linears(model) -> dict:
    from colakit.model.layers import find_decoder, weight_matrix

    layout = find_decoder(model)
    return {f"{i}.{n}": weight_matrix(lin) for i in range(layout.num_layers) for n, lin in layout.linears(i).items()}


def decompressed(path):
    """A packed directory as transformers loads it, decompressing."""
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                quantization_config=CompressedTensorsConfig(dequantize=True)).eval()


def heldout_ppl(model_or_dir) -> dict:
    """Held-out wiki perplexity (4 documents, 128-token windows) and the model hash, as colakit evaluates them."""
    from colakit.evaluate import EvalConfig, evaluate, evaluate_model
    from colakit.model.load import DEFAULT_MODEL, load_tokenizer

    config = EvalConfig(ppl_seq_len=128)
    if isinstance(model_or_dir, torch.nn.Module):
        results = evaluate(model_or_dir, load_tokenizer(DEFAULT_MODEL), "ppl_wiki", limit=4, config=config)
    else:
        results = evaluate_model(str(model_or_dir), "ppl_wiki", limit=4, device="cpu", config=config)
    return {"ppl": results["tasks"]["ppl_wiki"]["metrics"]["token_perplexity"], "hash": results["model"]["hash"]}


@pytest.mark.filterwarnings("ignore:You passed `quantization_config`:UserWarning")
def test_gptq_w4_on_the_default_model_writes_a_packed_directory_of_the_solved_weights(tmp_path):
    from colakit.compress import CompressionConfig, compress_to_dir
    from colakit.curate.pipeline import CurateConfig, curate
    from colakit.model.load import DEFAULT_MODEL, ModelHandle, load_model

    calib = tmp_path / "calib"
    cs = curate(CurateConfig(method="random", sources=["c4"], n=4, seq_len=64, pool_per_source=16), out=calib)
    out = tmp_path / "gptq"
    handle = ModelHandle(DEFAULT_MODEL, device="cpu")  # compress_to_dir compresses its model in place
    report = compress_to_dir(handle, calib, out, CompressionConfig("gptq", bits=4, group_size="auto"))

    saved = json.loads((out / "compression.json").read_text())
    assert saved == json.loads(json.dumps(report, default=str))
    assert saved["config"]["group_size"] == 64  # 128 does not divide the hidden size 576
    assert saved["calibration"]["content_hash"] == cs.content_hash and saved["calibration"]["tokens"] == 4 * 64
    assert saved["save_format"] == "compressed-tensors"
    assert len(saved["blocks"]) == 30
    for block in saved["blocks"]:
        assert 0 < block["rel_error"] < 0.5
        assert len(block["linears"]) == 7 and all(0 < r["rel_error"] < 1 for r in block["linears"].values())

    quantized, solved = decompressed(out), linears(handle.model)
    for name, w in linears(quantized).items():
        assert torch.equal(w, solved[name]), name
    w = quantized.model.layers[3].mlp.down_proj.weight
    assert max(len(torch.unique(g)) for g in w.reshape(-1, 64)) <= 16
    ids, _ = cs.to_tensors(0)
    dense_loss, quantized_loss = mean_loss(load_model(DEFAULT_MODEL, device="cpu"), ids), mean_loss(quantized, ids)
    assert dense_loss < quantized_loss < 1.15 * dense_loss
    assert quantized_loss == mean_loss(handle.model, ids)
    assert heldout_ppl(out) == heldout_ppl(handle.model)  # colakit's evaluate of the packed directory


@pytest.mark.filterwarnings("ignore:You passed `quantization_config`:UserWarning")
def test_rtn_w4_g64_packed_is_a_third_of_the_dense_size_and_the_fake_quant_model_bit_for_bit(tmp_path):
    from typer.testing import CliRunner

    from colakit.cli import app
    from colakit.model.load import DEFAULT_MODEL, load_model, resolve_model

    def weights_bytes(path) -> int:
        return sum(p.stat().st_size for p in path.glob("*.safetensors"))

    dirs = {}
    for fmt in ("compressed-tensors", "fake-quant"):
        dirs[fmt] = tmp_path / fmt
        run = CliRunner().invoke(app, ["compress", "--method", "rtn", "--bits", "4", "--group-size", "64",
                                       "--device", "cpu", "--save-format", fmt, "--out", str(dirs[fmt])])
        assert run.exit_code == 0, run.output
    dense = weights_bytes(Path(resolve_model(DEFAULT_MODEL)))
    assert weights_bytes(dirs["compressed-tensors"]) <= 0.35 * dense <= 0.35 * weights_bytes(dirs["fake-quant"]) * 1.01

    fake = linears(load_model(str(dirs["fake-quant"]), device="cpu"))
    for name, w in linears(decompressed(dirs["compressed-tensors"])).items():
        assert torch.equal(w, fake[name]), name
    packed, fake_quant = heldout_ppl(dirs["compressed-tensors"]), heldout_ppl(dirs["fake-quant"])
    assert packed == fake_quant and 5 < packed["ppl"] < 200
