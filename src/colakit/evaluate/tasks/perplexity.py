"""Held-out perplexity of the calibration sources (lm-eval's ``loglikelihood_rolling``)."""

from __future__ import annotations

from colakit.evaluate.tasks.base import PerplexityTask, register_task


@register_task
class Wiki(PerplexityTask):
    name, capability, version, reference, source = "ppl_wiki", "LM", "1", "wikitext (loglikelihood_rolling)", "wiki"


@register_task
class C4(PerplexityTask):
    name, capability, version, reference, source = "ppl_c4", "LM", "1", "loglikelihood_rolling", "c4"


@register_task
class Code(PerplexityTask):
    name, capability, version, reference, source = "ppl_code", "LM", "1", "loglikelihood_rolling", "code"


@register_task
class Math(PerplexityTask):
    """Math solutions as the ``math`` source renders them ("Problem: ...\\n\\nSolution: ..."): its
    held-out part, which is exactly the ``math`` eval task's problems, so calibrating on the
    source's calibration part never sees them."""

    name, capability, version, reference, source = "ppl_math", "LM", "1", "loglikelihood_rolling", "math"


@register_task
class Multilingual(PerplexityTask):
    """No multilingual MMLU ships offline: multilingual capability is perplexity on the held-out
    part of the multilingual pool (many scripts), in bits per byte (tokenizers split scripts
    very unequally)."""

    name, capability, version, reference = "ppl_multilingual", "Multilingual", "1", "loglikelihood_rolling"
    source, primary = "multilingual", "bits_per_byte"
