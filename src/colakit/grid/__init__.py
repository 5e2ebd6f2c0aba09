"""Experiment grids: curation x compression x settings x seeds, each cell curated, compressed, evaluated.

``load_grid(yaml) -> GridConfig``; ``run_grid(config, rundir, executor=...)`` runs or resumes it (on
this process or on Ray workers) and writes the tidy table (``results.csv``/``results.parquet``) that
``colakit report`` reads. ``RunDir`` and ``RESULT_COLUMNS`` (``colakit.grid.rundir``) say where
everything is in the run directory.

The names below are imported on first use: reading a run directory (``colakit report``) needs
``rundir`` alone, not the model stack that running a grid loads.
"""

import importlib

_HOMES = {"Cell": "config", "GridConfig": "config", "load_grid": "config", "parse_grid": "config",
          "RESULT_COLUMNS": "rundir", "RunDir": "rundir", "GridRunner": "runner", "run_grid": "runner"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = sorted(_HOMES)
