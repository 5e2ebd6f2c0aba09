"""Task rendering (lm-eval formats), answer extraction, suites, statistics and the code sandbox."""

from __future__ import annotations

import os

import numpy as np
import pytest

from colakit.errors import ColakitError
from colakit.evaluate.sandbox import SandboxLimits, run_program
from colakit.evaluate.stats import mcnemar, mean_stderr, paired_bootstrap
from colakit.capabilities import CAPABILITIES
from colakit.evaluate.suites import SUITES, resolve_tasks
from colakit.evaluate.tasks import REGISTRY, get_task
from colakit.evaluate.tasks.gsm8k import EXEMPLARS, gold_chain
from colakit.evaluate.tasks.math import last_boxed, normalise


def test_hellaswag_matches_lm_eval_preprocessing():
    doc = {"activity_label": "Making a cake", "ctx_a": "A woman [title] mixes flour.", "ctx_b": "she",
           "endings": ["adds eggs [step] now.", "runs away."], "label": "0"}
    mc = get_task("hellaswag").build(doc)
    assert mc.contexts[0] == "Making a cake: A woman. mixes flour. She"
    assert mc.continuations == [" adds eggs now.", " runs away."] and mc.gold == 0


def test_winogrande_is_partial_scoring():
    mc = get_task("winogrande").build({"sentence": "Sarah beat Maria so _ got the prize.", "option1": "Sarah",
                            "option2": "Maria", "answer": "2"})
    assert mc.contexts == ["Sarah beat Maria so Sarah", "Sarah beat Maria so Maria"]
    assert mc.continuations == [" got the prize."] * 2 and mc.gold == 1


def test_copa_and_mmlu_formats():
    mc = get_task("copa").build({"premise": "It rained.", "question": "effect", "choice1": "The grass got wet.",
                      "choice2": "X.", "label": 0})
    assert mc.contexts[0] == "It rained therefore" and mc.continuations[0] == "  the grass got wet."
    mmlu = get_task("mmlu").build({"subject": "high_school_physics", "question": " Q? ", "choices": list("wxyz"), "answer": 2})
    assert mmlu.contexts[0].startswith("The following are multiple choice questions (with answers) about high "
                                       "school physics.\n\nQ?\nA. w\n")
    assert mmlu.contexts[0].endswith("D. z\nAnswer:") and mmlu.continuations == [" A", " B", " C", " D"]


def test_gsm8k_prompt_extraction_and_exact_match():
    doc = {"question": "How many?", "answer": "It is 2 + <<2+3=5>>3 = 5.\nSo 1,000 more.\n#### 1,005"}
    gsm8k = get_task("gsm8k")
    gen = gsm8k.build(doc)
    assert len(EXEMPLARS) == 8 and gen.prompt.count("Q: ") == 9 and gen.prompt.endswith("Q: How many?\nA:")
    assert gold_chain(doc["answer"]) == "It is 2 + 3 = 5. So 1,000 more. The answer is 1,005."
    ok = gsm8k.check(doc, gsm8k.extract("So 1000 + 5. The answer is 1,005.\n"))
    assert ok == {"exact_match_strict": True, "exact_match_flexible": True}
    wrong = gsm8k.check(doc, gsm8k.extract("I think 1005 then 7"))
    assert wrong == {"exact_match_strict": False, "exact_match_flexible": False}


def test_math_answer_helpers():
    assert last_boxed(r"so \boxed{\frac{1}{2}} and \boxed{3^{2}}") == "3^{2}"
    assert normalise(r"\left( 1,2 \right)") == normalise("(1,2)")
    assert normalise("x = 10,000") == "10000"
    assert get_task("math").extract(r"so \boxed{7}. The final answer is $\frac{1}{2}$. I hope it is correct.") == \
        r"\frac{1}{2}"


def test_suites_cover_every_capability():
    caps = {REGISTRY[t].capability for t in SUITES["quick"]}
    assert caps == set(CAPABILITIES)
    assert all(n is not None for n in SUITES["quick"].values())


def test_tasks_are_listed_by_kind_then_capability():
    full = list(SUITES["full"])
    assert full == list(REGISTRY)
    assert full[:5] == ["ppl_wiki", "ppl_c4", "ppl_code", "ppl_math", "ppl_multilingual"]
    assert full[-6:] == ["copa", "mmlu", "gsm8k", "math", "humaneval", "mbpp"]


def test_resolve_tasks_errors_and_limits():
    with pytest.raises(ColakitError, match="valid tasks: .*hellaswag"):
        resolve_tasks("hellaswagg")
    with pytest.raises(ColakitError, match="positive"):
        resolve_tasks("copa", limit=0)
    plan = resolve_tasks("quick,copa", limit=3)
    assert plan["copa"] == 3 and plan["mmlu"] == 3


def test_stats():
    assert mean_stderr([1, 0, 1, 0]) == pytest.approx(np.std([1, 0, 1, 0], ddof=1) / 2)
    m = mcnemar([True] * 10 + [False] * 10, [True] * 10 + [True] * 10)
    assert m["only_b"] == 10 and m["p_value"] < 0.01
    boot = paired_bootstrap(np.zeros(50), np.ones(50), seed=1)
    assert boot["mean_diff"] == 1 and boot["ci_low"] == 1 and boot["p_value"] == 0
    assert paired_bootstrap(np.r_[np.zeros(25), np.ones(25)], np.r_[np.ones(25), np.zeros(25)])["p_value"] > 0.5


LIMITS = SandboxLimits(timeout_s=3, memory_mb=512)


@pytest.mark.parametrize("source, status, message", [
    ("assert sum([1, 2]) == 3", "passed", ""),
    ("assert 1 == 2", "failed", "AssertionError"),
    ("while True:\n    pass", "timeout", ""),
    ("x = bytearray(2 * 1024 ** 3)", "failed", "MemoryError"),
    ("import os\nos.fork()", "failed", "os.fork is not allowed"),
    ("import subprocess\nsubprocess.run(['true'])", "failed", "subprocess.Popen is not allowed"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 9))", "failed", "not allowed"),
    ("open('/tmp/colakit-sandbox-escape', 'w').write('x')", "failed", "outside the scratch directory"),
    ("import shutil\nshutil.rmtree('/tmp')", "failed", "outside the scratch directory"),
    ("open('inside.txt', 'w').write('ok')\nassert open('inside.txt').read() == 'ok'", "passed", ""),
])
def test_sandbox_contains_programs(source, status, message):
    result = run_program(source, LIMITS)
    assert result.status == status and message in result.output
    assert result.seconds < 30  # a hung program is always killed
    assert not os.path.exists("/tmp/colakit-sandbox-escape")


def test_task_item_caps_in_suite_spec():
    assert resolve_tasks("ppl_wiki:8,arc_easy:60,piqa") == {"ppl_wiki": 8, "arc_easy": 60, "piqa": None}
    assert resolve_tasks("arc_easy:60", limit=10) == {"arc_easy": 10}
    for bad in ("arc_easy:x", "arc_easy:0"):
        with pytest.raises(ColakitError, match="TASK:N"):
            resolve_tasks(bad)
