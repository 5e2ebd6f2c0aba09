"""``curate``: sources -> candidate windows -> (features) -> selector -> CalibrationSet.

The one Python entry point behind ``colakit curate``. Each stage is a plain function so the same
pipeline runs here, in a notebook, or split across executors.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from transformers import AutoConfig

from colakit.cache import cache_dir
from colakit.calibset import CalibrationSet, Sample
from colakit.compress.methods import METHODS, get_method
from colakit.curate.budget import check_budget
from colakit.curate.coverage import CAPABILITY_SOURCES, target_weights
from colakit.curate.features import FeatureConfig, FeatureProgress, extract_features
from colakit.curate.pool import Chain, PoolWriter, StoredPool, scratch_dir
from colakit.curate.process import FORMATS, PACKINGS, Candidate, SourceJob, pool_sample, source_windows, windows
from colakit.curate.select import get_selector
from colakit.data.overlap import assert_no_overlap
from colakit.data.sources import NAMED_SOURCES, get_source
from colakit.defaults import (
    DEFAULT_FORMAT,
    DEFAULT_HELDOUT_FRACTION,
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    DEFAULT_N,
    DEFAULT_PACKING,
    DEFAULT_SEED,
    DEFAULT_SEQ_LEN,
    DEFAULT_SOURCES,
    DEFAULT_TARGET,
)
from colakit.errors import ColakitError
from colakit.executors import LocalExecutor, in_order
from colakit.model.load import ModelHandle, max_context, resolve_model, tokenizer_hash

log = logging.getLogger(__name__)


def defaults_for(compression: str | None) -> dict[str, int]:
    """Budget and sequence length that suit ``compression`` (None: the general ``colakit.defaults``).

    Each method says (``Method.calibration``, COLA stage 2); used when a budget or length is not given.
    """
    if compression is None:
        return {"n": DEFAULT_N, "seq_len": DEFAULT_SEQ_LEN}
    method = get_method(compression)
    if not method.needs_data:
        calibrated = ", ".join(name for name, m in METHODS.items() if m.needs_data)
        raise ColakitError(f"--compression {compression} needs no calibration data", f"use one of: {calibrated}")
    return dict(method.calibration)


@dataclass
class CurateConfig:
    """Everything that determines a CalibrationSet (recorded in its manifest).

    The defaults are ``colakit.defaults``, the same as ``colakit curate``'s."""

    model: str = DEFAULT_MODEL
    sources: Sequence[str] = DEFAULT_SOURCES
    method: str = DEFAULT_METHOD
    n: int = DEFAULT_N
    seq_len: int = DEFAULT_SEQ_LEN
    seed: int = DEFAULT_SEED
    format: str = DEFAULT_FORMAT
    packing: str = DEFAULT_PACKING
    pool_per_source: int | None = None  # candidate windows per source; default max(8 * n, 256)
    split_seed: int = 0  # fixed apart from `seed`, so the held-out text stays the same across runs
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION
    allow_overlap: bool = False
    method_params: dict = field(default_factory=dict)
    features: FeatureConfig = field(default_factory=FeatureConfig)  # Stage 3 activations (feature-based methods)
    target: str = DEFAULT_TARGET  # Stage 1: which capability to favour (general = equal weights)
    weights: dict = field(default_factory=dict)  # Stage 1: explicit capability weights, e.g. {"math": 2}
    probes_per_capability: int = 16  # Stage 1: probe windows that describe each capability
    compression: str | None = None  # the method the set is for (recorded; sets n/seq_len defaults in the CLI)

    def validate(self, max_context: int | None) -> None:
        check_budget(self.n, self.seq_len, self.pool_per_source, max_context)
        if self.format not in FORMATS:
            raise ColakitError(f"unknown --format {self.format!r}", f"use one of: {', '.join(FORMATS)}")
        if self.packing not in PACKINGS:
            raise ColakitError(f"unknown --packing {self.packing!r}", f"use one of: {', '.join(PACKINGS)}")
        if not self.sources:
            raise ColakitError("no sources given", "pass --sources, e.g. --sources c4,wiki")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ColakitError(f"--heldout-fraction {self.heldout_fraction} is not in [0, 1)",
                               "use e.g. 0.1 (the default) or 0 (every document for calibration)")
        if max_context is None:  # the cheap pass: the user's files and fields, before anything is loaded
            for spec in self.sources:
                if spec not in NAMED_SOURCES:
                    get_source(spec, seed=self.split_seed, heldout_fraction=self.heldout_fraction).check(self.format)

    @property
    def pool_size(self) -> int:
        return self.pool_per_source or max(8 * self.n, 256)


def _part_dir(parts: Path, i: int) -> Path:
    return parts / f"part-{i:03d}"


def _source_part(jobs: Sequence[SourceJob], tokenizer, parts: Path, i: int) -> dict:
    """Unit ``i`` of a pool: source ``jobs[i]``'s windows into a pool of its own under ``parts``; its provenance."""
    part = _part_dir(parts, i)
    shutil.rmtree(part, ignore_errors=True)  # a retried unit starts clean
    info, cands = source_windows(jobs[i], tokenizer)
    writer = PoolWriter(part)
    writer.extend(cands)
    writer.close()
    return info


split_log = logging.getLogger(f"{__name__}.split")  # `colakit curate` shows it on stderr


def _report_split(info: dict) -> None:
    """One line per user source: how many documents went to each part (the split is never silent)."""
    parts, fraction = info.get("documents") or {}, info["split"]["heldout_fraction"]
    hint = "; --heldout-fraction 0 or ?heldout=0 on the spec uses them all" if fraction else ""
    split_log.info("%s: %s documents for calibration, %s held out (heldout_fraction %g%s)", info["spec"],
                   f"{parts.get('calibration', 0):,}", f"{parts.get('heldout', 0):,}", fraction, hint)


def build_pool(config: CurateConfig, tokenizer, *, executor=None,
               store_dir: str | Path | None = None) -> tuple[StoredPool, list[dict]]:
    """Candidate windows from every source (deduplicated), and each source's provenance record.

    The pool streams to disk (``colakit.curate.pool``) and comes back as a ``StoredPool``, a lazy
    ``Sequence[Candidate]``, so its size does not bound what fits in RAM. Each source is one unit
    of ``executor`` (default: this process) that writes its windows to a part of the pool
    directory; the parts are merged here in source order, as each is ready; the first copy of a
    repeated window wins. Without ``store_dir`` the pool lives in a scratch directory under the
    cache that is removed with the returned object.
    """
    executor = executor or LocalExecutor()
    owned = store_dir is None
    root = scratch_dir(cache_dir() / "pools") if owned else Path(store_dir)
    jobs = [SourceJob(spec, config.seq_len, config.packing, config.format, config.pool_size, config.seed,
                      config.split_seed, config.heldout_fraction) for spec in config.sources]
    parts = root / "parts"
    writer = PoolWriter(root)
    seen: set[bytes] = set()  # 20-byte digests: ~100 bytes a candidate, not its tokens and text
    provenance = []
    try:
        units = executor.map(functools.partial(_source_part, jobs, tokenizer, parts), range(len(jobs)),
                             label="sources", name=lambda i: jobs[i].spec)
        for i, info in in_order(units, units.pending):
            job, made = jobs[i], 0
            for cand in StoredPool(_part_dir(parts, i)):
                key = hashlib.sha1(bytes(str(cand.input_ids), "ascii")).digest()
                if key in seen:
                    continue
                seen.add(key)
                writer.add(cand)
                made += 1
            if made == 0:
                raise ColakitError(
                    f"source {job.spec!r} yields no {config.seq_len}-token windows after processing",
                    "check the source has text, or use --packing pack or a shorter --seq-len",
                )
            record = {"spec": info["spec"], "name": info["name"], "fingerprint": info["fingerprint"],
                      "split": info["split"], "candidates": made, "documents_read": info["documents_read"]}
            if "format" in info:  # what --format did to this source's documents (plain: nothing)
                record["format"] = info["format"]
            provenance.append(record)
            if info.get("user"):
                _report_split(info)
        writer.close({"sources": provenance})
    except BaseException:
        writer.abort()
        if owned:
            shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return StoredPool(root, owned=owned), provenance


def curate(config: CurateConfig, *, out: str | Path | None = None, overwrite: bool = False,
           model=None, tokenizer=None, executor=None, features_progress: FeatureProgress = True) -> CalibrationSet:
    """Build (and optionally save) a CalibrationSet as ``config`` describes.

    ``executor`` (``colakit.executors.get_executor``) runs source processing and feature
    extraction; it changes where the work runs, never the result (nothing about it is recorded).
    ``model`` / ``tokenizer``: already-loaded objects for ``config.model`` (else loaded when needed).
    ``features_progress``: ``extract_features``'s ``progress`` (a bar, nothing, or a callback).
    """
    selector = get_selector(config.method, **config.method_params)
    if out is not None and Path(out).exists() and not overwrite:
        raise ColakitError(f"output directory {out} already exists", "choose another --out or delete it")
    config.validate(None)  # cheap checks before anything is loaded
    handle = ModelHandle(config.model, model=model, tokenizer=tokenizer, device=config.features.device,
                         dtype=config.features.dtype)
    config.validate(_context_of(handle))
    tokenizer = handle.tokenizer
    pool, provenance = build_pool(config, tokenizer, executor=executor) if selector.needs_pool else ([], [])
    if selector.needs_pool:
        selector.check_budget(pool, config.n)  # before the expensive forward passes
    features = None
    if selector.needs_features:
        features, probe_feats, weights = pool_features(selector, pool, config, handle, executor=executor,
                                                       progress=features_progress)
        if probe_feats is not None:  # COLA stage 1: the selector plans source shares
            selector.plan(features, [c.source for c in pool], probe_feats, weights, config.n)
    if selector.needs_model:
        selector.bind(handle.model, tokenizer, config)
    selection = selector.select(pool, features, config.n, config.seed)
    chosen_from = selection.generated if selection.generated is not None else pool
    samples = [_sample(chosen_from[i], selection, k) for k, i in enumerate(selection.indices)]
    _check_contamination([s.text for s in samples], config.allow_overlap)
    manifest = {
        "model": config.model, "tokenizer_hash": tokenizer_hash(tokenizer), "method": config.method,
        "method_params": selector.params(), "selection_info": selection.info, "seed": config.seed,
        "seq_len": config.seq_len, "format": config.format, "packing": config.packing,
        "pool_per_source": config.pool_size, "pool_size": len(pool), "sources": provenance,
        "features": asdict(config.features) if selector.needs_features else None,
        "compression": config.compression, "target": config.target,
    }
    calib = CalibrationSet(samples, manifest)
    if out is not None:
        calib.save(out, overwrite=overwrite)
    return calib


def build_probes(config: CurateConfig, tokenizer, capabilities, *, split: str = "calibration",
                 per_capability: int | None = None, exclude: set[str] | None = None) -> dict[str, list[Candidate]]:
    """Probe windows per capability from ``split`` of its sources (never evaluation items).

    Drawn with a seed apart from the candidates' so probes are a separate random look at each
    domain. ``split="heldout"``: the documents that no stage of curation reads (``colakit score``).
    ``exclude``: document ids a probe must not come from (a pool's, for probes disjoint from it).
    ``per_capability``: probes per capability (default ``config.probes_per_capability``).
    """
    count = per_capability or config.probes_per_capability
    probes = {}
    for cap in capabilities:
        names = CAPABILITY_SOURCES[cap]
        probes[cap] = []
        for k, name in enumerate(names):  # count split over the sources, the first ones take the remainder
            per_source = count // len(names) + (k < count % len(names))
            if not per_source:
                continue
            source = get_source(name, seed=config.split_seed, heldout_fraction=config.heldout_fraction)
            docs = pool_sample(source, config.seed + 7919, config.seq_len, config.packing, per_source, split=split)
            if exclude:
                docs = (d for d in docs if d.doc_id not in exclude)
            probes[cap] += list(windows(docs, tokenizer, config.seq_len, packing=config.packing,
                                        fmt=config.format, limit=per_source))
    return probes


def features_with_probes(items: Sequence, probes: dict[str, list[Candidate]], model: ModelHandle, *,
                         config: FeatureConfig, executor=None, progress: FeatureProgress = True):
    """Features of ``items`` and of every capability's probes, in one projected space (one extraction)."""
    flat = [p for cap in probes for p in probes[cap]]
    feats = extract_features(Chain(items, flat), model, config=config, executor=executor, progress=progress)
    probe_feats, start = {}, len(items)
    for cap, group in probes.items():
        probe_feats[cap] = feats[start:start + len(group)]
        start += len(group)
    return feats[: len(items)], probe_feats


def pool_features(selector, pool: Sequence[Candidate], config: CurateConfig, model: ModelHandle | None = None, *,
                  executor=None, progress: FeatureProgress = True):
    """(pool features, probe features, capability weights) in the space ``selector`` works in.

    Coverage-based selectors (COLA stage 1) get the capability probes' features in the same
    projected space (one extraction); others get (features, None, None). The feature store makes
    a second call with the same pool and config a cache hit (the grid's activation maps use that).
    """
    model = model or ModelHandle(config.model, device=config.features.device, dtype=config.features.dtype)
    if not getattr(selector, "uses_coverage", False):
        return extract_features(pool, model, config=config.features, executor=executor, progress=progress), None, None

    weights = target_weights(config.target, config.weights)
    # a selector may ask for its own probe count, and for probes from documents no candidate comes from
    exclude = pool_documents(pool) if getattr(selector, "disjoint_probes", False) else None
    probes = build_probes(config, model.tokenizer, [c for c, w in weights.items() if w > 0],
                          per_capability=getattr(selector, "probes_per_capability", None), exclude=exclude)
    pool_feats, probe_feats = features_with_probes(pool, probes, model, config=config.features, executor=executor,
                                                   progress=progress)
    return pool_feats, probe_feats, weights


def pool_documents(pool: Sequence[Candidate]) -> set[str]:
    """Every document id a window of ``pool`` reads from (a packed window spans several)."""
    return {doc for cand in pool for doc in (cand.doc_ids or [cand.doc_id])}


def _context_of(model: ModelHandle) -> int | None:
    """The model's longest context, from its config when the weights are not loaded."""
    return max_context(model.model if model.loaded else AutoConfig.from_pretrained(resolve_model(model.name)))


def _sample(cand: Candidate, selection, k: int) -> Sample:
    pick = lambda xs: None if xs is None else xs[k]  # noqa: E731
    return Sample(input_ids=cand.input_ids, text=cand.text, source=cand.source, doc_id=cand.doc_id,
                  doc_ids=cand.doc_ids, start=cand.start, cluster=pick(selection.clusters),
                  distance=pick(selection.distances), score=pick(selection.scores))


def _check_contamination(texts: list[str], allow: bool) -> None:
    """Refuse calibration text that overlaps an evaluation set (warn instead with allow)."""
    assert_no_overlap(texts, allow=allow)
