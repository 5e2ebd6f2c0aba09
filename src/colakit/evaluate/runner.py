"""One call evaluates a model on a suite: per-task scoring, per-item records, chance flags, capabilities.

Comparisons (retention against dense, paired tests between two compressed models) live in
``colakit.evaluate.comparison`` and are re-exported here."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from colakit.errors import ColakitError
from colakit.evaluate import results as res
from colakit.evaluate.comparison import (  # noqa: F401  (compare and friends are part of this module's API)
    chance_flag, compare, compare_models, paired_rows, primary_value, retention_rows,
)
from colakit.evaluate.generate import generate
from colakit.evaluate.loglik import Request, score_requests
from colakit.evaluate.sandbox import SandboxLimits, run_programs
from colakit.evaluate.stats import mean_stderr
from colakit.evaluate.tasks import (
    CAPABILITIES, LOWER_IS_BETTER, Task, code_program, get_task, gsm8k_correct, gsm8k_extract, gsm8k_messages,
    math_extract, math_normalise, resolve_tasks,
)

log = logging.getLogger(__name__)
LN2 = math.log(2)


@dataclass
class EvalConfig:
    """Everything besides model and tasks that decides the numbers (recorded in results.json)."""

    seed: int = 0
    token_budget: int = 2048  # padded tokens per log-likelihood forward (bounds the logits' memory)
    gen_batch_size: int = 8
    max_new_tokens: int | None = None  # None: each task's own cap
    chat: bool = False  # GSM8K through the tokenizer's chat template
    ppl_seq_len: int = 1024
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    sandbox_workers: int = 2


# --------------------------------------------------------------------------- item selection


def select_items(items: list[dict], limit: int | None, seed: int, task: str) -> list[dict]:
    """All items, or a seeded subset of ``limit`` of them in their original order."""
    if limit is None or limit >= len(items):
        return items
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    keep = np.sort(rng.choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def _load_task_items(task: Task) -> list[dict]:
    from colakit.data.evalsets import load_items

    return load_items(task.data_task or task.name)


def _heldout_texts(source: str) -> list[dict]:
    from colakit.data.sources import get_source

    return [{"id": d.doc_id, "text": d.text} for d in get_source(source).documents(split="heldout")]


# --------------------------------------------------------------------------- per-kind scoring


def _bpb(logprob: float, text: str) -> float:
    n = len(text.encode("utf-8"))
    return -logprob / LN2 / n if n else float("nan")


def _accuracy_metrics(per_item: list[dict], keys: tuple[str, ...]) -> dict:
    out = {}
    for key in keys:
        values = [float(r[key]) for r in per_item if key in r]
        if values:
            out[key] = float(np.mean(values))
            out[f"{key}_stderr"] = mean_stderr(values)
    return out


def _score_multiple_choice(model, tokenizer, task: Task, items: list[dict], cfg: EvalConfig) -> tuple[dict, list]:
    rendered = [task.render(d) for d in items]
    requests, spans = [], []
    for mc in rendered:
        spans.append((len(requests), len(mc.continuations)))
        requests += [Request(c, k) for c, k in zip(mc.contexts, mc.continuations)]
    scores = score_requests(model, tokenizer, requests, token_budget=cfg.token_budget)
    records = []
    for d, mc, (start, n) in zip(items, rendered, spans):
        lls = np.array([s.logprob for s in scores[start : start + n]])
        chars = np.array([len(c) for c in mc.choices], dtype=float)
        nbytes = np.array([len(c.encode("utf-8")) for c in mc.choices], dtype=float)
        pred, pred_norm, pred_bytes = int(lls.argmax()), int((lls / chars).argmax()), int((lls / nbytes).argmax())
        gold_lp = float(lls[mc.gold])
        records.append({
            "id": d["id"], "gold": mc.gold, "pred": pred, "pred_norm": pred_norm,
            "acc": pred == mc.gold, "acc_norm": pred_norm == mc.gold, "acc_bytes": pred_bytes == mc.gold,
            "gold_logprob": gold_lp, "gold_bpb": _bpb(gold_lp, mc.continuations[mc.gold]),
            "logprobs": [round(float(x), 5) for x in lls],
            **({"subject": d["subject"]} if "subject" in d else {}),
        })
    metrics = _accuracy_metrics(records, ("acc", "acc_norm", "acc_bytes"))
    if task.name == "mmlu":
        metrics.update(_mmlu_subjects(records))
    return metrics, records


def _mmlu_subjects(records: list[dict]) -> dict:
    by_subject: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by_subject[r["subject"]].append(float(r["acc"]))
    per = {s: {"acc": float(np.mean(v)), "n": len(v)} for s, v in sorted(by_subject.items())}
    means = [v["acc"] for v in per.values()]
    # macro stderr: subjects are fixed strata, so combine the per-subject variances
    var = sum(np.var(v, ddof=1) / len(v) for v in by_subject.values() if len(v) > 1) / len(per) ** 2
    return {"acc_macro": float(np.mean(means)), "acc_macro_stderr": float(math.sqrt(var)),
            "subjects": per}


def _prompts(task: Task, items: list[dict], tokenizer, cfg: EvalConfig) -> list:
    rendered = [task.render(d) for d in items]
    if cfg.chat and task.name == "gsm8k":
        if not getattr(tokenizer, "chat_template", None):
            raise ColakitError("--chat was given but the tokenizer has no chat template",
                               "drop --chat for base models")
        prompts = [tokenizer.apply_chat_template(gsm8k_messages(d["question"]), add_generation_prompt=True,
                                                 tokenize=False) for d in items]
        rendered = [type(g)(p, g.stop, g.gold_text) for g, p in zip(rendered, prompts)]
    return rendered


def _score_generation(model, tokenizer, task: Task, items: list[dict], cfg: EvalConfig) -> tuple[dict, list]:
    rendered = _prompts(task, items, tokenizer, cfg)
    max_new = cfg.max_new_tokens or task.max_new_tokens
    stops = rendered[0].stop if rendered else ()
    outputs = generate(model, tokenizer, [g.prompt for g in rendered], stop=stops, max_new_tokens=max_new,
                       batch_size=cfg.gen_batch_size)
    gold = score_requests(model, tokenizer, [Request(g.prompt, g.gold_text) for g in rendered],
                          token_budget=cfg.token_budget)
    records = []
    for d, g, out, s in zip(items, rendered, outputs, gold):
        records.append({"id": d["id"], "prediction": out.text, "finish": out.finish, "new_tokens": out.n_tokens,
                        "gold_logprob": s.logprob, "gold_bpb": _bpb(s.logprob, g.gold_text)})
    if task.name == "gsm8k":
        for d, r in zip(items, records):
            extracted = gsm8k_extract(r["prediction"])
            ok = gsm8k_correct(d, extracted)
            r.update(answer=extracted, exact_match_strict=ok["strict"], exact_match_flexible=ok["flexible"])
            r["correct"] = r["exact_match_strict"]
        return _accuracy_metrics(records, ("exact_match_strict", "exact_match_flexible")), records
    if task.name == "math":
        for d, r in zip(items, records):
            answer = math_extract(r["prediction"])
            r.update(answer=answer, exact_match=answer is not None and
                     math_normalise(answer) == math_normalise(str(d["answer"])))
            r["correct"] = r["exact_match"]
        return _accuracy_metrics(records, ("exact_match",)), records
    programs = [code_program(task.name, d, r["prediction"]) for d, r in zip(items, records)]
    for r, run in zip(records, run_programs(programs, cfg.sandbox, workers=cfg.sandbox_workers)):
        r.update({"pass@1": run.passed, "correct": run.passed, "status": run.status,
                  "error": None if run.passed else run.output[-300:]})
    return _accuracy_metrics(records, ("pass@1",)), records


def _score_perplexity(model, tokenizer, task: Task, docs: list[dict], cfg: EvalConfig) -> tuple[dict, list]:
    from colakit.evaluate.perplexity import perplexity

    out = perplexity(model, tokenizer, [d["text"] for d in docs], seq_len=cfg.ppl_seq_len)
    return out["metrics"], [{"id": d["id"], **r} for d, r in zip(docs, out["documents"])]


# --------------------------------------------------------------------------- model identity


def model_hash(model) -> str:
    """sha256 (16 hex) over every parameter and buffer, by name: identifies the weights evaluated."""
    h = hashlib.sha256()
    seen = set()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.data_ptr() in seen:
            continue  # tied weights count once
        seen.add(t.data_ptr())
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


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
    from colakit.calibset import CalibrationSet
    from colakit.data.overlap import assert_no_overlap

    overlap = assert_no_overlap(CalibrationSet.load(calib).texts, allow=allow)
    return {"checked": True, "calibration": calib, **overlap.to_dict()}


# --------------------------------------------------------------------------- the evaluation


_SCORERS = {"multiple_choice": _score_multiple_choice, "generate": _score_generation,
            "perplexity": _score_perplexity}


def _task_items(task: Task, limit: int | None, seed: int, items_override: dict | None) -> list[dict]:
    if items_override and task.name in items_override:
        items = list(items_override[task.name])
    elif task.kind == "perplexity":
        items = _heldout_texts(task.source)
    else:
        items = _load_task_items(task)
    return select_items(items, limit, seed, task.name)


def evaluate(model, tokenizer, tasks: str | list[str] = "quick", *, limit: int | None = None, seed: int = 0,
             config: EvalConfig | None = None, out: str | Path | None = None, model_name: str | None = None,
             model_dir: str | Path | None = None, allow_overlap: bool = False,
             items_override: dict[str, list[dict]] | None = None,
             on_task: Callable[[str, dict], None] | None = None) -> dict:
    """Evaluate ``model`` on a suite or tasks; returns (and with ``out``, writes) the results dict.

    ``limit`` caps items per task (a seeded subset, ids recorded); ``out`` also keeps per-task
    checkpoints so an interrupted run resumes; ``items_override`` maps task -> in-memory items
    (each with an ``"id"``) instead of the packaged sets.
    """
    cfg = config or EvalConfig(seed=seed)
    cfg.seed = seed
    plan = resolve_tasks(tasks, limit)
    overlap = check_calibration_overlap(model_dir, allow_overlap)
    started = time.time()
    ident = {"name": model_name, "hash": model_hash(model), "class": type(model).__name__,
             "dtype": str(next(model.parameters()).dtype), "device": str(next(model.parameters()).device)}
    from colakit.model.load import tokenizer_hash

    ident["tokenizer_hash"] = tokenizer_hash(tokenizer)
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
            metrics, records = _SCORERS[task.kind](model, tokenizer, task, items, cfg)
            result = {"capability": task.capability, "kind": task.kind, "version": task.version,
                      "reference": task.reference, "primary": task.primary,
                      "higher_is_better": task.primary not in LOWER_IS_BETTER, "limit": task_limit,
                      "n": len(items), "item_ids": ids, "metrics": metrics, "items": records,
                      "wall_time_s": round(time.time() - t0, 2)}
            res.save_part(Path(out) if out else None, name, key, result)
        result["flags"] = chance_flag(result)  # from the items, so checkpoints from older versions get it too
        out_tasks[name] = result
        if on_task:
            on_task(name, result)
    results = {"schema": res.SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "model": ident, "tasks_requested": tasks if isinstance(tasks, str) else ",".join(tasks),
               "limit": limit, "seed": cfg.seed, "settings": settings, "overlap": overlap,
               "tasks": out_tasks, "capabilities": capabilities(out_tasks),
               "wall_time_s": round(time.time() - started, 2)}
    from colakit import __version__

    results["colakit_version"] = __version__
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
