"""Load a run directory written by ``colakit run`` and aggregate it into what the report shows.

The contract (``RUNDIR/run.json``, ``RUNDIR/results.csv`` with one row per cell x task x metric,
``RUNDIR/cells/<cell>/activation_map.json``) is described in ``colakit.report``; its paths and
columns are ``colakit.grid.rundir``'s, shared with the writer. Everything here is plain Python on
the parsed rows: no pandas, deterministic order (first appearance in results.csv).

Aggregation choices (stated in the report itself):
- a cell's capability retention is the mean over the capability's tasks, one row per task chosen by
  metric kind (``likelihood`` by default: gold bits per byte for multiple-choice/generation tasks,
  perplexity for perplexity tasks; ``accuracy`` uses the accuracy rows instead);
- a task's numbers of a flagged metric kind (accuracy at chance level for the dense model) are left out
  of every average, in every cell, so all rows of a table average over the same tasks; its other kinds
  (the gold answers' likelihood) still count;
- a table row (compression, curation, swept settings) is the mean over its seeds, with the
  standard deviation over seeds as spread, or the cell's standard error when there is one seed.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from colakit.capabilities import CAPABILITIES
from colakit.errors import ColakitError
from colakit.grid.rundir import REQUIRED_COLUMNS, TIMING_COLUMNS, RunDir

RUN_HINT = "run `colakit run CONFIG --out RUNDIR` first, then `colakit report RUNDIR`"

# Capabilities in the order a reader expects them; others follow in order of appearance.
METRIC_KINDS = ("likelihood", "accuracy")
# Per task, which row stands for it: the requested kind, else its perplexity row (perplexity tasks
# have only that), else whatever it has.
_KIND_PREFERENCE = {"likelihood": ("likelihood", "perplexity", "accuracy"),
                    "accuracy": ("accuracy", "perplexity", "likelihood")}
KIND_LABEL = {"likelihood": "gold bpb", "perplexity": "perplexity", "accuracy": "accuracy"}
MEAN = "mean"  # the column holding the mean over capabilities
SCORES = ("proxy", "representativeness", "diversity", "representativeness_centred")  # absent in older tables


def _float(text: str) -> float | None:
    """A CSV number, or None for empty / unparseable / non-finite (a missing value, not a zero)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _bool(text: str) -> bool | None:
    text = (text or "").strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


def sort_key(value: str):
    """Numbers in numeric order before text in text order (seq_len 128 < 1024)."""
    number = _float(value)
    return (0, number, "") if number is not None else (1, 0.0, str(value))


@dataclass(frozen=True)
class Cell:
    """One grid cell: a calibration set (curation, settings, seed) compressed one way."""

    cell: str
    status: str
    error: str
    curation: str
    curation_method: str
    sources: str
    compression: str
    compression_method: str
    seed: str
    settings: tuple[tuple[str, str], ...]  # the swept parameters' values, in run.json's order
    scores: dict[str, float | None]  # proxy, representativeness, diversity
    timings: dict[str, float | None]  # curate_s, compress_s, eval_s

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Result:
    """One results.csv row of an ok cell: one task, one metric."""

    cell: str
    task: str
    capability: str
    metric: str
    metric_kind: str
    value: float | None
    dense_value: float | None
    retention: float | None
    retention_stderr: float | None
    delta_vs_baseline: float | None
    p_adjusted: float | None
    significant: bool | None
    flagged: bool
    flag_reason: str = ""  # optional column: why the task is flagged


@dataclass
class Run:
    root: Path
    meta: dict
    cells: dict[str, Cell]  # in order of first appearance in results.csv
    results: list[Result]

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.root.name)

    @property
    def model(self) -> str:
        return str(self.meta.get("model") or "?")

    @property
    def baseline(self) -> str | None:
        return self.meta.get("baseline") or None

    @property
    def ok_cells(self) -> list[Cell]:
        return [c for c in self.cells.values() if c.ok]

    @property
    def failed_cells(self) -> list[Cell]:
        return [c for c in self.cells.values() if not c.ok]

    @property
    def setting_keys(self) -> list[str]:
        """Swept parameters that vary (>= 2 values) and that results.csv carries as a column."""
        return [k for k, _ in next(iter(self.cells.values())).settings] if self.cells else []

    @property
    def compressions(self) -> list[str]:
        return _unique(c.compression for c in self.cells.values())

    @property
    def curations(self) -> list[str]:
        """Curation labels, the baseline first."""
        labels = _unique(c.curation for c in self.cells.values())
        if self.baseline in labels:
            labels.remove(self.baseline)
            labels.insert(0, self.baseline)
        return labels

    def map_path(self, cell: str) -> Path | None:
        path = RunDir(self.root).activation_map(cell)
        return path if path.is_file() else None


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def load_run(rundir: Path | str) -> Run:
    """Parse RUNDIR/run.json and RUNDIR/results.csv; ColakitError naming what is missing or malformed."""
    root = Path(rundir)
    if not root.is_dir():
        raise ColakitError(f"run directory {root} does not exist", RUN_HINT)
    meta_path, csv_path = RunDir(root).run_json, RunDir(root).results_csv
    for path in (meta_path, csv_path):
        if not path.is_file():
            raise ColakitError(f"{path} is missing: {root} is not a finished `colakit run` directory", RUN_HINT)
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ColakitError(f"{meta_path} is not valid JSON ({err})", RUN_HINT) from None
    if not isinstance(meta, dict):
        raise ColakitError(f"{meta_path} does not hold a JSON object", RUN_HINT)
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ColakitError(f"{csv_path} lacks the column(s) {', '.join(missing)}",
                               "it must be written by `colakit run` (rerun it with this colakit version)")
        rows = list(reader)
    if not rows:
        raise ColakitError(f"{csv_path} has no rows", RUN_HINT)
    sweeps = meta.get("sweeps") or {}
    # A sweep is shown when it has two values or more and each row says which value it used.
    keys = [k for k, values in sweeps.items()
            if isinstance(values, list) and len(values) >= 2 and k in rows[0]]
    cells: dict[str, Cell] = {}
    results: list[Result] = []
    for row in rows:
        name = row["cell"]
        if name not in cells:
            cells[name] = Cell(
                cell=name, status=(row["status"] or "ok").strip(), error=row["error"], curation=row["curation"],
                curation_method=row["curation_method"], sources=row["sources"], compression=row["compression"],
                compression_method=row["compression_method"], seed=row["seed"],
                settings=tuple((k, row[k]) for k in keys),
                scores={k: _float(row.get(k)) for k in SCORES},
                timings={k: _float(row[k]) for k in TIMING_COLUMNS})
        if cells[name].ok and row["task"]:
            results.append(Result(
                cell=name, task=row["task"], capability=row["capability"] or "other", metric=row["metric"],
                metric_kind=row["metric_kind"], value=_float(row["value"]), dense_value=_float(row["dense_value"]),
                retention=_float(row["retention"]), retention_stderr=_float(row["retention_stderr"]),
                delta_vs_baseline=_float(row["delta_vs_baseline"]), p_adjusted=_float(row["p_adjusted"]),
                significant=_bool(row["significant"]), flagged=bool(_bool(row["flagged"])),
                flag_reason=(row.get("flag_reason") or "").strip()))
    return Run(root=root, meta=meta, cells=cells, results=results)


def seed_slice(run: Run, seed: str) -> Run:
    """The run as if only ``seed`` had run: a figure about one seed of a multi-seed run. Significance marks
    still come from results.csv, which tests the run's own cells."""
    cells = {name: c for name, c in run.cells.items() if c.seed == str(seed)}
    if not cells:
        raise ColakitError(f"{run.root} has no cell of seed {seed}",
                           f"its seeds: {', '.join(_unique(c.seed for c in run.cells.values()))}")
    return replace(run, cells=cells, results=[r for r in run.results if r.cell in cells])


# --------------------------------------------------------------------------- selection


def capability_order(names) -> list[str]:
    names = _unique(names)
    known = [c for c in CAPABILITIES if c in names]
    return known + [c for c in names if c not in known]


@dataclass(frozen=True)
class FlaggedTask:
    task: str
    capability: str
    metric: str
    dense_value: float | None
    given_reason: str = ""
    kind: str = ""
    kinds: tuple[str, ...] = ()  # the metric kinds whose rows are flagged (the others still count)

    @property
    def reason(self) -> str:
        which = f"its {' and '.join(KIND_LABEL.get(k, k) for k in self.kinds)} numbers are" if self.kinds else "it is"
        if self.given_reason:
            return f"{self.given_reason}; {which} excluded from capability averages"
        dense = f" ({self.metric} {self.dense_value:.3f})" if self.dense_value is not None else ""
        return f"the dense model scores at chance level{dense}; {which} excluded from capability averages"


def flagged_tasks(run: Run) -> list[FlaggedTask]:
    """Tasks flagged in any row, with the metric kinds flagged."""
    seen: dict[str, FlaggedTask] = {}
    kinds: dict[str, list[str]] = {}
    for r in run.results:
        if not r.flagged:
            continue
        if r.metric_kind not in kinds.setdefault(r.task, []):
            kinds[r.task].append(r.metric_kind)
        # Describe a task by its accuracy row where it has one: "chance level" is about accuracy.
        if r.task not in seen or (r.metric_kind == "accuracy" and seen[r.task].kind != "accuracy"):
            seen[r.task] = FlaggedTask(r.task, r.capability, r.metric, r.dense_value, r.flag_reason, r.metric_kind)
    return [replace(f, kinds=tuple(kinds[t])) for t, f in seen.items()]


def excluded_rows(run: Run) -> set[tuple[str, str]]:
    """(task, metric kind) pairs flagged in any cell: left out of every cell's averages so all rows compare
    alike. Per kind, not per task: a generation task no item of which the dense model gets right still has a
    meaningful likelihood of its gold answers."""
    return {(f.task, kind) for f in flagged_tasks(run) for kind in f.kinds}


def check_metric_kind(metric_kind: str) -> str:
    if metric_kind not in METRIC_KINDS:
        raise ColakitError(f"unknown metric kind {metric_kind!r}",
                           f"use one of {', '.join(METRIC_KINDS)} (likelihood: gold bits per byte and perplexity)")
    return metric_kind


def select_rows(run: Run, metric_kind: str = "likelihood") -> dict[tuple[str, str], Result]:
    """For each (cell, task), the one row that stands for it under ``metric_kind``."""
    preference = _KIND_PREFERENCE[check_metric_kind(metric_kind)]
    chosen: dict[tuple[str, str], Result] = {}
    for r in run.results:
        key = (r.cell, r.task)
        old = chosen.get(key)
        rank = preference.index(r.metric_kind) if r.metric_kind in preference else len(preference)
        if old is None or rank < (preference.index(old.metric_kind) if old.metric_kind in preference else len(preference)):
            chosen[key] = r
    return chosen


@dataclass(frozen=True)
class Value:
    """A retention with its spread (``spread_kind``: "std" over seeds/cells, or "stderr")."""

    mean: float
    spread: float | None
    spread_kind: str
    n: int


def _combine(values: list[Value]) -> Value | None:
    """Mean over cells; std over them when there are several, else the one cell's stderr."""
    if not values:
        return None
    if len(values) == 1:
        return Value(values[0].mean, values[0].spread, "stderr", 1)
    means = [v.mean for v in values]
    return Value(statistics.fmean(means), statistics.stdev(means), "std", len(values))


@dataclass
class CellScores:
    """Per ok cell: retention per capability (and the mean over capabilities), under one metric kind."""

    metric_kind: str
    capabilities: list[str]
    kinds: dict[str, list[str]]  # capability -> metric kinds its numbers use
    per_cell: dict[str, dict[str, Value]]  # cell -> capability (or MEAN) -> Value


def cell_scores(run: Run, metric_kind: str = "likelihood") -> CellScores:
    chosen = select_rows(run, metric_kind)
    excluded = excluded_rows(run)
    by_cell: dict[str, dict[str, list[Result]]] = {}
    kinds: dict[str, list[str]] = {}
    for (cell, task), r in chosen.items():
        if (task, r.metric_kind) in excluded or r.retention is None:
            continue
        by_cell.setdefault(cell, {}).setdefault(r.capability, []).append(r)
        kinds.setdefault(r.capability, [])
        if r.metric_kind not in kinds[r.capability]:
            kinds[r.capability].append(r.metric_kind)
    capabilities = capability_order(r.capability for r in run.results if r.capability in kinds)
    per_cell: dict[str, dict[str, Value]] = {}
    for cell in run.cells:
        caps = by_cell.get(cell)
        if not caps:
            continue
        entry: dict[str, Value] = {}
        for cap, rows in caps.items():
            mean = statistics.fmean(r.retention for r in rows)
            errs = [r.retention_stderr for r in rows]
            # Standard error of a mean of independent task retentions.
            stderr = math.sqrt(sum(e * e for e in errs)) / len(errs) if all(e is not None for e in errs) else None
            entry[cap] = Value(mean, stderr, "stderr", 1)
        cap_values = [entry[c] for c in capabilities if c in entry]
        errs = [v.spread for v in cap_values]
        stderr = math.sqrt(sum(e * e for e in errs)) / len(errs) if all(e is not None for e in errs) else None
        entry[MEAN] = Value(statistics.fmean(v.mean for v in cap_values), stderr, "stderr", 1)
        per_cell[cell] = entry
    return CellScores(metric_kind, capabilities, {c: kinds[c] for c in capabilities}, per_cell)


def kind_label(kinds: list[str]) -> str:
    return " + ".join(KIND_LABEL.get(k, k) for k in kinds)


# --------------------------------------------------------------------------- headline table


@dataclass
class Entry:
    value: Value
    best: bool = False
    marks: str = ""  # "*": significantly better than the baseline on a task; "†": worse


@dataclass
class HeadlineRow:
    compression: str
    curation: str
    settings: tuple[tuple[str, str], ...]
    cells: list[str]
    entries: dict[str, Entry] = field(default_factory=dict)


@dataclass
class Headline:
    metric_kind: str
    columns: list[str]  # capabilities, then MEAN
    kinds: dict[str, list[str]]
    setting_keys: list[str]
    rows: list[HeadlineRow]


def _significance(run: Run, chosen: dict[tuple[str, str], Result], cells: list[str], capability: str,
                  excluded: set[tuple[str, str]]) -> str:
    up = down = False
    for (cell, task), r in chosen.items():
        if cell in cells and r.capability == capability and (task, r.metric_kind) not in excluded and r.significant:
            if (r.delta_vs_baseline or 0.0) > 0:
                up = True
            elif (r.delta_vs_baseline or 0.0) < 0:
                down = True
    return ("*" if up else "") + ("†" if down else "")


def headline_table(run: Run, metric_kind: str = "likelihood") -> Headline:
    """Rows (compression, curation, swept settings) x capability columns (+ mean), over seeds."""
    scores = cell_scores(run, metric_kind)
    chosen = select_rows(run, metric_kind)
    excluded = excluded_rows(run)
    groups: dict[tuple, list[str]] = {}
    for c in run.ok_cells:
        if c.cell in scores.per_cell:
            groups.setdefault((c.compression, c.curation, c.settings), []).append(c.cell)
    compressions, curations = run.compressions, run.curations
    order = sorted(groups, key=lambda k: (compressions.index(k[0]), [sort_key(v) for _, v in k[2]],
                                          curations.index(k[1])))
    columns = [*scores.capabilities, MEAN]
    rows = []
    for key in order:
        row = HeadlineRow(key[0], key[1], key[2], groups[key])
        for col in columns:
            value = _combine([scores.per_cell[c][col] for c in row.cells if col in scores.per_cell[c]])
            if value is not None:
                marks = "" if col == MEAN or key[1] == run.baseline else _significance(
                    run, chosen, row.cells, col, excluded)
                row.entries[col] = Entry(value, marks=marks)
        rows.append(row)
    # Best per column among the curations of one compression method at one setting.
    blocks: dict[tuple, list[HeadlineRow]] = {}
    for row in rows:
        blocks.setdefault((row.compression, row.settings), []).append(row)
    for block in blocks.values():
        if len(block) < 2:
            continue
        for col in columns:
            present = [r.entries[col] for r in block if col in r.entries]
            if len(present) >= 2:
                top = max(e.value.mean for e in present)
                for e in present:
                    e.best = math.isclose(e.value.mean, top, rel_tol=0, abs_tol=1e-12)
    return Headline(metric_kind, columns, {**scores.kinds, MEAN: []}, run.setting_keys, rows)


@dataclass(frozen=True)
class Verdict:
    """One curation against the baseline within a block (compression, settings): the mean retention
    over capabilities of each, and the per-task paired tests (Holm-corrected) that back the gap."""

    compression: str
    settings: tuple[tuple[str, str], ...]
    curation: str
    baseline: str
    mean: float
    baseline_mean: float
    better: int  # (seed, task) comparisons significantly better than the baseline's
    worse: int
    compared: int
    best: bool  # the highest mean of its block, baseline included

    @property
    def delta(self) -> float:
        return self.mean - self.baseline_mean

    def line(self) -> str:
        """``gptq-w4: mix-uniform beats random-c4 by +0.012 mean retention (0.930 vs 0.918); per task ...``"""
        where = self.compression + (f" ({settings_label(self.settings)})" if self.settings else "")
        verb = "beats" if self.delta > 0 else "trails" if self.delta < 0 else "ties"
        tests = (f"per task, {self.better} significantly better and {self.worse} significantly worse of "
                 f"{self.compared} paired comparisons (Holm-corrected)")
        if not self.better and not self.worse:
            tests += ": the gap is within the noise"
        return (f"{where}: {self.curation} {verb} {self.baseline} by {self.delta:+.3f} mean retention "
                f"({self.mean:.3f} vs {self.baseline_mean:.3f}){' and keeps the most' if self.best else ''}; {tests}")


def verdicts(run: Run, metric_kind: str = "likelihood") -> list[Verdict]:
    """Every non-baseline curation against the baseline, per block, from the headline's means and the
    significance columns of results.csv; empty without a baseline."""
    if not run.baseline:
        return []
    table = headline_table(run, metric_kind)
    chosen = select_rows(run, metric_kind)
    excluded = excluded_rows(run)
    blocks: dict[tuple, list[HeadlineRow]] = {}
    for row in table.rows:
        if MEAN in row.entries:
            blocks.setdefault((row.compression, row.settings), []).append(row)
    out = []
    for (compression, settings), rows in blocks.items():
        base = next((r for r in rows if r.curation == run.baseline), None)
        if base is None:
            continue
        top = max(r.entries[MEAN].value.mean for r in rows)
        for row in rows:
            if row is base:
                continue
            tests = [r for (cell, task), r in chosen.items() if cell in row.cells
                     and (task, r.metric_kind) not in excluded and r.significant is not None]
            mean = row.entries[MEAN].value.mean
            out.append(Verdict(compression, settings, row.curation, run.baseline, mean,
                               base.entries[MEAN].value.mean,
                               sum(bool(r.significant) and (r.delta_vs_baseline or 0) > 0 for r in tests),
                               sum(bool(r.significant) and (r.delta_vs_baseline or 0) < 0 for r in tests),
                               len(tests), math.isclose(mean, top, rel_tol=0, abs_tol=1e-12)))
    return out


# --------------------------------------------------------------------------- charts' data


def bar_data(run: Run, scores: CellScores) -> dict[str, dict[tuple[str, str], Value]]:
    """compression -> (capability or MEAN, curation) -> retention over all its cells (seeds, settings)."""
    out: dict[str, dict[tuple[str, str], Value]] = {}
    for comp in run.compressions:
        chart: dict[tuple[str, str], Value] = {}
        for cur in run.curations:
            cells = [c.cell for c in run.ok_cells if c.compression == comp and c.curation == cur
                     and c.cell in scores.per_cell]
            for col in [*scores.capabilities, MEAN]:
                value = _combine([scores.per_cell[c][col] for c in cells if col in scores.per_cell[c]])
                if value is not None:
                    chart[(col, cur)] = value
        if chart:
            out[comp] = chart
    return out


def sweep_slice(run: Run, key: str) -> tuple[dict[str, str], bool]:
    """Which cells a curve over ``key`` uses: ({other key: fixed value}, pooled).

    A full product of the swept values (sweep: {seq_len: [..], n: [..]}) is pooled over the other
    keys. A union of one-at-a-time sweeps (sweeps: [{seq_len: [..]}, {n: [..]}]) varies one key
    while the others sit at their default; pooling there would mix the other sweep into the
    default's point, so the other keys are held at their most common value (the default).
    """
    settings = {c.settings for c in run.ok_cells}
    keys = run.setting_keys
    if not settings:
        return {}, True
    values = {k: _unique(dict(s)[k] for s in settings) for k in keys}
    if len(settings) == math.prod(len(v) for v in values.values()):
        return {}, True
    fixed = {}
    for other in keys:
        if other != key:
            counts = [dict(c.settings)[other] for c in run.ok_cells]
            fixed[other] = max(values[other], key=counts.count)
    return fixed, False


def sweep_data(run: Run, scores: CellScores, key: str, capability: str = MEAN) -> dict[str, dict[str, dict[str, Value]]]:
    """compression -> curation -> swept value -> retention of ``capability`` (default: the mean over
    capabilities), over seeds (see sweep_slice)."""
    fixed, _ = sweep_slice(run, key)
    out: dict[str, dict[str, dict[str, Value]]] = {}
    for comp in run.compressions:
        lines: dict[str, dict[str, Value]] = {}
        for cur in run.curations:
            by_value: dict[str, list[Value]] = {}
            for c in run.ok_cells:
                settings = dict(c.settings)
                if (c.compression == comp and c.curation == cur and capability in scores.per_cell.get(c.cell, {})
                        and all(settings[k] == v for k, v in fixed.items())):
                    by_value.setdefault(settings[key], []).append(scores.per_cell[c.cell][capability])
            if by_value:
                lines[cur] = {v: _combine(vals) for v, vals in by_value.items()}
        if lines:
            out[comp] = lines
    return out


def sweep_values(run: Run, key: str) -> list[str]:
    fixed, _ = sweep_slice(run, key)
    return sorted(_unique(dict(c.settings)[key] for c in run.ok_cells
                          if all(dict(c.settings)[k] == v for k, v in fixed.items())), key=sort_key)


@dataclass(frozen=True)
class Correlation:
    score: str
    points: list[tuple[str, float, float]]  # (cell, score, mean retention)
    rho: float | None
    p_value: float | None
    # Within one compression setting: a compression's overall loss does not mix into the ranking.
    by_compression: dict[str, tuple[float | None, float | None, int]] = field(default_factory=dict)


def spearman(xs: list[float], ys: list[float]) -> tuple[float | None, float | None]:
    """scipy's Spearman rho and p, or (None, None) below 3 points or without spread on an axis."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None, None
    result = spearmanr(xs, ys)
    return float(result.statistic), float(result.pvalue)


def score_correlations(run: Run, scores: CellScores) -> list[Correlation]:
    """Spearman rank correlation of each activation-space score with the cell's mean retention."""
    out = []
    for name in SCORES:
        points = [(c.cell, c.scores[name], scores.per_cell[c.cell][MEAN].mean)
                  for c in run.ok_cells if c.scores.get(name) is not None and c.cell in scores.per_cell]
        if not points:
            continue
        rho, p = spearman([x for _, x, _ in points], [y for _, _, y in points])
        by_comp = {comp: found for comp in run.compressions if (found := rho_within(run, points, comp))[2]}
        out.append(Correlation(name, points, rho, p, by_comp))
    return out


def rho_within(run: Run, points: list[tuple[str, float, float]], compression: str,
               curations: list[str] | None = None) -> tuple[float | None, float | None, int]:
    """Spearman (rho, p, n) of the (cell, score, mean retention) ``points`` of one compression, over the
    cells of ``curations`` only if given."""
    mine = [(x, y) for cell, x, y in points if run.cells[cell].compression == compression
            and (curations is None or run.cells[cell].curation in curations)]
    return (*spearman([x for x, _ in mine], [y for _, y in mine]), len(mine))


@dataclass(frozen=True)
class ActivationMap:
    cell: str
    curation: str
    projection: str
    points: list[tuple[float, float, str, bool]]  # x, y, source, selected


def choose_map_cell(run: Run, cell: str | None) -> str | None:
    """The cell whose activation map to show: ``cell``, or the first with a map (curation "cola" first)."""
    if cell is not None:
        if cell not in run.cells:
            raise ColakitError(f"unknown cell {cell!r}", f"valid cells: {', '.join(run.cells)}")
        if run.map_path(cell) is None:
            with_maps = [c for c in run.cells if run.map_path(c)]
            hint = f"cells with one: {', '.join(with_maps)}" if with_maps else "no cell of this run has one"
            raise ColakitError(f"cell {cell!r} has no cells/{cell}/activation_map.json", hint)
        return cell
    with_maps = [c for c in run.cells if run.map_path(c)]
    cola = [c for c in with_maps if run.cells[c].curation == "cola"]
    return (cola or with_maps or [None])[0]


def load_map(run: Run, cell: str) -> ActivationMap:
    path = run.map_path(cell)
    try:
        data = json.loads(path.read_text())
        points = [(float(p["x"]), float(p["y"]), str(p.get("source", "?")), bool(p.get("selected", False)))
                  for p in data["points"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ColakitError(f"{path} is malformed ({type(err).__name__}: {err})",
                           "rerun the cell with `colakit run`, or pick another with --cell") from None
    points = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
    return ActivationMap(cell, str(data.get("curation", run.cells[cell].curation)), str(data.get("projection", "pca")),
                         points)


@dataclass(frozen=True)
class TaskDetail:
    """One task metric of one table row, over its seeds (both metric kinds are listed)."""

    compression: str
    curation: str
    settings: tuple[tuple[str, str], ...]
    task: str
    capability: str
    metric: str
    metric_kind: str
    dense_value: float | None
    value: float | None
    retention: Value | None
    delta_vs_baseline: float | None
    p_adjusted: list[float]
    marks: str
    flagged: bool


def task_details(run: Run) -> list[TaskDetail]:
    groups: dict[tuple, list[Result]] = {}
    for r in run.results:
        c = run.cells[r.cell]
        groups.setdefault((c.compression, c.curation, c.settings, r.task, r.metric), []).append(r)
    caps = capability_order(r.capability for r in run.results)
    compressions, curations = run.compressions, run.curations
    kind_rank = {"perplexity": 0, "likelihood": 1, "accuracy": 2}

    def order(item):
        (comp, cur, settings, task, _), rows = item
        return (compressions.index(comp), [sort_key(v) for _, v in settings], curations.index(cur),
                caps.index(rows[0].capability), task, kind_rank.get(rows[0].metric_kind, 3))

    out = []
    for (comp, cur, settings, task, metric), rows in sorted(groups.items(), key=order):
        first = rows[0]
        kept = [r for r in rows if r.retention is not None]
        retention = _combine([Value(r.retention, r.retention_stderr, "stderr", 1) for r in kept])
        deltas = [r.delta_vs_baseline for r in rows if r.delta_vs_baseline is not None]
        up = any(r.significant and (r.delta_vs_baseline or 0) > 0 for r in rows)
        down = any(r.significant and (r.delta_vs_baseline or 0) < 0 for r in rows)
        values = [r.value for r in rows if r.value is not None]
        dense = [r.dense_value for r in rows if r.dense_value is not None]
        out.append(TaskDetail(
            comp, cur, settings, task, first.capability, metric, first.metric_kind,
            statistics.fmean(dense) if dense else None, statistics.fmean(values) if values else None, retention,
            statistics.fmean(deltas) if deltas else None, sorted(r.p_adjusted for r in rows if r.p_adjusted is not None),
            ("*" if up else "") + ("†" if down else ""), any(r.flagged for r in rows)))
    return out


@dataclass(frozen=True)
class FractionOfBest:
    """Per compression (and setting): each curation's retention on each task over the best single source's.

    A single source is a curation that draws random windows from one source (``random`` over
    ``c4``, ``math``, ...). 1.0 = as good as the best of them on that task; the issue-24 target is
    >= 0.95 on every task at once (``worst``)."""

    compression: str
    settings: tuple[tuple[str, str], ...]
    tasks: list[str]
    best: dict[str, tuple[str, float]]  # task -> (the single source that kept the most, its mean retention)
    fractions: dict[str, dict[str, float]]  # curation -> task -> fraction of that best
    worst: dict[str, float]  # curation -> its lowest fraction over the tasks
    # With two seeds or more: curation -> (the lowest over the seeds of that seed's own ``worst``, each seed
    # against its own best single source; the seed). The mean over seeds hides a calibration set's worst
    # case when its weakest task moves from seed to seed, and a user calibrates with one set.
    worst_seed: dict[str, tuple[float, str]] = field(default_factory=dict)


def single_source_curations(run: Run) -> list[str]:
    return _unique(c.curation for c in run.ok_cells if c.curation_method == "random" and "," not in c.sources)


def fraction_of_best(run: Run, metric_kind: str = "likelihood") -> list[FractionOfBest]:
    """``FractionOfBest`` blocks, one per compression and setting that has two single sources or more, with
    ``worst_seed`` filled in when the run has two seeds or more."""
    blocks = _fraction_blocks(run, metric_kind)
    seeds = _unique(c.seed for c in run.ok_cells)
    if len(seeds) < 2:
        return blocks
    worst_seed: dict[tuple, dict[str, tuple[float, str]]] = {}
    for seed in seeds:
        for b in _fraction_blocks(seed_slice(run, seed), metric_kind):
            into = worst_seed.setdefault((b.compression, b.settings), {})
            for cur, value in b.worst.items():
                if cur not in into or value < into[cur][0]:
                    into[cur] = (value, seed)
    return [replace(b, worst_seed=worst_seed.get((b.compression, b.settings), {})) for b in blocks]


def _fraction_blocks(run: Run, metric_kind: str) -> list[FractionOfBest]:
    singles = set(single_source_curations(run))
    if len(singles) < 2:
        return []
    metric = {task: r.metric for (_, task), r in select_rows(run, metric_kind).items()}
    details = [t for t in task_details(run) if metric.get(t.task) == t.metric and t.retention is not None
               and not t.flagged]
    out = []
    for block in _unique((t.compression, t.settings) for t in details):
        rows = [t for t in details if (t.compression, t.settings) == block]
        best = {}
        for t in rows:
            if t.curation in singles and (t.task not in best or t.retention.mean > best[t.task][1]):
                best[t.task] = (t.curation, t.retention.mean)
        if len({t.curation for t in rows if t.curation in singles}) < 2:
            continue  # one single source in this block: every fraction would be against itself
        tasks = [task for task in _unique(t.task for t in rows) if task in best and best[task][1] > 0]
        fractions: dict[str, dict[str, float]] = {}
        for t in rows:
            if t.task in tasks:
                fractions.setdefault(t.curation, {})[t.task] = t.retention.mean / best[t.task][1]
        worst = {cur: min(f.values()) for cur, f in fractions.items() if len(f) == len(tasks)}
        out.append(FractionOfBest(block[0], block[1], tasks, {t: best[t] for t in tasks}, fractions, worst))
    return out


@dataclass(frozen=True)
class HeadToHead:
    """One row of head_to_head.csv: a curation against a rival on the headline's mean retention,
    paired over the evaluation's items and pooled over the seeds both finished."""

    compression: str
    settings: str  # the settings point as JSON ("" for none)
    curation: str
    versus: str
    metric_kind: str
    seeds: int
    tasks: int
    mean: float
    versus_mean: float
    delta: float
    ci_low: float
    ci_high: float
    stderr: float
    p_value: float
    p_adjusted: float
    significant: bool

    def line(self) -> str:
        """``gptq-w4: balanced vs cola: +0.004 mean retention (0.937 vs 0.933), 95% CI [...], ...``"""
        where = self.compression + (f" ({self.settings})" if self.settings else "")
        verdict = (("better" if self.delta > 0 else "worse") + ", significant" if self.significant
                   else "within the noise")
        return (f"{where}: {self.curation} vs {self.versus}: {self.delta:+.3f} mean retention ({self.mean:.3f} vs "
                f"{self.versus_mean:.3f}), 95% CI [{self.ci_low:+.3f}, {self.ci_high:+.3f}], Holm-corrected p "
                f"{self.p_adjusted:.3g} ({self.seeds} seed{'s' if self.seeds != 1 else ''} x {self.tasks} tasks): "
                f"{verdict}")


def head_to_head(run: Run, metric_kind: str = "likelihood") -> list[HeadToHead]:
    """The run's head_to_head.csv rows of ``metric_kind`` (none when the config asked for none)."""
    path = RunDir(run.root).head_to_head_csv
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["metric_kind"] == check_metric_kind(metric_kind)]
    ints, floats = ("seeds", "tasks"), ("mean", "versus_mean", "delta", "ci_low", "ci_high", "p_value", "p_adjusted")
    return [HeadToHead(**{k: int(v) if k in ints else float(v) if k in floats else bool(_bool(v))
                          if k == "significant" else v for k, v in r.items()}) for r in rows]


HEAD_TO_HEAD_NOTE = ("the config's head_to_head pairs on the mean retention over capabilities (as in the table "
                     "above), averaged over the seeds both finished; items resampled per task, the same for "
                     "both sets and every seed (paired bootstrap, 2,000 resamples); p Holm-corrected over these rows")


FRACTION_NOTE = ("each task's mean retention over that of the single source (random windows of one source) "
                 "that kept the most on it; 1.0 = as good as the best single source, min = the lowest over the "
                 "tasks (flagged tasks left out); worst seed = the lowest min of any one seed, that seed's "
                 "retentions over its own best single source")


# --------------------------------------------------------------------------- text shared by html and markdown

METRIC_DEFINITION = ("retention = compressed/dense for accuracies, dense/compressed for perplexity and bits per byte "
                     "(1.0 = nothing lost, higher is better)")
SPREAD_NOTE = "± is the standard deviation over seeds; with one seed, the standard error"
def made_with(meta: dict) -> str:
    """What made a run, from its run.json: "colakit 0.1.0 at commit 1a2b3c4 (uncommitted changes), config 9f8e7d6c"."""
    commit = meta.get("git_commit")
    where = f" at commit {commit[:7]}" + (" (uncommitted changes)" if meta.get("git_dirty") else "") if commit else ""
    config = f", config {meta['fingerprint'][:8]}" if meta.get("fingerprint") else ""
    return f"colakit {meta.get('colakit_version', '?')}{where}{config}"


SIGNIFICANCE_NOTE = ("* a task of this capability is significantly better than the baseline curation "
                     "(multiple-comparison corrected p), † significantly worse")
BEST_MARK = "▲"


def worst_seed_text(block: FractionOfBest, curation: str) -> str:
    """``0.905 (s1)``: a curation's lowest per-seed min fraction and its seed; ``–`` when no seed has every task."""
    if curation not in block.worst_seed:
        return "–"
    value, seed = block.worst_seed[curation]
    return f"{fmt(value)} (s{seed})"


def fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def fmt_value(value: Value | None) -> str:
    if value is None:
        return ""
    return f"{value.mean:.3f} ± {value.spread:.3f}" if value.spread is not None else f"{value.mean:.3f}"


def entry_cells(row, columns):
    """``(column, mean text, spread text or "", significance marks, best)`` per column of a headline row;
    the mean text is None where the cell has no entry. Every renderer formats entries through this."""
    for col in columns:
        e = row.entries.get(col)
        if e is None:
            yield col, None, "", "", False
            continue
        yield col, fmt(e.value.mean), fmt(e.value.spread), e.marks, e.best


def spread_text(value: Value) -> str:
    return f"std over {value.n} seeds" if value.spread_kind == "std" else "standard error (one seed)"


def metric_kind_note(metric: str, metric_kind: str) -> str:
    """The metric kind beside a metric's name, unless the name already says it (gold_bpb, perplexity)."""
    label = KIND_LABEL.get(metric_kind, metric_kind)
    return "" if label.replace(" ", "_") == metric or metric_kind == metric else f"({label})"


def settings_label(settings: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings)


def column_label(column: str) -> str:
    return "mean" if column == MEAN else column
