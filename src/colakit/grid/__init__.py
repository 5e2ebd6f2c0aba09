"""Experiment grids: curation x compression x settings x seeds, each cell curated, compressed, evaluated.

``load_grid(yaml) -> GridConfig``; ``run_grid(config, rundir, executor=...)`` runs or resumes it (on
this process or on Ray workers) and writes the tidy table (``results.csv``/``results.parquet``) that
``colakit report`` reads. ``RunDir`` and ``RESULT_COLUMNS`` (``colakit.grid.rundir``) say where
everything is in the run directory.
"""

from colakit.grid.config import Cell, GridConfig, load_grid, parse_grid
from colakit.grid.rundir import RESULT_COLUMNS, RunDir
from colakit.grid.runner import GridRunner, run_grid

__all__ = ["Cell", "GridConfig", "GridRunner", "RESULT_COLUMNS", "RunDir", "load_grid", "parse_grid", "run_grid"]
