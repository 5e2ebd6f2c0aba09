"""``colakit report``: one self-contained HTML page and a markdown summary of a ``colakit run`` directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from colakit.cli.app import app, console, escape, json_option, print_json
from colakit.cli.app import out as stdout  # results; "out" is the --out option here
from colakit.paths import check_output, head


def _rich_table(report) -> Table:
    from colakit.report import data as d

    headline, run = report.headline, report.run
    table = Table(title=f"{escape(run.name)}: retention vs dense ({headline.metric_kind} metrics; 1.0 = nothing lost, "
                        f"higher is better; bold {d.BEST_MARK}: best in block)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("compression", no_wrap=True)
    table.add_column("curation", no_wrap=True)
    for key in headline.setting_keys:
        table.add_column(escape(key), justify="right", no_wrap=True)
    for col in headline.columns:
        sub = "all" if col == d.MEAN else "+".join(_SHORT.get(k, k) for k in headline.kinds.get(col, []))
        table.add_column(f"{escape(d.column_label(col))}\n[dim]{escape(sub)}[/]", justify="right", no_wrap=True)
    last = None
    for r in headline.rows:
        if last is not None and r.compression != last:
            table.add_section()
        cells = ["" if r.compression == last else escape(r.compression),
                 escape(r.curation) + (" [dim](base)[/]" if r.curation == run.baseline else ""),
                 *(escape(v) for _, v in r.settings)]
        last = r.compression
        for _, mean, spread, marks, best in d.entry_cells(r, headline.columns):
            if mean is None:
                cells.append("–")
                continue
            text = mean + (f"[dim]±{spread}[/]" if spread else "") + marks
            cells.append(f"[bold]{text}{d.BEST_MARK}[/]" if best else text)
        table.add_row(*cells)
    return table


_SHORT = {"likelihood": "bpb", "perplexity": "ppl", "accuracy": "acc"}


@app.command("report")
def report_command(
    rundir: Path = typer.Argument(..., help="Run directory written by `colakit run CONFIG --out RUNDIR`."),
    out: Path = typer.Option(None, "--out", help="HTML file to write (default RUNDIR/report.html); the markdown "
                                                 "summary goes beside it with suffix .md."),
    cell: str = typer.Option(None, "--cell", help="Cell whose activation-space map to show (default: the first "
                                                  "with one, curation cola preferred)."),
    metric_kind: str = typer.Option("likelihood", "--metric-kind",
                                    help="Capability metric: likelihood (gold bits per byte + perplexity, low "
                                         "variance) or accuracy (accuracies + perplexity)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out (and its .md) even if colakit did "
                                                              "not write them."),
    as_json: bool = json_option(),
):
    """Write a self-contained HTML report (tables, charts, activation map) and a markdown summary of RUNDIR."""
    from colakit.report import write_report
    from colakit.report.data import head_to_head, verdicts

    if out is not None or rundir.is_dir():  # a missing RUNDIR is the library's to name
        html = out if out is not None else rundir / "report.html"
        for path in (html, html.with_suffix(".md")):
            check_output(path, overwrite=overwrite, what="a colakit report", example="report.html",
                         ours=lambda p: "colakit report" in head(p))
    report = write_report(rundir, out, cell=cell, metric_kind=metric_kind)
    failed = len(report.run.failed_cells)
    console.print(f"{len(report.run.ok_cells)} cell(s) ok, {failed} failed; summary: {escape(report.markdown)}")
    if as_json:
        print_json({"html": str(report.html), "markdown": str(report.markdown), "ok_cells": len(report.run.ok_cells),
                    "failed_cells": [c.cell for c in report.run.failed_cells],
                    "headline": dataclasses.asdict(report.headline),
                    "verdicts": [{**dataclasses.asdict(v), "delta": v.delta, "line": v.line()}
                                 for v in verdicts(report.run, metric_kind)],
                    "head_to_head": [{**dataclasses.asdict(h), "line": h.line()}
                                     for h in head_to_head(report.run, metric_kind)]})
        return
    # A table this wide is unreadable folded to 80 columns (the width rich assumes off a terminal).
    Console(width=max(stdout.width, 130)).print(_rich_table(report))
    for verdict in verdicts(report.run, metric_kind):  # the one line per set that says which is better
        print(verdict.line())
    for duel in head_to_head(report.run, metric_kind):
        print(duel.line())
    print(report.html)
