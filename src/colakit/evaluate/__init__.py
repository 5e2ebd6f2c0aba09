"""Capability evaluation: perplexity, commonsense, knowledge, math, code and multilingual retention.

Public API::

    from colakit.evaluate import evaluate, evaluate_model, compare, EvalConfig
    results = evaluate(model, tokenizer, "quick", limit=None, seed=0, out="results.json")
    results = evaluate_model("smollm2-135m", "hellaswag,gsm8k", limit=50, seed=0)
    retention = compare(compressed_results, dense_results)        # vs dense, both metric kinds, flags
    pair = compare_models(results_a, results_b, dense_results)    # two compressed models, paired tests
    test = compare_mean_retention([(a_s0, b_s0), (a_s1, b_s1)], dense_results)  # two curations' mean retention

Tasks live in ``colakit.evaluate.tasks`` (one class each; ``register_task`` adds one, ``REGISTRY``
lists them), suites in ``colakit.evaluate.suites`` (``SUITES``, ``resolve_tasks``); the scoring
engines are ``loglik.score_requests``, ``generate.generate``, ``perplexity.perplexity`` and
``sandbox.run_program``.
"""

from __future__ import annotations

from pathlib import Path

from colakit.capabilities import CAPABILITIES
from colakit.defaults import DEFAULT_TASKS
from colakit.evaluate.comparison import (
    chance_flag, compare_mean_retention, compare_models, paired_rows, retention_rows,
)
from colakit.evaluate.config import EvalConfig
from colakit.evaluate.results import read_results, write_results
from colakit.evaluate.runner import capabilities, compare, evaluate, model_hash, select_items
from colakit.evaluate.suites import SUITES, resolve_tasks
from colakit.evaluate.tasks import REGISTRY, get_task, register_task
from colakit.model.load import ModelHandle


def evaluate_model(name: ModelHandle | str | Path | None, tasks: str | list[str] = DEFAULT_TASKS, *,
                   limit: int | None = None, seed: int = 0, device: str = "auto", dtype: str = "auto",
                   out: str | Path | None = None, allow_overlap: bool = False, config: EvalConfig | None = None,
                   on_task=None, device_map: str | None = None, max_memory: str | dict | None = None,
                   on_items=None) -> dict:
    """Load a model (built-in id, directory or hub id) and ``evaluate`` it.

    ``on_task(name, result)`` and ``on_items(name, done, total)`` report progress as ``evaluate`` does.
    ``device_map``/``max_memory`` (accelerate's): a model larger than one device is spread over the
    GPUs, the CPU and disk (lm-evaluation-harness's ``parallelize=True``).
    """
    resolve_tasks(tasks, limit)  # bad task names or limits fail before the model loads
    handle = ModelHandle.of(name, device=device, dtype=dtype, device_map=device_map, max_memory=max_memory)
    return evaluate(handle.model, handle.tokenizer, tasks, limit=limit, seed=seed, config=config, out=out,
                    model_name=handle.name, model_dir=handle.directory, allow_overlap=allow_overlap, on_task=on_task,
                    on_items=on_items)


__all__ = ["evaluate", "evaluate_model", "compare", "compare_models", "compare_mean_retention", "retention_rows",
           "paired_rows", "chance_flag",
           "EvalConfig", "capabilities", "model_hash", "select_items",
           "read_results", "write_results", "REGISTRY", "SUITES", "CAPABILITIES", "get_task", "register_task",
           "resolve_tasks"]
