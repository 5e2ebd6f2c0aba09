"""Size on disk and load time of the default model: dense float32, fake-quant and packed (compressed-tensors).

One compression run per format (w4 g64 asymmetric; RTN by default: data-free, the same grid shape as
GPTQ's), then each directory is loaded with ``colakit.model.load.load_model`` on CPU in ``--repeats``
fresh subprocesses (the files are in the page cache after the first; the median is reported). The
packed directory is checked to load to the fake-quant weights bit for bit. The machine's load average
is printed beside the times (2 shared cores: the times move with it).

  python bench/packed_checkpoint.py --out /tmp/packed-bench
  python bench/packed_checkpoint.py --out /tmp/packed-bench --method gptq --calib-n 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LOAD = """
import json, sys, time
t = time.perf_counter()
from colakit.model.load import load_model
t_import = time.perf_counter() - t
t = time.perf_counter()
load_model(sys.argv[1], device="cpu")
print(json.dumps({"import_s": t_import, "load_s": time.perf_counter() - t}))
"""


def size(directory: Path) -> dict:
    files = [p for p in directory.iterdir() if p.is_file()]
    weights = sum(p.stat().st_size for p in files if p.suffix == ".safetensors")
    return {"weights_bytes": weights, "dir_bytes": sum(p.stat().st_size for p in files)}


def load_times(directory: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        run = subprocess.run([sys.executable, "-c", LOAD, str(directory)], capture_output=True, text=True, check=True)
        times.append(json.loads(run.stdout.strip().splitlines()[-1])["load_s"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work directory (must not exist)")
    parser.add_argument("--method", default="rtn", choices=("rtn", "gptq", "awq"))
    parser.add_argument("--calib-n", type=int, default=8, help="calibration samples of 128 tokens (gptq/awq)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from colakit.compress import CompressionConfig, compress_to_dir
    from colakit.curate.pipeline import CurateConfig, curate
    from colakit.model.load import DEFAULT_MODEL, load_model, resolve_model

    args.out.mkdir(parents=True)
    calib = None
    if args.method != "rtn":
        calib = args.out / "calib"
        curate(CurateConfig(sources=["c4"], method="random", n=args.calib_n, seq_len=128), out=calib)
    config = dict(bits=4, group_size=64)
    dirs = {"dense float32": Path(resolve_model(DEFAULT_MODEL))}
    for fmt in ("fake-quant", "compressed-tensors"):
        dirs[fmt] = args.out / fmt
        started = time.perf_counter()
        compress_to_dir(DEFAULT_MODEL, calib, dirs[fmt], CompressionConfig(args.method, **config), device="cpu",
                        save_format=fmt)
        print(f"compressed {fmt} in {time.perf_counter() - started:.1f}s", flush=True)
    fake, packed = (load_model(str(dirs[f]), device="cpu").state_dict() for f in ("fake-quant", "compressed-tensors"))
    identical = list(fake) == list(packed) and all(torch.equal(fake[k], packed[k]) for k in fake)
    dense = size(dirs["dense float32"])["weights_bytes"]
    rows = []
    for name, directory in dirs.items():
        times = load_times(directory, args.repeats)
        rows.append({"checkpoint": name, **size(directory), "ratio_to_dense": size(directory)["weights_bytes"] / dense,
                     "load_s_median": statistics.median(times), "load_s": [round(t, 2) for t in times],
                     "loadavg": os.getloadavg()})
    print(f"\n{args.method} w4 g64 asym on {DEFAULT_MODEL}; packed loads to the fake-quant weights bit for bit: "
          f"{identical}")
    print(f"{'checkpoint':<20}{'weights MB':>12}{'dir MB':>10}{'x dense':>9}{'load s (median)':>17}  load avg (1/5/15)")
    for r in rows:
        print(f"{r['checkpoint']:<20}{r['weights_bytes'] / 1e6:>12.1f}{r['dir_bytes'] / 1e6:>10.1f}"
              f"{r['ratio_to_dense']:>9.3f}{r['load_s_median']:>17.2f}  {' '.join(f'{x:.2f}' for x in r['loadavg'])}")
    (args.out / "results.json").write_text(json.dumps({"method": args.method, "identical": identical, "rows": rows},
                                                      indent=2))


if __name__ == "__main__":
    main()
