"""The built-in engine on the real default model with a real (tiny) CalibrationSet (marked integration)."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.integration


@torch.no_grad()
def mean_loss(model, ids: torch.Tensor) -> float:
    return float(model(input_ids=ids, labels=ids).loss)


def test_gptq_w4_on_the_default_model_writes_a_reloadable_complete_directory(tmp_path):
    from transformers import AutoModelForCausalLM

    from colakit.compress import CompressionConfig, compress_to_dir
    from colakit.curate.pipeline import CurateConfig, curate
    from colakit.model.load import DEFAULT_MODEL, load_model

    calib = tmp_path / "calib"
    cs = curate(CurateConfig(sources=["c4"], n=4, seq_len=64, pool_per_source=16), out=calib)
    out = tmp_path / "gptq"
    report = compress_to_dir(DEFAULT_MODEL, calib, out, CompressionConfig("gptq", bits=4, group_size="auto"),
                             device="cpu")

    saved = json.loads((out / "compression.json").read_text())
    assert saved == json.loads(json.dumps(report, default=str))
    assert saved["config"]["group_size"] == 64  # 128 does not divide the hidden size 576
    assert saved["calibration"]["content_hash"] == cs.content_hash and saved["calibration"]["tokens"] == 4 * 64
    assert len(saved["blocks"]) == 30
    for block in saved["blocks"]:
        assert 0 < block["rel_error"] < 0.5
        assert len(block["linears"]) == 7 and all(0 < r["rel_error"] < 1 for r in block["linears"].values())

    quantized = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    w = quantized.model.layers[3].mlp.down_proj.weight
    assert max(len(torch.unique(g)) for g in w.reshape(-1, 64)) <= 16
    ids, _ = cs.to_tensors(0)
    dense_loss, quantized_loss = mean_loss(load_model(DEFAULT_MODEL, device="cpu"), ids), mean_loss(quantized, ids)
    assert dense_loss < quantized_loss < 1.15 * dense_loss
