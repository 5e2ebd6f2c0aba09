"""Commonsense multiple choice, in lm-evaluation-harness 0.4.x's formats (the task named in each ``reference``).

WinoGrande uses partial scoring: each option fills the blank to make a *context*, and the shared
text after the blank is the continuation that is scored.
"""

from __future__ import annotations

import re

from colakit.evaluate.tasks.base import MultipleChoice, MultipleChoiceTask, register_task


class _Commonsense(MultipleChoiceTask):
    capability, version = "Commonsense", "1"


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)  # WikiHow artifacts
    return text.replace("  ", " ")


@register_task
class HellaSwag(_Commonsense):
    name, reference, primary = "hellaswag", "hellaswag v1.0", "acc_norm"

    def build(self, d):
        ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
        return MultipleChoice.of(_hellaswag_clean(d["activity_label"] + ": " + ctx),
                                 [_hellaswag_clean(e) for e in d["endings"]], int(d["label"]))


@register_task
class PIQA(_Commonsense):
    name, reference, primary = "piqa", "piqa v1.0", "acc_norm"

    def build(self, d):
        return MultipleChoice.of(f"Question: {d['goal']}\nAnswer:", [d["sol1"], d["sol2"]], d["label"])


class _ARC(_Commonsense):
    primary = "acc_norm"

    def build(self, d):
        if "query" in d:  # oe-eval records carry lm-eval's "Question: ...\nAnswer:" already
            return MultipleChoice.of(d["query"], list(d["choices"]), d["gold"])
        labels = list(d["choices"]["label"])
        return MultipleChoice.of(f"Question: {d['question']}\nAnswer:", list(d["choices"]["text"]),
                                 labels.index(d["answerKey"]))


@register_task
class ARCEasy(_ARC):
    name, reference = "arc_easy", "arc_easy v1.0 (test split)"


@register_task
class ARCChallenge(_ARC):
    name, reference = "arc_challenge", "arc_challenge v1.0 (test split)"


@register_task
class BoolQ(_Commonsense):
    name, reference = "boolq", "boolq v2.0"

    def build(self, d):
        return MultipleChoice.of(f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:", ["no", "yes"],
                                 int(bool(d["answer"])))


@register_task
class WinoGrande(_Commonsense):
    name, reference = "winogrande", "winogrande v1.0 (partial scoring)"

    def build(self, d):
        blank = d["sentence"].index("_")
        contexts = [d["sentence"][:blank] + opt for opt in (d["option1"], d["option2"])]
        target = d["sentence"][blank + 1:].strip()
        return MultipleChoice(contexts, [" " + target] * 2, contexts, {"1": 0, "2": 1}[str(d["answer"])])


@register_task
class OpenBookQA(_Commonsense):
    name, reference, primary = "openbookqa", "openbookqa v1.0", "acc_norm"

    def build(self, d):
        labels = list(d["choices"]["label"])
        return MultipleChoice.of(d["question_stem"], list(d["choices"]["text"]), labels.index(d["answerKey"].lstrip()))


@register_task
class CommonsenseQA(_Commonsense):
    name, reference = "csqa", "commonsense_qa"

    def build(self, d):
        texts = d["choices"]["text"]
        letters = ["A", "B", "C", "D", "E"]
        body = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, texts))
        return MultipleChoice.of(f"Question: {d['question'].strip()}\n{body}\nAnswer:", letters,
                                 letters.index(d["answerKey"].strip()))


@register_task
class SocialIQA(_Commonsense):
    name, reference = "siqa", "social_iqa v0.0"

    def build(self, d):
        return MultipleChoice.of(f"Q: {d['context']} {d['question']}\nA:", [d["answerA"], d["answerB"], d["answerC"]],
                                 int(d["label"]) - 1)


@register_task
class SciQ(_Commonsense):
    name, reference, primary = "sciq", "sciq v1.0", "acc_norm"

    def build(self, d):
        return MultipleChoice.of(f"{d['support'].lstrip()}\nQuestion: {d['question']}\nAnswer:",
                                 [d["distractor1"], d["distractor2"], d["distractor3"], d["correct_answer"]], 3)


@register_task
class COPA(_Commonsense):
    name, reference = "copa", "copa v1.0"

    def build(self, d):
        connector = {"cause": "because", "effect": "therefore"}[d["question"]]
        # lm-eval keeps its leading space on each choice *and* adds the target delimiter; so do we.
        choices = [" " + c[0].lower() + c[1:] for c in (d["choice1"], d["choice2"])]
        return MultipleChoice.of(d["premise"].strip()[:-1] + f" {connector}", choices, d["label"])
