"""Curation, in the order data flows: ``process`` (tokenize, format, window) -> ``pool`` (the
candidate store) -> ``features`` (activations, projected) -> ``coverage`` (probes, proxy scores) ->
``select`` (every curation method) -> ``pipeline`` (the ``curate`` call that writes a
CalibrationSet) -> ``score`` (proxy scores of any set)."""

from colakit.curate.pipeline import CurateConfig, curate

__all__ = ["CurateConfig", "curate"]
