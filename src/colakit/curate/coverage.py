"""COLA stage 1 and the proxy scores: capabilities as probe sets in activation space.

A capability ``c`` is described by a small probe set P_c: windows drawn from the calibration part
of the sources that exercise it (never from evaluation items). In the same activation-feature
space as the candidates (``colakit.curate.features``), a set of samples X covers the capability by the
facility-location similarity

    coverage(X, c) = mean_{p in P_c} max_{x in X} cos(p, x)

Stage 1 (dataset selection) maximises ``sum_c w_c * coverage(S, c)`` greedily over candidates
(facility location is monotone submodular, so greedy is within 1 - 1/e of the optimum); the
number of picks that land in each source is that source's share of the budget, and a source
with no share is not selected. Stage 3 then clusters within each selected source.

The proxy scores of a calibration set (``colakit score``):
  representativeness  weighted coverage of the target's probes
  diversity           1 - mean pairwise cosine similarity of the set (spread in activation space)
  proxy               their mean; higher is better
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from colakit.capabilities import CAPABILITY_SOURCES
from colakit.errors import ColakitError

TARGETS = ("general", *CAPABILITY_SOURCES)
TARGET_WEIGHT = 2.0  # a targeted deployment doubles its capability's weight (COLA: "up-weighted")


def target_weights(target: str = "general", overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Capability weights: equal for ``general``; the target up-weighted otherwise; then ``overrides``."""
    if target not in TARGETS:
        raise ColakitError(f"unknown target {target!r}", f"use one of: {', '.join(TARGETS)}")
    weights = {c: 1.0 for c in CAPABILITY_SOURCES}
    if target != "general":
        weights[target] = TARGET_WEIGHT
    for cap, w in (overrides or {}).items():
        if cap not in CAPABILITY_SOURCES:
            raise ColakitError(f"unknown capability {cap!r} in weights",
                               f"use: {', '.join(CAPABILITY_SOURCES)}")
        if w < 0:
            raise ColakitError(f"weight of {cap} is negative ({w})", "weights must be >= 0")
        weights[cap] = float(w)
    if not any(weights.values()):
        raise ColakitError("all capability weights are zero", "give at least one capability a positive weight")
    return weights


def parse_weights(text: str | None) -> dict[str, float]:
    """``"math=2,code=1"`` -> {"math": 2.0, "code": 1.0}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError as err:
            raise ColakitError(f"cannot read weight {part!r}", "write weights as name=number, e.g. math=2,code=1") from err
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (cosine similarity is then a dot product)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def coverage(selected: np.ndarray, probes: np.ndarray) -> float:
    """Facility-location coverage: mean over probes of the best cosine similarity in ``selected``."""
    if len(selected) == 0 or len(probes) == 0:
        return 0.0
    sims = unit_rows(probes) @ unit_rows(selected).T
    return float(sims.max(axis=1).mean())


def diversity(selected: np.ndarray) -> float:
    """1 - mean pairwise cosine similarity (0 for identical samples, ~1 for orthogonal ones)."""
    n = len(selected)
    if n < 2:
        return 0.0
    u = unit_rows(selected)
    sims = u @ u.T
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


@dataclass
class ProxyScores:
    representativeness: float
    diversity: float
    per_capability: dict[str, float]

    @property
    def proxy(self) -> float:
        return (self.representativeness + self.diversity) / 2

    def as_dict(self) -> dict:
        return {"representativeness": self.representativeness, "diversity": self.diversity,
                "proxy": self.proxy, "coverage": self.per_capability}


def proxy_scores(selected: np.ndarray, probes: dict[str, np.ndarray], weights: dict[str, float]) -> ProxyScores:
    per_cap = {c: coverage(selected, p) for c, p in probes.items()}
    total = sum(weights.get(c, 0.0) for c in per_cap)
    rep = sum(weights.get(c, 0.0) * v for c, v in per_cap.items()) / total if total else 0.0
    return ProxyScores(representativeness=rep, diversity=diversity(selected), per_capability=per_cap)


def weighted_capabilities(features: np.ndarray, probes: dict[str, np.ndarray], weights: dict[str, float],
                          budget: int) -> list[str]:
    """The capabilities a greedy selection serves (positive weight, some probes), after checking the budget."""
    if budget > len(features):
        raise ColakitError(f"budget {budget} is larger than the pool of {len(features)} candidates",
                           "lower --n or add sources")
    caps = [c for c in probes if weights.get(c, 0.0) > 0 and len(probes[c])]
    if not caps:
        raise ColakitError("no capability with a positive weight has probes", "check --target/--weights")
    return caps


def greedy_coverage(features: np.ndarray, probes: dict[str, np.ndarray], weights: dict[str, float],
                    budget: int) -> list[int]:
    """Greedy weighted facility location: ``budget`` candidate indices, most valuable first.

    Each step adds the candidate with the largest gain in sum_c w_c * coverage; ties go to the
    lower index, so the result is deterministic.
    """
    caps = weighted_capabilities(features, probes, weights, budget)
    cand = unit_rows(features)
    sims = [(unit_rows(probes[c]) @ cand.T, weights[c] / len(probes[c])) for c in caps]  # [P_c, N] each
    best = [np.full(len(probes[c]), -1.0, dtype=np.float32) for c in caps]  # current max sim per probe
    chosen: list[int] = []
    available = np.ones(len(features), dtype=bool)
    for _ in range(budget):
        gain = np.zeros(len(features), dtype=np.float64)
        for (s, w), b in zip(sims, best):
            gain += w * np.maximum(s - b[:, None], 0.0).sum(axis=0)
        gain[~available] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        available[pick] = False
        for k, (s, _w) in enumerate(sims):
            best[k] = np.maximum(best[k], s[:, pick])
    return chosen


def source_shares(chosen: list[int], sources: list[str]) -> dict[str, int]:
    """How many of the greedy picks fell in each source: the budget share of that source."""
    shares: dict[str, int] = {}
    for i in chosen:
        shares[sources[i]] = shares.get(sources[i], 0) + 1
    return dict(sorted(shares.items()))
