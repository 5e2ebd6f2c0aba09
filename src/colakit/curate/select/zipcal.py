"""``zipcal``: model-free lexical-diversity selection after Zipf's law (ZipCal, arXiv 2603.16105).

Word frequencies follow Zipf's law: a few types fill most of any text and most types are rare, so
random windows spend their tokens on the same frequent types again and again. ZipCal instead picks
windows that together cover as many distinct lexical types as possible.

What this implementation does:

- units: ``unit="words"`` (default; lower-cased ``\\w+`` runs of the window text, the paper's
  dataset-level word variant) or ``unit="tokens"`` (the window's token ids);
- weights: ``weighting="surprisal"`` (default) gives a type the weight log((N + 1) / df), df = the
  number of the N pool windows that contain it, so rarer types count more, as the Zipf tail
  suggests; ``weighting="uniform"`` counts distinct types;
- objective: the total weight of the distinct types covered by the selection (a weighted
  coverage, monotone submodular); picked greedily, each step the window that adds the most
  uncovered weight, with lazy evaluation (a window's gain only shrinks as coverage grows);
- ties: a seeded random order, so the same pool and seed give the same selection. Each pick's
  ``score`` is its marginal gain. Windows of different lengths (``--packing truncate``) are not
  normalised: a longer window covers more, as it also calibrates with more tokens.

Cost: one pass to count types plus a heap over the pool; no model, no forward pass.
"""

from __future__ import annotations

import heapq
import re

import numpy as np

from colakit.errors import ColakitError
from colakit.curate.select.base import Selection, Selector, register

_WORD = re.compile(r"\w+", re.UNICODE)
UNITS = ("words", "tokens")
WEIGHTINGS = ("surprisal", "uniform")


def lexical_units(candidate, unit: str) -> set:
    if unit == "words":
        return set(_WORD.findall(candidate.text.lower()))
    return set(candidate.input_ids)


def unit_arrays(candidates, unit: str) -> tuple[list[np.ndarray], int]:
    """Each candidate's distinct types as integer ids (ids in order of first appearance), and the type count."""
    vocab: dict = {}
    arrays = []
    for c in candidates:
        arrays.append(np.array(sorted(vocab.setdefault(u, len(vocab)) for u in lexical_units(c, unit)),
                               dtype=np.int64))
    return arrays, len(vocab)


def type_weights(arrays: list[np.ndarray], n_types: int, weighting: str) -> np.ndarray:
    if weighting == "uniform":
        return np.ones(n_types)
    df = np.bincount(np.concatenate(arrays), minlength=n_types) if n_types else np.zeros(0)
    return np.log((len(arrays) + 1) / np.maximum(df, 1))


@register
class ZipCalSelector(Selector):
    name = "zipcal"

    def __init__(self, unit: str = "words", weighting: str = "surprisal"):
        if unit not in UNITS:
            raise ColakitError(f"unknown zipcal unit {unit!r}", f"use one of: {', '.join(UNITS)}")
        if weighting not in WEIGHTINGS:
            raise ColakitError(f"unknown zipcal weighting {weighting!r}", f"use one of: {', '.join(WEIGHTINGS)}")
        self.unit, self.weighting = unit, weighting

    def select(self, candidates, features, budget: int, seed: int) -> Selection:
        self.check_budget(candidates, budget)
        arrays, n_types = unit_arrays(candidates, self.unit)
        weight = type_weights(arrays, n_types, self.weighting)
        covered = np.zeros(n_types, dtype=bool)
        tiebreak = np.random.default_rng(seed).permutation(len(candidates))

        def gain(i: int) -> float:
            ids = arrays[i]
            return float(weight[ids[~covered[ids]]].sum())

        heap = [(-gain(i), int(tiebreak[i]), i) for i in range(len(candidates))]
        heapq.heapify(heap)
        picked, gains = [], []
        while len(picked) < budget:
            _, rank, i = heapq.heappop(heap)
            fresh = (-gain(i), rank, i)
            if heap and fresh > heap[0]:  # stale: someone else may now add more
                heapq.heappush(heap, fresh)
                continue
            picked.append(i)
            gains.append(-fresh[0])
            covered[arrays[i]] = True
        return Selection(indices=picked, scores=gains,
                         info={"types_in_pool": n_types, "types_covered": int(covered.sum()),
                               "weight_covered": float(weight[covered].sum()),
                               "weight_in_pool": float(weight.sum()) if n_types else 0.0,
                               "coverage": float(covered.mean()) if n_types else 0.0})
