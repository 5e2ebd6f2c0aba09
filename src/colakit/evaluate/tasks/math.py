"""MATH (Hendrycks et al. 2021), 0-shot, graded by exact match after Minerva's answer normalisation."""

from __future__ import annotations

import re

from colakit.evaluate.tasks.base import ExactMatchTask, Generation, register_task


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def normalise(answer: str) -> str:
    """A short Minerva-style normalisation (Lewkowycz et al. 2022, appendix D): units, TeX noise, spaces."""
    answer = answer.split("=")[-1]
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\ ", ""), ("dfrac", "frac"),
                     ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", ""), ("$", ""),
                     (" ", "")):
        answer = answer.replace(old, new)
    answer = re.sub(r"\\text\{(.*?)\}", r"\1", answer)
    answer = re.sub(r"\\mbox\{(.*?)\}", r"\1", answer)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+", answer):
        answer = answer.replace(",", "")
    return answer.rstrip(".")


@register_task
class MATH(ExactMatchTask):
    name, capability, version, reference = "math", "Math", "1", "MATH 0-shot, Minerva answer normalisation"
    metrics, primary, max_new_tokens = ("exact_match",), "exact_match", 512

    def build(self, d):
        return Generation(f"Problem:\n{d['problem']}\n\nSolution:", ("Problem:", "</s>", "<|im_end|>"),
                          " " + d["solution"])

    def extract(self, prediction):
        """Minerva's "final answer is ..." sentence, else the last \\boxed{}."""
        found = re.search(r"final answer is\s*\$?(.*?)\$?\.?\s*(I hope|$)", prediction)
        return found.group(1) if found else last_boxed(prediction)

    def check(self, d, answer):
        return {"exact_match": answer is not None and normalise(answer) == normalise(str(d["answer"]))}
