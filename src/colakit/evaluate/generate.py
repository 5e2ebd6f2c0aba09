"""Greedy generation with the KV cache, stop sequences and a hard cap on new tokens.

Prompts are sorted by length and generated in left-padded batches through ``model.generate``
(which keeps the KV cache); a stopping criterion ends a row as soon as its text contains a
stop sequence, and the text is cut at the first stop sequence afterwards. ``max_new_tokens``
bounds every row, so a generation that never stops still ends (recorded as ``"length"``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from colakit.errors import ColakitError
from colakit.model.load import max_context
from colakit.model.placement import input_device


@dataclass(frozen=True)
class GenerationOutput:
    text: str  # the completion, cut before the first stop sequence
    n_tokens: int  # tokens generated (including the ones after the cut)
    finish: str  # "stop" (a stop sequence), "eos" or "length" (hit max_new_tokens)


def cut_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


@contextlib.contextmanager
def _left_padding(tokenizer):
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = old


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return {i for i in ids if i < model.config.get_text_config().vocab_size}


class _StopOnText:
    """Ends a row once its generated text contains a stop sequence.

    Decodes only the last ``tail`` tokens of each unfinished row per step (cheap), unlike
    transformers' ``StopStringCriteria`` whose vocabulary tables cost seconds to build per call.
    """

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_len: int):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, [s for s in stop if s], prompt_len
        self.tail = max((len(s) for s in self.stop), default=0) + 4  # tokens are at least one character
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        generated = input_ids[:, self.prompt_len:]
        for i in range(generated.shape[0]):
            if not self.done[i]:
                text = self.tokenizer.decode(generated[i, -self.tail:], skip_special_tokens=True)
                self.done[i] = any(s in text for s in self.stop)
        return self.done.clone()


@torch.inference_mode()
def _generate_batch(model, tokenizer, prompts: list[str], stop, max_new_tokens: int, max_prompt: int):
    device = input_device(model)
    with _left_padding(tokenizer):
        enc = tokenizer(prompts, return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"][:, -max_prompt:], enc["attention_mask"][:, -max_prompt:]
    # imported here: transformers takes seconds to import and only generation needs it
    from transformers import StoppingCriteriaList

    eos = sorted(_eos_ids(model, tokenizer))
    criteria = StoppingCriteriaList([_StopOnText(tokenizer, stop, ids.shape[1])] if stop else [])
    out = model.generate(
        input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False, num_beams=1,
        max_new_tokens=max_new_tokens, stopping_criteria=criteria,
        eos_token_id=eos or None, pad_token_id=tokenizer.pad_token_id,
        temperature=None, top_p=None, top_k=None,
    )
    results = []
    for row in out[:, ids.shape[1]:].tolist():
        n = len(row)
        hit_eos = False
        for k, tok in enumerate(row):
            if tok in eos:
                n, hit_eos = k, True
                break
        text, stopped = cut_at_stop(tokenizer.decode(row[:n], skip_special_tokens=True), stop)
        results.append(GenerationOutput(text, n, "stop" if stopped else "eos" if hit_eos else "length"))
    return results


def generate(model, tokenizer, prompts: list[str], *, stop: tuple[str, ...] | list[str] = (),
             max_new_tokens: int = 256, batch_size: int = 8, max_length: int | None = None,
             progress=None) -> list[GenerationOutput]:
    """Greedy completions of ``prompts`` (in order). Prompts longer than the model allows lose
    their beginning, as in lm-eval. ``progress(n_done)`` is called after each batch with the
    number of prompts completed so far."""
    if max_new_tokens <= 0:
        raise ColakitError(f"max_new_tokens must be positive, got {max_new_tokens}", "use e.g. 256")
    max_length = max_length or max_context(model) or 2048
    max_prompt = max_length - max_new_tokens
    if max_prompt <= 0:
        raise ColakitError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in {max_length} tokens",
                           "lower max_new_tokens")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    out: list[GenerationOutput | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, res in zip(chunk, _generate_batch(model, tokenizer, [prompts[i] for i in chunk], tuple(stop),
                                                 max_new_tokens, max_prompt)):
            out[i] = res
        if progress:
            progress(min(start + batch_size, len(order)))
    return out  # type: ignore[return-value]
