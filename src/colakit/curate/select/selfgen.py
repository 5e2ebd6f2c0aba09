"""Calibration text written by the model itself: ``self-gen`` and ``self-cal``.

``self-gen`` (Ji et al. 2025, "Beware of Calibration Data for Pruning Large Language Models",
arXiv 2410.17711): the model continues short prefixes of real text, the highest-perplexity
generations are dropped, and the budget is drawn at random from the rest. Choices made here:

- prefixes are the first ``prefix_tokens`` (default 8) tokens of distinct pool windows, drawn at
  random with the seed; every prefix has the same length, so a batch needs no padding;
- sampling: top-k ``top_k`` (50) and nucleus ``top_p`` (0.95) at ``temperature`` 1.0;
- every generation runs to exactly ``seq_len`` tokens (EOS is suppressed with ``min_new_tokens``)
  so the samples are as long as the real windows they compete with;
- ``oversample`` (1.5): ceil(budget * oversample / (1 - drop_fraction)) generations are made, the
  ``drop_fraction`` (0.2) with the highest perplexity under the same model dropped, and the budget
  drawn uniformly from the rest.

``self-cal`` (Williams et al. 2025, "Self-calibration for Language Model Quantization and
Pruning", NAACL, arXiv 2410.17170): no real text at all. Generation starts from the tokenizer's
BOS token (EOS for tokenizers without one, e.g. GPT-2's ``<|endoftext|>``), with a linear
temperature schedule over the generated positions: position i (0-based) of the first n =
``schedule_tokens`` is sampled at ``t_start + (t_end - t_start) * i / (n - 1)``, every later one at
``t_end`` (``schedule_tokens=None`` spreads the ramp over all generated positions). The paper's
reason for the schedule is that the first few tokens decide what the text is about, so a hot
start diversifies them. Defaults t_start 1.5 -> t_end 0.8 over the first 8 tokens are this
project's choice, measured on SmolLM2-135M (seq_len 64, 4 samples, seed 0): perplexity under the
model 10-18, like real web text; the same ramp over all positions gave 340-1150 (word salad), and
ending at 0.6 fell into repetition loops. The paper's exact values could not be checked offline.
Sampling is otherwise from the full distribution (``top_k`` 0, ``top_p`` 1.0).

Both generate in batches with the KV cache (``model.generate``) inside a forked torch RNG seeded
with the selection seed, so the same model, seed and ``batch_size`` give the same text, and the
caller's global RNG is left as it was.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from colakit.errors import ColakitError
from colakit.curate.process import Candidate
from colakit.curate.select.base import Selection, Selector, register


@torch.no_grad()
def perplexities(model, sequences: Sequence[Sequence[int]], pad_id: int = 0, batch_size: int = 4) -> np.ndarray:
    """Per-sequence perplexity exp(mean next-token NLL), one forward per sequence, batched, no grad.

    Sequences are right-padded; padded positions never count. A sequence needs at least 2 tokens.
    """
    if any(len(s) < 2 for s in sequences):
        raise ColakitError("perplexity needs sequences of at least 2 tokens", "use a longer --seq-len")
    device = next(model.parameters()).device
    out = np.empty(len(sequences), dtype=np.float64)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # similar lengths pad little
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        longest = max(len(sequences[i]) for i in idx)
        ids = torch.full((len(idx), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), longest), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :len(sequences[i])] = torch.as_tensor(list(sequences[i]))
            mask[r, :len(sequences[i])] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        real = mask[:, 1:].float()
        mean_nll = (nll * real).sum(1) / real.sum(1)
        out[idx] = torch.exp(mean_nll).cpu().numpy()
    return out


class LinearTemperature:
    """Logits processor: divide the logits of generated position i by the scheduled temperature."""

    def __init__(self, prompt_len: int, t_start: float, t_end: float, steps: int):
        self.prompt_len, self.t_start, self.t_end, self.steps = prompt_len, t_start, t_end, max(steps, 1)

    def temperature(self, position: int) -> float:
        if self.steps <= 1:
            return self.t_end
        frac = min(position, self.steps - 1) / (self.steps - 1)
        return self.t_start + (self.t_end - self.t_start) * frac

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores / self.temperature(input_ids.shape[1] - self.prompt_len)


def generate(model, prompts: list[list[int]], total_len: int, seed: int, *, batch_size: int = 8,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, schedule: tuple | None = None,
             pad_id: int = 0, eos_id: int | None = None) -> list[list[int]]:
    """Sample continuations of equal-length ``prompts`` up to ``total_len`` tokens each (prompt included).

    ``schedule`` = (t_start, t_end, steps) replaces the fixed ``temperature`` by a linear schedule.
    """
    from transformers import LogitsProcessorList

    prompt_len = len(prompts[0])
    if any(len(p) != prompt_len for p in prompts):
        raise ColakitError("generation prompts must share one length", "this is a colakit bug")
    new = total_len - prompt_len
    if new < 1:
        raise ColakitError(f"--seq-len {total_len} leaves no room to generate after a {prompt_len}-token prefix",
                           "use a longer --seq-len or a shorter prefix")
    device = next(model.parameters()).device
    processors = LogitsProcessorList()
    if schedule is not None:
        t_start, t_end, steps = schedule
        processors.append(LinearTemperature(prompt_len, t_start, t_end, steps or new))
        temperature = 1.0
    out: list[list[int]] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            ids = torch.tensor(prompts[start:start + batch_size], dtype=torch.long, device=device)
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 max_new_tokens=new, min_new_tokens=new, temperature=temperature,
                                 top_k=top_k, top_p=top_p, logits_processor=processors,
                                 pad_token_id=pad_id, eos_token_id=eos_id)
            out += [row.tolist() for row in gen.cpu()]
    return out


def _check_unit_interval(name: str, value: float, low_open: bool = True) -> None:
    """``low_open``: value in (0, 1]; otherwise in [0, 1)."""
    inside = 0.0 < value <= 1.0 if low_open else 0.0 <= value < 1.0
    if not inside:
        interval = "(0, 1]" if low_open else "[0, 1)"
        raise ColakitError(f"{name} {value} is outside {interval}", f"use a {name} in {interval}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ColakitError(f"{name} {value} is not positive", f"use a {name} above 0")


def _ids(tokenizer) -> tuple[int, int | None]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pad, tokenizer.eos_token_id


@register
class SelfGenSelector(Selector):
    """Ji et al. 2025: continue real prefixes, drop the highest-perplexity 20%, sample the budget."""

    name = "self-gen"
    needs_model = True

    def __init__(self, prefix_tokens: int = 8, top_k: int = 50, top_p: float = 0.95, temperature: float = 1.0,
                 drop_fraction: float = 0.2, oversample: float = 1.5, batch_size: int = 8, ppl_batch_size: int = 4):
        _positive("prefix_tokens", prefix_tokens)
        _positive("temperature", temperature)
        _check_unit_interval("top_p", top_p)
        _check_unit_interval("drop_fraction", drop_fraction, low_open=False)
        if oversample < 1:
            raise ColakitError(f"oversample {oversample} is below 1", "generate at least the budget: oversample >= 1")
        self.prefix_tokens, self.top_k, self.top_p, self.temperature = prefix_tokens, top_k, top_p, temperature
        self.drop_fraction, self.oversample = drop_fraction, oversample
        self.batch_size, self.ppl_batch_size = batch_size, ppl_batch_size

    def generations_for(self, budget: int) -> int:
        return math.ceil(budget * self.oversample / (1 - self.drop_fraction))

    def select(self, candidates, features, budget: int, seed: int) -> Selection:
        model, tokenizer, config = self.bound()
        self.check_budget(candidates, budget)
        usable = [i for i, c in enumerate(candidates) if len(c.input_ids) >= self.prefix_tokens]
        wanted = self.generations_for(budget)
        if len(usable) < wanted:
            raise ColakitError(f"self-gen needs {wanted} prefixes of {self.prefix_tokens} tokens but the pool has "
                               f"{len(usable)} usable windows", "raise --pool or lower --n")
        rng = np.random.default_rng(seed)
        origins = [usable[i] for i in rng.choice(len(usable), size=wanted, replace=False)]
        prompts = [list(candidates[i].input_ids[:self.prefix_tokens]) for i in origins]
        pad, eos = _ids(tokenizer)
        seqs = generate(model, prompts, config.seq_len, seed, batch_size=self.batch_size,
                        temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, pad_id=pad, eos_id=eos)
        ppl = perplexities(model, seqs, pad, self.ppl_batch_size)
        keep = np.argsort(ppl, kind="stable")[: wanted - int(math.floor(wanted * self.drop_fraction))]
        picked = sorted(rng.choice(keep, size=budget, replace=False).tolist())
        generated = [Candidate(seqs[j], tokenizer.decode(seqs[j]), "self-gen", candidates[origins[j]].doc_id,
                               [candidates[origins[j]].doc_id], candidates[origins[j]].start) for j in picked]
        return Selection(indices=list(range(budget)), scores=[float(ppl[j]) for j in picked], generated=generated,
                         info={"generated": wanted, "kept": len(keep),
                               "ppl_cutoff": float(ppl[keep[-1]]), "ppl_dropped_min": _min_dropped(ppl, keep)})


def _min_dropped(ppl: np.ndarray, keep: np.ndarray) -> float | None:
    dropped = np.setdiff1d(np.arange(len(ppl)), keep)
    return float(ppl[dropped].min()) if len(dropped) else None


@register
class SelfCalSelector(Selector):
    """Williams et al. 2025: generate from BOS alone with a linear temperature schedule."""

    name = "self-cal"
    needs_model = True
    needs_pool = False

    def __init__(self, t_start: float = 1.5, t_end: float = 0.8, schedule_tokens: int | None = 8,
                 top_k: int = 0, top_p: float = 1.0, batch_size: int = 8):
        _positive("t_start", t_start)
        _positive("t_end", t_end)
        _check_unit_interval("top_p", top_p)
        if schedule_tokens is not None:
            _positive("schedule_tokens", schedule_tokens)
        self.t_start, self.t_end, self.schedule_tokens = t_start, t_end, schedule_tokens
        self.top_k, self.top_p, self.batch_size = top_k, top_p, batch_size

    def select(self, candidates, features, budget: int, seed: int) -> Selection:
        model, tokenizer, config = self.bound()
        if budget < 1:
            raise ColakitError(f"budget {budget} is not positive", "set --n to 1 or more")
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ColakitError("self-cal needs a BOS or EOS token to start generation from",
                               "use a tokenizer that defines bos_token or eos_token")
        pad, eos = _ids(tokenizer)
        seqs = generate(model, [[start]] * budget, config.seq_len, seed, batch_size=self.batch_size,
                        top_k=self.top_k, top_p=self.top_p, schedule=(self.t_start, self.t_end, self.schedule_tokens),
                        pad_id=pad, eos_id=eos)
        generated = [Candidate(s, tokenizer.decode(s), "self-cal", f"self-cal:{seed}:{k}", [f"self-cal:{seed}:{k}"], 0)
                     for k, s in enumerate(seqs)]
        return Selection(indices=list(range(budget)), generated=generated,
                         info={"start_token": int(start)})
