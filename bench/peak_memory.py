"""Peak resident memory of a process, read from Linux's /proc (shared by the benchmarks beside this file)."""

from __future__ import annotations


def hwm_mib(pid: int | str = "self") -> float | None:
    """Peak RSS (VmHWM) of ``pid`` in MiB; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak() -> float | None:
    """Reset this process's peak RSS to its current RSS (Linux); returns the new baseline."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return hwm_mib()
