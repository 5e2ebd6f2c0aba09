"""Multi-source mixing: ``mix-uniform`` and ``igsp``.

``mix-uniform``: every source in the pool (``Candidate.source``) gets an equal share of the
budget; the remainder r = budget mod S goes one each to the first r sources in pool order (the
order of ``--sources``). Within a source, windows are drawn uniformly at random with the seed. A
source with fewer candidates than its share is an error (no silent re-balancing).

``igsp`` (arXiv 2606.03328: balance perplexity across sources, minimise repeated 4-grams). What
this implementation does, step by step:

1. Shares: equal per source, exactly as ``mix-uniform`` (the paper's best general mix is uniform).
2. Perplexity: every candidate's perplexity under the model (one forward per window, batched, no
   grad). ``score_per_source`` caps how many windows per source are scored (a seeded random
   subset; default: all) to bound the cost on CPU.
3. Balance: the target is the median log-perplexity of all scored candidates. Within each source
   the ``band`` fraction (default 0.5, at least its share) of candidates nearest that target in
   log-perplexity are eligible, so every source contributes text at the same perplexity level
   instead of its easiest (code, lists) or hardest (noise) windows.
4. 4-grams: sources take turns (round robin in pool order, each until its share is met); each turn
   picks the eligible candidate whose token 4-grams repeat the fewest 4-grams already in the
   selection (as a fraction of its own distinct 4-grams), ties broken by distance to the target
   and then by a seeded random order. Repeats only grow as the selection grows, so a lazy greedy
   (stale scores in a heap, re-scored on pop) gives the same picks as re-scoring everything.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict

import numpy as np

from colakit.curate.select.base import Selection, Selector, register
from colakit.curate.select.selfgen import perplexities
from colakit.errors import ColakitError


def by_source(candidates) -> dict[str, list[int]]:
    """Candidate indices per source, sources in order of first appearance (the --sources order)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        groups[c.source].append(i)
    return dict(groups)


def equal_shares(groups: dict[str, list[int]], budget: int) -> dict[str, int]:
    """Budget split evenly over sources; the first ``budget mod S`` sources get one more."""
    base, extra = divmod(budget, len(groups))
    shares = {name: base + (k < extra) for k, name in enumerate(groups)}
    short = {name: (len(groups[name]), want) for name, want in shares.items() if len(groups[name]) < want}
    if short:
        name, (have, want) = next(iter(short.items()))
        raise ColakitError(f"source {name!r} has {have} candidate windows but its equal share is {want}",
                           "raise --pool, use a shorter --seq-len, drop that source or lower --n")
    return shares


@register
class MixUniformSelector(Selector):
    name = "mix-uniform"

    def select(self, candidates, features, budget: int, seed: int) -> Selection:
        self.check_budget(candidates, budget)
        groups = by_source(candidates)
        shares = equal_shares(groups, budget)
        rng = np.random.default_rng(seed)
        picked: list[int] = []
        for name, idx in groups.items():
            picked += [idx[j] for j in rng.choice(len(idx), size=shares[name], replace=False)]
        return Selection(indices=picked, info={"shares": shares})


def four_grams(ids) -> set[tuple[int, int, int, int]]:
    return set(zip(ids, ids[1:], ids[2:], ids[3:]))


@register
class IgspSelector(Selector):
    name = "igsp"
    needs_model = True

    def __init__(self, band: float = 0.5, score_per_source: int | None = None, batch_size: int = 4):
        if not 0 < band <= 1:
            raise ColakitError(f"igsp band {band} is outside (0, 1]", "use e.g. band=0.5 (half of each source)")
        if score_per_source is not None and score_per_source < 1:
            raise ColakitError(f"score_per_source {score_per_source} is not positive", "leave it unset to score all")
        self.band, self.score_per_source, self.batch_size = band, score_per_source, batch_size

    def select(self, candidates, features, budget: int, seed: int) -> Selection:
        model, tokenizer, _ = self.bound()
        self.check_budget(candidates, budget)
        rng = np.random.default_rng(seed)
        groups = self._scored_subsets(by_source(candidates), rng)
        shares = equal_shares(groups, budget)
        scored = [i for idx in groups.values() for i in idx]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        log_ppl = dict(zip(scored, np.log(perplexities(model, [candidates[i].input_ids for i in scored],
                                                       pad, self.batch_size))))
        target = float(np.median(list(log_ppl.values())))
        tiebreak = {i: r for r, i in enumerate(rng.permutation(scored).tolist())}
        eligible = {name: self._band(idx, shares[name], log_ppl, target) for name, idx in groups.items()}
        picked = self._greedy_4grams(candidates, eligible, shares, log_ppl, target, tiebreak)
        mean_ppl = {name: float(np.exp(np.mean([log_ppl[i] for i in picked if candidates[i].source == name])))
                    for name in groups if shares[name]}
        return Selection(indices=picked, scores=[float(math.exp(log_ppl[i])) for i in picked],
                         info={"shares": shares, "target_ppl": math.exp(target), "mean_ppl_by_source": mean_ppl,
                               "scored": len(scored)})

    def _scored_subsets(self, groups: dict[str, list[int]], rng) -> dict[str, list[int]]:
        if self.score_per_source is None:
            return groups
        return {name: sorted(idx[j] for j in rng.choice(len(idx), size=min(len(idx), self.score_per_source),
                                                        replace=False)) for name, idx in groups.items()}

    def _band(self, idx: list[int], share: int, log_ppl: dict, target: float) -> list[int]:
        """The ``band`` fraction of a source nearest the target log-perplexity (never fewer than its share)."""
        size = max(share, math.ceil(self.band * len(idx)))
        return sorted(idx, key=lambda i: (abs(log_ppl[i] - target), i))[:size]

    @staticmethod
    def _greedy_4grams(candidates, eligible, shares, log_ppl, target, tiebreak) -> list[int]:
        grams = {i: four_grams(candidates[i].input_ids) for idx in eligible.values() for i in idx}
        seen: set = set()

        def key(i):
            repeat = len(grams[i] & seen) / max(len(grams[i]), 1)
            return (repeat, abs(log_ppl[i] - target), tiebreak[i], i)

        heaps = {name: [key(i) for i in idx] for name, idx in eligible.items()}
        for h in heaps.values():
            heapq.heapify(h)
        left = dict(shares)
        picked: list[int] = []
        while any(left.values()):
            for name in eligible:
                if not left[name]:
                    continue
                heap = heaps[name]
                while True:  # lazy greedy: a stale key can only be too optimistic
                    fresh = key(heapq.heappop(heap)[-1])
                    if not heap or fresh <= heap[0]:
                        break
                    heapq.heappush(heap, fresh)
                picked.append(fresh[-1])
                seen |= grams[fresh[-1]]
                left[name] -= 1
        return picked
