"""Experiment grids: curation x compression x settings x seeds, each cell curated, compressed, evaluated.

``load_grid(yaml) -> GridConfig``; ``run_grid(config, rundir)`` runs or resumes it and writes the tidy
table (``results.csv``/``results.parquet``) that ``colakit report`` reads.
"""

from colakit.grid.config import Cell, GridConfig, load_grid, parse_grid
from colakit.grid.runner import GridRunner, run_grid

__all__ = ["Cell", "GridConfig", "GridRunner", "load_grid", "parse_grid", "run_grid"]
