"""The evaluation tasks: one class per task, registered by name.

``base`` holds the contract (``Task``: ``load_items``, ``build``, ``score``), what each kind
shares (``MultipleChoiceTask``, ``GenerationTask``/``ExactMatchTask``, ``PerplexityTask``) and
the registry (``register_task``, ``get_task``, ``REGISTRY``); each family has its own module,
imported (so registered) by this package.
Prompt formats and metrics follow lm-evaluation-harness 0.4.x (each task's ``reference`` names
the lm-eval task), so numbers compare with what the field reports.

A task defined anywhere, once its module is imported, is evaluated by name like the built-in
ones::

    @register_task
    class Capitals(MultipleChoiceTask):
        name, capability, version, reference = "capitals", "Knowledge", "1", "in-house"

        def load_items(self):
            return [{"id": "0", "country": "France", "choices": ["Paris", "Rome"], "answer": 0}]

        def build(self, item):
            return MultipleChoice.of(f"The capital of {item['country']} is", item["choices"], item["answer"])

    evaluate(model, tokenizer, "capitals")
"""

from __future__ import annotations

from colakit.evaluate.tasks.base import (
    KINDS, LOWER_IS_BETTER, REGISTRY, ExactMatchTask, Generation, GenerationTask, MultipleChoice, MultipleChoiceTask,
    PerplexityTask, Task, get_task, register_task,
)
from colakit.plugins import import_all

import_all(__name__, __path__)  # every family module registers its tasks: a new family is a new file

__all__ = ["KINDS", "LOWER_IS_BETTER", "REGISTRY", "ExactMatchTask", "Generation", "GenerationTask", "MultipleChoice",
           "MultipleChoiceTask", "PerplexityTask", "Task", "get_task", "register_task"]
