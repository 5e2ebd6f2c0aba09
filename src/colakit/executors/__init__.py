"""Executors: where the expensive stages of ``curate`` run, separate from what they compute.

Two stages are farmed out, each as independent, deterministic units of work:

- sources: one ``SourceJob`` per source (read, shuffle, format, tokenize, cut windows);
- features: one shard of candidates ``[s * S, (s + 1) * S)`` per unit (``FeaturePlan``).

The driver merges the sources in order (deduplicating windows) into the on-disk pool, and checks
and writes every feature shard itself, so the pool, the feature store and the CalibrationSet are
the same bytes whichever executor ran the units. ``local`` (the default) runs them in this
process and needs nothing extra; ``ray`` runs them as a Ray Data pipeline (``colakit[ray]``).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np

from colakit.errors import ColakitError

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Everything in this process, one unit after the other (what ``curate`` always did)."""

    name = "local"
    workers_load_model = False  # the driver loads the model and computes with it

    def sources(self, jobs: Sequence, tokenizer, scratch) -> Iterator[tuple[dict, Iterable]]:
        from colakit.curate.process import source_windows

        for job in jobs:
            yield source_windows(job, tokenizer)

    def feature_shards(self, plan, candidates: Sequence, todo: list[int], model) -> Iterator[tuple[int, np.ndarray]]:
        from colakit.curate.features import compute_shard, projection

        proj = projection(plan.width, plan.dim, plan.seed)
        for s in todo:
            yield s, compute_shard(plan, model, proj, candidates, s)


def get_executor(name: str = "local", *, address: str | None = None, workers: int = 2,
                 cpus_per_worker: float = 1, gpus_per_worker: float = 0):
    """``local`` or ``ray`` (``address``: an existing cluster, e.g. ``ray://head:10001`` or ``auto``)."""
    if name == "local":
        if address is not None:
            raise ColakitError("--address is for --executor ray", "drop --address or add --executor ray")
        return LocalExecutor()
    if name == "ray":
        from colakit.executors.ray_executor import RayExecutor

        return RayExecutor(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                           gpus_per_worker=gpus_per_worker)
    raise ColakitError(f"unknown executor {name!r}", f"use one of: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "LocalExecutor", "get_executor"]
