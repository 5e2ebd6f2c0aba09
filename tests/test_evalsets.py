"""Evaluation items: the task table, record text, and counts on the real wheels."""

import pytest

from colakit.errors import ColakitError
from colakit.data.evalsets import TASKS, eval_documents, evalsets_version, item_text, load_items


def test_unknown_task_lists_valid_names():
    with pytest.raises(ColakitError, match="unknown evaluation task 'gsm9k'.*hellaswag.*humaneval"):
        load_items("gsm9k")


def test_task_table_is_complete():
    assert set(TASKS) == {"hellaswag", "piqa", "arc_easy", "arc_challenge", "boolq", "winogrande", "openbookqa",
                          "csqa", "siqa", "sciq", "copa", "mmlu", "gsm8k", "math", "mbpp", "humaneval"}
    assert {t.capability for t in TASKS.values()} == {"commonsense", "knowledge", "math", "code"}
    assert len(evalsets_version()) == 16


def test_item_text_keeps_every_text_field_and_skips_labels():
    item = {"id": "q7", "question": "Why?", "choices": {"text": ["because", "no"], "label": ["A", "B"]},
            "answerKey": "A", "test_list": ["assert f(1) == 2"], "gold": 0}
    assert item_text(item) == "Why?\nbecause\nno\nassert f(1) == 2"


@pytest.mark.integration
@pytest.mark.parametrize("task,count,first_id", [
    ("gsm8k", 1319, "0"), ("mbpp", 500, "11"), ("humaneval", 164, "HumanEval/0"),
    ("hellaswag", 10042, "0"), ("arc_easy", 2376, "Mercury_417466"), ("arc_challenge", 1172, "Mercury_7175875"),
    ("mmlu", 14042, "abstract_algebra/0"), ("boolq", 3270, "0"), ("csqa", 1221, "1afa02df02c908a558b4036e80242fac"),
])
def test_counts_match_the_testbed(task, count, first_id):
    items = load_items(task)
    assert len(items) == count == TASKS[task].n_items
    ids = [it["id"] for it in items]
    assert len(set(ids)) == count and all(isinstance(i, str) for i in ids) and ids[0] == first_id
    assert [it["id"] for it in load_items(task)] == ids  # stable order


@pytest.mark.integration
def test_records_carry_what_evaluators_need():
    gsm = load_items("gsm8k")[0]
    assert gsm["answer"].rstrip().split("#### ")[-1] == "18"
    assert len(load_items("mbpp")[0]["test_list"]) == 3
    assert {"prompt", "test", "entry_point", "canonical_solution"} <= set(load_items("humaneval")[0])
    mmlu = load_items("mmlu")
    assert len({it["subject"] for it in mmlu}) == 57
    math = load_items("math")
    assert {it["topic"] for it in math} >= {"algebra", "geometry"} and all("solution" in it for it in math[:50])
    docs = list(eval_documents(["copa"]))
    assert len(docs) == 100 and docs[0].task == "copa" and "faucet" in docs[0].text


@pytest.mark.integration
def test_math_eval_is_the_math_sources_heldout_part():
    from colakit.data.sources import get_source

    items = load_items("math")
    assert TASKS["math"].n_items == 5000 and 400 < len(items) < 560  # ~10% held out
    calib_ids = {d.doc_id for d in get_source("math").documents("calibration")}
    assert not calib_ids & {f"math/{it['id']}" for it in items}
