"""One call evaluates a model on a suite: per-task scoring, per-item records, chance flags, capabilities.

The runner knows no task by name: for each task it selects items, asks the task for requests
(``colakit.evaluate.tasks``), runs the engine of the task's kind (log-likelihood, generation,
perplexity), asks the task to score the outputs, and checkpoints. Comparisons (retention against
dense, paired tests between two compressed models) live in ``colakit.evaluate.comparison`` and
are re-exported here."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from colakit.calibset import CalibrationSet
from colakit.capabilities import CAPABILITIES
from colakit.data.overlap import assert_no_overlap
from colakit.errors import ColakitError
from colakit.evaluate import results as res
from colakit.evaluate.comparison import chance_flag, compare, compare_models, paired_rows, primary_value, retention_rows  # noqa: F401  (compare and friends are part of this module's API)
from colakit.evaluate.config import EvalConfig
from colakit.evaluate.generate import generate
from colakit.evaluate.loglik import Request, score_requests
from colakit.evaluate.perplexity import perplexity
from colakit.evaluate.suites import resolve_tasks
from colakit.evaluate.tasks import Task, get_task
from colakit.memory import peak_memory
from colakit.model.load import tokenizer_hash
from colakit.model.placement import input_device, model_dtype
from colakit.provenance import provenance

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- item selection


def select_items(items: list[dict], limit: int | None, seed: int, task: str) -> list[dict]:
    """All items, or a seeded subset of ``limit`` of them in their original order."""
    if limit is None or limit >= len(items):
        return items
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    keep = np.sort(rng.choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


# --------------------------------------------------------------------------- engines, one per task kind


def _loglik(model, tokenizer, task: Task, requests: list, cfg: EvalConfig, progress=None) -> list[list]:
    """Each multiple-choice item's scores, one per choice, from one batched pass over all of them."""
    flat, spans = [], []
    for mc in requests:
        spans.append((len(flat), len(mc.continuations)))
        flat += [Request(c, k) for c, k in zip(mc.contexts, mc.continuations)]
    scores = score_requests(model, tokenizer, flat, token_budget=cfg.token_budget,
                            progress=_counting(progress, len(flat)))
    return [scores[start : start + n] for start, n in spans]


def _generate(model, tokenizer, task: Task, requests: list, cfg: EvalConfig, progress=None) -> list[tuple]:
    """Each item's (greedy completion, score of its gold continuation); progress counts the completions
    (the gold scores, one forward per item, take a fraction of their time)."""
    stops = requests[0].stop if requests else ()
    outputs = generate(model, tokenizer, [g.prompt for g in requests], stop=stops,
                       max_new_tokens=cfg.max_new_tokens or task.max_new_tokens, batch_size=cfg.gen_batch_size,
                       progress=_counting(progress, len(requests)))
    gold = score_requests(model, tokenizer, [Request(g.prompt, g.gold_text) for g in requests],
                          token_budget=cfg.token_budget)
    return list(zip(outputs, gold))


def _perplexity(model, tokenizer, task: Task, requests: list, cfg: EvalConfig, progress=None) -> dict:
    if progress is None:
        return perplexity(model, tokenizer, requests, seq_len=cfg.ppl_seq_len)
    windows = {"total": 0}  # known once the documents are tokenized

    def on_windows(total: int) -> None:
        windows["total"] = total
        progress(0, total)

    return perplexity(model, tokenizer, requests, seq_len=cfg.ppl_seq_len, on_windows=on_windows,
                      progress=lambda done: progress(done, windows["total"]))


def _counting(progress, total: int):
    """An engine's ``progress(n_done)`` as ``progress(n_done, total)``, starting at 0 (None without one)."""
    if progress is None:
        return None
    progress(0, total)
    return lambda done: progress(done, total)


_ENGINES = {"multiple_choice": _loglik, "generate": _generate, "perplexity": _perplexity}


# --------------------------------------------------------------------------- model identity


def model_hash(model) -> str:
    """sha256 (16 hex) over every parameter and buffer, by name: identifies the weights evaluated.

    A model dispatched with disk offload keeps its weights off the module (on meta); accelerate's
    ``align_module_device`` brings each module's own in for the moment it is hashed.
    """
    h = hashlib.sha256()
    seen: set = set()  # tied weights count once: the same Parameter, or the same storage
    for prefix, module in model.named_modules():
        own = [(n, p) for n, p in module.named_parameters(prefix=prefix, recurse=False) if id(p) not in seen]
        seen.update(id(p) for _, p in own)
        if not any(p.device.type == "meta" for _, p in own):
            for name, p in own:
                _hash_tensor(h, name, p, seen)
            continue
        from accelerate.utils import align_module_device

        with align_module_device(module):  # (onloaded copies are fresh storage: no pointer check)
            values = dict(module.named_parameters(prefix=prefix, recurse=False))
            for name, _ in own:
                _hash_tensor(h, name, values[name])
    for name, t in model.named_buffers():
        _hash_tensor(h, name, t, seen)
    return h.hexdigest()[:16]


def _hash_tensor(h, name: str, t, seen: set | None = None) -> None:
    if seen is not None:
        if ("ptr", t.data_ptr()) in seen:
            return
        seen.add(("ptr", t.data_ptr()))
    h.update(name.encode())
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # reshape: 0-d buffers (Gemma's embed_scale) cannot be viewed as bytes


def check_calibration_overlap(model_dir: str | Path | None, allow: bool) -> dict | None:
    """Refuse (or, with ``allow``, warn) when the model was compressed with data overlapping an evaluation set."""
    if model_dir is None or not (Path(model_dir) / "compression.json").exists():
        return None
    report = json.loads((Path(model_dir) / "compression.json").read_text())
    calib = (report.get("calibration") or {}).get("path")
    if not calib:
        return {"checked": False, "reason": "compression.json names no CalibrationSet"}
    if not Path(calib).exists():
        message = f"the CalibrationSet {calib} named in {model_dir}/compression.json is missing"
        if not allow:
            raise ColakitError(message + "; overlap with the evaluation sets cannot be checked",
                               "restore it, or pass --allow-overlap to evaluate anyway")
        log.warning(message)
        return {"checked": False, "reason": message}
    overlap = assert_no_overlap(CalibrationSet.load(calib).texts, allow=allow)
    return {"checked": True, "calibration": calib, **overlap.to_dict()}


# --------------------------------------------------------------------------- the evaluation


def _task_items(task: Task, limit: int | None, seed: int, items_override: dict | None) -> list[dict]:
    items = list(items_override[task.name]) if items_override and task.name in items_override else task.load_items()
    return select_items(items, limit, seed, task.name)


def _score(model, tokenizer, task: Task, items: list[dict], cfg: EvalConfig,
           progress=None) -> tuple[dict, list[dict]]:
    """The task's requests for ``items``, through its kind's engine, scored by the task."""
    requests = [task.build_chat(d, tokenizer) if cfg.chat else task.build(d) for d in items]
    outputs = _ENGINES[task.kind](model, tokenizer, task, requests, cfg, progress=progress)
    return task.score(items, requests, outputs, cfg)


def evaluate(model, tokenizer, tasks: str | list[str] = "quick", *, limit: int | None = None, seed: int = 0,
             config: EvalConfig | None = None, out: str | Path | None = None, model_name: str | None = None,
             model_dir: str | Path | None = None, allow_overlap: bool = False,
             items_override: dict[str, list[dict]] | None = None,
             on_task: Callable[[str, dict], None] | None = None,
             on_items: Callable[[str, int, int], None] | None = None) -> dict:
    """Evaluate ``model`` on a suite or tasks; returns (and with ``out``, writes) the results dict.

    ``limit`` caps items per task (a seeded subset, ids recorded); ``out`` also keeps per-task
    checkpoints so an interrupted run resumes; ``items_override`` maps task -> in-memory items
    (each with an ``"id"``) instead of the packaged sets. ``on_task(name, result)`` is called as
    each task finishes; ``on_items(name, done, total)`` as a task's scoring goes, batch by batch
    (requests for multiple choice, completions for generation, windows for perplexity; not for a
    task resumed from its checkpoint).
    """
    cfg = config or EvalConfig(seed=seed)
    cfg.seed = seed
    plan = resolve_tasks(tasks, limit)
    overlap = check_calibration_overlap(model_dir, allow_overlap)
    started = time.time()
    ident = {"name": model_name, "hash": model_hash(model), "class": type(model).__name__,
             "dtype": str(model_dtype(model)), "device": str(input_device(model)),
             "tokenizer_hash": tokenizer_hash(tokenizer)}
    settings = {k: v for k, v in asdict(cfg).items()}
    out_tasks = {}
    for name, task_limit in plan.items():
        task = get_task(name)
        items = _task_items(task, task_limit, cfg.seed, items_override)
        if not items:
            raise ColakitError(f"task {name} has no items", "check the data (colakit data fetch)")
        ids = [str(d["id"]) for d in items]
        key = res.fingerprint([ident["hash"], ident["tokenizer_hash"], name, task.version, ids, settings])
        result = res.load_part(Path(out) if out else None, name, key)
        if result is None:
            t0 = time.time()
            items_done = functools.partial(on_items, name) if on_items else None
            metrics, records = _score(model, tokenizer, task, items, cfg, progress=items_done)
            result = {"capability": task.capability, "kind": task.kind, "version": task.version,
                      "reference": task.reference, "primary": task.primary,
                      "higher_is_better": task.higher_is_better, "limit": task_limit,
                      "n": len(items), "item_ids": ids, "metrics": metrics, "items": records,
                      "wall_time_s": round(time.time() - t0, 2)}
            res.save_part(Path(out) if out else None, name, key, result)
        result["flags"] = chance_flag(result)  # from the items, so checkpoints from older versions get it too
        out_tasks[name] = result
        if on_task:
            on_task(name, result)
    requested = tasks if isinstance(tasks, str) else ",".join(tasks)
    results = {"schema": res.SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "model": ident, "tasks_requested": requested,
               "limit": limit, "seed": cfg.seed, "settings": settings, "overlap": overlap,
               "tasks": out_tasks, "capabilities": capabilities(out_tasks),
               "wall_time_s": round(time.time() - started, 2), "peak_memory": peak_memory(), **provenance(),
               "config_hash": res.fingerprint([requested, limit, cfg.seed, settings])}
    if out:
        res.write_results(Path(out), results)
    return results


def capabilities(tasks: dict, *, include_flagged: bool = False) -> dict:
    """Per capability: its tasks and the mean of their primary metrics (perplexities: lower is better).

    Tasks flagged as at chance (``flags.chance``) are listed under ``flagged`` and left out of the
    score unless ``include_flagged``; a capability with only flagged tasks scores NaN.
    """
    out = {}
    for cap in CAPABILITIES:
        names = [n for n, t in tasks.items() if t["capability"] == cap]
        if names:
            flagged = [n for n in names if (tasks[n].get("flags") or {}).get("chance")]
            used = [n for n in names if include_flagged or n not in flagged]
            score = float(np.mean([primary_value(tasks[n]) for n in used])) if used else float("nan")
            out[cap] = {"tasks": names, "score": score, "flagged": flagged,
                        "higher_is_better": all(tasks[n]["higher_is_better"] for n in names)}
    return out
