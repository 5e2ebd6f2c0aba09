"""How many items a comparison of two compressed models needs, and the ``quick`` suite's sizes.

The question a calibration study asks is whether two compressed models (same base model, two
calibration sets) retain different amounts of a capability. Both are evaluated on the same items,
so the test is paired, and what matters is the spread of the per-item *difference* between them,
not the spread of either model's scores.

Derivation. Let d be the retention difference (a minus b, relative to the dense model) of a task.
Each retention is a ratio of sums over items (accuracy: sum correct / dense sum correct; gold
bits per byte: dense sum / compressed sum; perplexity: a function of summed NLL and tokens), so d
is a smooth function of item means and its estimate is asymptotically normal with variance
sd^2 / n, where sd is the standard deviation of d's per-item linearisation (influence values). We
estimate sd as sqrt(n) times the leave-one-out jackknife standard error of d on real paired data
(``per_item_sd``; for accuracy this is sd(c_a - c_b) / dense accuracy, the SD of the per-item
correctness difference in retention units). A two-sided level-alpha test then detects a true
difference delta with probability ``power`` when

    delta >= (z_{1 - alpha/2} + z_{power}) * sd / sqrt(n)        (``min_detectable_difference``)
    n >= ((z_{1 - alpha/2} + z_{power}) * sd / delta)^2           (``items_for``)

with z_{0.975} + z_{0.8} = 1.960 + 0.842 = 2.802 at alpha = 0.05 and 80% power.

Sizes of the quick suite. Each task t has sd_t (of its likelihood retention for multiple-choice and
generation tasks, of its perplexity retention for perplexity tasks: the metrics that move with
calibration; accuracy is reported, but powering it would take thousands of items per task) and a
cost c_t in seconds per item. ``plan_sizes`` minimises sum_t sd_t^2 / n_t, the variance of the
suite's mean retention difference, within a time budget B = sum_t n_t c_t: Neyman allocation
with costs, n_t = B (sd_t / sqrt(c_t)) / sum_s sd_s sqrt(c_s). Noisy, cheap tasks get many items;
a generation task, whose items cost seconds of decoding, gets few. (Equalising the detectable
difference across tasks instead spends most of the budget on the noisiest task, MMLU, whose
single-letter answers make gold bits per byte vary most.) Tasks that hit [min_items, items
available] are fixed there and the rest re-solved. ``power_table`` gives every task's minimum
detectable difference at its n, ``capability_mdd`` every capability's (of its mean over tasks).

The numbers (``QUICK_ESTIMATES``) come from real paired data: the default model (SmolLM2-135M)
compressed with GPTQ w4 g64 from two calibration sets (32 x 256 tokens: random C4 windows, and
COLA over five sources; `make demo`), both evaluated on the same items, with the dense model:
runs/demo/{dense,gptq-cola,gptq-random-c4}.json (ppl_c4, ppl_code: 8 documents; arc_easy,
hellaswag, piqa: 60 items) and runs/power/{dense,cola,random-c4}.json, written by
``colakit evaluate --model M --seed 0 --suite ppl_math:24,ppl_multilingual:24,ppl_wiki:32,
arc_challenge:60,winogrande:60,boolq:60,openbookqa:60,mmlu:60`` and ``--suite gsm8k:8,humaneval:8,
mbpp:8`` for M = smollm2-135m and runs/demo/gptq-{cola,random-c4} (the compressed models'
generation tasks into {cola,random-c4}-gen.json with --max-new-tokens 1: gold bits per byte do not
depend on what is generated); runs/power/dense-timing.json reruns the demo's tasks on the dense
model for timing.

Costs: relative costs are the median seconds per item of the runs/power runs (one thread on this
2-core machine while other jobs shared it: the same conditions for every task), put on the scale
of the demo's own evaluation runs of the compressed models (`make demo`) by ``timing_scale``, the
median ratio over the six tasks both timed: 0.2625, i.e. the shared single-thread runs were
about four times slower. MBPP is left out of the quick suite: 27 s per item on that scale
(100 s measured; 512 new tokens, 3-shot), so the minimum of items would take 40% of the budget
for little power; HumanEval covers code generation. 60 s of the budget are reserved for loading
the model, the items and the overlap index.

Reproduce the estimates with ``python -m colakit.evaluate.power runs/demo runs/power --timing
runs/power/dense.json runs/power/cola.json runs/power/random-c4.json runs/power/dense-timing.json
--anchor runs/demo/gptq-cola.json runs/demo/gptq-random-c4.json``; print the plan with
``colakit evaluate --power``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from colakit.errors import ColakitError
from colakit.evaluate.comparison import (
    kind_higher_is_better, kind_metric, kind_value, paired_columns, retention_of, task_kinds,
)
from colakit.evaluate.stats import jackknife_stderr
from colakit.evaluate.tasks import get_task


def _z(alpha: float, power: float) -> float:
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ColakitError(f"alpha and power must lie in (0, 1), got {alpha} and {power}", "use e.g. 0.05 and 0.8")
    unit = NormalDist()
    return unit.inv_cdf(1 - alpha / 2) + unit.inv_cdf(power)


def min_detectable_difference(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean paired difference a two-sided level-``alpha`` test finds with probability
    ``power`` on ``n`` items whose per-item differences have standard deviation ``sd_diff``."""
    if n < 1:
        raise ColakitError(f"n must be a positive number of items, got {n}", "pass the number of paired items")
    return _z(alpha, power) * sd_diff / math.sqrt(n)


def items_for(sd_diff: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired items needed to detect a mean difference ``delta`` (same units as ``sd_diff``)."""
    if delta <= 0:
        raise ColakitError(f"delta must be positive, got {delta}", "pass the smallest difference worth detecting")
    return max(1, math.ceil((_z(alpha, power) * sd_diff / delta) ** 2))


# --------------------------------------------------------------------------- estimates from real runs


@dataclass(frozen=True)
class TaskEstimate:
    """What sizing a task needs: the SD per item of the paired retention difference (``kind``: the
    metric the plan powers), the same for accuracy where there is one, cost, and items available."""

    capability: str
    kind: str  # "likelihood" or "perplexity"
    sd: float
    sd_accuracy: float | None
    seconds_per_item: float
    available: int


def per_item_sd(a: dict, b: dict, dense: dict, kind: str) -> float:
    """sqrt(n) x jackknife standard error of retention(a) - retention(b) for one task's results."""
    metric, hib = kind_metric(a, kind), kind_higher_is_better(kind)
    cols = paired_columns(kind, {"a": a, "b": b, "d": dense})

    def stat(s):
        vd = kind_value(kind, metric, s, "d")
        return np.asarray(retention_of(kind_value(kind, metric, s, "a"), vd, hib) -
                          retention_of(kind_value(kind, metric, s, "b"), vd, hib))

    return jackknife_stderr(cols, stat) * math.sqrt(len(cols["one"]))


def seconds_per_item(runs: list[dict]) -> dict[str, float]:
    """Median wall_time_s / n per task over results that timed it (``wall_time_s`` not None)."""
    seen: dict[str, list[float]] = {}
    for run in runs:
        for name, t in run["tasks"].items():
            if t.get("wall_time_s") is not None:
                seen.setdefault(name, []).append(t["wall_time_s"] / t["n"])
    return {name: float(np.median(v)) for name, v in seen.items()}


def estimate(runs: list[tuple[dict, dict, dict]], available: dict[str, int],
             timings: dict[str, float] | None = None) -> dict[str, TaskEstimate]:
    """``TaskEstimate`` per task from (a, b, dense) result triples on the same items; a task in
    several triples takes the one with the most items. Costs come from ``timings`` (seconds per
    item, e.g. ``seconds_per_item`` of runs made under one condition) or else the triple."""
    best: dict[str, tuple[dict, dict, dict]] = {}
    for a, b, d in runs:
        for name in a["tasks"].keys() & b["tasks"].keys() & d["tasks"].keys():
            if not a["tasks"][name]["item_ids"] == b["tasks"][name]["item_ids"] == d["tasks"][name]["item_ids"]:
                raise ColakitError(f"task {name}: the three results were evaluated on different items",
                                   "evaluate a, b and dense with the same --suite, --limit and --seed")
            if name not in best or a["tasks"][name]["n"] > best[name][0]["n"]:
                best[name] = (a["tasks"][name], b["tasks"][name], d["tasks"][name])
    out = {}
    for name in sorted(best):
        ta, tb, td = best[name]
        kinds = task_kinds(ta)
        kind = "perplexity" if "perplexity" in kinds else "likelihood"
        acc = per_item_sd(ta, tb, td, "accuracy") if "accuracy" in kinds else None
        acc = acc if acc is not None and math.isfinite(acc) and acc > 0 else None  # e.g. nothing right anywhere
        if timings and name in timings:
            secs = timings[name]
        else:
            secs = float(np.median([t["wall_time_s"] / t["n"] for t in best[name] if t.get("wall_time_s") is not None]))
        out[name] = TaskEstimate(ta["capability"], kind, round(per_item_sd(ta, tb, td, kind), 5),
                                 None if acc is None else round(acc, 5), round(secs, 4), available[name])
    return out


# --------------------------------------------------------------------------- planning


def plan_sizes(estimates: dict[str, TaskEstimate], budget_s: float, *, min_items: int = 8) -> dict[str, int]:
    """Items per task within ``budget_s`` seconds of scoring, clamped to [min_items, available].

    Minimises the summed variance of the tasks' retention differences (equivalently, of their
    mean) for the time: Neyman allocation with costs, n_t proportional to sd_t / sqrt(c_t). Tasks
    that hit a bound are fixed there and the rest re-solved.
    """
    if not estimates:
        return {}
    score = {t: e.sd / math.sqrt(e.seconds_per_item) for t, e in estimates.items()}
    fixed: dict[str, int] = {}
    while True:
        free = [t for t in estimates if t not in fixed]
        left = budget_s - sum(n * estimates[t].seconds_per_item for t, n in fixed.items())
        if left < min_items * sum(estimates[t].seconds_per_item for t in free):
            raise ColakitError(f"a budget of {budget_s:.0f} s does not cover {min_items} items per task",
                               "raise the budget or drop tasks")
        scale = left / sum(score[t] * estimates[t].seconds_per_item for t in free)
        want = {t: scale * score[t] for t in free}
        clamp = {t: min(max(min_items, math.floor(n)), estimates[t].available) for t, n in want.items()
                 if n < min_items or n > estimates[t].available}
        if not clamp:
            return {t: fixed.get(t) or math.floor(want[t]) for t in estimates}
        fixed.update(clamp)


def power_table(sizes: dict[str, int], estimates: dict[str, TaskEstimate], *, alpha: float = 0.05,
                power: float = 0.8) -> list[dict]:
    """Per task: n, the minimum detectable retention difference of the planned kind and of
    accuracy at that n, and the expected scoring time."""
    rows = []
    for task, n in sizes.items():
        e = estimates[task]
        rows.append({"task": task, "n": n, "kind": e.kind, "sd": e.sd,
                     "mdd": min_detectable_difference(e.sd, n, alpha, power),
                     "mdd_accuracy": None if e.sd_accuracy is None else
                     min_detectable_difference(e.sd_accuracy, n, alpha, power),
                     "seconds": n * e.seconds_per_item})
    return rows


def capability_mdd(sizes: dict[str, int], estimates: dict[str, TaskEstimate], *, alpha: float = 0.05,
                   power: float = 0.8) -> dict[str, float]:
    """Minimum detectable difference of each capability's mean retention over its tasks."""
    var: dict[str, list[float]] = {}
    for t, n in sizes.items():
        var.setdefault(estimates[t].capability, []).append(estimates[t].sd ** 2 / n)
    return {c: _z(alpha, power) * math.sqrt(sum(v)) / len(v) for c, v in var.items()}


# Measured (see the module docstring for the data and the command); rounded as printed by it.
QUICK_ESTIMATES: dict[str, TaskEstimate] = {  # TaskEstimate(capability, kind, sd, sd_accuracy, seconds_per_item, available)
    'ppl_wiki': TaskEstimate('LM', 'perplexity', 0.07881, None, 0.242, 216),
    'ppl_c4': TaskEstimate('LM', 'perplexity', 0.02182, None, 2.7005, 59),
    'ppl_code': TaskEstimate('LM', 'perplexity', 0.03396, None, 4.249, 189),
    'ppl_math': TaskEstimate('LM', 'perplexity', 0.03908, None, 0.9546, 474),
    'ppl_multilingual': TaskEstimate('Multilingual', 'perplexity', 0.04022, None, 0.4693, 56),
    'hellaswag': TaskEstimate('Commonsense', 'likelihood', 0.04229, 1.13754, 0.5773, 10042),
    'piqa': TaskEstimate('Commonsense', 'likelihood', 0.06424, 0.61001, 0.2176, 1838),
    'arc_easy': TaskEstimate('Commonsense', 'likelihood', 0.11822, 0.71311, 0.168, 2376),
    'arc_challenge': TaskEstimate('Commonsense', 'likelihood', 0.13015, 0.70667, 0.2341, 1172),
    'winogrande': TaskEstimate('Commonsense', 'likelihood', 0.1226, 1.03033, 0.11, 1267),
    'boolq': TaskEstimate('Commonsense', 'likelihood', 0.16467, 1.11558, 0.2986, 3270),
    'openbookqa': TaskEstimate('Commonsense', 'likelihood', 0.1322, 1.01433, 0.1512, 500),
    'mmlu': TaskEstimate('Knowledge', 'likelihood', 0.49586, 0.46574, 0.321, 14042),
    'gsm8k': TaskEstimate('Math', 'likelihood', 0.05027, None, 8.6414, 1319),
    'humaneval': TaskEstimate('Code', 'likelihood', 0.12677, None, 2.9784, 164),
}
QUICK_BUDGET_S = 600.0  # the quick suite's budget: 10 minutes on 2 CPU cores, default model
QUICK_OVERHEAD_S = 60.0  # reserved for loading the model, items and overlap index, hashing, checkpoints


def quick_sizes() -> dict[str, int]:
    return plan_sizes(QUICK_ESTIMATES, QUICK_BUDGET_S - QUICK_OVERHEAD_S)


def _load_role(folder, role: str) -> dict:
    """``role.json`` merged with ``role-gen.json`` beside it. Runs with a capped --max-new-tokens
    (generation tasks scored for gold bits per byte only) lose their timings: they are not
    what the task costs."""
    merged: dict = {"tasks": {}}
    for path in [p for p in (Path(folder) / f"{role}.json", Path(folder) / f"{role}-gen.json") if p.exists()]:
        run = json.loads(path.read_text())
        for name, task in run["tasks"].items():
            if run["settings"].get("max_new_tokens") is not None:
                task = dict(task, wall_time_s=None)
            merged["tasks"][name] = task
    return merged


_ROLES = {"demo": ("gptq-cola", "gptq-random-c4", "dense")}  # folder name -> (a, b, dense) file stems


def timing_scale(timings: dict[str, float], anchor: dict[str, float]) -> float:
    """Median ratio anchor / timings over the tasks both timed: puts costs measured under one
    condition (one thread on a shared machine) on the scale of another (the demo's runs)."""
    shared = sorted(timings.keys() & anchor.keys())
    if not shared:
        raise ColakitError("the anchor runs share no timed task with the timing runs", "time a common task in both")
    return float(np.median([anchor[t] / timings[t] for t in shared]))


def _main(argv: list[str]) -> None:
    """Print QUICK_ESTIMATES: ``FOLDER... [--timing RESULTS.json...] [--anchor RESULTS.json...]``.

    Each folder holds a, b and dense results on the same items. Costs come from the --timing
    results (median per task), rescaled by ``timing_scale`` to the --anchor results when given."""
    groups: dict[str, list[str]] = {"": []}
    key = ""
    for arg in argv:
        if arg.startswith("--"):
            key = arg
            groups[key] = []
        else:
            groups[key].append(arg)
    folders = groups[""]

    def timed(files):
        return seconds_per_item([json.loads(Path(f).read_text()) for f in files])

    timings = timed(groups["--timing"]) if groups.get("--timing") else None
    if timings and groups.get("--anchor"):
        scale = timing_scale(timings, timed(groups["--anchor"]))
        print(f"# timing scale (anchor / timing runs, median over shared tasks): {scale:.4f}")
        timings = {t: v * scale for t, v in timings.items()}
    triples = []
    for folder in folders:
        roles = _ROLES.get(Path(folder).name, ("cola", "random-c4", "dense"))
        triples.append(tuple(_load_role(folder, r) for r in roles))
    available = {}
    for name in set().union(*(t[0]["tasks"] for t in triples)):
        available[name] = len(get_task(name).load_items())
    for name, e in estimate(triples, available, timings).items():
        print(f"    {name!r}: {e!r},")


if __name__ == "__main__":
    _main(sys.argv[1:])
