"""Scale-out: feature throughput and peak memory, local executor vs Ray (2 workers), 1k and 20k pools.

    python bench/scale.py [--n 20000] [--small 1000] [--seq-len 64] [--layers 0,1] [--workers 2]
                          [--runs local-small,local,ray] [--local-threads N]
    python bench/scale.py --device-rate [--config DIR]   # on a GPU: windows/s of one feature worker

Every run is a fresh subprocess (so its peak RSS is its own) that builds the candidate pool from
real sources (code, wiki, commonsense; ``n / 3`` windows each) and extracts features into a
fresh store with the real default model:

- local, ``--small`` candidates and local, ``--n`` candidates: peak RSS at both pool sizes;
- ray, ``--n`` candidates: a local Ray with ``--workers`` CPUs, one single-threaded actor each.

Reported per run: pool build time, feature time (model loading and Ray start-up included),
features/s, the process's peak RSS (``ru_maxrss``), how much the peak rose while the pool was
built and while features were extracted (Linux: the peak is reset before each stage), and for
Ray the peak RSS of every worker process (polled from /proc while the run is alive). The local
run uses torch's default threads (all cores), the Ray actors one thread each: both use the same
cores. Ratios are printed side by side at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from peak_memory import hwm_mib, reset_peak  # bench/peak_memory.py (the script's folder is on sys.path)

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from colakit.curate.features import (
    FeatureConfig,
    FeaturePlan,
    compute_shard,
    extract_features,
    jl_dim,
    projection,
)
from colakit.curate.pipeline import CurateConfig, build_pool
from colakit.curate.process import Candidate
from colakit.executors import get_executor
from colakit.model.load import ModelHandle, load_tokenizer, resolve_model




class WorkerPeaks:
    """Polls /proc for Ray worker processes (``ray::`` in the command line) and keeps each one's peak RSS."""

    def __init__(self):
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "ray::" in cmd or "default_worker.py" in cmd:
                    peak = hwm_mib(pid)
                    if peak is not None:
                        self.peaks[int(pid)] = (cmd.split()[0][:60], max(peak, self.peaks.get(int(pid), ("", 0))[1]))
            self._stop.wait(0.5)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def child(args) -> dict:
    """One measured run, in this (fresh) process."""
    if args.child_mode == "local" and args.local_threads:
        torch.set_num_threads(args.local_threads)
    tok = load_tokenizer(args.model)
    per_source = -(-args.child_n // 3)
    cfg = CurateConfig(model=args.model, sources=["code", "wiki", "commonsense"], seq_len=args.seq_len,
                       pool_per_source=per_source,
                       features=FeatureConfig(layers=args.layers, batch_size=args.batch_size))
    executor = get_executor(args.child_mode, workers=args.workers)
    out: dict = {"mode": args.child_mode, "requested": args.child_n}
    base = reset_peak()
    t0 = time.perf_counter()
    pool, prov = build_pool(cfg, tok, executor=executor)
    out["pool_s"] = time.perf_counter() - t0
    out["candidates"] = len(pool)
    out["pool_peak_rise_mib"] = None if base is None else hwm_mib() - base
    base = reset_peak()
    with tempfile.TemporaryDirectory(dir=os.environ.get("COLAKIT_CACHE")) as store, WorkerPeaks() as workers:
        t0 = time.perf_counter()
        feats = extract_features(pool, ModelHandle(args.model, tokenizer=tok), config=cfg.features, executor=executor,
                                 store_dir=Path(store) / "features", progress=False)
        out["features_s"] = time.perf_counter() - t0
    out["features_peak_rise_mib"] = None if base is None else hwm_mib() - base
    out["dim"] = int(feats.shape[1])
    out["features_per_s"] = len(pool) / out["features_s"]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["worker_peak_rss_mib"] = sorted(round(p, 1) for _, p in workers.peaks.values())
    if args.child_mode == "ray":
        import ray  # optional (the ray extra): only the ray run needs it

        ray.shutdown()
    return out


def device_rate(args) -> None:
    """Windows/s of ``features.compute_shard`` on CUDA in bfloat16: the model's architecture with
    random weights (speed does not depend on the values; only ``config.json`` has to be there)."""
    where = args.config or resolve_model(args.model)
    cfg = AutoConfig.from_pretrained(where)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).cuda().eval()
    layers_all = tuple(range(cfg.num_hidden_layers))
    print(torch.__version__, torch.cuda.get_device_name(0))
    for seq, layers, batch, n in ((512, layers_all, 64, 2048), (2048, layers_all, 16, 512), (32, (0,), 256, 8192)):
        width = cfg.hidden_size * len(layers)
        dim = min(jl_dim(10_000_000), width)
        rows = [Candidate(torch.randint(3, cfg.vocab_size, (seq,)).tolist(), "", "x", str(i)) for i in range(n)]
        proj = projection(width, dim, 0)
        def plan(rows_: int) -> FeaturePlan:  # one shard of ``rows_`` windows
            return FeaturePlan("x", layers, width, dim, 0, rows_, rows_, batch, 0, "cuda", "bfloat16")

        compute_shard(plan(batch), model, proj, rows[:batch], 0)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        compute_shard(plan(n), model, proj, rows, 0)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(json.dumps({"seq_len": seq, "layers": len(layers), "batch": batch, "n": n, "seconds": round(dt, 2),
                          "windows_per_s": round(n / dt, 1), "tokens_per_s": round(n * seq / dt)}))
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


def run_child(mode: str, n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child-mode", mode, "--child-n", str(n), "--seq-len", str(args.seq_len),
           "--layers", args.layers, "--workers", str(args.workers), "--batch-size", str(args.batch_size),
           "--model", args.model, "--local-threads", str(args.local_threads or 0)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{mode} run with {n} candidates failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--layers", default="0,1")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", default="local-small,local,ray", help="which runs, comma-separated")
    ap.add_argument("--local-threads", type=int, default=0, help="torch threads of the local runs (0: torch's default)")
    ap.add_argument("--device-rate", action="store_true", help="time one feature worker on CUDA (random weights)")
    ap.add_argument("--config", help="--device-rate: a directory with the model's config.json")
    ap.add_argument("--child-mode", help=argparse.SUPPRESS)
    ap.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device_rate:
        device_rate(args)
        return
    if args.child_mode:
        print(json.dumps(child(args)))
        return

    print(f"model={args.model} seq_len={args.seq_len} layers={args.layers} batch={args.batch_size} "
          f"cores={os.cpu_count()} torch threads (local)={args.local_threads or torch.get_num_threads()} "
          f"ray workers={args.workers} x 1 thread")
    runs = {}
    plan = {"local-small": ("local", args.small), "local": ("local", args.n), "ray": ("ray", args.n)}
    for name in args.runs.split(","):
        mode, n = plan[name]
        t0 = time.perf_counter()
        runs[name] = r = run_child(mode, n, args)
        print(f"{name:12s} candidates={r['candidates']:6d} dim={r['dim']} pool {r['pool_s']:6.1f} s  "
              f"features {r['features_s']:7.1f} s = {r['features_per_s']:6.1f}/s  "
              f"peak RSS {r['peak_rss_mib']:6.0f} MiB "
              f"(rise: pool {r['pool_peak_rise_mib']:.1f}, features {r['features_peak_rise_mib']:.1f} MiB)  "
              f"workers {r['worker_peak_rss_mib']}  [{time.perf_counter() - t0:.0f} s wall]", flush=True)
    loc, ray_, small = runs.get("local"), runs.get("ray"), runs.get("local-small")
    if loc and ray_:
        print(f"features/s ray / local: {ray_['features_per_s'] / loc['features_per_s']:.2f}x  "
              f"({ray_['features_per_s']:.1f} vs {loc['features_per_s']:.1f})")
    if loc and small:
        print(f"peak RSS local: {small['candidates']} candidates {small['peak_rss_mib']:.0f} MiB, "
              f"{loc['candidates']} candidates {loc['peak_rss_mib']:.0f} MiB "
              f"(x{loc['peak_rss_mib'] / small['peak_rss_mib']:.2f} "
              f"for x{loc['candidates'] / small['candidates']:.0f} candidates)")
    if ray_:
        workers = ray_["worker_peak_rss_mib"]
        print(f"peak RSS ray: driver {ray_['peak_rss_mib']:.0f} MiB, largest worker "
              f"{max(workers) if workers else 'n/a'} MiB, "
              f"driver + all workers {ray_['peak_rss_mib'] + sum(workers):.0f} MiB")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
