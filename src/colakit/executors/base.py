"""The executor contract: map a function over independent units of work, wherever they run.

An executor knows nothing of what its units compute (source windows, feature shards, grid cells).
The caller gives it:

- ``fn``: a pure function of one unit (a module-level function, a ``functools.partial`` of one, or a
  bound method of a picklable object: remote executors pickle it once per worker);
- ``units``: a sequence of picklable units;
- ``setup`` (optional): builds a worker's state once, e.g. loads a model; the worker then runs
  ``fn(state, unit)`` for each of its units (``fn(unit)`` without ``setup``). It runs lazily, in the
  worker, before the worker's first unit: nothing to do, nothing loaded;
- ``done`` (optional): the caller's completion check (a shard already in the store, a cell already
  in RUNDIR); units it accepts are skipped and never reach a worker. Like datatrove's completion
  markers, except that the markers are the caller's own output files, so a run directory holds the
  same files whichever executor ran it.

``map`` returns ``Results``: each unit's ``(index in units, result)`` as the unit finishes (in no
particular order on a parallel executor; ``in_order`` restores the order while streaming), and
``len()`` the number of units that run. A unit may run more than once (a retry after its worker
died), so ``fn`` must be deterministic and safe to repeat: write files atomically, or return the
result for the driver to write.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

# Test hook of the remote executors, read on the driver: "LABEL/NAME:MARKER" makes the first attempt
# at unit NAME of a ``map(..., label=LABEL)`` kill its worker process (os._exit) and leave MARKER
# behind, so a test can watch the executor retry the unit on a new worker.
FAULT_ENV = "COLAKIT_TEST_EXIT_UNIT"


class Results:
    """``(index, result)`` of each unit as it finishes; ``len()`` counts the units that run."""

    def __init__(self, pairs: Iterator[tuple[int, Any]], pending: list[int]):
        self._pairs, self.pending = pairs, pending

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return self._pairs

    def __len__(self) -> int:
        return len(self.pending)


class Executor(ABC):
    """Runs ``fn`` over units; subclasses decide where (``_run``)."""

    name: str

    @classmethod
    @abstractmethod
    def from_options(cls, *, address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                     gpus_per_worker: float = 0) -> Executor:
        """The executor that ``--executor NAME`` and its command-line options describe."""

    def map(self, fn: Callable, units: Sequence, *, setup: Callable[[], Any] | None = None,
            done: Callable[[Any], bool] | None = None, label: str = "units",
            name: Callable[[Any], str] = str) -> Results:
        """Run ``fn`` over the ``units`` that ``done`` does not accept.

        ``label`` (the kind of unit) and ``name`` (one unit's name) appear in errors and logs.
        """
        pending = [i for i, unit in enumerate(units) if done is None or not done(unit)]
        pairs = self._run(fn, units, pending, setup, label, name) if pending else iter(())
        return Results(pairs, pending)

    @abstractmethod
    def _run(self, fn: Callable, units: Sequence, pending: list[int], setup: Callable[[], Any] | None,
             label: str, name: Callable[[Any], str]) -> Iterator[tuple[int, Any]]:
        """Yield ``(i, fn(units[i]))`` for every ``i`` in ``pending`` (a generator: nothing starts before
        the first ``next``, and closing it stops the workers)."""


def worker_fn(fn: Callable, setup: Callable[[], Any] | None) -> Callable:
    """What a worker calls per unit: ``fn`` bound to the state ``setup`` builds (once, here)."""
    return functools.partial(fn, setup()) if setup is not None else fn


def in_order(results: Iterable[tuple[int, Any]], indices: Sequence[int]) -> Iterator[tuple[int, Any]]:
    """``results`` in the order of ``indices``, each as soon as every earlier one has arrived."""
    waiting: dict[int, Any] = {}
    position = 0
    for i, result in results:
        waiting[i] = result
        while position < len(indices) and indices[position] in waiting:
            yield indices[position], waiting.pop(indices[position])
            position += 1


def fault_spec() -> str | None:
    """The fault-injection spec of this (driver) process, for remote workers (see ``FAULT_ENV``)."""
    return os.environ.get(FAULT_ENV) or None


def inject_fault(spec: str | None, label: str, unit_name: str) -> None:
    """Kill this worker process the first time it reaches the unit ``spec`` names."""
    if not spec:
        return
    target, _, marker = spec.partition(":")
    if target == f"{label}/{unit_name}" and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(17)  # as abrupt as a killed process: no cleanup, no exception
