"""The local executor: every unit in this process, one after the other (what colakit always did)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from colakit.errors import ColakitError
from colakit.executors.base import Executor, worker_fn


class LocalExecutor(Executor):
    """Units in order, in this process: ``fn`` and its results are never pickled, errors propagate as raised."""

    name = "local"

    @classmethod
    def from_options(cls, *, address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                     gpus_per_worker: float = 0) -> LocalExecutor:
        """Nothing to configure: the workers are this process (only a cluster address would be misread)."""
        if address is not None:
            raise ColakitError("--address is for --executor ray", "drop --address or add --executor ray")
        return cls()

    def _run(self, fn: Callable, units: Sequence, pending: list[int], setup: Callable[[], Any] | None,
             label: str, name: Callable[[Any], str]) -> Iterator[tuple[int, Any]]:
        work = worker_fn(fn, setup)
        for i in pending:
            yield i, work(units[i])


EXECUTOR = LocalExecutor
