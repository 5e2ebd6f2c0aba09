"""Device check: every stage that touches a model runs on CUDA, in float32 and bfloat16, for every family.

    PYTHONPATH=src python bench/gpu_check.py            # needs a CUDA GPU; tiny random-weight models

For each family of tests/tiny_models.py: activation features on CUDA match CPU (float32), run
finite in bfloat16; each compression method runs on CUDA (float32 and bfloat16 weights), gives
the exact sparsity / level count it promises, and its weights agree with the CPU run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from colakit.compress import CompressionConfig, compress  # noqa: E402
from colakit.curate.features import pooled_activations  # noqa: E402
from colakit.model.layers import find_decoder, weight_matrix  # noqa: E402
from tiny_models import FAMILIES, tiny_model  # noqa: E402

METHODS = {
    "gptq": dict(bits=4, group_size=16),
    "awq": dict(bits=4, group_size=16),
    "sparsegpt": dict(sparsity=0.5),
    "wanda": dict(sparsity=0.5, pattern="2:4"),
}


def weights(model):
    layout = find_decoder(model)
    return {f"{i}.{n}": weight_matrix(m).detach().float().cpu().clone()
            for i in range(layout.num_layers) for n, m in layout.linears(i).items()}


def run_compress(family, method, device, dtype, ids, mask):
    """Compress a tiny model; return it, whether its logits are finite, and its output error vs dense."""
    model = tiny_model(family).to(device=device, dtype=dtype)
    with torch.no_grad():
        dense = model(input_ids=ids.to(device)).logits.float()
    compress(model, ids.to(device), mask.to(device), CompressionConfig(method=method, **METHODS[method]))
    with torch.no_grad():
        out = model(input_ids=ids.to(device)).logits.float()
    return model, bool(torch.isfinite(out).all()), ((out - dense).norm() / dense.norm()).item()


def main() -> int:
    assert torch.cuda.is_available(), "no CUDA device"
    print(torch.cuda.get_device_name(0), "torch", torch.__version__)
    failures = 0
    torch.manual_seed(0)
    ids = torch.randint(3, 250, (8, 32))
    mask = torch.ones_like(ids)
    mask[6:, 20:] = 0
    for family in FAMILIES:
        cpu = tiny_model(family)
        f_cpu = pooled_activations(cpu, ids, mask, [0, 1])
        f_gpu = pooled_activations(tiny_model(family).cuda(), ids.cuda(), mask.cuda(), [0, 1]).cpu()
        f_bf16 = pooled_activations(tiny_model(family).cuda().bfloat16(), ids.cuda(), mask.cuda(), [0, 1])
        feat_err = (f_cpu - f_gpu).abs().max().item()
        ok = feat_err < 1e-3 and bool(torch.isfinite(f_bf16).all())
        failures += not ok
        print(f"{family:8s} features  cuda-vs-cpu max|diff| {feat_err:.2e}  bf16 finite {bool(torch.isfinite(f_bf16).all())}"
              f"  {'ok' if ok else 'FAIL'}")
        for method in METHODS:
            t0 = time.time()
            ref, _, err_cpu = run_compress(family, method, "cpu", torch.float32, ids, mask)
            gpu, finite, err_gpu = run_compress(family, method, "cuda", torch.float32, ids, mask)
            _, finite_bf16, err_bf16 = run_compress(family, method, "cuda", torch.bfloat16, ids, mask)
            w_ref, w_gpu = weights(ref), weights(gpu)
            rel = max(((w_gpu[k] - w_ref[k]).norm() / w_ref[k].norm().clamp_min(1e-12)).item() for k in w_ref)
            zeros = min((w == 0).float().mean().item() for w in w_gpu.values())
            # AWQ's grid search is an argmin over discrete scales: near-ties may flip between devices,
            # so it is held to the same output error rather than to the same weights.
            same = abs(err_gpu - err_cpu) <= 0.25 * err_cpu if method == "awq" else rel < 0.05
            ok = finite and finite_bf16 and same and (method not in ("sparsegpt", "wanda") or zeros >= 0.5)
            failures += not ok
            print(f"{family:8s} {method:9s} finite fp32/bf16 {finite}/{finite_bf16}  weights rel.diff vs cpu {rel:.2e}"
                  f"  output err cpu/cuda/bf16 {err_cpu:.3f}/{err_gpu:.3f}/{err_bf16:.3f}"
                  f"  min zero fraction {zeros:.3f}  {time.time() - t0:.1f}s  {'ok' if ok else 'FAIL'}")
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
