"""Stage 3a, activation features: one forward pass per candidate, pooled and projected.

For every candidate window: hooks on the decoder layers (found by ``colakit.model.layers``) take each
layer's output hidden states; masked mean pooling averages over real tokens only (padding never
counts); each layer's pooled vector is L2-normalised so no layer dominates by scale; a seeded
Gaussian random projection maps the concatenation to ``proj_dim`` dimensions. The forward stops
right after the last hooked layer: no final norm, no LM head, no logits.

``proj_dim`` defaults to the Johnson-Lindenstrauss bound for the pool size
(``4 ln N / (eps^2/2 - eps^3/3)``, eps=0.5: 332 dims for 1k candidates, 476 for 20k), capped at the
input width: pairwise distances, which k-means works on, are kept within a factor (1 +- eps).

Features stream into a ``FeatureStore``: fixed-size shards with a manifest, keyed by the model,
the candidates and every parameter. A killed run resumes from the last finished shard, and the
result is identical to an uninterrupted run (shards are computed independently). Shard ``s`` is
always candidates ``[s * shard_size, (s + 1) * shard_size)``; an executor (``colakit.executors``:
this process, or Ray actors) computes the missing ones, one unit per shard, from a picklable
``FeaturePlan`` (each worker loads the model once), and the driver checks and writes each, so the
store is the same bytes whichever executor ran.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from colakit.cache import atomic_path, cache_dir, write_json_atomic
from colakit.curate import process  # process.pad_right: the one padding rule (tests watch it there)
from colakit.curate.pool import token_hash_update
from colakit.errors import ColakitError
from colakit.executors import LocalExecutor
from colakit.model.hooks import forward_until_stop, linear_input_hook, stop_after
from colakit.model.layers import INPUT_SITES, find_decoder
from colakit.model.load import ModelHandle, load_model, resolve_device, resolve_dtype, resolve_model
from colakit.model.placement import check_device_map, input_device, parse_max_memory
from colakit.model.streamed import skeleton
from colakit.progress import StageProgress

log = logging.getLogger(__name__)


def jl_dim(n_points: int, eps: float = 0.5) -> int:
    """Johnson-Lindenstrauss: dimensions that keep pairwise distances within (1 +- eps)."""
    denom = eps**2 / 2 - eps**3 / 3
    return int(math.ceil(4 * math.log(max(n_points, 2)) / denom))


POOLINGS = ("mean", "moments")
# Moments pooling reads the input of the first linear of each group that shares one input
# (layers.INPUT_SITES: q/k/v, o_proj, gate/up, down_proj). Their X^T X are exactly the block's
# GPTQ/SparseGPT Hessians.
MOMENT_SITES = INPUT_SITES
MOMENTS_FIX = "use --feature-pooling mean for this model"


@dataclass
class FeatureConfig:
    layers: str = "all"  # "all", "every:K" (every K-th layer, always the last one) or "0,5,9"
    proj_dim: int | None = None  # default: jl_dim(pool size), capped at the concatenated width
    jl_eps: float = 0.5
    batch_size: int = 8
    shard_size: int = 256
    seed: int = 0  # the projection's seed
    device: str = "auto"
    dtype: str = "auto"
    # a model larger than one device: accelerate's device map and memory caps (``load_model``)
    device_map: str | None = None
    max_memory: str | None = None
    # "mean": masked mean of each hooked layer's output. "moments": per hooked layer, a sketch of
    # the token second-moment matrices sum_t x_t x_t^T of its linears' inputs, which the
    # GPTQ/SparseGPT Hessians are built from (see pooled_activations).
    pooling: str = "mean"
    sketch_dim: int = 16  # moments: each linear input is projected to this many dims first

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ColakitError(f"unknown feature pooling {self.pooling!r}", f"use one of: {', '.join(POOLINGS)}")
        if not 1 <= self.sketch_dim <= 256:
            raise ColakitError(f"sketch_dim {self.sketch_dim} is outside 1..256", "use e.g. 16 (the default)")
        check_device_map(self.device_map)  # refused now, not after the pool is built
        parse_max_memory(self.max_memory)

    def layer_width(self, hidden: int) -> int:
        """Width of one hooked layer's pooled vector (before the random projection)."""
        if self.pooling == "mean":
            return hidden
        return len(MOMENT_SITES) * self.sketch_dim * (self.sketch_dim + 1) // 2

    def pooling_args(self) -> dict:
        """Keyword arguments of ``pooled_activations`` that this configuration sets."""
        return {"pooling": self.pooling, "sketch_dim": self.sketch_dim, "seed": self.seed}

    def layer_indices(self, num_layers: int) -> list[int]:
        spec = self.layers.strip()
        if spec == "all":
            return list(range(num_layers))
        if spec.startswith("every:"):
            step = int(spec.split(":", 1)[1])
            if step < 1:
                raise ColakitError(f"feature layers {spec!r}: step must be >= 1", "use e.g. every:2")
            return sorted(set(range(0, num_layers, step)) | {num_layers - 1})
        try:
            picked = sorted({int(x) for x in spec.split(",")})
        except ValueError as err:
            raise ColakitError(f"cannot read feature layers {spec!r}", "use all, every:K or a list like 0,5,9") from err
        if picked[0] < 0 or picked[-1] >= num_layers:
            raise ColakitError(f"feature layers {spec!r} outside 0..{num_layers - 1}", "pick existing layers")
        return picked


def _pool_hook(got: dict, key, mask: torch.Tensor):
    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        m = mask.to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        got[key] = torch.nn.functional.normalize(pooled.float(), dim=-1)
    return hook


def _sketch_matrix(cache: dict, width: int, r: int, seed: int, device) -> torch.Tensor:
    """Seeded Gaussian [width, r], one per input width (drawn on the CPU: the same on every device)."""
    if width not in cache:
        gen = torch.Generator().manual_seed(seed * 100_003 + width)
        cache[width] = (torch.randn(width, r, generator=gen) / math.sqrt(r)).to(device)
    return cache[width]


def _moment_sketch(x: torch.Tensor, mask: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """[B, r(r+1)/2]: upper triangle of sum_t (P^T x_t)(P^T x_t)^T over real tokens, unit L2 norm.

    Off-diagonal entries carry sqrt(2), so distances between these vectors are Frobenius distances
    between the sketched matrices. Only [B, T, r] is ever held, never [B, T, d, d].
    """
    z = x.float() @ proj  # [B, T, r]
    z = torch.where(mask.unsqueeze(-1), z, torch.zeros((), dtype=z.dtype, device=z.device))
    moments = torch.einsum("btr,bts->brs", z, z)
    r = proj.shape[1]
    iu = torch.triu_indices(r, r, device=z.device)
    scale = torch.where(iu[0] == iu[1], 1.0, math.sqrt(2.0)).to(z.device)
    return torch.nn.functional.normalize(moments[:, iu[0], iu[1]] * scale, dim=-1)


@torch.no_grad()
def pooled_activations(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       layer_indices: Sequence[int], pooling: str = "mean", sketch_dim: int = 16,
                       seed: int = 0) -> torch.Tensor:
    """[B, len(layers), width]: one L2-normalised vector per chosen layer and sequence.

    ``mean``: masked mean of the layer's output hidden states (width = hidden size).
    ``moments``: for each MOMENT_SITES input of the layer, the sketched second-moment matrix of
    its real tokens (``_moment_sketch``); the four unit vectors concatenated and scaled to unit
    norm (width = 4 r(r+1)/2). These are the linears' own inputs, after the norms, not the
    residual stream the mean hooks see: the residual stream is not what any linear multiplies,
    its few huge outlier channels would dominate its moments, and the MLP activation (down_proj)
    is not in it at all.
    Padding never counts; the forward stops right after the deepest chosen layer.
    """
    if pooling not in POOLINGS:
        raise ColakitError(f"unknown feature pooling {pooling!r}", f"use one of: {', '.join(POOLINGS)}")
    layout = find_decoder(model)
    mask = attention_mask.bool()
    got: dict = {}
    handles = []
    sites = 1
    try:
        if pooling == "mean":
            handles = [layout.layers[i].register_forward_hook(_pool_hook(got, (i, 0), mask)) for i in layer_indices]
        else:
            sites, cache = len(MOMENT_SITES), {}
            for i in layer_indices:
                linears = layout.spec(i).linears
                for s, names in enumerate(layout.input_sites(i, MOMENTS_FIX).values()):
                    def sketch(x, key=(i, s)):
                        got[key] = _moment_sketch(x, mask, _sketch_matrix(cache, x.shape[-1], sketch_dim, seed, x.device))
                    handles.append(linears[names[0]].register_forward_pre_hook(
                        linear_input_hook(mask, sketch, MOMENTS_FIX)))
        handles.append(stop_after(layout.layers[max(layer_indices)]))
        forward_until_stop(model, input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    missing = [key for key in ((i, s) for i in layer_indices for s in range(sites)) if key not in got]
    if missing:
        raise ColakitError(f"the forward pass never reached the hooked modules {missing[:4]}",
                           "this architecture's forward is not supported by feature extraction")
    per_layer = [torch.cat([got[(i, s)] for s in range(sites)], dim=-1) / math.sqrt(sites) for i in layer_indices]
    return torch.stack(per_layer, dim=1)


def projection(in_dim: int, out_dim: int, seed: int) -> torch.Tensor:
    """A seeded Gaussian projection [in_dim, out_dim] scaled by 1/sqrt(out_dim) (distances kept in expectation)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(in_dim, out_dim, generator=gen) / math.sqrt(out_dim)


class FeatureStore:
    """Shards ``shard-00000.npy`` ... plus ``manifest.json`` in one directory per (model, pool, config)."""

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = self.path / "manifest.json"
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
            except json.JSONDecodeError:
                old = None
            if old != meta:  # another configuration or a corrupt manifest: start clean
                log.warning("feature store %s does not match this run; recomputing", self.path)
                for shard in self.path.glob("shard-*.npy"):
                    shard.unlink()
        write_json_atomic(manifest, meta)
        self.meta = meta

    def shard_path(self, index: int) -> Path:
        return self.path / f"shard-{index:05d}.npy"

    def load_shard(self, index: int, rows: int, dim: int) -> np.ndarray | None:
        path = self.shard_path(index)
        if not path.exists():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            log.warning("feature shard %s is corrupt; recomputing it", path)
            path.unlink()
            return None
        if arr.shape != (rows, dim):
            path.unlink()
            return None
        return arr

    def save_shard(self, index: int, arr: np.ndarray) -> None:
        with atomic_path(self.shard_path(index)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)


# where and how fast the model runs, not what it computes: not part of a feature store's key
_PLACEMENT = ("device", "dtype", "batch_size", "device_map", "max_memory")


def _pool_key(candidates: Sequence) -> str:
    key = getattr(candidates, "key", None)  # a StoredPool hashed its token ids while it was written
    if isinstance(key, str):
        return key
    h = hashlib.sha256()
    for c in candidates:
        token_hash_update(h, c.input_ids)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class FeaturePlan:
    """Everything a worker needs to compute any shard of one feature store (picklable).

    Shard ``s`` is always candidates ``[s * shard_size, (s + 1) * shard_size)``, so the store is
    the same file for file whichever executor (and however many workers) computed it.
    """

    model_name: str
    layers: tuple[int, ...]
    width: int  # one hooked layer's pooled width x number of hooked layers
    dim: int  # projected dimension
    seed: int  # the projection's seed
    rows: int
    shard_size: int
    batch_size: int
    pad_id: int
    device: str
    dtype: str  # resolved ("float32", "bfloat16", ...): a worker loads the model exactly so
    pooling: dict = field(default_factory=dict)  # FeatureConfig.pooling_args(): pooled_activations' options
    device_map: str | None = None
    max_memory: str | None = None

    @property
    def shards(self) -> int:
        return math.ceil(self.rows / self.shard_size)

    def bounds(self, shard: int) -> tuple[int, int]:
        return shard * self.shard_size, min((shard + 1) * self.shard_size, self.rows)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _architecture(model: ModelHandle) -> tuple[int, int]:
    """(decoder layers, hidden size); from the weights-free skeleton when the weights are not loaded."""
    if not model.loaded:
        shape = skeleton(resolve_model(model.name), torch.float32)  # the layout, without a single weight
        return find_decoder(shape).num_layers, _hidden(shape)
    return find_decoder(model.model).num_layers, _hidden(model.model)


def _hidden(model) -> int:
    cfg = model.config
    return cfg.get_text_config().hidden_size if hasattr(cfg, "get_text_config") else cfg.hidden_size


def plan_features(candidates: Sequence, model: ModelHandle, config: FeatureConfig) -> FeaturePlan:
    """The FeaturePlan for ``candidates``; when ``model``'s weights are not loaded only its config is read."""
    num_layers, hidden = _architecture(model)
    # a loaded model computes in its own dtype; workers that load it use the config's
    dtype = model.dtype if model.loaded else resolve_dtype(config.dtype, resolve_device(config.device))
    layers = config.layer_indices(num_layers)
    width = config.layer_width(hidden) * len(layers)
    dim = min(config.proj_dim or jl_dim(len(candidates), config.jl_eps), width)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    return FeaturePlan(model.name, tuple(layers), width, dim, config.seed, len(candidates), config.shard_size,
                       config.batch_size, int(pad), config.device, _dtype_name(dtype), config.pooling_args(),
                       config.device_map, config.max_memory)


def compute_shard(plan: FeaturePlan, model, proj: torch.Tensor, candidates: Sequence, shard: int,
                  on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Features of one shard (what every executor runs, in-process or in a worker).

    ``on_batch(rows)`` is called after each batch with its number of rows.
    """
    start, stop = plan.bounds(shard)
    rows = candidates[start:stop]
    device = input_device(model)
    return _shard_features(model, rows, list(plan.layers), proj, plan.pad_id, plan.batch_size, device,
                           pooling=plan.pooling, on_batch=on_batch)


def _feature_worker(plan: FeaturePlan, model) -> tuple:
    """A feature worker's state: the caller's loaded model (or the plan's, loaded here, once) and the projection.

    A worker reads only the blocks up to the deepest hooked layer (the forward stops there).
    """
    if model is None:
        model = load_model(plan.model_name, device=plan.device, dtype=plan.dtype, device_map=plan.device_map,
                           max_memory=plan.max_memory, upto=max(plan.layers))
    return model, projection(plan.width, plan.dim, plan.seed)


def _worker_shard(plan: FeaturePlan, candidates: Sequence, state: tuple, shard: int, on_batch=None) -> np.ndarray:
    model, proj = state
    return compute_shard(plan, model, proj, candidates, shard, on_batch)


# what ``extract_features(progress=...)`` takes: show a bar, show nothing, or call back (rows done, rows in all)
FeatureProgress = bool | Callable[[int, int], None] | None


class _RowCounter:
    """Feature rows done, reported to ``report(done, total)``: after each batch when the shards run
    in this process, after each shard when they run elsewhere (a callback does not pickle)."""

    def __init__(self, total: int):
        self.done, self.total, self.report = 0, total, None

    def start(self, report: Callable[[int, int], None] | None, done: int) -> None:
        self.report, self.done = report, done
        self.add(0)

    def add(self, rows: int) -> None:
        self.done += rows
        if self.report:
            self.report(self.done, self.total)


@contextlib.contextmanager
def _reporting(progress: FeatureProgress, work: bool):
    """``progress`` as a callback (or None): a caller's own, or a transient bar when there is work to show."""
    if callable(progress):
        yield progress
    elif progress and work:
        with StageProgress("features", unit="rows", transient=True) as bar:
            yield lambda done, total: bar.update(completed=done, total=total)
    else:
        yield None


def extract_features(candidates: Sequence, model: ModelHandle | str, *, config: FeatureConfig | None = None, store_dir: Path | None = None,
                     progress: FeatureProgress = True, executor=None) -> np.ndarray:
    """Projected activation features [len(candidates), proj_dim] (float32), via an on-disk store.

    ``executor`` (``colakit.executors``; default local) computes the shards the store lacks, one
    unit each; the driver checks and writes every shard, so the store's files do not depend on the
    executor. When ``model``'s weights are not loaded, the workers load them (only when a shard is missing).
    ``progress``: True shows a bar on stderr (``colakit.progress``), False nothing; a callable is
    called as ``progress(rows_done, rows_total)``, first with the rows already in the store, then
    after each batch (the local executor) or each shard (others). The features do not depend on it.
    """
    config = config or FeatureConfig()
    executor = executor or LocalExecutor()
    if not len(candidates):
        raise ColakitError("no candidates to extract features from", "check the sources and --seq-len")
    model = ModelHandle.of(model, device=config.device, dtype=config.dtype)
    plan = plan_features(candidates, model, config)
    meta = {"model": model.name, "pool": _pool_key(candidates), "n": len(candidates),
            "layers": list(plan.layers), "dim": plan.dim,
            **{k: v for k, v in asdict(config).items() if k not in _PLACEMENT},
            "model_dtype": f"torch.{plan.dtype}"}
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    store = FeatureStore(store_dir or cache_dir() / "features" / key, meta)
    # what an earlier (killed) run finished is kept; only the rest is computed
    counter = _RowCounter(plan.rows)
    in_process = isinstance(executor, LocalExecutor)
    work = functools.partial(_worker_shard, plan, candidates, **({"on_batch": counter.add} if in_process else {}))
    shards = executor.map(work, range(plan.shards),
                          setup=functools.partial(_feature_worker, plan, model.model if model.loaded else None),
                          label="features",
                          done=lambda s: store.load_shard(s, _rows(plan, s), plan.dim) is not None)
    with _reporting(progress, bool(len(shards))) as report:
        counter.start(report, plan.rows - sum(_rows(plan, s) for s in shards.pending))
        for s, arr in shards:
            _check_shard(plan, candidates, s, arr)
            store.save_shard(s, arr)
            if not in_process:
                counter.add(_rows(plan, s))
    out = np.empty((plan.rows, plan.dim), dtype=np.float32)  # filled shard by shard: no second copy
    for s in range(plan.shards):
        start, stop = plan.bounds(s)
        arr = store.load_shard(s, stop - start, plan.dim)
        if arr is None:
            raise ColakitError(f"feature shard {s} vanished from {store.path} during the run",
                               "another process is writing the same store; run again")
        out[start:stop] = arr
    return out


def _rows(plan: FeaturePlan, shard: int) -> int:
    start, stop = plan.bounds(shard)
    return stop - start


def _check_shard(plan: FeaturePlan, candidates: Sequence, shard: int, arr: np.ndarray) -> None:
    if arr.shape != (_rows(plan, shard), plan.dim) or arr.dtype != np.float32:
        raise ColakitError(f"feature shard {shard} came back as {arr.dtype}{list(arr.shape)}",
                           "this is a colakit bug (a worker computed another plan)")
    bad = np.where(~np.isfinite(arr).all(1))[0]
    if len(bad):
        start = plan.bounds(shard)[0]
        ids = [f"{candidates[start + int(i)].source}:{candidates[start + int(i)].doc_id}" for i in bad[:5]]
        raise ColakitError(f"non-finite activation features for {len(bad)} candidates, e.g. {ids}",
                           "the model overflows on them: use --dtype float32 or drop those documents")


def _shard_features(model, rows, layers, proj, pad_id, batch_size, device,
                    pooling: dict | None = None, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    # sort by length inside the shard so batches pad little; restore the order afterwards
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    feats = torch.empty(len(rows), proj.shape[1])
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = process.pad_right([rows[i].input_ids for i in idx], pad_id)
        pooled = pooled_activations(model, ids.to(device), mask.to(device), layers, **(pooling or {})).cpu()
        flat = pooled.flatten(1) / math.sqrt(len(layers))  # unit norm overall
        feats[idx] = flat @ proj
        if on_batch:
            on_batch(len(idx))
    return feats.numpy().astype(np.float32)
