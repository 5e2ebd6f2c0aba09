"""Compression quality and speed on the real default model, measured side by side.

Two suites share one CalibrationSet (random windows of C4 text from the exllamav3 wheel) and one
held-out perplexity set (consecutive windows of its Wikipedia text; no document overlap with C4):

  quality: dense vs RTN vs GPTQ vs AWQ (w4 g64, w3 g64); magnitude vs Wanda vs SparseGPT (50%, 60%, 2:4)
  parity:  built-in vs llm-compressor for SparseGPT 50%, Wanda 50%, GPTQ w4 g64 (same settings):
           perplexity ratio, wall-time ratio built-in / llm-compressor, peak RSS of each run

Every run is a fresh subprocess, so its peak RSS is its own. Slow on 2 CPU cores:
  python bench/compress_parity.py --suite quality --calib 32 --heldout 40
  python bench/compress_parity.py --suite parity  --calib 64 --heldout 40
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

SEQ = 512
QUALITY = [
    ("dense", {}), ("rtn", dict(bits=4, group_size=64)), ("gptq", dict(bits=4, group_size=64)),
    ("awq", dict(bits=4, group_size=64)), ("rtn", dict(bits=3, group_size=64)),
    ("gptq", dict(bits=3, group_size=64)), ("awq", dict(bits=3, group_size=64)),
    *[(m, dict(sparsity=s)) for s in (0.5, 0.6) for m in ("magnitude", "wanda", "sparsegpt")],
    *[(m, dict(pattern="2:4")) for m in ("magnitude", "wanda", "sparsegpt")],
]
PARITY = [("sparsegpt", dict(sparsity=0.5)), ("wanda", dict(sparsity=0.5)), ("gptq", dict(bits=4, group_size=64))]


def _windows(tok, text: str, count: int, seed: int | None) -> list[list[int]]:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    starts = range(0, len(ids) - SEQ, SEQ)
    starts = random.Random(seed).sample(list(starts), count) if seed is not None else list(starts)[:count]
    return [ids[s:s + SEQ] for s in starts]


def build_data(work: Path, n_calib: int, n_heldout: int, seed: int = 0) -> None:
    from colakit.cache import wheel_file
    from colakit.calibset import CalibrationSet
    from colakit.models import DEFAULT_MODEL, load_tokenizer

    tok = load_tokenizer(DEFAULT_MODEL)
    base = "exllamav3/conversion/standard_cal_data/"
    c4 = wheel_file("exllamav3", base + "c4.utf8").read_text(encoding="utf-8").splitlines()
    wiki = wheel_file("exllamav3", base + "wiki.utf8").read_text(encoding="utf-8")
    sep = tok.eos_token
    CalibrationSet.from_token_ids(_windows(tok, sep.join(c4), n_calib, seed), tokenizer=tok, model=DEFAULT_MODEL,
                                  method="random-windows", seed=seed, source="c4 (exllamav3 1.6.5)"
                                  ).save(work / "calib")
    torch.save(torch.tensor(_windows(tok, wiki, n_heldout, None)), work / "heldout.pt")


@torch.no_grad()
def perplexity(model, heldout: torch.Tensor, batch: int = 8) -> float:
    nll, count = 0.0, 0
    for chunk in heldout.split(batch):
        logits = model(chunk.to(model.device)).logits[:, :-1].float()
        target = chunk[:, 1:].to(model.device)
        nll += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                       reduction="sum"))
        count += target.numel()
    return math.exp(nll / count)


def run_one(work: Path, method: str, params: dict, backend: str) -> dict:
    """One compression + perplexity in this process (called in a subprocess by ``main``)."""
    from transformers import AutoModelForCausalLM

    from colakit.compress import CompressionConfig, compress_to_dir
    from colakit.models import DEFAULT_MODEL, load_model

    heldout = torch.load(work / "heldout.pt")
    started = time.perf_counter()
    if method == "dense":
        model, info = load_model(DEFAULT_MODEL, device="cpu"), {}
    else:
        out = work / f"{method}-{'-'.join(f'{k}{v}' for k, v in params.items())}-{backend}"
        calib = None if method in ("rtn", "magnitude") else work / "calib"  # data-free: skip the error pass
        info = compress_to_dir(DEFAULT_MODEL, calib, out, CompressionConfig(method, **params),
                               device="cpu", backend=backend)
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    wall = time.perf_counter() - started
    return {"method": method, "params": params, "backend": backend, "ppl": perplexity(model, heldout),
            "compress_s": info.get("wall_time_s", 0.0), "total_s": wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "sparsity": info.get("sparsity")}


def _spawn(work: Path, method: str, params: dict, backend: str) -> dict:
    cmd = [sys.executable, __file__, "--work", str(work), "--one", json.dumps([method, params, backend])]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        return {"method": method, "params": params, "backend": backend, "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=["quality", "parity"], default="quality")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: $COLAKIT_CACHE/bench-compress)")
    ap.add_argument("--calib", type=int, default=64, help="calibration windows of 512 tokens")
    ap.add_argument("--heldout", type=int, default=40, help="held-out windows of 512 tokens")
    ap.add_argument("--only", default="", help="comma-separated method names to run (default: all)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.work is None:
        from colakit.cache import cache_dir

        args.work = cache_dir() / "bench-compress"
    if args.one:
        print(json.dumps(run_one(args.work, *json.loads(args.one))))
        return
    work = args.work / f"c{args.calib}-h{args.heldout}"
    if not (work / "calib").exists():
        work.mkdir(parents=True, exist_ok=True)
        build_data(work, args.calib, args.heldout)
    only = set(filter(None, args.only.split(",")))
    if args.suite == "quality":
        plan = [(m, p, "builtin") for m, p in QUALITY if not only or m in only]
    else:
        plan = [(m, p, b) for m, p in PARITY if not only or m in only for b in ("builtin", "llmcompressor")]
    print(f"calibration {args.calib} x {SEQ} tokens of C4, held-out {args.heldout} x {SEQ} tokens of Wikipedia")
    results = []
    for method, params, backend in plan:
        r = _spawn(work, method, params, backend)
        results.append(r)
        if "error" in r:
            print(f"{method:10s} {json.dumps(params):40s} {backend:14s} ERROR {r['error']}", flush=True)
        else:
            print(f"{method:10s} {json.dumps(params):40s} {backend:14s} ppl {r['ppl']:8.3f}  compress "
                  f"{r['compress_s']:7.1f}s  peak RSS {r['peak_rss_mb']:6.0f} MB", flush=True)
    if args.suite == "parity":
        for method, params in PARITY:
            pair = {r["backend"]: r for r in results if r["method"] == method and "error" not in r}
            if len(pair) == 2:
                b, l = pair["builtin"], pair["llmcompressor"]
                print(f"{method:10s} ppl ratio built-in/llm-compressor {b['ppl'] / l['ppl']:.4f}   wall-time ratio "
                      f"{b['compress_s'] / l['compress_s']:.3f}   peak RSS {b['peak_rss_mb']:.0f} / {l['peak_rss_mb']:.0f} MB")
    (work / f"{args.suite}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
