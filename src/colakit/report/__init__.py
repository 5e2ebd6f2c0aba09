"""``colakit report``: turn a run directory (``colakit run``) into one self-contained HTML page and a
markdown summary.

The run directory contract:

- ``run.json``: name, model, created, colakit_version, baseline (curation label or null),
  sweeps ({param: [values]}), config;
- ``results.csv``: one row per cell x task x metric (columns in ``colakit.grid.rundir.RESULT_COLUMNS``;
  ``OPTIONAL_COLUMNS`` may be missing in older runs; a failed cell is one row with status "failed",
  its error and no task);
- ``head_to_head.csv`` (when the config has ``head_to_head``): one row per compression, settings
  point, curation, rival and metric kind (``colakit.grid.rundir.HEAD_TO_HEAD_COLUMNS``);
- ``cells/<cell>/activation_map.json`` (some cells): the candidate pool projected to 2-D, with
  the source and whether it was selected for each point.

``write_report`` writes ``OUT`` (HTML: inline CSS and SVG, no script, no external URL) and the
markdown summary beside it (``OUT`` with suffix ``.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from colakit.cache import atomic_path
from colakit.errors import ColakitError
from colakit.report.data import Headline, Run, headline_table, load_run
from colakit.report.html import render_html
from colakit.report.markdown import headline_markdown, render_markdown

__all__ = ["Headline", "Report", "Run", "headline_markdown", "headline_table", "load_run", "render_html",
           "render_markdown", "write_report"]


@dataclass(frozen=True)
class Report:
    html: Path
    markdown: Path
    run: Run
    headline: Headline


def _write_text(path: Path, text: str) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as err:
        raise ColakitError(f"cannot write {path} ({err.strerror or err})",
                           "choose a writable --out path, e.g. --out ./report.html") from None


def write_report(rundir: Path | str, out: Path | str | None = None, cell: str | None = None,
                 metric_kind: str = "likelihood") -> Report:
    """Render RUNDIR into ``out`` (default RUNDIR/report.html) and the markdown summary beside it."""
    run = load_run(rundir)
    out = Path(out) if out is not None else run.root / "report.html"
    if out.is_dir():
        raise ColakitError(f"--out {out} is a directory", f"name a file, e.g. --out {out / 'report.html'}")
    md_path = out.with_suffix(".md")
    if md_path == out:
        raise ColakitError(f"--out {out} ends in .md, where the markdown summary goes", "use --out NAME.html")
    # Render everything before writing anything, so a bad --cell leaves no half-written report.
    page = render_html(run, metric_kind, cell)
    summary = render_markdown(run, metric_kind)
    _write_text(out, page)
    _write_text(md_path, summary)
    return Report(out, md_path, run, headline_table(run, metric_kind))
