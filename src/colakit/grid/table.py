"""The grid's tidy table: one row per cell x task x metric kind, every parameter beside every number.

Each compressed model is compared with the dense one (retention) and, paired on the same items, with
the baseline curation's model of the same compression, settings and seed; the paired p-values are
corrected for multiple comparisons across the whole grid (Holm), so "significant" means it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from colakit.cache import atomic_path
from colakit.curate.pipeline import CurateConfig
from colakit.curate.score import SCORE_KEYS
from colakit.evaluate import compare, compare_models, paired_rows, read_results, retention_rows
from colakit.evaluate.stats import adjust_pvalues
from colakit.grid.config import Cell, GridConfig
from colakit.grid.rundir import PROVENANCE_COLUMNS, RESULT_COLUMNS, RESULT_SCHEMA, TIMING_COLUMNS, RunDir, calib_name

ALPHA = 0.05
ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _cell_columns(grid: GridConfig, cell: Cell, status: dict, run: RunDir, config: CurateConfig) -> dict:
    score = _read(run.calib_score(calib_name(grid, cell))) or {}
    return {
        "cell": cell.id, "status": status["status"], "error": status.get("error", ""),
        "curation": cell.curation, "curation_method": config.method, "sources": "+".join(config.sources),
        "compression": cell.compression, "compression_method": grid.compression[cell.compression].params["method"],
        "seed": cell.seed, "n": config.n, "seq_len": config.seq_len, "format": config.format,
        **{k: score.get(k, "") for k in SCORE_KEYS},
        **{k: round(status[k], 2) if isinstance(status.get(k), float) else status.get(k, "")
           for k in TIMING_COLUMNS},
        **{k: status.get(k, "") for k in PROVENANCE_COLUMNS},  # cells run before provenance was kept: empty
    }


def build_rows(rundir: str | Path, grid: GridConfig, configs: Mapping[str, CurateConfig]) -> list[dict]:
    """The table's rows; ``configs``: each cell's CurateConfig by cell id (``runner.curate_config``)."""
    run = RunDir(rundir)
    dense = read_results(run.dense_eval)
    cells = [c for c in grid.cells() if run.cell_json(c.id).exists()]
    statuses = {c.id: _read(run.cell_json(c.id)) for c in cells}
    results = {c.id: read_results(run.cell_eval(c.id)) for c in cells if statuses[c.id]["status"] == "ok"}
    rows: list[dict] = []
    for cell in cells:
        base = _cell_columns(grid, cell, statuses[cell.id], run, configs[cell.id])
        if cell.id not in results:
            rows.append({**base, "task": ""})
            continue
        paired = {}
        ref = grid.cell(grid.baseline, cell.compression, cell.settings, cell.seed) if grid.baseline else None
        if ref is not None and ref.curation != cell.curation and ref.id in results:
            pair = compare_models(results[cell.id], results[ref.id], dense)
            paired = {(r["task"], r["metric_kind"]): r for r in paired_rows(pair)}
        for r in retention_rows(compare(results[cell.id], dense), results[cell.id]):
            p = paired.get((r["task"], r["metric_kind"]), {})
            rows.append({**base, **r, "delta_vs_baseline": p.get("delta", ""), "p_value": p.get("p_value", "")})
    tested = [i for i, r in enumerate(rows) if r.get("p_value") not in ("", None)]
    for i, p_adj in zip(tested, adjust_pvalues([float(rows[i]["p_value"]) for i in tested], method="holm")):
        rows[i]["p_adjusted"] = p_adj
        rows[i]["significant"] = bool(p_adj < ALPHA)
    return [{c: row.get(c, "") for c in RESULT_COLUMNS} for row in rows]


def write_table(rundir: str | Path, grid: GridConfig, configs: Mapping[str, CurateConfig]) -> list[dict]:
    """results.csv and results.parquet in ``rundir`` (atomic)."""
    run = RunDir(rundir)
    rows = build_rows(run.root, grid, configs)
    with atomic_path(run.results_csv) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    typed = [{k: (None if v == "" else v) for k, v in r.items()} for r in rows]
    schema = pa.schema([(name, ARROW_TYPES[kind]) for name, kind in RESULT_SCHEMA])
    table = pa.Table.from_pylist(typed, schema=schema) if typed else pa.table({c: [] for c in RESULT_COLUMNS})
    with atomic_path(run.results_parquet) as tmp:
        pq.write_table(table, tmp)
    return rows
