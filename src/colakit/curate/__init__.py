"""Curation, in the order data flows: ``process`` (tokenize, format, window) -> ``pool`` (the
candidate store) -> ``features`` (activations, projected) -> ``coverage`` (probes, proxy scores) ->
``select`` (every curation method) -> ``pipeline`` (the ``curate`` call that writes a
CalibrationSet) -> ``score`` (proxy scores of any set).

The package imports nothing itself, so importing one stage never loads the others (and no
stage can close an import circle through this file): ``from colakit.curate.pipeline import
CurateConfig, curate``."""
