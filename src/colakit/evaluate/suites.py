"""Suites (named sets of tasks with per-task item caps) and resolving a ``--suite`` spec into a plan.

The quick suite's sizes come from the power plan (``colakit.evaluate.power``, which analyses
results and knows no suite): suites depend on power, never the other way round.
"""

from __future__ import annotations

from colakit.errors import ColakitError
from colakit.evaluate.power import quick_sizes
from colakit.evaluate.tasks import REGISTRY

SUITES: dict[str, dict[str, int | None]] = {
    # every capability, seeded subsets sized by a power calculation (colakit.evaluate.power; print it
    # with `colakit evaluate --power`): every task detects the same retention difference between two
    # compressed models at 80% power, within 10 minutes for the default model on 2 CPU cores
    "quick": quick_sizes(),
    # the paper's tasks (perplexity, commonsense, math, code, multilingual), full sets
    "standard": {t: None for t in ("ppl_wiki", "ppl_c4", "ppl_multilingual", "hellaswag", "winogrande", "boolq",
                                   "openbookqa", "piqa", "arc_easy", "arc_challenge", "mmlu", "gsm8k", "humaneval",
                                   "mbpp")},
    # the built-in tasks, full sets
    "full": {t: None for t in REGISTRY},
}


def _item_cap(raw: str, cap: str) -> int:
    if not cap.isdigit() or int(cap) <= 0:
        raise ColakitError(f"cannot read {raw.strip()!r}", "write TASK:N with N a positive number of items")
    return int(cap)


def resolve_tasks(spec: str | list[str], limit: int | None = None) -> dict[str, int | None]:
    """A suite name, task names (``task:N`` caps that task at N items), or a comma list of both -> {task: limit}.

    An explicit ``limit`` overrides the suite's limits (it caps them; never raises them).
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: dict[str, int | None] = {}
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name in SUITES:
            for task, n in SUITES[name].items():
                out.setdefault(task, n)
        else:
            name, _, cap = name.partition(":")
            if name not in REGISTRY:
                raise ColakitError(f"unknown task {name!r}",
                                   f"valid tasks: {', '.join(REGISTRY)}; suites: {', '.join(SUITES)}")
            out.setdefault(name, _item_cap(raw, cap) if cap else None)
    if not out:
        raise ColakitError("no tasks given", f"name a suite ({', '.join(SUITES)}) or tasks ({', '.join(REGISTRY)})")
    if limit is not None:
        if limit <= 0:
            raise ColakitError(f"--limit must be a positive number of items, got {limit}",
                               "leave --limit out to evaluate every item")
        out = {t: limit if n is None else min(n, limit) for t, n in out.items()}
    return out
