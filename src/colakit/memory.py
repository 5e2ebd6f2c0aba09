"""Peak memory of this process, as compression.json and evaluation results record it.

Host: the peak resident set size (``getrusage``'s ``ru_maxrss``: the high-water mark of the whole
process, so a stage run after a bigger one in the same process reports the bigger one). Devices:
the peak memory torch allocated on each CUDA device this process used.
"""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory() -> dict:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024  # kilobytes on Linux, bytes on macOS
    out = {"host_rss_peak_mib": round(rss_bytes / 2**20, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["device_peak_mib"] = {f"cuda:{i}": round(torch.cuda.max_memory_allocated(i) / 2**20, 1)
                                  for i in range(torch.cuda.device_count())}
    return out
