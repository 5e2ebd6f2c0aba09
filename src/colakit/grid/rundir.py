"""The run directory of ``colakit run`` and its results table: every path and every column, defined once.

RUNDIR layout (each file written atomically, so a killed run resumes where it stopped)::

    run.json                      the resolved config, sweeps, baseline
    dense/eval.json               the dense model, evaluated once (per-task checkpoints beside it)
    dense/spec.json               what that evaluation depended on (redone when it changes)
    calib/<calib>/                CalibrationSets, shared by the cells that differ only in compression
    calib/<calib>.spec.json       what that curation depended on
    calib/<calib>.score.json      activation-space proxy scores of that set
    cells/<cell>/cell.json        status (ok | failed + error), timings, parameters, stage digests
    cells/<cell>/eval.json        the compressed model's evaluation (per-task checkpoints beside it)
    cells/<cell>/compression.json the compression report
    cells/<cell>/activation_map.json   2-D map of the candidate pool, selected samples marked
    cells/<cell>/traceback.txt    why a failed cell failed
    cells/<cell>/model/           the compressed model, while it is evaluated (kept with keep_models)
    results.csv, results.parquet  the tidy table: one row per cell x task x metric kind (RESULT_COLUMNS)

What stays once the run is done, less the models and checkpoints (``RunDir.evidence_files``), is the
run's evidence: ``tools/results.py snapshot`` keeps it under results/, and a copy resumes.

Runs sharing RUNDIR split the work through file locks: ``cells/.<cell>.lock`` (a cell locked by another
run is passed by), ``calib/.<calib>.lock`` and ``dense/.lock`` (waited for, so each set is curated
and the dense model evaluated once). Ray workers (``colakit run --executor ray``) are such runs:
they share RUNDIR through the file system, so on a multi-node cluster RUNDIR must be on a file system
every node mounts at the same path and whose locks hold across nodes (NFSv4, or Lustre/GPFS/CephFS
with flock enabled); on one machine any local directory does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: reading a run directory must not load what running a grid needs
    from colakit.grid.config import Cell, GridConfig

# results.csv's columns in order, with the type results.parquet stores each as (empty cells: null).
RESULT_SCHEMA: tuple[tuple[str, type], ...] = (
    ("cell", str), ("status", str), ("error", str), ("curation", str), ("curation_method", str), ("sources", str),
    ("compression", str), ("compression_method", str), ("seed", int), ("n", int), ("seq_len", int),
    ("format", str), ("task", str), ("capability", str), ("metric", str), ("metric_kind", str),
    ("value", float), ("dense_value", float), ("retention", float), ("retention_stderr", float),
    ("delta_vs_baseline", float), ("p_value", float), ("p_adjusted", float), ("significant", bool),
    ("flagged", bool), ("flag_reason", str), ("representativeness", float), ("diversity", float),
    ("proxy", float), ("representativeness_centred", float), ("curate_s", float), ("compress_s", float),
    ("eval_s", float),
    # where the cell's numbers came from (colakit.provenance) and a digest of the settings it ran with
    ("colakit_version", str), ("git_commit", str), ("git_dirty", bool), ("config_hash", str),
)
RESULT_COLUMNS = tuple(name for name, _ in RESULT_SCHEMA)
PROVENANCE_COLUMNS = ("colakit_version", "git_commit", "git_dirty", "config_hash")
# Columns added after the first runs were made: a reader takes them when present and must not need them.
OPTIONAL_COLUMNS = ("flag_reason", "representativeness_centred", *PROVENANCE_COLUMNS)
REQUIRED_COLUMNS = tuple(c for c in RESULT_COLUMNS if c not in OPTIONAL_COLUMNS)
TIMING_COLUMNS = ("curate_s", "compress_s", "eval_s")  # wall times (s): they differ between reruns of a cell
# head_to_head.csv: one row per (compression, settings, curation, rival, metric kind), from grid.table.head_to_head
HEAD_TO_HEAD_COLUMNS = ("compression", "settings", "curation", "versus", "metric_kind", "seeds", "tasks", "mean",
                        "versus_mean", "delta", "ci_low", "ci_high", "stderr", "p_value", "p_adjusted", "significant")


def calib_name(grid: GridConfig, cell: Cell) -> str:
    """The calibration set a cell uses: shared across compressions, unless its curation is method-aware."""
    aware = grid.curation[cell.curation].params.get("for_compression", False)
    return cell.calib_key + (f"__for-{cell.compression}" if aware else "")


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created until something writes there)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def results_parquet(self) -> Path:
        return self.root / "results.parquet"

    @property
    def head_to_head_csv(self) -> Path:
        return self.root / "head_to_head.csv"

    # the dense model
    @property
    def dense_eval(self) -> Path:
        return self.root / "dense" / "eval.json"

    @property
    def dense_spec(self) -> Path:
        return self.root / "dense" / "spec.json"

    @property
    def dense_lock(self) -> Path:
        return self.root / "dense" / ".lock"

    # calibration sets, by calib_name
    def calib(self, name: str) -> Path:
        return self.root / "calib" / name

    def calib_spec(self, name: str) -> Path:
        return self.root / "calib" / f"{name}.spec.json"

    def calib_score(self, name: str) -> Path:
        return self.root / "calib" / f"{name}.score.json"

    def calib_lock(self, name: str) -> Path:
        return self.root / "calib" / f".{name}.lock"

    # cells, by cell id
    @property
    def cells(self) -> Path:
        return self.root / "cells"

    def cell(self, cell_id: str) -> Path:
        return self.cells / cell_id

    def cell_json(self, cell_id: str) -> Path:
        return self.cell(cell_id) / "cell.json"

    def cell_eval(self, cell_id: str) -> Path:
        return self.cell(cell_id) / "eval.json"

    def compression_report(self, cell_id: str) -> Path:
        return self.cell(cell_id) / "compression.json"

    def activation_map(self, cell_id: str) -> Path:
        return self.cell(cell_id) / "activation_map.json"

    def traceback(self, cell_id: str) -> Path:
        return self.cell(cell_id) / "traceback.txt"

    def cell_model(self, cell_id: str) -> Path:
        return self.cell(cell_id) / "model"

    def cell_lock(self, cell_id: str) -> Path:
        return self.cells / f".{cell_id}.lock"

    def evidence_files(self) -> list[Path]:
        """The files that record what the run did and found, relative to the root: all but the compressed
        models, the per-task checkpoints of finished evaluations (``*.parts``), results.parquet (results.csv
        rewritten) and dot-files (locks, temporaries). A copy of them is a run directory that ``colakit
        run`` resumes without redoing a finished cell, and that ``colakit report`` reads."""
        models = {self.cell_model(p.name) for p in self.cells.iterdir()} if self.cells.is_dir() else set()
        out = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if (path.is_file() and path != self.results_parquet and not models.intersection(path.parents)
                    and not any(part.startswith(".") or part.endswith(".parts") for part in rel.parts)):
                out.append(rel)
        return out
