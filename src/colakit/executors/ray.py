"""The Ray executor: units on Ray actors, on a local Ray or an existing cluster (``pip install "colakit[ray]"``).

Up to ``workers`` actors (``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each; torch keeps to
that many threads) take one unit at a time from the driver, so a slow unit never holds others back;
each actor builds its ``setup`` state once. A worker that dies (killed, out of memory, its node
lost) is replaced by a new actor and its unit retried there, up to ``max_retries`` times per unit.
An error raised by ``fn`` is not retried (units are deterministic: it would fail again); it
reaches the driver as one ColakitError. A worker that cannot start within ``stall_timeout_s`` (no
node has the CPUs or GPUs it asks for) is given up, and when none is left the map fails instead of
waiting forever.

Some matrix shapes give floating-point results that depend on torch's thread count: a worker
matches a local run bit for bit when both use as many threads (``cpus_per_worker``).

Workers share nothing with the driver but ``fn``, the units and the file system: what a unit
reads or writes (the candidate pool under ``$COLAKIT_CACHE``, a run directory) must be on storage
every node sees. When colakit starts or joins Ray itself, ``COLAKIT_*``, ``HF_*``,
``TRANSFORMERS_*`` and ``TOKENIZERS_PARALLELISM`` are forwarded to the workers (the job's runtime_env).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import deque
from typing import Any, Callable, Iterator, Sequence

import torch

from colakit.errors import ColakitError
from colakit.executors.base import Executor, fault_spec, inject_fault, worker_fn

log = logging.getLogger(__name__)

LOGS_HINT = "see the worker logs (ray logs, or /tmp/ray/session_latest/logs)"


def forwarded_env() -> dict[str, str]:
    """The driver's environment that workers need to find the same cache, models and settings."""
    keep = ("COLAKIT_", "HF_", "TOKENIZERS_PARALLELISM", "TRANSFORMERS_")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}


class _Worker:
    """One Ray actor: the state ``setup`` builds (on its first unit), then one unit per call."""

    def __init__(self, task: tuple[Callable, Callable | None], threads: int):
        torch.set_num_threads(threads)  # as many threads as reserved CPUs: no oversubscription on a shared node
        self.fn, self.setup = task
        self.work = None

    def ready(self) -> bool:
        return True

    def run(self, unit, label: str, unit_name: str, fault: str | None):
        inject_fault(fault, label, unit_name)
        if self.work is None:
            self.work = worker_fn(self.fn, self.setup)
        return self.work(unit)


class RayExecutor(Executor):
    """Units on Ray: a local Ray with ``workers * cpus_per_worker`` CPUs, or ``address``'s cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0, max_retries: int = 3, stall_timeout_s: float = 1800):
        try:
            import ray  # noqa: F401  (the optional ray extra: checked here, before any work)
        except ImportError as err:
            raise ColakitError("--executor ray needs Ray, which is not installed",
                               'pip install "colakit[ray]" (or use the default --executor local)') from err
        if workers < 1:
            raise ColakitError(f"{workers} Ray workers", "use at least one worker")
        if not (stall_timeout_s > 0 or stall_timeout_s == -1):
            raise ColakitError(f"stall timeout {stall_timeout_s} s", "use a positive number of seconds, or -1 for none")
        self.address, self.workers = address, workers
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker
        self.max_retries, self.stall_timeout_s = max_retries, stall_timeout_s

    @classmethod
    def from_options(cls, *, address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                     gpus_per_worker: float = 0) -> RayExecutor:
        return cls(address=address, workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)

    def _ray(self):
        import ray  # the optional ray extra

        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                      runtime_env={"env_vars": forwarded_env()})
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=max(1, math.ceil(self.workers * self.cpus_per_worker)), **kw)
        return ray

    def _run(self, fn: Callable, units: Sequence, pending: list[int], setup: Callable[[], Any] | None,
             label: str, name: Callable[[Any], str]) -> Iterator[tuple[int, Any]]:
        ray = self._ray()
        from ray.exceptions import RayError, RayTaskError  # the optional ray extra

        options = {"num_cpus": self.cpus_per_worker, "max_restarts": 0}  # a dead actor is replaced, below
        if self.gpus_per_worker:
            options["num_gpus"] = self.gpus_per_worker
        actor_class = ray.remote(_Worker).options(**options)
        task = ray.put((fn, setup))  # pickled once, however many actors unpickle it
        threads, fault = max(1, int(self.cpus_per_worker)), fault_spec()
        timeout = None if self.stall_timeout_s == -1 else self.stall_timeout_s
        queue, deaths = deque(pending), dict.fromkeys(pending, 0)
        actors: dict[int, Any] = {}  # slot -> actor
        started: set[int] = set()  # slots whose actor answered ready()
        ready: dict[Any, int] = {}  # ready() ref -> slot
        running: dict[Any, tuple[int, int]] = {}  # run() ref -> (slot, unit index)

        def start(slot: int) -> None:
            for ref in [r for r, s in ready.items() if s == slot]:
                del ready[ref]
            actors[slot] = actor_class.remote(task, threads)
            ready[actors[slot].ready.remote()] = slot
            started.discard(slot)

        def submit(slot: int) -> None:
            i = queue.popleft()
            running[actors[slot].run.remote(units[i], label, name(units[i]), fault)] = (slot, i)

        try:
            for slot in range(min(self.workers, len(pending))):
                start(slot)
                submit(slot)
            while running:
                finished, _ = ray.wait([*running, *ready], num_returns=1, timeout=timeout)
                if not finished:
                    self._give_up_unstarted(ray, actors, started, ready, running, queue, label)
                    continue
                ref = finished[0]
                if ref in ready:
                    slot = ready.pop(ref)
                    try:
                        ray.get(ref)
                        started.add(slot)
                    except RayError:
                        pass  # the actor died before it started: its unit's call fails too, and is retried
                    continue
                slot, i = running.pop(ref)
                try:
                    result = ray.get(ref)
                except RayTaskError as err:  # fn raised: deterministic, so not retried
                    raise _unit_error(err, label, name(units[i])) from err
                except RayError as err:  # the worker is gone: a new one retries the unit
                    deaths[i] += 1
                    if deaths[i] > self.max_retries:
                        raise ColakitError(f"the Ray {label} unit {name(units[i])} lost its worker {deaths[i]} times "
                                           f"({type(err).__name__})", f"out of memory? {LOGS_HINT}") from err
                    log.warning("Ray %s unit %s lost its worker (%s); retrying it on a new one", label,
                                name(units[i]), type(err).__name__)
                    ray.kill(actors[slot])
                    queue.appendleft(i)
                    start(slot)
                    submit(slot)
                    continue
                if queue:
                    submit(slot)  # before yielding: the worker goes on while the caller handles the result
                else:
                    ray.kill(actors.pop(slot))  # nothing left for it: its CPUs and GPUs go back to the cluster
                yield i, result
        finally:
            for actor in actors.values():
                ray.kill(actor)

    def _give_up_unstarted(self, ray, actors: dict, started: set, ready: dict, running: dict, queue: deque,
                           label: str) -> None:
        """Nothing happened for the stall timeout: actors that never started are dropped (their units go
        back to the queue for the workers that did start); with none of those left, the map fails."""
        for ref, (slot, i) in list(running.items()):
            if slot not in started:
                del running[ref]
                queue.appendleft(i)
                for r in [r for r, s in ready.items() if s == slot]:
                    del ready[r]
                ray.kill(actors.pop(slot))
        if not running:
            raise ColakitError(f"the Ray {label} units made no progress for {self.stall_timeout_s:g} s: no worker "
                               f"started ({self.cpus_per_worker:g} CPUs, {self.gpus_per_worker:g} GPUs each)",
                               "check that the cluster has that much free per worker (ray status), or raise "
                               "RayExecutor(stall_timeout_s=...) if it waits for capacity on purpose")


def _unit_error(err: BaseException, label: str, unit_name: str) -> ColakitError:
    """What ``fn`` raised in a worker, as one line: a ColakitError keeps its problem and hint."""
    where = f"the Ray {label} unit {unit_name} failed"
    cause = _colakit_cause(err)
    if cause is not None:
        return ColakitError(f"{where}: {cause.problem}", cause.hint)
    inner = getattr(err, "cause", None) or err
    first = (str(inner).splitlines() or [""])[0]
    return ColakitError(f"{where}: {type(inner).__name__}: {first}", LOGS_HINT)


def _colakit_cause(err: BaseException) -> ColakitError | None:
    """The ColakitError a worker raised: in the exception chain, or in the remote traceback's last line."""
    seen = set()
    stack = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ColakitError) and hasattr(e, "problem"):
            return e
        stack += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    found = re.findall(r"ColakitError: (.+)", str(err))
    if found:
        problem, _, hint = found[-1].strip().partition(" -- ")
        return ColakitError(problem, hint or None)
    return None


EXECUTOR = RayExecutor
