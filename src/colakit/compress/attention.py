"""Attention-aware Hessians for value projections (GPTQ and SparseGPT).

GPTQ and SparseGPT minimise ``||X W^T - X W'^T||^2`` over the tokens of the calibration set: every
token's value vector counts once. Downstream, a value vector counts as much as it is attended to.
Decoder models park most of their attention on the first token of a sequence (an "attention
sink"), whose hidden state is unlike the others; a solver that treats it as one token in 512
moves the rounding error there. Measured on SmolLM2-135M (GPTQ w4 g64, 32 x 512 C4 tokens): the
sink's value error was 10x RTN's in block 15 while every other token's was 3x lower, and GPTQ lost
to RTN end to end (wiki perplexity 29.89 vs 28.84) until its value projections alone were rounded
to nearest (27.18). See bench/compress_parity.py.

The error that reaches the rest of the network is that of the attention output. For query ``i``
of head ``h`` it is ``sum_t A[h, i, t] (x_t W_g^T - x_t W_g'^T) = xbar_hi (W_g - W_g')^T`` with
``xbar_hi = sum_t A[h, i, t] x_t`` and ``W_g`` the rows of ``v_proj`` that head ``h``'s key/value
group uses. So each key/value group ``g`` gets its own exact Hessian

    H_g = sum over heads h of g, sequences, real queries i of  xbar_hi xbar_hi^T

and its rows are solved with it. (BoA, Kim et al. 2024, arXiv 2406.13474, builds its Hessians
from the attention too.) The attention probabilities come from the block's own query/key tensors:
while statistics are gathered, the block's attention runs through a registered attention
function that calls the model's own implementation for the output and recomputes the softmax
weights beside it, so the block's outputs are unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

PROBE = "colakit_attention_probe"


def value_linear(linears: dict[str, nn.Module]) -> str | None:
    """The name of the block's separate value projection (None for fused qkv layouts)."""
    names = [n for n in linears if n.rsplit(".", 1)[-1] in ("v_proj", "value")]
    return names[0] if len(names) == 1 else None


def attention_probs(module: nn.Module, query: torch.Tensor, key: torch.Tensor, attention_mask, scaling) -> torch.Tensor:
    """Softmax attention weights ``[B, H, Lq, Lk]`` in float32, as eager attention computes them.

    ``attention_mask`` is whatever the model passes its attention function: None (causal, what
    SDPA gets when nothing is padded), a boolean mask (True: attend) or an additive float mask.
    """
    q, k = query.float(), key.float()
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves several query heads
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    softcap = getattr(module, "attn_logit_softcapping", None) or getattr(getattr(module, "config", None),
                                                                          "attn_logit_softcapping", None)
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    lq, lk = scores.shape[-2:]
    if attention_mask is None:
        causal = torch.ones(lq, lk, dtype=torch.bool, device=scores.device).tril(lk - lq)
        scores = scores.masked_fill(~causal, float("-inf"))
    else:
        mask = attention_mask[..., :lk]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    probs = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(probs)  # a fully masked (padded) query row: zeros, not NaN


class ValueHessians:
    """One solver per key/value group of a value projection, fed attention-weighted inputs."""

    def __init__(self, make_solver: Callable[[], object], out_features: int, head_dim: int):
        if out_features % head_dim:
            raise ValueError(f"value projection rows {out_features} are not a multiple of head_dim {head_dim}")
        self.groups = out_features // head_dim
        self.head_dim = head_dim
        self.solvers = [make_solver() for _ in range(self.groups)]

    def add(self, x: torch.Tensor, probs: torch.Tensor, mask: torch.Tensor) -> None:
        """``x``: the value projection's input ``[B, L, C]``; ``probs``: ``[B, H, L, L]``; ``mask``: real tokens."""
        heads = probs.shape[1]
        if heads % self.groups:
            raise ValueError(f"{heads} attention heads do not split into {self.groups} key/value groups")
        per_group = heads // self.groups
        x = x.float()
        keep = mask.reshape(-1)
        for h in range(heads):
            xbar = torch.matmul(probs[:, h], x)  # [B, L, C]: what the value error is multiplied by
            self.solvers[h // per_group].add_batch(xbar.reshape(-1, xbar.shape[-1])[keep])

    def rows(self, group: int) -> slice:
        return slice(group * self.head_dim, (group + 1) * self.head_dim)


@contextlib.contextmanager
def probe_attention(attn: nn.Module, sink: Callable[[torch.Tensor], None]) -> Iterator[bool]:
    """While active, ``attn``'s forward passes its softmax weights to ``sink``; yields False (and does
    nothing) when the module does not dispatch through transformers' attention interface."""
    config = getattr(attn, "config", None)
    try:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.llama.modeling_llama import eager_attention_forward
    except ImportError:  # pragma: no cover - transformers always ships these
        config = None
    if config is None or not hasattr(config, "_attn_implementation_internal"):
        yield False
        return
    original = config._attn_implementation_internal
    if original == "eager":
        # eager attention already returns its weights (the module's second output), computed by the
        # family's own eager function (softcapping, scaling): take them from there
        def hook(_mod, _args, out):
            if isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], torch.Tensor):
                sink(out[1].float())

        handle = attn.register_forward_hook(hook)
        try:
            yield True
        finally:
            handle.remove()
        return
    impl = ALL_ATTENTION_FUNCTIONS.get_interface(original, eager_attention_forward)

    def probe(module, query, key, value, attention_mask, scaling=None, **kwargs):
        out = impl(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        if module is attn:
            sink(attention_probs(module, query, key, attention_mask, scaling))
        return out

    ALL_ATTENTION_FUNCTIONS[PROBE] = probe
    config._attn_implementation_internal = PROBE
    try:
        yield True
    finally:
        config._attn_implementation_internal = original
        ALL_ATTENTION_FUNCTIONS.pop(PROBE, None)
