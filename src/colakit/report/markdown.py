"""The report's markdown summary (report.md): header, headline retention table, retention per task,
failures, flags, proxies.

Meant for a terminal, a README or a pull-request comment; the HTML page has the charts.
"""

from __future__ import annotations

from colakit.report import data as d


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def rho_text(rho: float | None, p: float | None, n: int) -> str:
    return f"{rho:.3f} (p {p:.2g}, n {n})" if rho is not None else f"n/a (n {n})"


def headline_markdown(run: d.Run, table: d.Headline) -> str:
    """The headline table as a GitHub-flavoured markdown table."""
    if not table.rows:
        return "_No ok cell has a retention to show._\n"
    head = ["compression", "curation", *table.setting_keys]
    for col in table.columns:
        sub = "over capabilities" if col == d.MEAN else d.kind_label(table.kinds.get(col, []))
        head.append(f"{d.column_label(col)} ({sub})")
    lines = ["| " + " | ".join(map(_escape, head)) + " |",
             "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in table.rows:
        cur = r.curation + (" (baseline)" if r.curation == run.baseline else "")
        cells = [r.compression, cur, *(v for _, v in r.settings)]
        for col in table.columns:
            e = r.entries.get(col)
            if e is None:
                cells.append("–")
                continue
            text = d.fmt_value(e.value) + e.marks
            cells.append(f"**{text}** {d.BEST_MARK}" if e.best else text)
        lines.append("| " + " | ".join(map(_escape, cells)) + " |")
    return "\n".join(lines) + "\n"


def task_markdown(run: d.Run, metric_kind: str = "likelihood") -> str:
    """Retention per task (curations x tasks, per compression and setting): the capability columns
    average tasks whose curations move in opposite directions (code and math perplexity inside LM)."""
    chosen = d.select_rows(run, metric_kind)
    metric = {task: r.metric for (_, task), r in chosen.items()}  # the metric standing for each task
    details = [t for t in d.task_details(run) if metric.get(t.task) == t.metric and t.retention is not None]
    if not details:
        return ""
    tasks = list(dict.fromkeys(t.task for t in details))  # task_details orders by capability, then task
    out = []
    for block in dict.fromkeys((t.compression, t.settings) for t in details):
        rows = [t for t in details if (t.compression, t.settings) == block]
        best = {task: max(t.retention.mean for t in rows if t.task == task) for task in tasks
                if any(t.task == task for t in rows)}
        title = block[0] + (f", {d.settings_label(block[1])}" if block[1] else "")
        out += [f"### {_escape(title)}", "", "| curation | " + " | ".join(
                    f"{_escape(task)} ({_escape(metric[task])}{', flagged' if any(t.flagged for t in rows if t.task == task) else ''})"
                    for task in tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for cur in dict.fromkeys(t.curation for t in rows):
            by_task = {t.task: t for t in rows if t.curation == cur}
            cells = []
            for task in tasks:
                t = by_task.get(task)
                text = "–" if t is None else d.fmt_value(t.retention) + t.marks
                cells.append(f"**{text}**" if t is not None and t.retention.mean == best[task] else text)
            out.append(f"| {_escape(cur + (' (baseline)' if cur == run.baseline else ''))} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def fraction_markdown(run: d.Run, metric_kind: str = "likelihood") -> str:
    """Fraction of the best single source per task, one table per compression (``d.fraction_of_best``)."""
    out = []
    for block in d.fraction_of_best(run, metric_kind):
        title = block.compression + (f", {d.settings_label(block.settings)}" if block.settings else "")
        by_seed = bool(block.worst_seed)
        out += [f"### {_escape(title)}", "",
                "| curation | " + " | ".join(_escape(t) for t in block.tasks) + " | min |" + (" worst seed |" * by_seed),
                "|---|" + "---:|" * (len(block.tasks) + 1 + by_seed),
                "| _best single source_ | " + " | ".join(
                    f"{_escape(block.best[t][0])} {block.best[t][1]:.3f}" for t in block.tasks) + " | |" + (" |" * by_seed)]
        for cur, fractions in block.fractions.items():
            cells = [d.fmt(fractions.get(t)) if t in fractions else "–" for t in block.tasks]
            cells.append(d.fmt(block.worst.get(cur)))
            if by_seed:
                cells.append(d.worst_seed_text(block, cur))
            out.append(f"| {_escape(cur)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def proxy_markdown(run: d.Run, scores: d.CellScores) -> str:
    """Spearman's rho of each proxy score with mean retention, over all cells and per compression."""
    correlations = d.score_correlations(run, scores)
    if not correlations:
        return ""
    comps = [c for c in run.compressions if any(c in corr.by_compression for corr in correlations)]
    out = ["| score | all cells | " + " | ".join(map(_escape, comps)) + " |", "|---|" + "---:|" * (1 + len(comps))]
    for c in correlations:
        cells = [rho_text(c.rho, c.p_value, len(c.points)),
                 *(rho_text(*c.by_compression[k]) if k in c.by_compression else "" for k in comps)]
        out.append(f"| {c.score} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def render_markdown(run: d.Run, metric_kind: str = "likelihood") -> str:
    d.check_metric_kind(metric_kind)
    table = d.headline_table(run, metric_kind)
    scores = d.cell_scores(run, metric_kind)
    ok, failed = len(run.ok_cells), len(run.failed_cells)
    block = "compression method" + (" and setting" if table.setting_keys else "")
    out = [f"# {run.name}: colakit report", "",
           f"model **{run.model}**, baseline **{run.baseline or 'none'}**, {ok} cell(s) ok, {failed} failed; "
           f"capability metric: **{metric_kind}**; run made with {d.made_with(run.meta)}.", "",
           f"{d.METRIC_DEFINITION}.", "",
           headline_markdown(run, table),
           f"Bold {d.BEST_MARK}: best curation in the column within each {block}. {d.SPREAD_NOTE}. "
           f"{d.SIGNIFICANCE_NOTE}. Capability columns name the metric kind of their numbers; flagged numbers are "
           "left out of every average.", ""]
    found = d.verdicts(run, metric_kind)
    if found:
        out += ["## Against the baseline", "", *(f"- {v.line()}" for v in found), ""]
    duels = d.head_to_head(run, metric_kind)
    if duels:
        out += ["## Head to head", "", f"{d.HEAD_TO_HEAD_NOTE[0].upper()}{d.HEAD_TO_HEAD_NOTE[1:]}.", "",
                *(f"- {h.line()}" for h in duels), ""]
    per_task = task_markdown(run, metric_kind)
    if per_task:
        out += ["## Retention per task", "",
                f"Mean over seeds; bold: best in the column; * and † as above, per task. {d.SPREAD_NOTE}.", "",
                per_task]
    fractions = fraction_markdown(run, metric_kind)
    if fractions:
        out += ["## Fraction of the best single source", "", f"{d.FRACTION_NOTE[0].upper()}{d.FRACTION_NOTE[1:]}.",
                "", fractions]
    proxies = proxy_markdown(run, scores)
    if proxies:
        out += ["## Proxy scores vs mean retention (Spearman ρ, p)", "", proxies]
    if run.failed_cells:
        out += ["## Failed cells", ""]
        out += [f"- `{c.cell}`: {c.error or '(no message)'}".replace("\n", " ") for c in run.failed_cells]
        out.append("")
    flagged = d.flagged_tasks(run)
    if flagged:
        out += ["## Flagged tasks", ""]
        out += [f"- {f.task} ({f.capability}): {f.reason}" for f in flagged]
        out.append("")
    return "\n".join(out)
