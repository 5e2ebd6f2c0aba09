"""The grid's tidy table: one row per cell x task x metric kind, every parameter beside every number.

Each compressed model is compared with the dense one (retention) and, paired on the same items, with
the baseline curation's model of the same compression, settings and seed; the paired p-values are
corrected for multiple comparisons across the whole grid (Holm), so "significant" means it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from colakit.cache import atomic_path
from colakit.grid.config import Cell, GridConfig

COLUMNS = ("cell", "status", "error", "curation", "curation_method", "sources", "compression", "compression_method",
           "seed", "n", "seq_len", "format", "task", "capability", "metric", "metric_kind", "value", "dense_value",
           "retention", "retention_stderr", "delta_vs_baseline", "p_value", "p_adjusted", "significant", "flagged",
           "flag_reason", "representativeness", "diversity", "proxy", "curate_s", "compress_s", "eval_s")
ALPHA = 0.05


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _cell_columns(grid: GridConfig, cell: Cell, status: dict, rundir: Path) -> dict:
    from colakit.grid.runner import calib_dir, curate_config, score_path

    config = curate_config(grid, cell)
    score = _read(score_path(calib_dir(rundir, grid, cell))) or {}
    return {
        "cell": cell.id, "status": status["status"], "error": status.get("error", ""),
        "curation": cell.curation, "curation_method": config.method, "sources": "+".join(config.sources),
        "compression": cell.compression, "compression_method": grid.compression[cell.compression].params["method"],
        "seed": cell.seed, "n": config.n, "seq_len": config.seq_len, "format": config.format,
        **{k: score.get(k, "") for k in ("representativeness", "diversity", "proxy")},
        **{k: round(status[k], 2) if isinstance(status.get(k), float) else status.get(k, "")
           for k in ("curate_s", "compress_s", "eval_s")},
    }


def build_rows(rundir: str | Path, grid: GridConfig) -> list[dict]:
    from colakit.evaluate import compare, read_results
    from colakit.evaluate.stats import adjust_pvalues
    from colakit.evaluate.runner import compare_models, paired_rows, retention_rows

    rundir = Path(rundir)
    dense = read_results(rundir / "dense" / "eval.json")
    cells = [c for c in grid.cells() if (rundir / "cells" / c.id / "cell.json").exists()]
    statuses = {c.id: _read(rundir / "cells" / c.id / "cell.json") for c in cells}
    results = {c.id: read_results(rundir / "cells" / c.id / "eval.json") for c in cells
               if statuses[c.id]["status"] == "ok"}
    rows: list[dict] = []
    for cell in cells:
        base = _cell_columns(grid, cell, statuses[cell.id], rundir)
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
    return [{c: row.get(c, "") for c in COLUMNS} for row in rows]


def write_table(rundir: str | Path, grid: GridConfig) -> list[dict]:
    """results.csv and results.parquet in ``rundir`` (atomic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rundir = Path(rundir)
    rows = build_rows(rundir, grid)
    with atomic_path(rundir / "results.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    typed = [{k: (None if v == "" else v) for k, v in r.items()} for r in rows]
    table = pa.Table.from_pylist(typed, schema=_schema()) if typed else pa.table({c: [] for c in COLUMNS})
    with atomic_path(rundir / "results.parquet") as tmp:
        pq.write_table(table, tmp)
    return rows


def _schema():
    import pyarrow as pa

    ints = {"seed", "n", "seq_len"}
    floats = {"value", "dense_value", "retention", "retention_stderr", "delta_vs_baseline", "p_value", "p_adjusted",
              "representativeness", "diversity", "proxy", "curate_s", "compress_s", "eval_s"}
    bools = {"significant", "flagged"}
    return pa.schema([(c, pa.int64() if c in ints else pa.float64() if c in floats else pa.bool_() if c in bools
                       else pa.string()) for c in COLUMNS])
