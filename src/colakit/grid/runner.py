"""Run a grid: every cell curates, compresses and evaluates; finished work is never redone.

RUNDIR layout (each file written atomically, so a killed run resumes where it stopped)::

    run.json                      the resolved config, sweeps, baseline
    dense/eval.json               the dense model, evaluated once (per-task checkpoints beside it)
    calib/<calib_key>/            CalibrationSets, shared by the cells that differ only in compression
    calib/<calib_key>.score.json  activation-space proxy scores of that set
    cells/<cell>/cell.json        status (ok | failed + error), timings, parameters
    cells/<cell>/eval.json        the compressed model's evaluation
    cells/<cell>/activation_map.json   2-D map of the candidate pool, selected samples marked
    results.csv, results.parquet  the tidy table: one row per cell x task x metric kind

Runs sharing RUNDIR on one machine split the work through file locks: ``cells/.<cell>.lock`` (a
cell locked by another run is passed by), ``calib/.<calib_key>.lock`` and ``dense/.lock`` (waited
for, so each set is curated and the dense model evaluated once).
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

from colakit.cache import file_lock, write_json_atomic
from colakit.errors import ColakitError
from colakit.grid.config import Cell, GridConfig

log = logging.getLogger(__name__)


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
    path = rundir / "run.json"
    if path.exists():
        old = json.loads(path.read_text()).get("fingerprint")
        if old and old != grid.fingerprint() and (rundir / "cells").exists():
            known = {c.id for c in grid.cells()}
            stale = [p.name for p in (rundir / "cells").iterdir() if p.is_dir() and p.name not in known]
            if stale:
                log.warning("%s holds %d cells this config does not define (e.g. %s); they are left out of the table",
                            rundir, len(stale), stale[0])


def write_run_json(rundir: Path, grid: GridConfig) -> None:
    from colakit import __version__

    write_json_atomic(rundir / "run.json", {
        "name": grid.name, "model": grid.model, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "colakit_version": __version__, "baseline": grid.baseline, "sweeps": grid.sweeps,
        "fingerprint": grid.fingerprint(), "cells": [c.id for c in grid.cells()], "config": grid.raw,
    })


def curate_config(grid: GridConfig, cell: Cell):
    """The CurateConfig of a cell: curation params, then the cell's settings, then its seed."""
    from colakit.curate.pipeline import CurateConfig
    from colakit.curate.features import FeatureConfig

    method_aware = grid.curation[cell.curation].params.get("for_compression", False)
    compression = grid.compression[cell.compression].params["method"] if method_aware else None
    params = {**grid.base_curation(cell.curation, cell.compression), **cell.settings}
    features = FeatureConfig(**{**(params.pop("features", None) or {}), "device": grid.device, "dtype": grid.dtype})
    return CurateConfig(model=grid.model, seed=cell.seed, compression=compression, features=features,
                        method_params=params.pop("params", None) or {}, **params)


def pool_features(config, tokenizer):
    """The candidate pool and its features in the space curation used (the feature store makes this a cache hit)."""
    from colakit.curate import pipeline as curate
    from colakit.curate.select import get_selector

    pool, _ = curate.build_pool(config, tokenizer)
    feats, _, _ = curate.pool_features(get_selector(config.method, **config.method_params), pool, config,
                                       tokenizer=tokenizer)
    return pool, feats


def calib_dir(rundir: Path, grid: GridConfig, cell: Cell) -> Path:
    aware = grid.curation[cell.curation].params.get("for_compression", False)
    return rundir / "calib" / (cell.calib_key + (f"__for-{cell.compression}" if aware else ""))


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


def score_path(calib: Path) -> Path:
    """Where a calibration set's proxy scores are kept (beside it, so cells sharing the set share them)."""
    return calib.with_name(calib.name + ".score.json")


class GridRunner:
    """Runs the cells of ``grid`` into ``rundir``; ``progress`` receives (stage, cell, done, total) events."""

    def __init__(self, grid: GridConfig, rundir: str | Path, progress=None, only: list[str] | None = None,
                 seeds: list[int] | None = None):
        self.grid, self.rundir, self.only, self.seeds = grid, Path(rundir), only, seeds
        self.progress = progress or (lambda *a, **k: None)
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from colakit.model.load import load_tokenizer

            self._tokenizer = load_tokenizer(self.grid.model)
        return self._tokenizer

    # ------------------------------------------------------------------ stages

    def dense(self) -> dict:
        out = self.rundir / "dense" / "eval.json"
        with file_lock(out.with_name(".lock")):  # runs sharing the directory evaluate it once
            return self._dense(out)

    def _dense(self, out: Path) -> dict:
        from colakit.evaluate import evaluate_model, read_results

        if _refresh(out.with_name("spec.json"), {"evaluate": _evaluate_digest(self.grid)}, out.exists()):
            log.warning("the evaluation settings changed since the dense model was evaluated: evaluating it again")
            _remove_eval(out)
        if out.exists():
            return read_results(out)
        self.progress("evaluate", "dense", 0, 1)
        return evaluate_model(self.grid.model, self.grid.evaluate["tasks"], **self._eval_kwargs(), out=out,
                              on_task=self._on_task("dense"))

    def _eval_kwargs(self) -> dict:
        from colakit.evaluate import EvalConfig

        ev = self.grid.evaluate
        config = EvalConfig(seed=ev["seed"], **({"ppl_seq_len": ev["ppl_seq_len"]} if "ppl_seq_len" in ev else {}))
        return {"limit": ev.get("limit"), "seed": ev["seed"], "device": self.grid.device, "dtype": self.grid.dtype,
                "config": config}

    def _on_task(self, label: str):
        def on_task(name, result):
            self.progress("task", label, name, result)
        return on_task

    def curate(self, cell: Cell) -> Path:
        from colakit.curate.pipeline import curate

        out = calib_dir(self.rundir, self.grid, cell)
        if _refresh(out.with_name(out.name + ".spec.json"), {"curate": stage_specs(self.grid, cell)["curate"]},
                    (out / "manifest.json").exists()):
            log.warning("the curation of %s changed: curating %s again", cell.id, out.name)
            shutil.rmtree(out)
            score_path(out).unlink(missing_ok=True)
        if not (out / "manifest.json").exists():
            self.progress("curate", cell.id, 0, 1)
            curate(curate_config(self.grid, cell), out=out, overwrite=True, tokenizer=self.tokenizer)
        return out

    def score(self, cell: Cell, calib: Path) -> dict | None:
        if self.grid.score is None:
            return None
        path = score_path(calib)
        if path.exists():
            return json.loads(path.read_text())
        from colakit.curate.features import FeatureConfig
        from colakit.curate.score import score_set

        self.progress("score", cell.id, 0, 1)
        sc = self.grid.score
        result = score_set(calib, model=self.grid.model, target=sc["target"], probes_per_capability=sc["probes"],
                           features=FeatureConfig(layers=sc["feature_layers"], device=self.grid.device,
                                                  dtype=self.grid.dtype), tokenizer=self.tokenizer)
        write_json_atomic(path, result)
        return result

    def activation_map(self, cell: Cell, calib: Path) -> None:
        """2-D PCA map of the candidate pool's features, selected samples marked (feature-based curation only)."""
        out = self.rundir / "cells" / cell.id / "activation_map.json"
        config = curate_config(self.grid, cell)
        from colakit.curate.select import get_selector

        if out.exists() or not self.grid.map or not get_selector(config.method, **config.method_params).needs_features:
            return
        from colakit.calibset import CalibrationSet

        pool, feats = pool_features(config, self.tokenizer)  # the feature store makes this a cache hit
        chosen = {(s.doc_id, s.start) for s in CalibrationSet.load(calib).samples}
        centred = feats - feats.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        write_json_atomic(out, {"cell": cell.id, "curation": cell.curation, "projection": "pca", "points": [
            {"x": round(float(x), 5), "y": round(float(y), 5), "source": c.source,
             "selected": (c.doc_id, c.start) in chosen} for c, (x, y) in zip(pool, xy)]})

    def compress_and_evaluate(self, cell: Cell, calib: Path) -> tuple[dict, dict]:
        from colakit.compress import CompressionConfig, compress_to_dir
        from colakit.evaluate import evaluate_model, read_results

        cdir = self.rundir / "cells" / cell.id
        model_dir, eval_out = cdir / "model", cdir / "eval.json"
        report_path = cdir / "compression.json"
        if not eval_out.exists():
            if not (model_dir / "compression.json").exists():
                shutil.rmtree(model_dir, ignore_errors=True)
                params = dict(self.grid.compression[cell.compression].params)
                backend = params.pop("backend", "builtin")
                self.progress("compress", cell.id, 0, 1)
                compress_to_dir(self.grid.model, calib, model_dir, CompressionConfig(**params),
                                device=self.grid.device, dtype=self.grid.dtype, backend=backend)
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

    def run_cell(self, cell: Cell) -> dict:
        cdir = self.rundir / "cells" / cell.id
        status_path = cdir / "cell.json"
        spec = stage_specs(self.grid, cell)
        if status_path.exists():
            status = json.loads(status_path.read_text())
            changed = _stale(status.get("spec"), spec, ("curate", "compress", "evaluate"))
            if status["status"] == "ok" and not changed:
                return status
            if changed:  # same cell id, edited parameters: its results would no longer match the config
                log.warning("cell %s: %s changed since it ran; running it again", cell.id, " and ".join(changed))
                if changed == ["evaluate"]:
                    _remove_eval(cdir / "eval.json")
                else:
                    shutil.rmtree(cdir)
        cdir.mkdir(parents=True, exist_ok=True)
        record = {"cell": cell.id, "curation": cell.curation, "compression": cell.compression,
                  "settings": cell.settings, "seed": cell.seed, "spec": spec}
        times = {}
        try:
            t0 = time.time()
            # the calibration set is shared by every compression of the curation: curated once
            with file_lock(self.rundir / "calib" / f".{calib_dir(self.rundir, self.grid, cell).name}.lock"):
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
            (cdir / "traceback.txt").write_text(traceback.format_exc())
            record.update(status="failed", error=message, **times)
            log.warning("cell %s failed: %s", cell.id, message)
        write_json_atomic(status_path, record)
        return record

    def run(self) -> list[dict]:
        _check_writable(self.rundir)
        _check_same_grid(self.rundir, self.grid)
        write_run_json(self.rundir, self.grid)
        cells = select_cells(self.grid.cells(), self.only, self.seeds)
        self.progress("grid", None, 0, len(cells))
        self.dense()
        records = []
        for i, cell in enumerate(cells):
            # several `colakit run`s on one directory share out its cells: each runs the ones it locks
            with file_lock(self.rundir / "cells" / f".{cell.id}.lock", blocking=False) as mine:
                records.append(self.run_cell(cell) if mine else {"cell": cell.id, "status": "elsewhere"})
            self.progress("grid", cell.id, i + 1, len(cells))
        from colakit.grid.table import write_table

        write_table(self.rundir, self.grid)
        return records


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
             only: list[str] | None = None) -> list[dict]:
    """Run (or resume) a grid; returns one status record per cell run. The tidy table lands in ``rundir``.

    ``only`` restricts the run to cells matching shell-style patterns (the table still holds every
    finished cell), so a grid can be filled in over several runs or machines sharing ``rundir``.
    """
    from colakit.grid.config import load_grid

    grid = config if isinstance(config, GridConfig) else load_grid(config)
    return GridRunner(grid, rundir, progress, only).run()


__all__ = ["GridRunner", "run_grid", "curate_config", "calib_dir", "pool_features", "score_path", "select_cells", "write_run_json"]
