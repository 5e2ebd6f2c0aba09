"""Tasks registered from outside colakit are evaluated by name, like the built-in ones."""

from __future__ import annotations

import math

import pytest

from colakit.errors import ColakitError
from colakit.evaluate import evaluate, resolve_tasks, select_items
from colakit.evaluate.tasks import (
    REGISTRY, ExactMatchTask, Generation, MultipleChoice, MultipleChoiceTask, get_task, register_task,
)
from test_evaluate_support import byte_tokenizer, tiny

CAPITALS = [{"id": "fr", "country": "France", "choices": ["Paris", "Rome", "Oslo"], "answer": 0},
            {"id": "it", "country": "Italy", "choices": ["Paris", "Rome", "Oslo"], "answer": 1},
            {"id": "no", "country": "Norway", "choices": ["Paris", "Rome", "Oslo"], "answer": 2},
            {"id": "es", "country": "Spain", "choices": ["Madrid", "Lisbon"], "answer": 0}]


@pytest.fixture
def registered():
    """``registered(cls)`` registers a task class; every one is removed from the registry afterwards."""
    names = []

    def add(cls):
        register_task(cls)
        names.append(cls.name)
        return get_task(cls.name)

    yield add
    for name in names:
        del REGISTRY[name]


def test_a_registered_multiple_choice_task_is_evaluated_by_name(registered):
    class Capitals(MultipleChoiceTask):
        name, capability, version, reference = "test_capitals", "Knowledge", "1", "in-memory"

        def load_items(self):
            return CAPITALS

        def build(self, item):
            return MultipleChoice.of(f"The capital of {item['country']} is", item["choices"], item["answer"])

    registered(Capitals)
    model, tok = tiny("llama"), byte_tokenizer()
    results = evaluate(model, tok, "test_capitals", limit=3, seed=1)
    task = results["tasks"]["test_capitals"]
    assert task["item_ids"] == [d["id"] for d in select_items(CAPITALS, 3, 1, "test_capitals")]
    assert task["kind"] == "multiple_choice" and task["primary"] == "acc" and task["higher_is_better"]
    assert {"acc", "acc_stderr", "acc_norm", "acc_bytes"} <= set(task["metrics"])
    by_id = {d["id"]: d for d in CAPITALS}
    for r in task["items"]:
        assert len(r["logprobs"]) == len(by_id[r["id"]]["choices"]) and r["gold"] == by_id[r["id"]]["answer"]
        assert r["acc"] == (r["pred"] == r["gold"]) and math.isfinite(r["gold_bpb"])
    assert results["capabilities"]["Knowledge"]["tasks"] == ["test_capitals"]
    assert resolve_tasks("test_capitals:2") == {"test_capitals": 2}
    names = list(REGISTRY)  # listed with its kind and capability: after MMLU, before the generation tasks
    assert names.index("test_capitals") == names.index("mmlu") + 1


def test_a_registered_generation_task_extracts_and_grades_its_answers(registered):
    class Doubling(ExactMatchTask):
        name, capability, version, reference = "test_doubling", "Math", "1", "in-memory"
        metrics, primary, max_new_tokens = ("exact_match",), "exact_match", 6

        def load_items(self):
            return [{"id": str(i), "question": f"{i} + {i} =", "answer": str(2 * i)} for i in range(3)]

        def build(self, item):
            return Generation(item["question"], ("\n",), " " + item["answer"])

        def extract(self, prediction):
            return prediction.strip() or None

        def check(self, item, answer):
            return {"exact_match": answer == item["answer"]}

    registered(Doubling)
    model, tok = tiny("llama"), byte_tokenizer()
    task = evaluate(model, tok, ["test_doubling"])["tasks"]["test_doubling"]
    assert task["kind"] == "generate" and task["n"] == 3 and set(task["metrics"]) == {"exact_match", "exact_match_stderr"}
    for r in task["items"]:
        assert r["new_tokens"] <= 6 and r["answer"] == (r["prediction"].strip() or None)
        assert r["correct"] == r["exact_match"] == (r["answer"] == str(2 * int(r["id"])))


def test_registration_is_checked():
    class Bad(MultipleChoiceTask):
        name, capability, version, reference = "test_bad", "Cooking", "1", "in-memory"

        def build(self, item):
            return MultipleChoice.of("", ["a"], 0)

    with pytest.raises(ColakitError, match="unknown capability"):
        register_task(Bad)
    assert "test_bad" not in REGISTRY
    with pytest.raises(ColakitError, match="registered already"):  # a built-in name cannot be taken
        register_task(type("Copa", (Bad,), {"name": "copa", "capability": "Commonsense"}))
    with pytest.raises(ColakitError, match="Task subclass"):
        register_task(dict)
