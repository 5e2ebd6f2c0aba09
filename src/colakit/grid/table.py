"""The grid's tidy table: one row per cell x task x metric kind, every parameter beside every number.

Each compressed model is compared with the dense one (retention) and, paired on the same items, with
the baseline curation's model of the same compression, settings and seed; the paired p-values are
corrected for multiple comparisons across the whole grid (Holm), so "significant" means it.

A config's ``head_to_head`` adds head_to_head.csv: a curation against each rival on the headline's
mean retention, pooled over the seeds both finished (``evaluate.compare_mean_retention``), Holm-corrected
over every row of a metric kind. One test of the mean has the power that seven per-task tests split.
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
from colakit.evaluate import (
    compare, compare_mean_retention, compare_models, paired_rows, read_results, retention_rows,
)
from colakit.evaluate.stats import adjust_pvalues
from colakit.grid.config import Cell, GridConfig
from colakit.grid.rundir import (
    HEAD_TO_HEAD_COLUMNS, PROVENANCE_COLUMNS, RESULT_COLUMNS, RESULT_SCHEMA, TIMING_COLUMNS, RunDir, calib_name,
)

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


def head_to_head(rundir: str | Path, grid: GridConfig, metric_kinds=("likelihood", "accuracy")) -> list[dict]:
    """head_to_head.csv's rows: each ``grid.head_to_head`` pair per compression and settings point, on the
    seeds where both cells finished; none for a pair without such a seed."""
    run = RunDir(rundir)
    if not grid.head_to_head or not run.dense_eval.exists():
        return []
    dense = read_results(run.dense_eval)
    cache: dict[str, dict | None] = {}

    def results(cell: Cell) -> dict | None:
        if cell.id not in cache:
            status = _read(run.cell_json(cell.id)) or {}
            cache[cell.id] = read_results(run.cell_eval(cell.id)) if status.get("status") == "ok" else None
        return cache[cell.id]

    rows = []
    for curation, rivals in grid.head_to_head.items():
        # a grid narrowed in code (``grid.curation.pop``) keeps its head_to_head: pairs it dropped are skipped
        for rival in (r for r in rivals if curation in grid.curation and r in grid.curation):
            for compression in grid.compression:
                for point in grid.settings:
                    pairs = [(a, b) for seed in grid.seeds
                             if (a := results(grid.cell(curation, compression, point, seed))) is not None
                             and (b := results(grid.cell(rival, compression, point, seed))) is not None]
                    for kind in metric_kinds if pairs else ():
                        t = compare_mean_retention(pairs, dense, metric_kind=kind, seed=grid.evaluate["seed"])
                        rows.append({"compression": compression, "curation": curation, "versus": rival,
                                     "settings": json.dumps(point, sort_keys=True) if point else "",
                                     "metric_kind": kind, "seeds": t["seeds"], "tasks": len(t["tasks"]),
                                     "mean": t["mean_a"], "versus_mean": t["mean_b"],
                                     **{k: t[k] for k in ("delta", "ci_low", "ci_high", "stderr", "p_value")}})
    for kind in metric_kinds:
        mine = [r for r in rows if r["metric_kind"] == kind]
        for r, p_adj in zip(mine, adjust_pvalues([r["p_value"] for r in mine], method="holm")):
            r.update(p_adjusted=p_adj, significant=bool(p_adj < ALPHA))
    return rows


def _write_csv(path: Path, columns, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


def write_table(rundir: str | Path, grid: GridConfig, configs: Mapping[str, CurateConfig]) -> list[dict]:
    """results.csv and results.parquet in ``rundir`` (atomic), and head_to_head.csv when the config asks."""
    run = RunDir(rundir)
    rows = build_rows(run.root, grid, configs)
    _write_csv(run.results_csv, RESULT_COLUMNS, rows)
    if grid.head_to_head:
        _write_csv(run.head_to_head_csv, HEAD_TO_HEAD_COLUMNS, head_to_head(run.root, grid))
    typed = [{k: (None if v == "" else v) for k, v in r.items()} for r in rows]
    schema = pa.schema([(name, ARROW_TYPES[kind]) for name, kind in RESULT_SCHEMA])
    table = pa.Table.from_pylist(typed, schema=schema) if typed else pa.table({c: [] for c in RESULT_COLUMNS})
    with atomic_path(run.results_parquet) as tmp:
        pq.write_table(table, tmp)
    return rows
