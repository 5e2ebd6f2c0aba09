"""MMLU, 0-shot (lm-eval's default ``mmlu`` task) with the per-subject description line.

Reports per-subject and macro (mean over subjects) accuracy besides the pooled one; the macro
average is the primary metric, as the field reports MMLU."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from colakit.evaluate.tasks.base import MultipleChoice, MultipleChoiceTask, register_task


@register_task
class MMLU(MultipleChoiceTask):
    name, capability, version, reference = "mmlu", "Knowledge", "1", "mmlu v2 (0-shot, default template)"
    primary = "acc_macro"

    def build(self, d):
        subject = d["subject"].replace("_", " ")
        body = "\n".join(f"{letter}. {c}" for letter, c in zip("ABCD", d["choices"]))
        header = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        return MultipleChoice.of(f"{header}{d['question'].strip()}\n{body}\nAnswer:", ["A", "B", "C", "D"],
                                 int(d["answer"]))

    def aggregate(self, records):
        by_subject: dict[str, list[float]] = defaultdict(list)
        for r in records:
            by_subject[r["subject"]].append(float(r["acc"]))
        per = {s: {"acc": float(np.mean(v)), "n": len(v)} for s, v in sorted(by_subject.items())}
        means = [v["acc"] for v in per.values()]
        # macro stderr: subjects are fixed strata, so combine the per-subject variances
        var = sum(np.var(v, ddof=1) / len(v) for v in by_subject.values() if len(v) > 1) / len(per) ** 2
        return {**super().aggregate(records), "acc_macro": float(np.mean(means)),
                "acc_macro_stderr": float(math.sqrt(var)), "subjects": per}
