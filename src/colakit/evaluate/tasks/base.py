"""The task contract, the shared parts of each kind of task, and the registry.

Modelled on lm-evaluation-harness's ``Task`` (lm_eval/api/task.py) and its registry: a task
owns its items (``load_items``), how one item becomes requests (``build``: lm-eval's
doc_to_text / doc_to_choice / construct_requests), how the engine's outputs become per-item
records with the extracted answer (``score``: its filters and process_results) and how records
reduce to metrics (``aggregate``). The runner knows no task by name: it picks the engine from the
task's ``kind`` and calls these.

A task is a subclass of one kind (``MultipleChoiceTask``, ``GenerationTask`` or
``ExactMatchTask``, ``PerplexityTask``) with its name, capability, version and reference set, and
``@register_task`` on it. Its ``version`` is part of every checkpoint's fingerprint: change it
when its prompts or scoring change, and only then.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from colakit.capabilities import CAPABILITIES
from colakit.data.evalsets import load_items
from colakit.data.sources import get_source
from colakit.errors import ColakitError
from colakit.evaluate.config import EvalConfig
from colakit.evaluate.stats import mean_stderr

LN2 = math.log(2)
# One scoring engine each (colakit.evaluate.runner); in this order in the registry.
KINDS = ("perplexity", "multiple_choice", "generate")
LOWER_IS_BETTER = {"word_perplexity", "token_perplexity", "bits_per_byte"}


@dataclass(frozen=True)
class MultipleChoice:
    """One rendered multiple-choice item: request i scores ``continuations[i]`` after ``contexts[i]``."""

    contexts: list[str]
    continuations: list[str]
    choices: list[str]  # the texts whose length normalises acc_norm (lm-eval's doc_to_choice)
    gold: int

    @classmethod
    def of(cls, context: str, choices: list[str], gold: int, delimiter: str = " ") -> MultipleChoice:
        """Every choice after the same context (lm-eval's target_delimiter before each)."""
        return cls([context] * len(choices), [delimiter + c for c in choices], list(choices), int(gold))


@dataclass(frozen=True)
class Generation:
    prompt: str
    stop: tuple[str, ...]
    gold_text: str  # reference continuation: its log-likelihood and bits per byte are recorded


def bits_per_byte(logprob: float, text: str) -> float:
    n = len(text.encode("utf-8"))
    return -logprob / LN2 / n if n else float("nan")


def accuracy_metrics(records: list[dict], keys: tuple[str, ...]) -> dict:
    """Mean and standard error of each per-item 0/1 field in ``keys`` (fields no record has are left out)."""
    out = {}
    for key in keys:
        values = [float(r[key]) for r in records if key in r]
        if values:
            out[key] = float(np.mean(values))
            out[f"{key}_stderr"] = mean_stderr(values)
    return out


def chat_prompt(tokenizer, messages: list[dict]) -> str:
    """``messages`` through the tokenizer's chat template, ready for the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise ColakitError("--chat was given but the tokenizer has no chat template", "drop --chat for base models")
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class Task(ABC):
    """One evaluation task: set the class attributes, implement ``build`` (and a kind's hooks)."""

    name: str
    capability: str  # one of colakit.capabilities.CAPABILITIES
    kind: str  # one of KINDS; set by the kind's base class
    version: str  # part of the checkpoint fingerprint: change it when prompts or scoring change
    reference: str  # the lm-eval task (or paper) this follows
    primary: str  # the metric that stands for the task

    @property
    def higher_is_better(self) -> bool:
        return self.primary not in LOWER_IS_BETTER

    def load_items(self) -> list[dict]:
        """Every item (each with an ``"id"``); by default the packaged evaluation set of this name."""
        return load_items(self.name)

    @abstractmethod
    def build(self, item: dict):
        """The requests for one item, of the kind's request type."""

    def build_chat(self, item: dict, tokenizer):
        """The requests when prompts go through the chat template (``EvalConfig.chat``); tasks with
        no chat format ignore it."""
        return self.build(item)

    @abstractmethod
    def score(self, items: list[dict], requests: list, outputs, config: EvalConfig) -> tuple[dict, list[dict]]:
        """(metrics, per-item records) from the kind's engine outputs for ``requests``."""


class MultipleChoiceTask(Task):
    """Scored by log-likelihood of each choice (lm-eval's ``multiple_choice`` output type);
    ``build`` returns a ``MultipleChoice``.

    ``acc`` = argmax of summed log-likelihood; ``acc_norm`` = argmax of log-likelihood / character
    length of the choice (lm-eval's ``len(choice)``); ``acc_bytes`` divides by UTF-8 bytes."""

    kind = "multiple_choice"
    metrics: tuple[str, ...] = ("acc", "acc_norm", "acc_bytes")  # per-item fields averaged into metrics
    primary = "acc"

    def score(self, items, requests, outputs, config):
        """``outputs[i]``: the ``loglik.Score`` of each of item i's requests."""
        records = [self.process(d, mc, scores) for d, mc, scores in zip(items, requests, outputs)]
        return self.aggregate(records), records

    def process(self, item: dict, mc: MultipleChoice, scores: list) -> dict:
        lls = np.array([s.logprob for s in scores])
        chars = np.array([len(c) for c in mc.choices], dtype=float)
        nbytes = np.array([len(c.encode("utf-8")) for c in mc.choices], dtype=float)
        pred, pred_norm, pred_bytes = int(lls.argmax()), int((lls / chars).argmax()), int((lls / nbytes).argmax())
        gold_lp = float(lls[mc.gold])
        return {
            "id": item["id"], "gold": mc.gold, "pred": pred, "pred_norm": pred_norm,
            "acc": pred == mc.gold, "acc_norm": pred_norm == mc.gold, "acc_bytes": pred_bytes == mc.gold,
            "gold_logprob": gold_lp, "gold_bpb": bits_per_byte(gold_lp, mc.continuations[mc.gold]),
            "logprobs": [round(float(x), 5) for x in lls],
            **({"subject": item["subject"]} if "subject" in item else {}),  # MMLU's, for its per-subject metrics
        }

    def aggregate(self, records: list[dict]) -> dict:
        return accuracy_metrics(records, self.metrics)


class GenerationTask(Task):
    """Greedy generation until a stop sequence; ``build`` returns a ``Generation``. The gold
    continuation's likelihood is recorded too."""

    kind = "generate"
    metrics: tuple[str, ...]  # per-item 0/1 fields ``grade`` sets, averaged into metrics
    max_new_tokens: int = 256

    def score(self, items, requests, outputs, config):
        """``outputs[i]``: (``generate.GenerationOutput``, ``loglik.Score`` of the gold text) for item i."""
        records = [{"id": d["id"], "prediction": out.text, "finish": out.finish, "new_tokens": out.n_tokens,
                    "gold_logprob": gold.logprob, "gold_bpb": bits_per_byte(gold.logprob, g.gold_text)}
                   for d, g, (out, gold) in zip(items, requests, outputs)]
        self.grade(items, records, config)
        return self.aggregate(records), records

    @abstractmethod
    def grade(self, items: list[dict], records: list[dict], config: EvalConfig) -> None:
        """Adds to each record its per-metric 0/1 fields and ``correct`` (the primary's)."""

    def aggregate(self, records: list[dict]) -> dict:
        return accuracy_metrics(records, self.metrics)


class ExactMatchTask(GenerationTask):
    """Graded by an answer extracted from the output (lm-eval's filters) against the item's."""

    @abstractmethod
    def extract(self, prediction: str):
        """The answer in a model output (None when it gives none)."""

    @abstractmethod
    def check(self, item: dict, answer) -> dict[str, bool]:
        """Each metric's verdict on ``answer``."""

    def grade(self, items, records, config):
        for d, r in zip(items, records):
            r["answer"] = self.extract(r["prediction"])
            r.update(self.check(d, r["answer"]))
            r["correct"] = r[self.primary]


class PerplexityTask(Task):
    """Rolling log-likelihood of held-out documents of a colakit source (lm-eval's
    ``loglikelihood_rolling``); the engine returns the metrics, ratios of sums over documents."""

    kind = "perplexity"
    source: str  # a colakit.data.sources name; its held-out part is evaluated
    primary = "token_perplexity"

    def load_items(self) -> list[dict]:
        return [{"id": d.doc_id, "text": d.text} for d in get_source(self.source).documents(split="heldout")]

    def build(self, item: dict) -> str:
        return item["text"]

    def score(self, items, requests, outputs, config):
        """``outputs``: ``perplexity.perplexity``'s result for all of ``requests``."""
        return outputs["metrics"], [{"id": d["id"], **r} for d, r in zip(items, outputs["documents"])]


# --------------------------------------------------------------------------- the registry

REGISTRY: dict[str, Task] = {}


def _order(task: Task) -> tuple[int, int]:
    """The registry's order, hence the ``full`` suite's and its results': by kind (KINDS), then
    capability; tasks of one kind and capability in the order they registered (a family module's
    order; family modules are imported by name)."""
    return KINDS.index(task.kind), CAPABILITIES.index(task.capability)


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make the task ``cls`` evaluable by its ``name`` (``evaluate(model, tok, name)``)."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ColakitError(f"register_task takes a Task subclass, got {cls!r}",
                           "subclass MultipleChoiceTask, GenerationTask, ExactMatchTask or PerplexityTask")
    task = cls()
    for attr in ("name", "capability", "version", "reference", "primary"):
        if not isinstance(getattr(task, attr, None), str):
            raise ColakitError(f"task class {cls.__name__} has no {attr}", f"set {attr} as a class attribute")
    if task.name in REGISTRY:
        raise ColakitError(f"a task named {task.name!r} is registered already", "give the task another name")
    if task.capability not in CAPABILITIES:
        raise ColakitError(f"task {task.name}: unknown capability {task.capability!r}",
                           f"use one of {', '.join(CAPABILITIES)}")
    if task.kind not in KINDS:
        raise ColakitError(f"task {task.name}: unknown kind {task.kind!r}",
                           f"subclass one of the kinds ({', '.join(KINDS)})")
    REGISTRY[task.name] = task
    ordered = sorted(REGISTRY.values(), key=_order)  # stable: registration order within a group
    REGISTRY.clear()
    REGISTRY.update((t.name, t) for t in ordered)
    return cls


def get_task(name: str) -> Task:
    if name not in REGISTRY:
        raise ColakitError(f"unknown task {name!r}", f"valid tasks: {', '.join(REGISTRY)}")
    return REGISTRY[name]
