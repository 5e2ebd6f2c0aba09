"""Where a result came from: the colakit version and the git commit of the code that made it.

Every results file colakit writes carries ``provenance()``, so a number in a report can be traced
to the code that produced it, and a check can tell when the code has moved on since.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from colakit import __version__

_REPO = Path(__file__).resolve().parents[2]  # src/colakit/provenance.py -> the checkout, when run from one


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """``{"colakit_version", "git_commit", "git_dirty"}``; commit and dirty are None outside a git checkout.

    ``git_dirty`` counts tracked files with uncommitted changes (untracked files do not change what
    runs unless imported, and run directories are untracked by design).
    """
    commit = _git("rev-parse", "HEAD") if (_REPO / ".git").exists() else None
    dirty = None
    if commit:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return {"colakit_version": __version__, "git_commit": commit, "git_dirty": dirty}
