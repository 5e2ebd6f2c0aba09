"""Streamed user sources: pool-build time and peak RSS at 10k, 100k and 1M documents, JSON Lines and Parquet.

    python bench/sources.py [--sizes 10000,100000,1000000] [--kinds jsonl,parquet]
                            [--dir /tmp/colakit-bench-sources] [--seq-len 512] [--pool 1024]

The data: real pool text (the calibration documents of c4, wiki, stories, technical and
multilingual), replicated to each size in a seeded shuffled order, one record per document with a
distinct ``id`` (JSON Lines; Parquet in row groups of 10k rows). Files are built once under
``--dir`` and reused.

Each (kind, size) runs in a fresh subprocess that loads the default tokenizer and then builds the
candidate pool of that one source (``build_pool``, ``--pool`` windows of ``--seq-len`` tokens):
reported are the build time, the documents read, seconds per 100k documents, the process's peak RSS
(``ru_maxrss``), the peak before the build (imports and tokenizer) and how much the build added
(Linux: the peak is reset before it). The goal (issue 22): peak RSS flat within 1.3x from 10k to 1M
documents, time linear in documents read. Sources under ``process.SHUFFLE_BOUND`` characters are
shuffled in memory (colakit's pools as they always were); larger ones take the bounded seeded order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from peak_memory import hwm_mib, reset_peak  # bench/peak_memory.py (the script's folder is on sys.path)

BASE_SOURCES = ("c4", "wiki", "stories", "technical", "multilingual")
ROW_GROUP = 10_000




def base_texts() -> list[str]:
    from colakit.data.sources import get_source

    return [d.text for name in BASE_SOURCES for d in get_source(name).documents("calibration")]


def build_file(kind: str, size: int, folder: Path, texts: list[str]) -> Path:
    """``size`` documents: real texts replicated in a seeded shuffled order, each with its own id."""
    path = folder / f"docs-{size}.{kind}"
    if path.exists():
        return path
    order = list(range(size))
    random.Random(size).shuffle(order)
    tmp = path.with_suffix(path.suffix + ".tmp")
    if kind == "jsonl":
        with open(tmp, "w", encoding="utf-8") as f:
            for i in order:
                f.write(json.dumps({"id": f"doc-{i}", "text": texts[i % len(texts)]}, ensure_ascii=False) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("id", pa.string()), ("text", pa.string())])
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, size, ROW_GROUP):
                chunk = order[start:start + ROW_GROUP]
                writer.write_table(pa.table({"id": [f"doc-{i}" for i in chunk],
                                             "text": [texts[i % len(texts)] for i in chunk]}, schema=schema))
    os.replace(tmp, path)
    return path


def child(spec: str, seq_len: int, pool: int) -> dict:
    """One measurement, in this (fresh) process."""
    from colakit.curate.pipeline import CurateConfig, build_pool
    from colakit.model.load import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    before = reset_peak()
    t0 = time.perf_counter()
    store, provenance = build_pool(CurateConfig(sources=[spec], seq_len=seq_len, pool_per_source=pool), tok)
    seconds = time.perf_counter() - t0
    after = hwm_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "candidates": len(store), "documents_read": provenance[0]["documents_read"],
            "peak_rss_mib": peak, "before_mib": before, "build_added_mib": None if before is None else after - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--kinds", default="jsonl,parquet")
    ap.add_argument("--dir", default="/tmp/colakit-bench-sources")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--pool", type=int, default=1024)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seq_len, args.pool)))
        return
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    texts = None
    rows = []
    for kind in kinds:
        for size in sizes:
            path = folder / f"docs-{size}.{kind}"
            if not path.exists():
                texts = texts or base_texts()
                t0 = time.perf_counter()
                build_file(kind, size, folder, texts)
                print(f"built {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f}s",
                      file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--child", str(path), "--seq-len", str(args.seq_len),
                                  "--pool", str(args.pool)], capture_output=True, text=True, env=os.environ)
            if out.returncode != 0:
                sys.exit(f"{kind} {size}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r.update(kind=kind, size=size, mb=path.stat().st_size / 1e6)
            rows.append(r)
            print(f"{kind:8s} {size:>9,} docs {r['mb']:7.0f} MB  build {r['seconds']:7.1f}s  "
                  f"{r['seconds'] / r['documents_read'] * 1e5:6.2f}s/100k docs  peak RSS {r['peak_rss_mib']:6.0f} MiB  "
                  f"(before build {r['before_mib'] or 0:.0f}, build added {r['build_added_mib'] or 0:.0f})", flush=True)
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        if len(mine) > 1:
            lo, hi = min(r["peak_rss_mib"] for r in mine), max(r["peak_rss_mib"] for r in mine)
            # linear in documents read: the extra time per extra document stays the same from size to size
            marginal = [(b["seconds"] - a["seconds"]) / (b["documents_read"] - a["documents_read"]) * 1e5
                        for a, b in zip(mine, mine[1:])]
            print(f"{kind}: peak RSS max/min {hi / lo:.2f}x (goal <= 1.3x); marginal s/100k docs "
                  f"{' -> '.join(f'{x:.2f}' for x in marginal)} (linear: about constant)")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
