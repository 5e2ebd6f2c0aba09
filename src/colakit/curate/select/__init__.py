"""Stage 3, sample selection: every curation method is a Selector with one interface.

``selector.select(candidates, features, budget, seed) -> Selection``. Model-free methods ignore
``features`` (and say so with ``needs_features = False``); COLA's activation-space k-means and the
baselines live side by side in ``SELECTORS`` and are compared on equal terms. A new method is one
file in this folder whose Selector subclass is decorated with ``@register``.
"""

from colakit.curate.select.base import SELECTORS, Selection, Selector, get_selector, register
from colakit.plugins import import_all

import_all(__name__, __path__)

__all__ = ["SELECTORS", "Selection", "Selector", "get_selector", "register"]
