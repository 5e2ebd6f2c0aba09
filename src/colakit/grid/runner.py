"""Run a grid: every cell curates, compresses and evaluates; finished work is never redone.

What goes where in RUNDIR, and the locks that let several runs share it, is ``colakit.grid.rundir``.
The dense model and every cell are units of an executor (``colakit.executors``): one after the
other in this process (``local``, the default), or in parallel on Ray workers (``ray``). The
workers split the units through the same file locks as several ``colakit run`` processes sharing
RUNDIR, so each calibration set is curated once and the dense model evaluated once either way,
and the table, written by the driver from RUNDIR's files at the end, does not depend on the executor.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from colakit import compress
from colakit.cache import file_lock, write_json_atomic
from colakit.calibset import CalibrationSet
from colakit.curate import pipeline  # pipeline.curate: tests replace it there to watch what a run redoes
from colakit.curate.features import FeatureConfig
from colakit.curate.score import score_set
from colakit.curate.select import get_selector
from colakit.errors import ColakitError
from colakit.evaluate import EvalConfig, evaluate_model, read_results
from colakit.executors import Executor, LocalExecutor
from colakit.grid.config import Cell, GridConfig, load_grid
from colakit.grid.rundir import RunDir, calib_name
from colakit.grid.table import write_table
from colakit.model.load import ModelHandle
from colakit.provenance import provenance

log = logging.getLogger(__name__)

DENSE = "dense"  # the unit that evaluates the dense model; every other unit of a grid is a Cell
STAGES = ("curate", "compress", "evaluate")


def _check_writable(rundir: Path) -> None:
    try:
        rundir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=rundir):  # a name of its own: runs sharing the directory check at once
            pass
    except OSError as err:
        raise ColakitError(f"cannot write to the run directory {rundir}: {err.strerror}",
                           "choose a writable --out") from None


def _check_same_grid(rundir: Path, grid: GridConfig) -> None:
    """Resuming into a directory made by another config would mix results: refuse."""
    paths = RunDir(rundir)
    if paths.run_json.exists():
        old = json.loads(paths.run_json.read_text()).get("fingerprint")
        if old and old != grid.fingerprint() and paths.cells.exists():
            known = {c.id for c in grid.cells()}
            stale = [p.name for p in paths.cells.iterdir() if p.is_dir() and p.name not in known]
            if stale:
                log.warning("%s holds %d cells this config does not define (e.g. %s); they are left out of the table",
                            rundir, len(stale), stale[0])


def write_run_json(rundir: Path, grid: GridConfig) -> None:
    write_json_atomic(RunDir(rundir).run_json, {
        "name": grid.name, "model": grid.model, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **provenance(), "baseline": grid.baseline, "sweeps": grid.sweeps,
        "fingerprint": grid.fingerprint(), "cells": [c.id for c in grid.cells()], "config": grid.raw,
    })


def curate_config(grid: GridConfig, cell: Cell):
    """The CurateConfig of a cell: curation params, then the cell's settings, then its seed."""
    method_aware = grid.curation[cell.curation].params.get("for_compression", False)
    compression = grid.compression[cell.compression].params["method"] if method_aware else None
    params = {**grid.base_curation(cell.curation, cell.compression), **cell.settings}
    features = FeatureConfig(**{**(params.pop("features", None) or {}), "device": grid.device, "dtype": grid.dtype})
    return pipeline.CurateConfig(model=grid.model, seed=cell.seed, compression=compression, features=features,
                                 method_params=params.pop("params", None) or {}, **params)


def pool_features(config, model: ModelHandle, progress=True):
    """The candidate pool and its features in the space curation used (the feature store makes this a cache hit)."""
    pool, _ = pipeline.build_pool(config, model.tokenizer)
    feats, _, _ = pipeline.pool_features(get_selector(config.method, **config.method_params), pool, config, model,
                                         progress=progress)
    return pool, feats


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _evaluate_digest(grid: GridConfig) -> str:
    """What an evaluation depends on: the dense model's and every cell's."""
    return _digest([grid.model, grid.evaluate])


def stage_specs(grid: GridConfig, cell: Cell) -> dict[str, str]:
    """A digest of everything each stage of ``cell`` depends on: a finished stage whose digest no longer
    matches the config (same cell id, edited parameters) is redone instead of mixed into the table."""
    return {"curate": _digest(dataclasses.asdict(curate_config(grid, cell))),
            "compress": _digest([grid.model, grid.compression[cell.compression].params]),
            "evaluate": _evaluate_digest(grid)}


def _stale(stored: dict | None, current: dict, stages: tuple[str, ...]) -> list[str]:
    """The ``stages`` whose stored digest differs (a record without digests predates them: trusted)."""
    return [k for k in stages if stored and k in stored and stored[k] != current[k]]


def _refresh(spec_path: Path, spec: dict, done: bool) -> bool:
    """Record ``spec`` for a stage kept beside ``spec_path``; True when the stage is ``done`` under a
    different recorded spec (the caller removes it, so it runs again)."""
    stored = json.loads(spec_path.read_text()) if spec_path.exists() else None
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(spec_path, spec)
    return done and bool(_stale(stored, spec, tuple(spec)))


def _no_progress(*args, **kwargs) -> None:
    """The progress callback of a runner that reports nothing (a function: it pickles, a lambda does not)."""


def _unit_name(unit) -> str:
    return DENSE if unit == DENSE else unit.id


class GridRunner:
    """Runs the cells of ``grid`` into ``rundir`` on ``executor`` (default: this process).

    ``progress`` receives (stage, cell, done, total) events: every stage of every unit on the local
    executor (with "features" rows and compression "block"s counted as they go); on a remote one,
    each cell as it finishes (its stages run in the workers).
    """

    def __init__(self, grid: GridConfig, rundir: str | Path, progress=None, only: list[str] | None = None,
                 seeds: list[int] | None = None, executor: Executor | None = None):
        self.grid, self.rundir, self.only, self.seeds = grid, Path(rundir), only, seeds
        self.paths = RunDir(self.rundir)
        self.progress = progress or _no_progress
        self.executor = executor or LocalExecutor()
        # every stage shares its tokenizer; each stage that needs weights loads its own (and frees them)
        self.model = ModelHandle(grid.model, device=grid.device, dtype=grid.dtype)

    def __getstate__(self) -> dict:
        """A runner shipped to a worker leaves the driver's progress display behind (the driver reports
        each unit as it comes back)."""
        return {**self.__dict__, "progress": _no_progress}

    @property
    def tokenizer(self):
        return self.model.tokenizer

    # ------------------------------------------------------------------ stages

    def dense(self) -> dict:
        with file_lock(self.paths.dense_lock):  # runs sharing the directory evaluate it once
            return self._dense(self.paths.dense_eval)

    def _dense(self, out: Path) -> dict:
        if _refresh(self.paths.dense_spec, {"evaluate": _evaluate_digest(self.grid)}, out.exists()):
            log.warning("the evaluation settings changed since the dense model was evaluated: evaluating it again")
            _remove_eval(out)
        if out.exists():
            return read_results(out)
        self.progress("evaluate", "dense", 0, 1)
        return evaluate_model(self.grid.model, self.grid.evaluate["tasks"], **self._eval_kwargs(), out=out,
                              on_task=self._on_task("dense"))

    def _eval_kwargs(self) -> dict:
        ev = self.grid.evaluate
        config = EvalConfig(seed=ev["seed"], **({"ppl_seq_len": ev["ppl_seq_len"]} if "ppl_seq_len" in ev else {}))
        return {"limit": ev.get("limit"), "seed": ev["seed"], "device": self.grid.device, "dtype": self.grid.dtype,
                "config": config}

    def _on_task(self, label: str):
        def on_task(name, result):
            self.progress("task", label, name, result)
        return on_task

    def _counting(self, stage: str, label: str):
        """A stage's (done, total) callback as ``progress`` events: the driver's one display shows it
        (a library bar of its own would be a second live display)."""
        def report(done, total):
            self.progress(stage, label, done, total)
        return report

    def curate(self, cell: Cell) -> Path:
        name = calib_name(self.grid, cell)
        out = self.paths.calib(name)
        if _refresh(self.paths.calib_spec(name), {"curate": stage_specs(self.grid, cell)["curate"]},
                    (out / "manifest.json").exists()):
            log.warning("the curation of %s changed: curating %s again", cell.id, name)
            shutil.rmtree(out)
            self.paths.calib_score(name).unlink(missing_ok=True)
        if not (out / "manifest.json").exists():
            self.progress("curate", cell.id, 0, 1)
            pipeline.curate(curate_config(self.grid, cell), out=out, overwrite=True, tokenizer=self.tokenizer,
                            features_progress=self._counting("features", cell.id))
        return out

    def score(self, cell: Cell, calib: Path) -> dict | None:
        """Proxy scores of ``calib``, kept beside it (cells sharing the set share them)."""
        if self.grid.score is None:
            return None
        path = self.paths.calib_score(calib.name)
        sc = self.grid.score
        if path.exists():  # kept unless it was scored on other probes (a run from before held-out probes)
            kept = json.loads(path.read_text())
            if kept.get("probes", {}).get("split", "calibration") == sc["probes_from"]:
                return kept
        self.progress("score", cell.id, 0, 1)
        result = score_set(calib, model=self.grid.model, target=sc["target"], probes_per_capability=sc["probes"],
                           probes_from=sc["probes_from"],
                           features=FeatureConfig(layers=sc["feature_layers"], device=self.grid.device,
                                                  dtype=self.grid.dtype), tokenizer=self.tokenizer,
                           features_progress=self._counting("features", cell.id))
        write_json_atomic(path, result)
        return result

    def activation_map(self, cell: Cell, calib: Path) -> None:
        """2-D PCA map of the candidate pool's features, selected samples marked (feature-based curation only)."""
        out = self.paths.activation_map(cell.id)
        config = curate_config(self.grid, cell)
        if out.exists() or not self.grid.map or not get_selector(config.method, **config.method_params).needs_features:
            return
        pool, feats = pool_features(config, self.model, self._counting("features", cell.id))  # a cache hit
        chosen = {(s.doc_id, s.start) for s in CalibrationSet.load(calib).samples}
        centred = feats - feats.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        write_json_atomic(out, {"cell": cell.id, "curation": cell.curation, "projection": "pca", "points": [
            {"x": round(float(x), 5), "y": round(float(y), 5), "source": c.source,
             "selected": (c.doc_id, c.start) in chosen} for c, (x, y) in zip(pool, xy)]})

    def compress_and_evaluate(self, cell: Cell, calib: Path) -> tuple[dict, dict]:
        model_dir, eval_out = self.paths.cell_model(cell.id), self.paths.cell_eval(cell.id)
        report_path = self.paths.compression_report(cell.id)
        if not eval_out.exists():
            if not (model_dir / "compression.json").exists():
                shutil.rmtree(model_dir, ignore_errors=True)
                params = dict(self.grid.compression[cell.compression].params)
                backend = params.pop("backend", "builtin")
                output = {"save_format": params.pop("save_format")} if "save_format" in params else {}
                self.progress("compress", cell.id, 0, 1)
                compress.compress_to_dir(self.grid.model, calib, model_dir, compress.CompressionConfig(**params),
                                         device=self.grid.device, dtype=self.grid.dtype, backend=backend, **output,
                                         on_block=self._counting("block", cell.id))
                shutil.copyfile(model_dir / "compression.json", report_path)
            self.progress("evaluate", cell.id, 0, 1)
            results = evaluate_model(str(model_dir), self.grid.evaluate["tasks"], **self._eval_kwargs(),
                                     out=eval_out, on_task=self._on_task(cell.id))
        else:
            results = read_results(eval_out)
        if not self.grid.keep_models:
            shutil.rmtree(model_dir, ignore_errors=True)  # 4 bytes/parameter per cell: the results are what stays
        return json.loads(report_path.read_text()), results

    # ------------------------------------------------------------------ the grid

    def _status(self, cell: Cell) -> tuple[dict | None, list[str]]:
        """A cell's stored record (None: it never ran) and the stages whose digests changed since."""
        path = self.paths.cell_json(cell.id)
        if not path.exists():
            return None, []
        status = json.loads(path.read_text())
        return status, _stale(status.get("spec"), stage_specs(self.grid, cell), STAGES)

    def finished(self, cell: Cell) -> dict | None:
        """The record of a cell that finished ok under the current config (None: it has work to do)."""
        status, changed = self._status(cell)
        return status if status is not None and status["status"] == "ok" and not changed else None

    def run_cell(self, cell: Cell) -> dict:
        cdir = self.paths.cell(cell.id)
        status_path = self.paths.cell_json(cell.id)
        spec = stage_specs(self.grid, cell)
        status, changed = self._status(cell)
        if status is not None:
            if status["status"] == "ok" and not changed:
                return status
            if changed:  # same cell id, edited parameters: its results would no longer match the config
                log.warning("cell %s: %s changed since it ran; running it again", cell.id, " and ".join(changed))
                if changed == ["evaluate"]:
                    _remove_eval(self.paths.cell_eval(cell.id))
                else:
                    shutil.rmtree(cdir)
        cdir.mkdir(parents=True, exist_ok=True)
        record = {"cell": cell.id, "curation": cell.curation, "compression": cell.compression,
                  "settings": cell.settings, "seed": cell.seed, "spec": spec, **provenance(),
                  "config_hash": _digest(spec)}
        times = {}
        try:
            t0 = time.time()
            # the calibration set is shared by every compression of the curation: curated once
            with file_lock(self.paths.calib_lock(calib_name(self.grid, cell))):
                calib = self.curate(cell)
                self.score(cell, calib)
                self.activation_map(cell, calib)
            times["curate_s"] = time.time() - t0
            t0 = time.time()
            report, results = self.compress_and_evaluate(cell, calib)
            times["compress_s"] = report.get("wall_time_s", float("nan"))
            times["eval_s"] = results.get("wall_time_s", time.time() - t0)
            record.update(status="ok", calib=str(calib.relative_to(self.rundir)), **times)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 -- one failing cell is recorded; the grid goes on
            message = str(err) if isinstance(err, ColakitError) else f"{type(err).__name__}: {err}"
            self.paths.traceback(cell.id).write_text(traceback.format_exc())
            record.update(status="failed", error=message, **times)
            log.warning("cell %s failed: %s", cell.id, message)
        write_json_atomic(status_path, record)
        return record

    def run_unit(self, unit: Cell | str) -> dict | None:
        """One unit of the grid: the dense model (DENSE), or a cell unless another run holds its lock."""
        if unit == DENSE:
            self.dense()
            return None
        # several runs (or workers) on one directory share out its cells: each runs the ones it locks
        with file_lock(self.paths.cell_lock(unit.id), blocking=False) as mine:
            return self.run_cell(unit) if mine else {"cell": unit.id, "status": "elsewhere"}

    def run(self) -> list[dict]:
        """The dense model and the selected cells on the executor, then the table; one record per cell."""
        _check_writable(self.rundir)
        _check_same_grid(self.rundir, self.grid)
        write_run_json(self.rundir, self.grid)
        cells = select_cells(self.grid.cells(), self.only, self.seeds)
        before = {c.id: record for c in cells if (record := self.finished(c)) is not None}
        units = [DENSE, *cells]
        results = self.executor.map(self.run_unit, units, done=lambda u: u != DENSE and u.id in before,
                                    label="cells", name=_unit_name)
        records = dict(before)
        self.progress("grid", None, len(records), len(cells))
        for i, record in results:
            if units[i] != DENSE:
                records[units[i].id] = record
                self.progress("grid", units[i].id, len(records), len(cells))
        write_table(self.rundir, self.grid, {c.id: curate_config(self.grid, c) for c in self.grid.cells()})
        return [records[c.id] for c in cells]


def _remove_eval(out: Path) -> None:
    """An evaluation result and its per-task checkpoints."""
    out.unlink(missing_ok=True)
    shutil.rmtree(out.with_name(out.name + ".parts"), ignore_errors=True)


def select_cells(cells: list[Cell], patterns: list[str] | None, seeds: list[int] | None = None) -> list[Cell]:
    """The cells whose id matches one of the shell-style ``patterns`` and whose seed is in ``seeds`` (None: any)."""
    chosen = [c for c in cells if (not patterns or any(fnmatch.fnmatchcase(c.id, p) for p in patterns))
              and (seeds is None or c.seed in seeds)]
    if not chosen:
        raise ColakitError(f"no cell matches {', '.join(patterns or [])} with seeds {seeds}",
                           f"cell ids look like {cells[0].id}; see `colakit run CONFIG --out DIR --dry-run`")
    return chosen


def run_grid(config: str | Path | GridConfig, rundir: str | Path, progress=None,
             only: list[str] | None = None, executor: Executor | None = None) -> list[dict]:
    """Run (or resume) a grid; returns one status record per cell run. The tidy table lands in ``rundir``.

    ``only`` restricts the run to cells matching shell-style patterns (the table still holds every
    finished cell), so a grid can be filled in over several runs or machines sharing ``rundir``;
    ``executor`` (``colakit.executors.get_executor``) runs the cells, in parallel on Ray.
    """
    grid = config if isinstance(config, GridConfig) else load_grid(config)
    return GridRunner(grid, rundir, progress, only, executor=executor).run()


__all__ = ["DENSE", "GridRunner", "run_grid", "curate_config", "pool_features", "select_cells", "stage_specs",
           "write_run_json"]
