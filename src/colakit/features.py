"""Stage 3a, activation features: one forward pass per candidate, pooled and projected.

For every candidate window: hooks on the decoder layers (found by ``colakit.layers``) take each
layer's output hidden states; masked mean pooling averages over real tokens only (padding never
counts); each layer's pooled vector is L2-normalised so no layer dominates by scale; a seeded
Gaussian random projection maps the concatenation to ``proj_dim`` dimensions. The forward stops
right after the last hooked layer: no final norm, no LM head, no logits.

``proj_dim`` defaults to the Johnson-Lindenstrauss bound for the pool size
(``4 ln N / (eps^2/2 - eps^3/3)``, eps=0.5: 332 dims for 1k candidates, 475 for 20k), capped at the
input width: pairwise distances, which k-means works on, are kept within a factor (1 +- eps).

Features stream into a ``FeatureStore``: fixed-size shards with a manifest, keyed by the model,
the candidates and every parameter. A killed run resumes from the last finished shard, and the
result is identical to an uninterrupted run (shards are computed independently, in order).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from colakit.cache import atomic_path, cache_dir, write_json_atomic
from colakit.errors import ColakitError
from colakit.layers import find_decoder

log = logging.getLogger(__name__)


class _StopForward(Exception):
    """Raised by the last hook: nothing after the deepest hooked layer is needed."""


def jl_dim(n_points: int, eps: float = 0.5) -> int:
    """Johnson-Lindenstrauss: dimensions that keep pairwise distances within (1 +- eps)."""
    denom = eps**2 / 2 - eps**3 / 3
    return int(math.ceil(4 * math.log(max(n_points, 2)) / denom))


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


def _pool_hook(store: list, mask_ref: list, stop: bool):
    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        mask = mask_ref[0].to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        store.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
        if stop:
            raise _StopForward
    return hook


@torch.no_grad()
def pooled_activations(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       layer_indices: Sequence[int]) -> torch.Tensor:
    """[B, len(layers), hidden]: masked mean of each chosen layer's output, L2-normalised per layer."""
    layout = find_decoder(model)
    got: list[torch.Tensor] = []
    mask_ref = [attention_mask]
    last = max(layer_indices)
    handles = [layout.layers[i].register_forward_hook(_pool_hook(got, mask_ref, stop=(i == last)))
               for i in layer_indices]
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return torch.stack(got, dim=1)


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


def _pool_key(candidates: Sequence) -> str:
    h = hashlib.sha256()
    for c in candidates:
        h.update(np.asarray(c.input_ids, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def extract_features(candidates: Sequence, model_name: str, *, model=None, tokenizer=None,
                     config: FeatureConfig | None = None, store_dir: Path | None = None,
                     progress: bool = True) -> np.ndarray:
    """Projected activation features [len(candidates), proj_dim] (float32), via an on-disk store."""
    from colakit.models import load_model, load_tokenizer

    config = config or FeatureConfig()
    if not candidates:
        raise ColakitError("no candidates to extract features from", "check the sources and --seq-len")
    tokenizer = tokenizer or load_tokenizer(model_name)
    model = model if model is not None else load_model(model_name, device=config.device, dtype=config.dtype)
    layout = find_decoder(model)
    layers = config.layer_indices(layout.num_layers)
    hidden = model.config.get_text_config().hidden_size if hasattr(model.config, "get_text_config") else \
        model.config.hidden_size
    width = hidden * len(layers)
    dim = min(config.proj_dim or jl_dim(len(candidates), config.jl_eps), width)
    proj = projection(width, dim, config.seed)
    meta = {"model": str(model_name), "pool": _pool_key(candidates), "n": len(candidates), "layers": layers,
            "dim": dim, **{k: v for k, v in asdict(config).items() if k not in ("device", "dtype", "batch_size")},
            "model_dtype": str(next(model.parameters()).dtype)}
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    store = FeatureStore(store_dir or cache_dir() / "features" / key, meta)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_shards = math.ceil(len(candidates) / config.shard_size)
    out = []
    for s in _progress(range(n_shards), progress, "features"):
        rows = candidates[s * config.shard_size:(s + 1) * config.shard_size]
        arr = store.load_shard(s, len(rows), dim)
        if arr is None:
            arr = _shard_features(model, rows, layers, proj, pad, config.batch_size, device)
            bad = np.where(~np.isfinite(arr).all(1))[0]
            if len(bad):
                ids = [f"{rows[i].source}:{rows[i].doc_id}" for i in bad[:5]]
                raise ColakitError(f"non-finite activation features for {len(bad)} candidates, e.g. {ids}",
                                   "the model overflows on them: use --dtype float32 or drop those documents")
            store.save_shard(s, arr)
        out.append(arr)
    return np.concatenate(out, axis=0)


def _shard_features(model, rows, layers, proj, pad_id, batch_size, device) -> np.ndarray:
    # sort by length inside the shard so batches pad little; restore the order afterwards
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    feats = torch.empty(len(rows), proj.shape[1])
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        longest = max(len(rows[i].input_ids) for i in idx)
        ids = torch.full((len(idx), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), longest), dtype=torch.long)
        for r, i in enumerate(idx):
            seq = rows[i].input_ids
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
        pooled = pooled_activations(model, ids.to(device), mask.to(device), layers).cpu()
        flat = pooled.flatten(1) / math.sqrt(len(layers))  # unit norm overall
        feats[idx] = flat @ proj
    return feats.numpy().astype(np.float32)


def _progress(it, enabled: bool, label: str):
    if not enabled:
        return it
    from rich.progress import track

    return track(it, description=label, transient=True)
