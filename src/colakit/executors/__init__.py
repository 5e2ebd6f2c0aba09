"""Executors: where colakit's units of work run, separate from what they compute.

The contract is ``colakit.executors.base``: an executor maps a function over independent units
(``map(fn, units, setup=..., done=...)``) and knows nothing of what they compute. Three kinds of
unit go through it: one source of a candidate pool (``curate.pipeline.build_pool``), one feature
shard (``curate.features.extract_features``) and one cell of a grid (``grid.runner``). Each is
deterministic and its result is checked and written where the driver decides, so the pool, the
feature store, the CalibrationSet and a grid's results are the same whichever executor ran them.

Every module of this package except ``base`` (and private ``_*`` ones) is one executor, chosen
by its module name (``--executor NAME``) and built by its ``EXECUTOR.from_options``: ``local`` (the
default: this process, nothing extra) and ``ray`` (Ray actors, ``pip install "colakit[ray]"``). A
new executor is one new module here.
"""

from __future__ import annotations

import importlib
import pkgutil

from colakit.errors import ColakitError
from colakit.executors.base import FAULT_ENV, Executor, Results, in_order
from colakit.executors.local import LocalExecutor

# found without importing them: an executor's own dependencies load only when it is chosen
EXECUTORS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and m.name[0] != "_"))


def get_executor(name: str = "local", *, address: str | None = None, workers: int = 2,
                 cpus_per_worker: float = 1, gpus_per_worker: float = 0) -> Executor:
    """The executor ``name`` (``address``: an existing cluster, e.g. ``ray://head:10001`` or ``auto``)."""
    if name not in EXECUTORS:
        raise ColakitError(f"unknown executor {name!r}", f"use one of: {', '.join(EXECUTORS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.EXECUTOR.from_options(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                        gpus_per_worker=gpus_per_worker)


__all__ = ["EXECUTORS", "FAULT_ENV", "Executor", "LocalExecutor", "Results", "get_executor", "in_order"]
