"""``random``: uniform random windows from the pooled candidates of the chosen sources.

This is the baseline every compression paper uses (random C4 / WikiText windows).
"""

from __future__ import annotations

import numpy as np

from colakit.curate.select.base import Selection, Selector, register


@register
class RandomSelector(Selector):
    name = "random"

    def select(self, candidates, features, budget: int, seed: int) -> Selection:
        self.check_budget(candidates, budget)
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(candidates), size=budget, replace=False)
        return Selection(indices=[int(i) for i in picked])
