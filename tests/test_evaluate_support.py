"""Helpers for the evaluation tests: a byte-level tokenizer that fits the tiny random models."""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def byte_tokenizer():
    """A real fast tokenizer over the 256 bytes plus <eos> (id 256); no merges, no BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["<eos>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    return fast


def tiny(family: str = "llama", seed: int = 0):
    """A tiny random decoder whose vocabulary covers ``byte_tokenizer``."""
    from tiny_models import tiny_model

    return tiny_model(family, seed=seed, vocab=260)


def naive_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """Reference: one unpadded forward of context+continuation, no cache, no batching."""
    from colakit.evaluate.loglik import encode_pair

    ctx, cont = encode_pair(tokenizer, context, continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    lp = torch.log_softmax(logits[0, len(ctx) - 1 : -1], -1)
    return float(lp.gather(1, torch.tensor(cont).unsqueeze(1)).sum())


def test_byte_tokenizer_roundtrip():
    tok = byte_tokenizer()
    text = "héllo wörld\n  x"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode())
    assert tok.decode(ids) == text
