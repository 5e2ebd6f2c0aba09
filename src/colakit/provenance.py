"""Where a result came from: the colakit version and the git commit of the code that made it.

Every results file colakit writes carries ``provenance()``, so a number in a report can be traced
to the code that produced it, and a check can tell when the code has moved on since.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
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
    """``{"colakit_version", "git_commit", "git_dirty", "defaults"}``; commit and dirty are None outside a
    git checkout; ``defaults`` is ``defaults_digests()``.

    ``git_dirty`` counts tracked files with uncommitted changes (untracked files do not change what
    runs unless imported, and run directories are untracked by design).
    """
    commit = _git("rev-parse", "HEAD") if (_REPO / ".git").exists() else None
    dirty = None
    if commit:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return {"colakit_version": __version__, "git_commit": commit, "git_dirty": dirty, "defaults": defaults_digests()}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _signature_defaults(cls) -> dict:
    """The keyword defaults of ``cls(...)``: a method's or selector's parameters as a user leaves them."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


@functools.lru_cache(maxsize=1)
def defaults_digests() -> dict[str, str]:
    """A digest of the defaults behind each part of a result, by part: ``curate`` (``colakit.defaults``
    and ``CurateConfig``, features included), ``evaluate`` (``EvalConfig``), ``compress.<method>`` and
    ``select.<method>`` (each registered method's parameter defaults; a compression method's also its
    calibration budget and the engine's batch size).

    Every results file records them; ``tools/results.py check`` calls a README figure stale when a
    part its results file used has changed since (a new method changes no existing part).
    """
    # imported here: provenance is imported by the stages whose defaults it digests
    from colakit import defaults
    from colakit.compress.config import CompressionConfig
    from colakit.compress.methods import METHODS
    from colakit.curate.pipeline import CurateConfig
    from colakit.curate.select import SELECTORS
    from colakit.evaluate.config import EvalConfig

    constants = {k: v for k, v in vars(defaults).items() if k.isupper()}
    parts = {"curate": _digest([constants, dataclasses.asdict(CurateConfig())]),
             "evaluate": _digest(dataclasses.asdict(EvalConfig()))}
    engine = _signature_defaults(CompressionConfig)  # batch size
    parts.update({f"compress.{name}": _digest([engine, _signature_defaults(cls), cls.calibration])
                  for name, cls in sorted(METHODS.items())})
    parts.update({f"select.{name}": _digest(_signature_defaults(cls)) for name, cls in sorted(SELECTORS.items())})
    return parts
