"""The Ray executor: sources and feature shards as Ray Data pipelines (``pip install "colakit[ray]"``).

- sources: ``map_batches`` over the source jobs (one task each); every task writes its windows to
  a part of the pool directory; the driver merges the parts in source order.
- features: ``map_batches`` over shard indices with an actor pool (``ActorPoolStrategy``); each
  actor loads the model once and computes whole shards; the shard comes back to the driver as
  the bytes ``np.save`` writes, and the driver checks and stores it. An actor that dies is
  restarted and its shard retried (``max_restarts`` / ``max_task_retries``); shards are
  deterministic, so a retry gives the same bytes.

Workers read the pool directory, so on a cluster it must be on storage every node sees (put
``$COLAKIT_CACHE`` on a shared file system). When colakit starts or joins Ray itself, ``COLAKIT_*``
and ``HF_*`` environment variables are forwarded to the workers (the job's runtime_env).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from colakit.errors import ColakitError

log = logging.getLogger(__name__)

# Test hook, read on the driver: "SHARD:MARKER" makes the first attempt at feature shard SHARD kill
# its worker process (os._exit) and leave MARKER behind, so a test can watch Ray retry the shard.
FAULT_ENV = "COLAKIT_TEST_EXIT_SHARD"


def _forwarded_env() -> dict[str, str]:
    keep = ("COLAKIT_", "HF_", "TOKENIZERS_PARALLELISM", "TRANSFORMERS_")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _source_stage(batch: dict, jobs: Sequence, tokenizer, scratch: str) -> dict:
    """One Ray task per source: its windows into ``scratch/part-NNN`` (a pool of its own)."""
    from colakit.curate.pool import PoolWriter
    from colakit.curate.process import source_windows

    out = {"job": [], "info": [], "path": []}
    for i in batch["job"]:
        i = int(i)
        part = Path(scratch) / f"part-{i:03d}"
        shutil.rmtree(part, ignore_errors=True)  # a retried task starts clean
        info, cands = source_windows(jobs[i], tokenizer)
        writer = PoolWriter(part)
        writer.extend(cands)
        writer.close()
        out["job"].append(i)
        out["info"].append(json.dumps(info))
        out["path"].append(str(part))
    return out


class _FeatureActor:
    """Holds the model (loaded once per actor) and computes whole feature shards."""

    def __init__(self, plan, candidates, model=None, threads: int = 1, fault: str | None = None):
        import torch

        from colakit.curate.features import projection
        from colakit.model.load import load_model

        torch.set_num_threads(threads)  # one core per worker: no oversubscription on a shared node
        self.plan, self.candidates = plan, candidates
        self.model = model if model is not None else load_model(plan.model_name, device=plan.device,
                                                                 dtype=plan.dtype)
        self.proj = projection(plan.width, plan.dim, plan.seed)
        self.fault = fault

    def __call__(self, batch: dict) -> dict:
        from colakit.curate.features import compute_shard

        out = {"shard": [], "npy": []}
        for s in batch["shard"]:
            s = int(s)
            _fault_hook(self.fault, s)
            arr = compute_shard(self.plan, self.model, self.proj, self.candidates, s)
            out["shard"].append(s)
            out["npy"].append(_npy_bytes(arr))
        return out


def _fault_hook(spec: str | None, shard: int) -> None:
    if not spec:
        return
    target, marker = spec.split(":", 1)
    if int(target) == shard and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(17)  # as abrupt as a killed process: no cleanup, no exception


class RayExecutor:
    """Sources and feature shards on Ray: a local Ray with ``workers`` CPUs, or ``address``'s cluster."""

    name = "ray"
    workers_load_model = True  # each actor loads the model; the driver never does

    def __init__(self, address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0, max_retries: int = 3, stall_timeout_s: float = 1800):
        try:
            import ray  # noqa: F401
            import ray.data  # noqa: F401
        except ImportError as err:
            raise ColakitError("--executor ray needs Ray Data, which is not installed",
                               'pip install "colakit[ray]" (or use the default --executor local)') from err
        if workers < 1:
            raise ColakitError(f"{workers} Ray workers", "use at least one worker")
        self.address, self.workers = address, workers
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker
        self.max_retries = max_retries
        if not (stall_timeout_s > 0 or stall_timeout_s == -1):
            raise ColakitError(f"stall timeout {stall_timeout_s} s", "use a positive number of seconds, or -1 for none")
        self.stall_timeout_s = stall_timeout_s

    def _ray(self):
        import ray
        import ray.data

        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                      runtime_env={"env_vars": _forwarded_env()})
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                # one logical CPU beyond the actors' own: Ray Data starts actors before other tasks,
                # and actors holding every CPU can starve the rest of the pipeline (ray-project/ray#44687)
                ray.init(num_cpus=max(1, int(round(self.workers * self.cpus_per_worker))) + 1, **kw)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        # a pipeline that stops moving fails (Ray's ExecutionTimeoutError, turned into a ColakitError by
        # _run) instead of waiting forever: pending actors that never start, a cluster without capacity
        ctx.execution_no_progress_timeout_s = self.stall_timeout_s
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        return ray

    def _remote_args(self) -> dict:
        args = {"num_cpus": self.cpus_per_worker}
        if self.gpus_per_worker:
            args["num_gpus"] = self.gpus_per_worker
        return args

    def sources(self, jobs: Sequence, tokenizer, scratch) -> Iterator[tuple[dict, Iterable]]:
        from colakit.curate.pool import StoredPool

        ray = self._ray()
        ds = ray.data.from_items([{"job": i} for i in range(len(jobs))], override_num_blocks=len(jobs))
        ds = ds.map_batches(_source_stage, batch_size=1,  # tasks: Ray retries a lost one 3 times
                            fn_kwargs={"jobs": list(jobs), "tokenizer": tokenizer, "scratch": str(scratch)},
                            **self._remote_args())
        rows = {int(r["job"]): r for r in _run(ds, "sources")}
        for i in range(len(jobs)):
            yield json.loads(rows[i]["info"]), StoredPool(rows[i]["path"])

    def feature_shards(self, plan, candidates: Sequence, todo: list[int], model) -> Iterator[tuple[int, np.ndarray]]:
        ray = self._ray()
        ds = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for actor restarts yet; without them Ray Data retries
            # forever, and a shard that always kills its worker (out of memory) would never fail
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            ds = ds.map_batches(_FeatureActor, batch_size=1,
                                compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(todo))),
                                fn_constructor_kwargs={"plan": plan, "candidates": candidates, "model": model,
                                                       "threads": max(1, int(self.cpus_per_worker)),
                                                       "fault": os.environ.get(FAULT_ENV)},
                                max_restarts=self.max_retries, max_task_retries=self.max_retries,
                                **self._remote_args())
        for row in _run(ds, "features"):
            yield int(row["shard"]), np.load(io.BytesIO(row["npy"]), allow_pickle=False)


def _run(ds, stage: str):
    """Rows of a Ray dataset as they finish; a failed pipeline becomes a one-line ColakitError."""
    try:
        yield from ds.iter_rows()
    except ColakitError:
        raise
    except Exception as err:  # Ray wraps worker errors in its own types
        cause = _colakit_cause(err)
        if cause is not None:  # a user-fixable problem found in a worker: say it as the worker did
            raise ColakitError(f"the Ray {stage} pipeline failed: {cause.problem}", cause.hint) from err
        if type(err).__name__ == "ExecutionTimeoutError":
            raise ColakitError(f"the Ray {stage} pipeline made no progress for its stall timeout: "
                               f"{str(err).splitlines()[0]}",
                               "check that the cluster has a free CPU per worker plus one (ray status), or raise "
                               "RayExecutor(stall_timeout_s=...) if it waits for capacity on purpose") from err
        raise ColakitError(f"the Ray {stage} pipeline failed: {type(err).__name__}: {str(err).splitlines()[0]}",
                           "see the worker logs (ray logs, or /tmp/ray/session_latest/logs)") from err


def _colakit_cause(err: BaseException) -> ColakitError | None:
    """The ColakitError a worker raised: in the exception chain, or (Ray Data wraps user errors in
    a UserCodeException that keeps only the text) in the remote traceback's last line."""
    seen = set()
    stack = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ColakitError):
            return e
        stack += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    found = re.findall(r"ColakitError: (.+)", str(err))
    if found:
        problem, _, hint = found[-1].strip().partition(" -- ")
        return ColakitError(problem, hint or None)
    return None
