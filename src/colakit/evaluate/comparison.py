"""Comparisons of evaluation results that can tell models apart: paired, per metric kind, corrected.

Three metric kinds, each recorded per item (or per document) by the evaluator:

- ``accuracy``: 0/1 correctness of the task's decision rule (``acc``, ``acc_norm``, exact match,
  pass@1). Retention = compressed / dense.
- ``likelihood``: mean bits per byte of the gold continuation (``gold_bpb``), for every
  multiple-choice and generation task. Retention = dense / compressed (lower bpb is better). It
  has far less variance than 0/1 accuracy: each item contributes a real number, not a coin flip.
- ``perplexity``: the perplexity tasks' primary metric (token perplexity or bits per byte) as a
  ratio of sums over documents. Retention = dense / compressed.

Every retention is higher-is-better with 1.0 = nothing lost. Whenever two results cover the same
items, comparisons are paired: items (documents) are resampled together for all models
(``stats.paired_bootstrap_stat``), accuracy differences also get McNemar's mid-p test, and
p-values across the cells of a comparison are Holm-adjusted (``stats.adjust_pvalues``).

A task whose dense model is at chance for a trivial reason is flagged and left out of capability
averages unless asked for: at chance (accuracy within noise of chance, or nothing right), its
accuracy retention is a ratio of noise, but its likelihood is kept (gold bits per byte do not
depend on the decision rule); with one constant answer (BoolQ "no", MMLU "A" for the default
model), the gold continuation is one label of a small set, whose likelihood measures the same
label prior, so both kinds are left out.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter

import numpy as np

from colakit.capabilities import CAPABILITIES
from colakit.errors import ColakitError
from colakit.evaluate.stats import (
    adjust_pvalues, mcnemar, normal_p_value, paired_bootstrap, paired_bootstrap_stat, ratio_stderr, resample_sums,
)
from colakit.evaluate.tasks import LOWER_IS_BETTER

LN2 = math.log(2)
KINDS = ("accuracy", "likelihood", "perplexity")
# perplexity metrics that are functions of per-document sums (word counts are not recorded per document)
_PPL_METRICS = ("token_perplexity", "bits_per_byte", "byte_perplexity")
DEFINITION = ("retention = compressed/dense for accuracies; dense/compressed for perplexity, bits per byte and "
              "gold bits per byte (higher is better, 1.0 = no loss)")


def primary_value(task_result: dict) -> float:
    return float(task_result["metrics"][task_result["primary"]])


# --------------------------------------------------------------------------- per-item columns


def is_perplexity(task: dict) -> bool:
    return task.get("kind") == "perplexity" or task["primary"] in LOWER_IS_BETTER


def correctness_key(task: dict) -> str | None:
    """The per-item 0/1 field behind the task's accuracy (``acc`` for MMLU's macro average)."""
    items = task.get("items") or []
    if not items or is_perplexity(task):
        return None
    if "correct" in items[0]:
        return "correct"
    key = "acc_norm" if task["primary"] == "acc_norm" else "acc"
    return key if key in items[0] else None


def task_kinds(task: dict) -> list[str]:
    """The metric kinds this task's per-item records support, primary kind first."""
    items = task.get("items") or []
    if not items:
        return []
    if is_perplexity(task):
        return ["perplexity"] if {"nll", "tokens", "bytes"} <= set(items[0]) else []
    kinds = ["accuracy"] if correctness_key(task) else []
    return kinds + (["likelihood"] if "gold_bpb" in items[0] else [])


def primary_kind(task: dict) -> str:
    return "perplexity" if is_perplexity(task) else "accuracy"


def kind_metric(task: dict, kind: str) -> str:
    if kind == "likelihood":
        return "gold_bpb"
    if kind == "perplexity":
        return task["primary"] if task["primary"] in _PPL_METRICS else "bits_per_byte"
    # the item-level field behind the accuracy (MMLU's primary is a macro average: its items carry acc)
    return task["primary"] if task["primary"] in task["items"][0] else correctness_key(task)


def _columns(task: dict, kind: str) -> dict[str, np.ndarray]:
    items = task["items"]
    if kind == "accuracy":
        key = correctness_key(task)
        return {"x": np.array([float(r[key]) for r in items])}
    if kind == "likelihood":
        return {"x": np.array([float(r["gold_bpb"]) for r in items])}
    return {k: np.array([float(r[k]) for r in items]) for k in ("nll", "tokens", "bytes")}


def paired_columns(kind: str, tasks: dict[str, dict]) -> dict[str, np.ndarray]:
    """Per-item columns of several models' results on the same items, named ``"<model>.<column>"``,
    plus ``"one"``; rows that are not finite for every model (an empty gold text) are dropped."""
    cols = {f"{p}.{k}": v for p, t in tasks.items() for k, v in _columns(t, kind).items()}
    n = len(next(iter(cols.values())))
    cols["one"] = np.ones(n)
    keep = np.all([np.isfinite(v) for v in cols.values()], axis=0)
    return {k: v[keep] for k, v in cols.items()}


def kind_value(kind: str, metric: str, sums: dict, p: str):
    """Model ``p``'s metric from column sums (works on arrays of resampled sums too)."""
    if kind in ("accuracy", "likelihood"):
        return sums[f"{p}.x"] / sums["one"]
    nll = sums[f"{p}.nll"]
    if metric == "token_perplexity":
        return np.exp(nll / sums[f"{p}.tokens"])
    bpb = nll / sums[f"{p}.bytes"] / LN2
    return 2 ** bpb if metric == "byte_perplexity" else bpb


def kind_higher_is_better(kind: str) -> bool:
    return kind == "accuracy"


def retention_of(value, reference, higher_is_better: bool):
    """compressed/dense when higher is better, dense/compressed otherwise (arrays welcome)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(value, reference) if higher_is_better else np.divide(reference, value)


def _seed(seed: int, *parts: str) -> list[int]:
    return [int(seed), zlib.crc32("/".join(parts).encode())]


# --------------------------------------------------------------------------- chance flags


def chance_flag(task: dict, *, constant_share: float = 0.9, min_items: int = 10, z: float = 1.0) -> dict:
    """Is this result's accuracy uninformative for a trivial reason?

    Flagged when the model gives one constant answer (the same choice index on at least
    ``constant_share`` of at least ``min_items`` items: accuracy then measures the label balance),
    or when accuracy is at or below chance plus ``z`` standard errors of a chance-level binomial
    at this n (chance = mean of 1/choices; 0 for generation, where the rule means no item right).
    """
    clear = {"chance": False, "reason": ""}
    key = correctness_key(task)
    if key is None:
        return clear
    items = task["items"]
    n = len(items)
    acc = float(np.mean([float(r[key]) for r in items]))
    pred_key = "pred_norm" if task["primary"] == "acc_norm" else "pred"
    if n >= min_items and pred_key in items[0]:
        choice, count = Counter(int(r[pred_key]) for r in items).most_common(1)[0]
        if count / n >= constant_share:
            # the gold continuation is one label of a small fixed set, so its likelihood measures the
            # same label prior as the constant answer: both kinds are uninformative here
            return {"chance": True, "rule": "constant_answer", "excludes": ["accuracy", "likelihood"],
                    "reason": f"answers choice {choice} on {count}/{n} items ({count / n:.0%}): accuracy "
                              f"{acc:.3f} reflects the label balance, not the capability"}
    if "logprobs" in items[0]:
        chance = float(np.mean([1 / len(r["logprobs"]) for r in items]))
    elif "prediction" in items[0] or key == "correct":
        chance = 0.0
    else:
        return clear
    tolerance = z * math.sqrt(chance * (1 - chance) / n)
    if acc <= chance + tolerance:
        reason = (f"no item right (n={n}): accuracy retention is undefined" if chance == 0 else
                  f"accuracy {acc:.3f} is within {z:g} standard error of chance {chance:.3f} (n={n})")
        return {"chance": True, "rule": "at_chance", "excludes": ["accuracy"], "reason": reason}
    return clear


def _flags(task: dict) -> dict:
    # results written before flags existed get them computed from their per-item records
    return task.get("flags") or chance_flag(task)


def excluded(flags: dict | None, kind: str) -> bool:
    """Does a chance flag keep this metric kind of the task out of capability averages?"""
    flags = flags or {}
    return bool(flags.get("chance")) and kind in flags.get("excludes", ["accuracy"])


# --------------------------------------------------------------------------- compressed vs dense


def _paired_vs_dense(name: str, comp: dict, base: dict, kind: str, *, n_resamples: int, seed: int) -> dict:
    metric = kind_metric(comp, kind)
    hib = kind_higher_is_better(kind)
    cols = paired_columns(kind, {"c": comp, "d": base})

    def stat(s):
        return retention_of(kind_value(kind, metric, s, "c"), kind_value(kind, metric, s, "d"), hib)

    boot = paired_bootstrap_stat(cols, stat, null=1.0, n_resamples=n_resamples, seed=_seed(seed, name, kind))
    full = {k: np.array([v.sum()]) for k, v in cols.items()}
    out = {"metric": metric, "compressed": float(kind_value(kind, metric, full, "c")[0]),
           "dense": float(kind_value(kind, metric, full, "d")[0]), "retention": boot["estimate"],
           "retention_stderr": boot["stderr"], "ci_low": boot["ci_low"], "ci_high": boot["ci_high"],
           "p_value": boot["p_value"], "test": "paired_bootstrap", "n": boot["n"]}
    if kind == "accuracy":
        m = mcnemar(cols["d.x"] > 0.5, cols["c.x"] > 0.5)
        out.update(p_value=m["mid_p_value"], test="mcnemar_mid_p", mcnemar=m)
    return out


def _legacy_paired(comp: dict, base: dict) -> dict:
    """The paired tests earlier versions recorded (kept for readers of old keys)."""
    key = correctness_key(comp)
    out = {}
    if key is not None:
        a = [bool(r[key]) for r in base["items"]]
        b = [bool(r[key]) for r in comp["items"]]
        out["mcnemar"] = mcnemar(a, b)
        out["paired_bootstrap"] = paired_bootstrap(np.array(a, float), np.array(b, float), n_resamples=2000)
    elif comp["items"] and "bits_per_byte" in comp["items"][0]:
        out["paired_bootstrap_bpb"] = paired_bootstrap([r["bits_per_byte"] for r in base["items"]],
                                                       [r["bits_per_byte"] for r in comp["items"]], n_resamples=2000)
    return out


def _task_vs_dense(name: str, comp: dict, base: dict, *, n_resamples: int, seed: int) -> dict:
    c, d = primary_value(comp), primary_value(base)
    se_c = comp["metrics"].get(comp["primary"] + "_stderr", float("nan"))
    se_d = base["metrics"].get(base["primary"] + "_stderr", float("nan"))
    if comp["higher_is_better"]:
        r, r_se = (c / d if d else float("nan")), ratio_stderr(c, se_c, d, se_d)
    else:
        r, r_se = (d / c if c else float("nan")), ratio_stderr(d, se_d, c, se_c)
    kind = primary_kind(comp)
    entry = {"compressed": c, "dense": d, "retention": r, "retention_stderr": r_se, "stderr_method": "delta_unpaired",
             "metric": comp["primary"], "metric_kind": kind, "same_items": comp["item_ids"] == base["item_ids"],
             "flags": _flags(base)}
    if not entry["same_items"]:
        return entry
    entry.update(_legacy_paired(comp, base))
    kinds = [k for k in task_kinds(comp) if k in task_kinds(base)]
    if kind in kinds:
        paired = _paired_vs_dense(name, comp, base, kind, n_resamples=n_resamples, seed=seed)
        entry.update(ci_low=paired["ci_low"], ci_high=paired["ci_high"], p_value=paired["p_value"],
                     test=paired["test"])
        if paired["metric"] == comp["primary"]:
            entry.update(retention_stderr=paired["retention_stderr"], stderr_method="paired_bootstrap",
                         retention_stderr_unpaired=r_se)
        else:  # MMLU: the primary is a macro average; the paired numbers are for the item-level accuracy
            entry["paired_metric"] = paired["metric"]
    if "likelihood" in kinds:
        entry["likelihood"] = _paired_vs_dense(name, comp, base, "likelihood", n_resamples=n_resamples, seed=seed)
    return entry


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _capabilities(per_task: dict, results: dict, include_flagged: bool) -> dict:
    per_cap = {}
    for cap in CAPABILITIES:
        names = [n for n in per_task if results["tasks"][n]["capability"] == cap]
        if not names:
            continue
        flagged = [n for n in names if per_task[n]["flags"].get("chance")]

        def keep(n, kind):
            return include_flagged or not excluded(per_task[n]["flags"], kind)

        used = [n for n in names if keep(n, per_task[n]["metric_kind"])]
        acc = [per_task[n]["retention"] for n in used if per_task[n]["metric_kind"] == "accuracy"]
        ppl = [per_task[n]["retention"] for n in used if per_task[n]["metric_kind"] == "perplexity"]
        lik = [per_task[n]["likelihood"]["retention"] for n in names
               if "likelihood" in per_task[n] and keep(n, "likelihood")]
        primary = [per_task[n]["retention"] for n in used]
        per_cap[cap] = {"retention": _mean(primary) if primary else float("nan"), "tasks": len(primary),
                        "accuracy": _mean(acc), "likelihood": _mean(lik), "perplexity": _mean(ppl),
                        "flagged": flagged}
    return per_cap


def compare(results: dict, dense: dict, *, include_flagged: bool = False, n_resamples: int = 2000, seed: int = 0,
            alpha: float = 0.05) -> dict:
    """Retention of ``results`` (a compressed model) relative to ``dense``, per task and capability.

    Per task: the primary retention (``retention``; with a paired-bootstrap ``retention_stderr``
    and ``ci_low``/``ci_high`` when both were evaluated on the same items, McNemar mid-p or
    bootstrap ``p_value`` against no loss), and for multiple-choice and generation tasks a
    ``likelihood`` block (gold bits per byte, dense/compressed, the same statistics). ``flags``
    come from the dense result. P-values are Holm-adjusted over every test in the comparison
    (``p_adjusted``, ``significant`` at ``alpha``).

    Per capability: ``retention`` (mean primary retention, the earlier key), and the means by metric
    kind (``accuracy``, ``likelihood``, ``perplexity``; None where the capability has none).
    Flagged tasks are left out of the kinds their flag ``excludes`` unless ``include_flagged``.
    """
    per_task = {}
    for name, comp in results["tasks"].items():
        if name in dense["tasks"]:
            per_task[name] = _task_vs_dense(name, comp, dense["tasks"][name], n_resamples=n_resamples, seed=seed)
    cells = [e for t in per_task.values() for e in (t, t.get("likelihood")) if e and "p_value" in e]
    for e, p in zip(cells, adjust_pvalues([e["p_value"] for e in cells], "holm")):
        e.update(p_adjusted=p, significant=bool(p < alpha))
    return {"definition": DEFINITION, "alpha": alpha, "adjustment": "holm", "include_flagged": include_flagged,
            "dense_model": dense["model"], "compressed_model": results["model"], "tasks": per_task,
            "capabilities": _capabilities(per_task, results, include_flagged)}


# --------------------------------------------------------------------------- two compressed models


def _check_same_items(name: str, a: dict, b: dict, what: str) -> None:
    if a["item_ids"] != b["item_ids"]:
        raise ColakitError(f"task {name}: {what} were evaluated on different items, so they cannot be compared "
                           "item by item", "evaluate both with the same --suite, --limit and --seed")


def _delta_cell(name: str, kind: str, tasks: dict[str, dict], *, n_resamples: int, seed: int) -> dict:
    metric = kind_metric(tasks["a"], kind)
    hib = kind_higher_is_better(kind)
    cols = paired_columns(kind, tasks)
    ref = "d" if "d" in tasks else "b"

    def stat(s):
        va, vb = kind_value(kind, metric, s, "a"), kind_value(kind, metric, s, "b")
        if ref == "b":
            return retention_of(va, vb, hib) - 1.0
        vd = kind_value(kind, metric, s, "d")
        return retention_of(va, vd, hib) - retention_of(vb, vd, hib)

    boot = paired_bootstrap_stat(cols, stat, null=0.0, n_resamples=n_resamples, seed=_seed(seed, name, kind))
    full = {k: np.array([v.sum()]) for k, v in cols.items()}
    values = {p: float(kind_value(kind, metric, full, p)[0]) for p in tasks}
    cell = {"metric": metric, "a": values["a"], "b": values["b"], "dense": values.get("d"),
            "delta": boot["estimate"], "ci_low": boot["ci_low"], "ci_high": boot["ci_high"],
            "stderr": boot["stderr"], "p_value": boot["p_value"], "test": "paired_bootstrap", "n": boot["n"]}
    if ref == "d":
        cell.update(retention_a=float(retention_of(values["a"], values["d"], hib)),
                    retention_b=float(retention_of(values["b"], values["d"], hib)))
    if kind == "accuracy":
        m = mcnemar(cols["b.x"] > 0.5, cols["a.x"] > 0.5)  # only_b: items a gets right and b does not
        cell.update(p_value=m["mid_p_value"], test="mcnemar_mid_p", bootstrap_p_value=boot["p_value"], mcnemar=m)
    return cell


def compare_models(a: dict, b: dict, dense: dict | None = None, *, n_resamples: int = 2000, seed: int = 0,
                   alpha: float = 0.05, adjust: str = "holm") -> dict:
    """Paired comparison of two compressed models' results on the same items, per task and metric kind.

    ``delta`` = retention of a minus retention of b, both relative to ``dense`` when given;
    without ``dense``, b is the reference: delta = (a's metric relative to b's, as a retention) - 1.
    Positive means a kept more. Each cell has a paired bootstrap interval and two-sided p-value
    (items or documents resampled together for every model; perplexity as a ratio of sums over
    the resampled documents); accuracy cells take McNemar's mid-p as ``p_value``. ``p_adjusted``
    corrects over every cell of this comparison (``adjust``: holm or bh); a grid of comparisons
    should adjust over all its cells instead (``adjust_pvalues`` on ``paired_rows``).
    Raises ColakitError when a shared task was evaluated on different items.
    """
    names = [n for n in a["tasks"] if n in b["tasks"] and (dense is None or n in dense["tasks"])]
    if not names:
        raise ColakitError("the two results share no task", "evaluate both models on the same suite")
    per_task = {}
    for name in names:
        tasks = {"a": a["tasks"][name], "b": b["tasks"][name]}
        _check_same_items(name, tasks["a"], tasks["b"], "models a and b")
        if dense is not None:
            tasks["d"] = dense["tasks"][name]
            _check_same_items(name, tasks["d"], tasks["a"], "the dense model and model a")
        kinds = [k for k in task_kinds(tasks["a"]) if all(k in task_kinds(t) for t in tasks.values())]
        ref = tasks.get("d", tasks["b"])
        per_task[name] = {"capability": tasks["a"]["capability"], "primary_kind": primary_kind(tasks["a"]),
                          "flags": _flags(ref),
                          "kinds": {k: _delta_cell(name, k, tasks, n_resamples=n_resamples, seed=seed) for k in kinds}}
    cells = [c for t in per_task.values() for c in t["kinds"].values()]
    for c, p in zip(cells, adjust_pvalues([c["p_value"] for c in cells], adjust)):
        c.update(p_adjusted=p, significant=bool(p < alpha))
    return {"definition": "delta = retention(a) - retention(b) relative to " + ("dense" if dense else "b") +
                          "; " + DEFINITION,
            "reference": "dense" if dense is not None else "b", "alpha": alpha, "adjustment": adjust,
            "models": {"a": a.get("model"), "b": b.get("model"), "dense": dense.get("model") if dense else None},
            "tasks": per_task}


# --------------------------------------------------------------------------- tidy rows


def retention_rows(comparison: dict, results: dict) -> list[dict]:
    """``compare()`` output as flat rows: one per perplexity task; two per multiple-choice or
    generation task (its accuracy metric, and ``gold_bpb`` as the likelihood kind). ``flagged``
    marks the rows a chance flag leaves out of capability averages: the accuracy row, and for a
    constant answer the likelihood row too."""
    rows = []
    for name, e in comparison["tasks"].items():
        cap = results["tasks"][name]["capability"]
        flags = e.get("flags") or {}
        rows.append({"task": name, "capability": cap, "metric": e["metric"], "metric_kind": e["metric_kind"],
                     "value": e["compressed"], "dense_value": e["dense"], "retention": e["retention"],
                     "retention_stderr": e["retention_stderr"], "flagged": excluded(flags, e["metric_kind"]),
                     "flag_reason": flags.get("reason", "") if excluded(flags, e["metric_kind"]) else ""})
        lik = e.get("likelihood")
        if lik is not None:
            out = excluded(flags, "likelihood")
            rows.append({"task": name, "capability": cap, "metric": lik["metric"], "metric_kind": "likelihood",
                         "value": lik["compressed"], "dense_value": lik["dense"], "retention": lik["retention"],
                         "retention_stderr": lik["retention_stderr"], "flagged": out,
                         "flag_reason": flags.get("reason", "") if out else ""})
    return rows


def paired_rows(pair: dict) -> list[dict]:
    """``compare_models()`` output as flat rows (raw p-values: adjust over the whole grid)."""
    return [{"task": name, "metric_kind": kind, "delta": c["delta"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
             "p_value": c["p_value"]}
            for name, t in pair["tasks"].items() for kind, c in t["kinds"].items()]


# --------------------------------------------------------------------------- two curations, over seeds

_KIND_ORDER = {"likelihood": ("likelihood", "perplexity", "accuracy"),
               "accuracy": ("accuracy", "perplexity", "likelihood")}


def _task_kind(task: dict, metric_kind: str) -> str | None:
    have = task_kinds(task)
    return next((k for k in _KIND_ORDER[metric_kind] if k in have), None)


def compare_mean_retention(pairs: list[tuple[dict, dict]], dense: dict, *, metric_kind: str = "likelihood",
                           include_flagged: bool = False, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Paired test of two curations' mean retention: the report's headline mean (over capabilities,
    each the mean of its tasks' retentions under ``metric_kind``), averaged over seeds.

    ``pairs``: per seed, the results of curation a's and curation b's compressed model (the same
    compression), all evaluated on the same items as ``dense``. ``delta`` = mean retention of a minus
    b's. Items are resampled per task, the same indices for every model and seed (the evaluation's
    items do not depend on the calibration seed), so the interval reflects the evaluation's items;
    the spread over calibration seeds enters through the mean over them. The p-value is two-sided
    (normal approximation with the bootstrap standard error, as ``paired_bootstrap_stat``); correct
    it over every comparison made.
    """
    if metric_kind not in _KIND_ORDER:
        raise ColakitError(f"unknown metric kind {metric_kind!r}", f"use one of {', '.join(_KIND_ORDER)}")
    if not pairs:
        raise ColakitError("no pair of results to compare", "give at least one seed's (a, b) results")
    models = {f"{side}{i}": res for i, pair in enumerate(pairs) for side, res in zip("ab", pair)}
    names = [n for n in dense["tasks"] if all(n in r["tasks"] for r in models.values())]
    used: dict[str, tuple[str, str]] = {}  # task -> (kind, capability)
    for name in names:
        kind = _task_kind(dense["tasks"][name], metric_kind)
        if kind is None or not all(kind in task_kinds(r["tasks"][name]) for r in models.values()):
            continue
        if include_flagged or not excluded(_flags(dense["tasks"][name]), kind):
            used[name] = (kind, dense["tasks"][name]["capability"])
    if not used:
        raise ColakitError("the results share no task with per-item records", "evaluate them on the same suite")
    caps = sorted({cap for _, cap in used.values()})
    per_cap = Counter(cap for _, cap in used.values())
    estimate = 0.0
    draws = np.zeros(n_resamples)
    means = {"a": 0.0, "b": 0.0}
    for name, (kind, cap) in used.items():
        tasks = {"d": dense["tasks"][name], **{p: r["tasks"][name] for p, r in models.items()}}
        for p in models:
            _check_same_items(name, tasks["d"], tasks[p], "the dense model and a compared model")
        metric, hib = kind_metric(tasks["d"], kind), kind_higher_is_better(kind)
        cols = paired_columns(kind, tasks)
        weight = 1.0 / (len(caps) * per_cap[cap] * len(pairs))  # mean over capabilities, their tasks, seeds

        def retention(sums, p):
            return retention_of(kind_value(kind, metric, sums, p), kind_value(kind, metric, sums, "d"), hib)

        full = {k: np.array([v.sum()]) for k, v in cols.items()}
        resampled = resample_sums(cols, n_resamples, _seed(seed, "mean", name))
        for i in range(len(pairs)):
            a, b = float(retention(full, f"a{i}")[0]), float(retention(full, f"b{i}")[0])
            means["a"] += weight * a
            means["b"] += weight * b
            estimate += weight * (a - b)
            draws += weight * (retention(resampled, f"a{i}") - retention(resampled, f"b{i}"))
    draws = draws[np.isfinite(draws)]
    lo, hi = np.quantile(draws, [0.025, 0.975]) if draws.size else (float("nan"), float("nan"))
    se = float(draws.std(ddof=1)) if draws.size > 1 else float("nan")
    return {"metric_kind": metric_kind, "mean_a": means["a"], "mean_b": means["b"], "delta": estimate,
            "ci_low": float(lo), "ci_high": float(hi), "stderr": se, "p_value": normal_p_value(estimate, se),
            "seeds": len(pairs), "tasks": sorted(used), "n_resamples": int(draws.size)}
