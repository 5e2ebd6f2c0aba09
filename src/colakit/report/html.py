"""Render a run as one self-contained HTML page: inline CSS, inline SVG, no script, no external URL.

The page opens offline and from an e-mail attachment alike; every chart is drawn in Python
(``colakit.report.svg``), so what the test suite checks is exactly what a reader sees.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from colakit import __version__
from colakit.report import data as d
from colakit.report.svg import Mark, Point, bar_chart, colors_for, esc, line_chart, scatter

MAX_MAP_POINTS = 4000  # unselected pool points drawn; more would make the file heavy and the plot a blot

CSS = """
:root { --fg:#1d2430; --muted:#5b6472; --line:#dde2ea; --bg:#ffffff; --panel:#f6f8fb; --accent:#0072B2; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 19px; margin: 40px 0 8px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; color: var(--muted); font-weight: 600; }
p { margin: 6px 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 13px; }
.subtitle { color: var(--muted); margin-bottom: 14px; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0; }
.chip { background: var(--panel); border: 1px solid var(--line); border-radius: 999px; padding: 3px 12px; font-size: 13px; }
.chip b { font-weight: 600; }
.chip.bad { background: #fdf0ea; border-color: #f0c8b4; }
.definition { background: var(--panel); border-left: 4px solid var(--accent); padding: 8px 14px; border-radius: 4px; }
nav { font-size: 13px; margin: 14px 0 0; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
nav a:hover { text-decoration: underline; }
.note { color: var(--muted); font-size: 13px; }
.legend-text { color: var(--muted); font-size: 13px; margin-top: 8px; }
.legend-text span { margin-right: 18px; display: inline-block; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 14px; margin: 8px 0; }
th, td { padding: 5px 10px; text-align: left; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; background: var(--panel); position: sticky; top: 0; }
th small { display: block; font-weight: 400; color: var(--muted); font-size: 11.5px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .pm { color: var(--muted); font-size: 12.5px; }
td.best { font-weight: 700; }
td.best .pm { font-weight: 400; }
.marker { color: var(--accent); font-size: 11px; margin-left: 3px; }
.sig { color: #D55E00; font-weight: 700; margin-left: 2px; }
tr.group td { background: #eef2f7; font-weight: 600; border-top: 2px solid #c9d2de; }
tr.block-start td { border-top: 1px solid #b9c2cf; }
tr.baseline td:first-child::after { content: " baseline"; color: var(--muted); font-weight: 400; font-size: 11.5px; }
.charts { display: flex; flex-wrap: wrap; gap: 18px 28px; align-items: flex-start; }
figure { margin: 0; }
figcaption { font-size: 13px; color: var(--muted); margin: 2px 0 6px; max-width: 760px; }
figcaption b { color: var(--fg); }
svg.chart { max-width: 100%; height: auto; background: #ffffff; }
svg.chart text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; font-size: 12px;
  fill: #333a45; }
svg.chart text.axis-label { fill: #5b6472; }
svg.chart text.caption { font-size: 12.5px; fill: #1d2430; font-weight: 600; }
svg.chart tspan.sub { font-size: 11px; fill: #5b6472; }
svg.chart rect.bar:hover, svg.chart circle.point:hover { stroke: #111111; stroke-width: 1.5; }
.error { white-space: pre-wrap; color: #8a2d0a; }
details { margin: 8px 0; border: 1px solid var(--line); border-radius: 6px; padding: 4px 12px; }
details[open] { padding-bottom: 10px; }
summary { cursor: pointer; font-weight: 600; padding: 4px 0; }
ul.flagged li { margin: 3px 0; }
table.detail { font-size: 13px; }
table.detail td { padding: 3px 8px; white-space: nowrap; }
footer { margin-top: 48px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
@media print { nav { display: none; } details { border: none; } }
"""


def _num(text) -> str:
    return f'<td class="num">{esc(text)}</td>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def _figure(svg: str, caption: str = "") -> str:
    """A chart with its caption, no wider than the chart (so small charts sit side by side)."""
    width = re.search(r'width="(\d+)"', svg).group(1)
    caption = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure style="max-width:{width}px">{caption}{svg}</figure>'


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _table(head: Iterable[str], rows: Iterable[str], cls: str = "") -> str:
    return (f'<div class="table-wrap"><table class="{cls}"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


# --------------------------------------------------------------------------- sections


def _header(run: d.Run, metric_kind: str) -> str:
    ok, failed = len(run.ok_cells), len(run.failed_cells)
    chips = [("model", run.model), ("baseline", run.baseline or "none"), ("cells ok", str(ok)),
             ("cells failed", str(failed)), ("capability metric", metric_kind)]
    if run.meta.get("created"):
        chips.append(("created", str(run.meta["created"])))
    chip_html = "".join(f'<span class="chip{" bad" if k == "cells failed" and failed else ""}"><b>{esc(k)}</b> '
                        f'{esc(v)}</span>' for k, v in chips)
    sweeps = run.meta.get("sweeps") or {}
    swept = "; ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in sweeps.items()) if sweeps else "none"
    return (f"<header><h1>{esc(run.name)}</h1>"
            f'<div class="subtitle">colakit run report: {len(run.compressions)} compression setting(s) x '
            f"{len(run.curations)} curation method(s); sweeps: {esc(swept)}</div>"
            f'<div class="chips">{chip_html}</div>'
            f'<p class="definition">{esc(d.METRIC_DEFINITION)}.</p></header>')


def _nav(sections: list[tuple[str, str]]) -> str:
    return "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in sections) + "</nav>"


def _headline(run: d.Run, table: d.Headline) -> str:
    if not table.rows:
        return _note("No ok cell has a retention to show.")
    head = ['<th>curation</th>', *(f"<th>{esc(k)}</th>" for k in table.setting_keys)]
    for col in table.columns:
        sub = "over capabilities" if col == d.MEAN else d.kind_label(table.kinds.get(col, []))
        head.append(f'<th class="num">{esc(d.column_label(col))}<small>{esc(sub)}</small></th>')
    rows, width = [], 1 + len(table.setting_keys) + len(table.columns)
    comp_methods = {c.compression: c.compression_method for c in run.cells.values()}
    last_comp = last_settings = None
    for r in table.rows:
        if r.compression != last_comp:
            method = comp_methods.get(r.compression)
            label = r.compression + (f" ({method})" if method and method != r.compression else "")
            rows.append(f'<tr class="group"><td colspan="{width}">{esc(label)}</td></tr>')
            last_settings = None
        classes = []
        if r.settings != last_settings and last_settings is not None:
            classes.append("block-start")
        if r.curation == run.baseline:
            classes.append("baseline")
        last_comp, last_settings = r.compression, r.settings
        cells = [f"<td>{esc(r.curation)}</td>", *(f'<td class="num">{esc(v)}</td>' for _, v in r.settings)]
        for col, mean, spread, marks, best in d.entry_cells(r, table.columns):
            if mean is None:
                cells.append('<td class="num">–</td>')
                continue
            v = r.entries[col].value
            pm = f'<span class="pm"> ± {spread}</span>' if spread else ""
            sig = f'<span class="sig">{esc(marks)}</span>' if marks else ""
            star = f'<span class="marker" title="best in this block">{d.BEST_MARK}</span>' if best else ""
            tip = f"{r.curation}, {d.column_label(col)}: {d.fmt_value(v)} ({d.spread_text(v)}; cells: {', '.join(r.cells)})"
            cells.append(f'<td class="num{" best" if best else ""}" title="{esc(tip)}">{mean}{pm}{sig}{star}</td>')
        rows.append(f'<tr class="{" ".join(classes)}">{"".join(cells)}</tr>')
    block = "each compression method" + (" and setting" if table.setting_keys else "")
    legend = (f'<div class="legend-text"><span><b>{d.BEST_MARK}</b> bold: best curation in the column within {block}'
              f"</span><span>{esc(d.SPREAD_NOTE)}</span><span>{esc(d.SIGNIFICANCE_NOTE)}</span>"
              f"<span>column subtitles name the metric kind of each number ({esc(_kind_sentence(table.metric_kind))})"
              "</span></div>")
    return _table(head, rows) + legend


def _kind_sentence(metric_kind: str) -> str:
    if metric_kind == "likelihood":
        return ("gold bpb: bits per byte of the gold answer, for multiple-choice and generation tasks; perplexity for "
                "language-modelling tasks; `--metric-kind accuracy` uses accuracies instead")
    return "accuracy for multiple-choice and generation tasks; perplexity for language-modelling tasks"


def _bars(run: d.Run, scores: d.CellScores, colors: dict[str, str]) -> str:
    charts = d.bar_data(run, scores)
    if not charts:
        return _note("No retention to chart.")
    groups = [*scores.capabilities, d.MEAN]
    labels = {c: f"{c}\n{d.kind_label(scores.kinds[c])}" for c in scores.capabilities}
    labels[d.MEAN] = "mean\nover capabilities"
    pooled = (f" pooled over {', '.join(run.setting_keys)};" if run.setting_keys else "")
    out = []
    for comp, chart in charts.items():
        marks = {}
        for (col, cur), v in chart.items():
            spread = f"std over {v.n} cells" if v.spread_kind == "std" else "standard error"
            marks[(col, cur)] = Mark(v.mean, v.spread,
                                     f"{comp} · {cur} · {d.column_label(col)}: {d.fmt_value(v)} ({spread})")
        title = f"Retention per capability, {comp}"
        svg = bar_chart(title, groups, run.curations, colors, marks, group_labels=labels)
        out.append(_figure(svg, f"<b>{esc(comp)}</b>: mean retention per capability;{esc(pooled)} error bars: "
                                f"std over cells (seeds{', settings' if run.setting_keys else ''}), or the standard "
                                "error for one cell; dashed line: 1.0 (dense)."))
    kinds = "; ".join(f"{c}: {d.kind_label(scores.kinds[c])}" for c in scores.capabilities)
    return f'<p class="note">Metric kinds: {esc(kinds)}.</p><div class="charts">{"".join(out)}</div>'


def _activation_map(run: d.Run, cell: str | None) -> str:
    if cell is None:
        return _note("No cell of this run has an activation map (cells/<cell>/activation_map.json); section omitted.")
    amap = d.load_map(run, cell)
    if not amap.points:
        return _note(f"The activation map of cell {cell} has no points; section omitted.")
    sources = list(dict.fromkeys(p[2] for p in amap.points))
    colors = colors_for(sources)
    selected = [p for p in amap.points if p[3]]
    pool = [p for p in amap.points if not p[3]]
    shown = pool
    if len(pool) > MAX_MAP_POINTS:
        # Seeded subsample so the same run gives the same page.
        idx = sorted(random.Random(0).sample(range(len(pool)), MAX_MAP_POINTS))
        shown = [pool[i] for i in idx]
    points = [Point(x, y, colors[s], f"{s}{' (selected)' if sel else ''}", sel) for x, y, s, sel in [*shown, *selected]]
    legend = [(s, colors[s], "circle") for s in sources] + [("selected for calibration", "#111111", "ring")]
    c = run.cells[cell]
    caption = f"{cell}: {len(selected)} selected of {len(amap.points)} candidates"
    svg = scatter(f"Activation-space map of {cell}", points, f"{amap.projection.upper()} 1", f"{amap.projection.upper()} 2",
                  legend, width=760, height=560, radius=2.6, caption=caption)
    others = [x for x in run.cells if run.map_path(x) and x != cell]
    note = (f" {len(pool) - len(shown)} of the {len(pool)} unselected candidates omitted from the drawing."
            if shown is not pool else "")
    more = f" Other cells with a map: {', '.join(others)} (choose with <code>--cell</code>)." if others else ""
    return _figure(svg, f"The candidate pool of cell <b>{esc(cell)}</b> (curation {esc(c.curation)}, "
                        f"{esc(c.compression)}) in activation space, projected to 2-D by "
                        f"{esc(amap.projection.upper())}, coloured by source; the samples chosen for calibration "
                        f"are larger and ringed.{esc(note)}{more}")


def _sweeps(run: d.Run, scores: d.CellScores, colors: dict[str, str]) -> str:
    sweeps = run.meta.get("sweeps") or {}
    notes = []
    for k, v in sweeps.items():
        if k not in run.setting_keys:
            count = len(v) if isinstance(v, list) else 1
            notes.append(f"{k}: {count} value(s){' (not a results.csv column)' if count >= 2 else ''}; not plotted.")
    if not run.setting_keys:
        return _note(" ".join(["No parameter was swept over two values or more; section omitted.", *notes]))
    out = []
    for key in run.setting_keys:
        xs = d.sweep_values(run, key)
        fixed, _ = d.sweep_slice(run, key)
        others = [k for k in run.setting_keys if k != key]
        pooled = (f"{d.settings_label(tuple(fixed.items()))}, over seeds" if fixed
                  else f"pooled over {', '.join(others)} and seeds" if others else "over seeds")
        # the mean first, then each capability: a sweep can help one capability and cost another
        for capability in [d.MEAN, *scores.capabilities]:
            what = "mean retention over capabilities" if capability == d.MEAN else f"{capability} retention"
            for comp, lines in d.sweep_data(run, scores, key, capability).items():
                marks = {cur: {x: Mark(v.mean, v.spread, f"{comp} · {cur} · {key}={x} · {capability}: "
                                                         f"{d.fmt_value(v)} ({v.n} cell(s))")
                               for x, v in by_x.items()} for cur, by_x in lines.items()}
                title = f"{what[0].upper()}{what[1:]} vs {key}, {comp}"
                svg = line_chart(title, xs, run.curations, colors, marks, key)
                out.append(_figure(svg, f"<b>{esc(key)}</b>, {esc(comp)}: {esc(what)}, {esc(pooled)}; "
                                        "error bars: std over cells."))
    return f'<div class="charts">{"".join(out)}</div>' + "".join(_note(n) for n in notes)


def _rho(rho: float | None, p: float | None, n: int) -> str:
    return f"ρ = {rho:.3f} (p = {p:.3g}, n = {n})" if rho is not None else f"ρ n/a (n = {n})"


def _proxy(run: d.Run, scores: d.CellScores) -> str:
    correlations = d.score_correlations(run, scores)
    if not correlations:
        return _note("No cell has activation-space scores (proxy, representativeness, diversity); section omitted.")
    comp_colors = colors_for(run.compressions)
    legend = [(c, comp_colors[c], "circle") for c in run.compressions]
    figures, rows = [], []
    comps = [c for c in run.compressions if any(c in corr.by_compression for corr in correlations)]
    for corr in correlations:
        pts = [Point(x, y, comp_colors[run.cells[cell].compression],
                     f"{cell}: {corr.score} {x:.3f}, mean retention {y:.3f}") for cell, x, y in corr.points]
        stat = f"Spearman {_rho(corr.rho, corr.p_value, len(corr.points))}"
        figures.append(_figure(scatter(f"{corr.score} vs mean retention", pts, corr.score, "mean retention", legend,
                                       width=340, ref=None, caption=stat)))
        per_comp = "".join(f'<td class="num">{esc(_rho(*corr.by_compression[c]))}</td>' if c in corr.by_compression
                           else "<td></td>" for c in comps)
        rows.append(f'<tr><td>{esc(corr.score)}</td><td class="num">{esc(_rho(corr.rho, corr.p_value, len(corr.points)))}'
                    f"</td>{per_comp}</tr>")
    table = _table(["<th>score</th>", '<th class="num">all cells</th>',
                    *(f'<th class="num">{esc(c)}</th>' for c in comps)], rows)
    return (f"<p>Does the activation-space score of a calibration set (computed before compressing) predict what "
            f"the compressed model keeps? Each point is a cell; y is its retention averaged over capabilities "
            f"({esc(scores.metric_kind)} metrics). Spearman rank correlation over all cells, and within each "
            f"compression setting (where a setting's overall loss cannot drive the ranking).</p>{table}"
            f'<div class="charts">{"".join(figures)}</div>')


def _failed(run: d.Run) -> str:
    failed = run.failed_cells
    if not failed:
        return _note("Every cell finished.")
    rows = [f"<tr><td class=\"mono\">{esc(c.cell)}</td><td>{esc(c.curation)}</td><td>{esc(c.compression)}</td>"
            f"<td>{esc(c.seed)}</td><td>{esc(d.settings_label(c.settings))}</td>"
            f"<td class=\"error mono\">{esc(c.error or '(no message)')}</td></tr>" for c in failed]
    return _table(["<th>cell</th>", "<th>curation</th>", "<th>compression</th>", "<th>seed</th>", "<th>settings</th>",
                   "<th>error</th>"], rows)


def _flagged(run: d.Run) -> str:
    flagged = d.flagged_tasks(run)
    if not flagged:
        return _note("No task was flagged: the dense model is above chance level on every task.")
    items = "".join(f"<li><b>{esc(f.task)}</b> ({esc(f.capability)}): {esc(f.reason)}.</li>" for f in flagged)
    return f'<ul class="flagged">{items}</ul>'


def _sig4(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _task_details(run: d.Run) -> str:
    details = d.task_details(run)
    if not details:
        return _note("No task results.")
    keys = run.setting_keys
    out = []
    for comp in run.compressions:
        rows = []
        for t in (t for t in details if t.compression == comp):
            p = t.p_adjusted
            p_text = "" if not p else (f"{p[0]:.3g}" if f"{p[0]:.3g}" == f"{p[-1]:.3g}" else f"{p[0]:.3g}–{p[-1]:.3g}")
            flag = " (flagged)" if t.flagged else ""
            rows.append(
                f"<tr><td>{esc(t.curation)}</td>{''.join(_num(v) for _, v in t.settings)}"
                f"<td>{esc(t.task)}{esc(flag)}</td><td>{esc(t.capability)}</td>"
                f"<td>{esc(t.metric)} <span class=\"note\">{esc(d.metric_kind_note(t.metric, t.metric_kind))}</span></td>"
                f"<td class=\"num\">{_sig4(t.dense_value)}</td><td class=\"num\">{_sig4(t.value)}</td>"
                f"<td class=\"num\">{esc(d.fmt_value(t.retention))}</td>"
                f"<td class=\"num\">{'' if t.delta_vs_baseline is None else f'{t.delta_vs_baseline:+.3f}'}</td>"
                f"<td class=\"num\">{esc(p_text)}</td><td><span class=\"sig\">{esc(t.marks)}</span></td></tr>")
        if not rows:
            continue
        head = ["<th>curation</th>", *(f"<th>{esc(k)}</th>" for k in keys), "<th>task</th>", "<th>capability</th>",
                "<th>metric</th>", '<th class="num">dense</th>', '<th class="num">compressed</th>',
                '<th class="num">retention</th>', '<th class="num">Δ vs baseline</th>',
                '<th class="num">p adj.</th>', "<th></th>"]
        out.append(f"<details><summary>{esc(comp)}: every task and metric ({len(rows)} rows)</summary>"
                   f"{_table(head, rows, 'detail')}</details>")
    return ("<p class=\"note\">Both metric kinds of every task, mean over seeds (retention ± std over seeds, or the "
            "standard error for one seed; p adj.: the range over seeds).</p>" + "".join(out))


def _head_to_head(run: d.Run, metric_kind: str) -> str:
    duels = d.head_to_head(run, metric_kind)
    if not duels:
        return _note("None asked for: a config's head_to_head: {CURATION: [RIVAL, ...]} adds them.")
    head = ["<th>compression</th>", "<th>curation</th>", "<th>versus</th>",
            *(f'<th class="num">{h}</th>' for h in ("mean", "rival's", "delta", "95% CI", "p (Holm)", "seeds"))]
    rows = [f"<tr><td>{esc(h.compression + (' ' + h.settings if h.settings else ''))}</td><td>{esc(h.curation)}</td>"
            f"<td>{esc(h.versus)}</td>" + _num(d.fmt(h.mean)) + _num(d.fmt(h.versus_mean)) + _num(f"{h.delta:+.3f}")
            + _num(f"[{h.ci_low:+.3f}, {h.ci_high:+.3f}]")
            + _num(f"{h.p_adjusted:.3g}" + (" *" if h.significant else "")) + _num(str(h.seeds)) + "</tr>"
            for h in duels]
    note = f"{d.HEAD_TO_HEAD_NOTE[0].upper()}{d.HEAD_TO_HEAD_NOTE[1:]}; * significant at 0.05."
    return _note(note) + _table(head, rows)


def _fractions(run: d.Run, metric_kind: str) -> str:
    blocks = d.fraction_of_best(run, metric_kind)
    if not blocks:
        return _note("Needs two single-source calibration sets or more (random windows of one source each).")
    out = [_note(f"{d.FRACTION_NOTE[0].upper()}{d.FRACTION_NOTE[1:]}.")]
    for b in blocks:
        title = b.compression + (f", {d.settings_label(b.settings)}" if b.settings else "")
        by_seed = bool(b.worst_seed)
        head = ["<th>curation</th>", *(f'<th class="num">{esc(t)}</th>' for t in b.tasks), '<th class="num">min</th>',
                *(['<th class="num">worst seed</th>'] if by_seed else [])]
        rows = ["<tr><td><i>best single source</i></td>"
                + "".join(_num(f"{b.best[t][0]} {b.best[t][1]:.3f}") for t in b.tasks) + "<td></td>" * (1 + by_seed)
                + "</tr>"]
        rows += [f"<tr><td>{esc(cur)}</td>" + "".join(_num(d.fmt(f.get(t))) for t in b.tasks)
                 + _num(d.fmt(b.worst.get(cur))) + (_num(d.worst_seed_text(b, cur)) if by_seed else "") + "</tr>"
                 for cur, f in b.fractions.items()]
        out.append(f"<h3>{esc(title)}</h3>{_table(head, rows)}")
    return "".join(out)


# --------------------------------------------------------------------------- page


def render_html(run: d.Run, metric_kind: str = "likelihood", cell: str | None = None) -> str:
    """The whole report page as a string."""
    d.check_metric_kind(metric_kind)
    map_cell = d.choose_map_cell(run, cell)
    scores = d.cell_scores(run, metric_kind)
    table = d.headline_table(run, metric_kind)
    colors = colors_for(run.curations, run.baseline)
    sections = [
        ("retention", "Retention per capability", _headline(run, table)),
        ("charts", "Retention by curation method", _bars(run, scores, colors)),
        ("activation-map", "Activation-space map", _activation_map(run, map_cell)),
        ("sweeps", "Sweeps", _sweeps(run, scores, colors)),
        ("head-to-head", "Head to head", _head_to_head(run, metric_kind)),
        ("fractions", "Fraction of the best single source", _fractions(run, metric_kind)),
        ("proxy", "Proxy scores vs measured retention", _proxy(run, scores)),
        ("failed", f"Failed cells ({len(run.failed_cells)})", _failed(run)),
        ("flagged", "Flagged tasks", _flagged(run)),
        ("tasks", "Per-task results", _task_details(run)),
    ]
    body = "".join(_section(a, t, b) for a, t, b in sections)
    footer = (f"<footer>colakit {esc(__version__)} · <code>colakit report {esc(run.root)}</code> · run created "
              f"{esc(run.meta.get('created', '?'))} with {esc(d.made_with(run.meta))}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(run.name)}: colakit report</title><style>{CSS}</style></head><body><main>"
            f"{_header(run, metric_kind)}{_nav([(a, t) for a, t, _ in sections])}{body}{footer}</main></body></html>\n")
