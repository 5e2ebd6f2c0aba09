"""``colakit run``: a grid of curation x compression x settings x seeds, from one YAML config."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer
from rich.table import Table

from colakit.cli.app import app, console, escape, json_option, print_json
from colakit.cli.app import out as stdout  # results; "out" is the --out option here
from colakit.errors import ColakitError
from colakit.executors import EXECUTORS, get_executor
from colakit.paths import check_output
from colakit.progress import StageProgress

_COUNTED = {"features": "feature rows", "block": "compress block"}  # stages that count as they go


class _GridProgress:
    """The runner's (stage, cell, done, total) events on one display: cells done of the grid (the ETA),
    the current cell and its stage as the note."""

    def __init__(self, bar: StageProgress, n_tasks: int):
        self.bar, self.n_tasks, self.tasks_done = bar, n_tasks, 0

    def __call__(self, stage, cell, done, total):
        if stage == "grid":
            self.bar.update(completed=done, total=total, note=f"{cell} done" if cell else None)
            return
        if stage == "task":  # done: the task's name
            self.tasks_done += 1
            note = f"evaluated {self.tasks_done}/{self.n_tasks} ({done})"
        elif stage in _COUNTED:
            note = f"{_COUNTED[stage]} {done}/{total}"
        else:
            if stage == "evaluate":
                self.tasks_done = 0
            note = stage
        self.bar.update(note=f"{cell}: {note}")


@app.command("run")
def run_command(
    config: Path = typer.Argument(..., help="Grid config (YAML), e.g. configs/general.yaml."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; an existing one is resumed (finished cells kept)."),
    seeds: str = typer.Option(None, "--seeds", help="Run only these seeds, e.g. 0,1 (seeds the config lacks are "
                              "added; the table keeps every finished cell)."),
    cells: list[str] = typer.Option(None, "--cells", help="Run only cells whose id matches (shell pattern, "
                                    "repeatable), e.g. --cells 'cola__*'. The table keeps every finished cell."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cells and exit."),
    executor: str = typer.Option("local", "--executor", help=f"Where the cells run: {' or '.join(EXECUTORS)} "
                                 "(ray: in parallel on Ray workers; pip install 'colakit\\[ray]'). Same results.csv "
                                 "either way."),
    address: str = typer.Option(None, "--address", help="Ray cluster to join (e.g. auto, ray://head:10001); default: "
                                "start a local Ray. On a cluster, --out must be on a file system every node mounts."),
    workers: int = typer.Option(2, "--workers", help="Ray workers: cells run in parallel."),
    cpus_per_cell: float = typer.Option(None, "--cpus-per-cell", help="CPUs per Ray worker (default: this machine's "
                                        "cores shared among --workers on a local Ray, 1 on a cluster)."),
    gpus_per_cell: float = typer.Option(0, "--gpus-per-cell", help="GPUs per Ray worker (e.g. 1, or 0.5 to "
                                        "share one)."),
    as_json: bool = json_option(),
):
    """Curate, compress and evaluate every cell of a grid; write RUNDIR/results.csv (then `colakit report`)."""
    # the library (torch, transformers) loads when a command runs, so `colakit --help` stays quick
    from colakit.evaluate.suites import resolve_tasks
    from colakit.grid import GridRunner, load_grid
    from colakit.grid.runner import select_cells

    grid = load_grid(config)
    if not dry_run:
        check_output(out, directory=True, resume=True)  # an existing run directory is resumed
    only_seeds = None
    if seeds:
        try:
            only_seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ColakitError(f"--seeds {seeds!r} is not a list of integers", "write e.g. --seeds 0,1,2") from None
        grid.seeds += [s for s in only_seeds if s not in grid.seeds]
    chosen = select_cells(grid.cells(), cells, only_seeds)
    if dry_run:
        rows = [{"cell": c.id, "curation": c.curation, "compression": c.compression, "settings": c.settings,
                 "seed": c.seed} for c in chosen]
        if as_json:
            print_json({"cells": rows, "evaluation": grid.evaluate["tasks"]})
            return
        table = Table("cell", "curation", "compression", "settings", "seed")
        for r in rows:
            table.add_row(*(escape(r[k]) for k in ("cell", "curation", "compression")),
                          escape(json.dumps(r["settings"])), str(r["seed"]))
        stdout.print(table)
        stdout.print(f"{len(chosen)} cells; evaluation: {escape(grid.evaluate['tasks'])}")
        return
    if cpus_per_cell is None:
        cpus_per_cell = 1 if address else max(1, (os.cpu_count() or 1) // max(1, workers))
    runner = get_executor(executor, address=address, workers=workers, cpus_per_worker=cpus_per_cell,
                          gpus_per_worker=gpus_per_cell)
    n_tasks = len(resolve_tasks(grid.evaluate["tasks"], grid.evaluate.get("limit")))
    t0 = time.time()
    with StageProgress("grid", unit="cells", console=console, note="dense model") as bar:
        records = GridRunner(grid, out, _GridProgress(bar, n_tasks), only=cells, seeds=only_seeds,
                             executor=runner).run()
    failed = [r for r in records if r["status"] == "failed"]
    elsewhere = sum(r["status"] == "elsewhere" for r in records)
    console.print(f"{sum(r['status'] == 'ok' for r in records)} cells ok, {len(failed)} failed"
                  + (f", {elsewhere} run by another process on {escape(out)}" if elsewhere else "")
                  + f", in {time.time() - t0:.0f}s; table: {escape(out / 'results.csv')}")
    for r in failed:
        console.print(f"[red]failed[/] {escape(r['cell'])}: {escape(r['error'])}", highlight=False)
    console.print(f"next: colakit report {escape(out)} --out {escape(out / 'report.html')}")
    if as_json:
        print_json({"out": str(out), "results_csv": str(out / "results.csv"), "seconds": round(time.time() - t0, 3),
                    "cells": [{k: r.get(k) for k in ("cell", "status", "error")} for r in records]})
