"""Stage 3, sample selection: every curation method is a Selector with one interface.

``selector.select(candidates, features, budget, seed) -> Selection``. Model-free methods ignore
``features`` (and say so with ``needs_features = False``); COLA's activation-space k-means and the
baselines live side by side in ``SELECTORS`` and are compared on equal terms.
"""

from colakit.curate.select.base import SELECTORS, Selection, Selector, get_selector, register
from colakit.curate.select import cola as _cola  # noqa: F401  (registers "cola")
from colakit.curate.select import random as _random  # noqa: F401  (registers "random")
from colakit.curate.select import mix as _mix  # noqa: F401  (registers "mix-uniform", "igsp")
from colakit.curate.select import selfgen as _selfgen  # noqa: F401  (registers "self-gen", "self-cal")
from colakit.curate.select import zipcal as _zipcal  # noqa: F401  (registers "zipcal")

__all__ = ["SELECTORS", "Selection", "Selector", "get_selector", "register"]
