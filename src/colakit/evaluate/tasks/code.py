"""Code generation, pass@1 with greedy decoding: each completion runs against the item's tests in
``colakit.evaluate.sandbox``."""

from __future__ import annotations

from abc import abstractmethod

from colakit.evaluate.sandbox import run_programs
from colakit.evaluate.tasks.base import Generation, GenerationTask, register_task


class CodeTask(GenerationTask):
    """A task whose completion becomes a program (``program``) that passes or fails its tests."""

    capability, version = "Code", "1"
    metrics, primary, max_new_tokens = ("pass@1",), "pass@1", 512

    @abstractmethod
    def program(self, item: dict, completion: str) -> str:
        """The completion with the item's tests, as one Python program."""

    @abstractmethod
    def canonical(self, item: dict) -> str:
        """The item's reference completion (it passes: a check of the sandbox and the tests)."""

    def grade(self, items, records, config):
        programs = [self.program(d, r["prediction"]) for d, r in zip(items, records)]
        for r, run in zip(records, run_programs(programs, config.sandbox, workers=config.sandbox_workers)):
            r.update({"pass@1": run.passed, "correct": run.passed, "status": run.status,
                      "error": None if run.passed else run.output[-300:]})


@register_task
class HumanEval(CodeTask):
    name, reference = "humaneval", "humaneval v1.0 (pass@1, greedy)"
    STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")

    def build(self, d):
        return Generation(d["prompt"], self.STOP, d["canonical_solution"])

    def program(self, d, completion):
        return f"{d['prompt']}{completion}\n{d['test']}\ncheck({d['entry_point']})\n"

    def canonical(self, d):
        return d["canonical_solution"]


# MBPP's prompt-split problems 2, 3 and 4, the 3 exemplars lm-eval's mbpp task uses.
MBPP_EXEMPLARS: tuple[dict, ...] = (
    {"text": "Write a function to find the similar elements from the given two tuple lists.",
     "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
             "  return (res) ",
     "test_list": ["assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                   "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                   "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)"]},
    {"text": "Write a python function to identify non-prime numbers.",
     "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):"
             "\r\n        if n % i == 0:\r\n            result = True\r\n    return result",
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True",
                   "assert is_not_prime(35) == True"]},
    {"text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
     "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n"
             "  return largest_nums",
     "test_list": ["assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]"]},
)


def _mbpp_query(d: dict) -> str:
    tests = "\n".join(d["test_list"][:3])
    return (f"You are an expert Python programmer, and here is your task: {d['text']} "
            f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")


@register_task
class MBPP(CodeTask):
    name, reference = "mbpp", "mbpp v1.0 (3-shot, pass@1, greedy)"
    STOP = ("[DONE]",)

    def build(self, d):
        shots = "".join(_mbpp_query(x) + x["code"] + "\n[DONE]\n\n" for x in MBPP_EXEMPLARS)
        return Generation(shots + _mbpp_query(d), self.STOP, d["code"] + "\n[DONE]")

    def program(self, d, completion):
        return "\n".join([completion, d.get("test_setup_code") or "", *d["test_list"]]) + "\n"

    def canonical(self, d):
        return d["code"]
