"""Start-up of the command line: how long until `colakit` answers when no model is needed.

    python bench/startup.py [--repeats 5]

Each case runs `python -m colakit ARGS` in a fresh process (the installed `colakit` script does the
same), `--repeats` times, and reports the median and the worst wall time with the exit code. The
goal (issue 23): `--help` and argument errors answer in under 1 s, because the library (torch,
transformers) is imported only by a command that runs. Alongside, `python -c "import torch"` shows
what an eager import would cost on the same machine, measured in the same run. Say the machine's
load next to the figures (the script prints `os.getloadavg()` before and after).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

GOAL_S = 1.0
CASES = {
    "colakit --help": ["--help"],
    "colakit --version": ["--version"],
    "colakit compress --help": ["compress", "--help"],
    "usage error (unknown option)": ["curate", "--no-such-option"],
    "usage error (missing --method)": ["compress", "--out", "/tmp/colakit-bench-startup-never"],
    "bad --out (compress --out /proc/x)": ["compress", "--method", "rtn", "--out", "/proc/colakit-bench/x"],
    "bad --n (curate --n 0)": ["curate", "--n", "0", "--out", "/tmp/colakit-bench-startup-never"],
}


def timed(argv: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = [(name, [sys.executable, "-m", "colakit", *argv]) for name, argv in CASES.items()]
    rows.append(("reference: python -c 'import torch'", [sys.executable, "-c", "import torch"]))
    print(f"| case | median s | worst s | exit | under {GOAL_S:g} s |\n|---|---:|---:|---:|---|")
    missed = 0
    for name, argv in rows:
        runs = [timed(argv) for _ in range(args.repeats)]
        times, codes = [t for t, _ in runs], {c for _, c in runs}
        ok = max(times) < GOAL_S
        missed += not ok and not name.startswith("reference")
        print(f"| {name} | {statistics.median(times):.2f} | {max(times):.2f} | {','.join(map(str, sorted(codes)))} | "
              f"{'yes' if ok else 'no'} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
