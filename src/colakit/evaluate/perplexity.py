"""Perplexity and bits per byte on held-out documents.

Convention (the same as lm-evaluation-harness's ``loglikelihood_rolling``, which its wikitext
task uses): each document is tokenized on its own (no special tokens) and cut into windows of
``seq_len`` predicted tokens that do not overlap; the first window is conditioned on the prefix
token (BOS, else EOS), every later window on the token before it, and the last, shorter window
takes the preceding tokens as extra context so it sees ``seq_len`` tokens too. So every token of
every document is predicted exactly once. Reported, over all documents together:

- ``token_perplexity`` = exp(total NLL / tokens) (depends on the tokenizer);
- ``word_perplexity`` = exp(total NLL / words), words = whitespace-separated pieces (lm-eval);
- ``bits_per_byte`` = total NLL / ln 2 / UTF-8 bytes (compares models with different tokenizers);
- ``byte_perplexity`` = 2 ** bits_per_byte.

Standard errors treat documents as the sampled units (ratio estimator, delta method).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn.functional as F

from colakit.errors import ColakitError
from colakit.evaluate.loglik import prefix_token_id
from colakit.model.load import max_context
from colakit.model.placement import input_device


def rolling_windows(tokens: list[int], prefix: int, seq_len: int) -> list[tuple[list[int], int]]:
    """Windows of one document as (sequence, n_pred): the model reads ``sequence[:-1]`` (at most
    ``seq_len`` tokens) and the last ``n_pred`` tokens of ``sequence`` are the ones predicted."""
    if seq_len < 1:
        raise ColakitError(f"seq_len must be at least 1, got {seq_len}", "use e.g. 1024")
    full = [prefix] + tokens  # full[i] predicts full[i + 1] == tokens[i]
    out, done = [], 0
    while done < len(tokens):
        n_pred = min(seq_len, len(tokens) - done)
        end = done + n_pred  # predict tokens[done:end] == full[done + 1 : end + 1]
        out.append((full[max(0, end - seq_len) : end + 1], n_pred))
        done = end
    return out


@torch.inference_mode()
def _score_windows(model, chunk: list[tuple[int, list[int], int]], pad_id: int) -> list[float]:
    """Summed NLL (nats) of each window's predicted tokens; a window is (doc, sequence, n_pred)."""
    device = input_device(model)
    width = max(len(s) - 1 for _, s, _ in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (_, s, _) in enumerate(chunk):
        ids[i, : len(s) - 1] = torch.tensor(s[:-1])
        mask[i, : len(s) - 1] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    out = []
    for i, (_, s, n_pred) in enumerate(chunk):
        n_in = len(s) - 1
        target = torch.tensor(s[-n_pred:], device=logits.device)
        out.append(float(F.cross_entropy(logits[i, n_in - n_pred : n_in].float(), target, reduction="sum")))
    return out


def document_nll(model, tokenizer, texts: list[str], *, seq_len: int = 1024, logit_budget_mb: int = 1024,
                 progress=None, on_windows=None) -> tuple[list[float], list[int]]:
    """Total NLL (nats) and token count of each text, every token predicted once.

    ``on_windows(total)`` is called once the texts are cut into windows, ``progress(n_done)`` after
    each batch with the number of windows scored so far.
    """
    limit = max_context(model)
    if limit is not None and seq_len > limit:
        raise ColakitError(f"seq_len {seq_len} is longer than the model's context ({limit})",
                           f"use --ppl-seq-len {limit} or less")
    prefix = prefix_token_id(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix
    token_docs = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    windows = [(d, seq, n) for d, toks in enumerate(token_docs) for seq, n in rolling_windows(toks, prefix, seq_len)]
    vocab = model.config.get_text_config().vocab_size
    rows = max(1, (logit_budget_mb << 20) // (seq_len * vocab * 4 * 2))  # logits + their softmax, float32
    order = sorted(range(len(windows)), key=lambda i: len(windows[i][1]), reverse=True)
    if on_windows:
        on_windows(len(windows))
    nll = [0.0] * len(texts)
    for start in range(0, len(order), rows):
        chunk = [windows[i] for i in order[start : start + rows]]
        for (d, _, _), value in zip(chunk, _score_windows(model, chunk, pad_id)):
            nll[d] += value
        if progress:
            progress(min(start + rows, len(order)))
    return nll, [len(t) for t in token_docs]


def _ratio_se(num: np.ndarray, den: np.ndarray) -> float:
    """Standard error of sum(num)/sum(den) with documents as the sampled units."""
    n = len(num)
    if n < 2 or den.sum() == 0:
        return float("nan")
    r = num.sum() / den.sum()
    return float(math.sqrt(((num - r * den) ** 2).sum() / (n * (n - 1))) / den.mean())


def perplexity(model, tokenizer, texts: list[str], *, seq_len: int = 1024, logit_budget_mb: int = 1024,
               progress=None, on_windows=None) -> dict:
    """Perplexities and bits per byte of ``texts`` (see the module docstring), with per-document records.

    ``progress``/``on_windows``: as ``document_nll`` reports them (windows scored, windows in all).
    """
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ColakitError("no non-empty documents to compute perplexity on", "check the source and --limit")
    nll, n_tokens = document_nll(model, tokenizer, texts, seq_len=seq_len, logit_budget_mb=logit_budget_mb,
                                 progress=progress, on_windows=on_windows)
    nll_a, tok_a = np.array(nll), np.array(n_tokens, dtype=float)
    bytes_a = np.array([len(t.encode("utf-8")) for t in texts], dtype=float)
    words_a = np.array([len(re.split(r"\s+", t)) for t in texts], dtype=float)
    log_tok = float(nll_a.sum() / tok_a.sum())
    bpb = float(nll_a.sum() / bytes_a.sum() / math.log(2))
    metrics = {
        "token_perplexity": math.exp(log_tok),
        "token_perplexity_stderr": math.exp(log_tok) * _ratio_se(nll_a, tok_a),
        "word_perplexity": math.exp(float(nll_a.sum() / words_a.sum())),
        "bits_per_byte": bpb,
        "bits_per_byte_stderr": _ratio_se(nll_a / math.log(2), bytes_a),
        "byte_perplexity": 2 ** bpb,
        "tokens": int(tok_a.sum()), "bytes": int(bytes_a.sum()), "documents": len(texts), "seq_len": seq_len,
    }
    records = [{"nll": float(a), "tokens": int(b), "bytes": int(c), "bits_per_byte": float(a / c / math.log(2))}
               for a, b, c in zip(nll_a, tok_a, bytes_a)]
    return {"metrics": metrics, "documents": records}
