"""Batched log-likelihood of continuations given contexts (the multiple-choice scorer).

Tokenization follows lm-evaluation-harness (``HFLM._encode_pair``): trailing spaces of the
context move to the continuation, ``whole = encode(context + continuation)``, ``ctx =
encode(context)``, and the continuation tokens are ``whole[len(ctx):]``; an empty context is
replaced by the prefix token (BOS, else EOS). The tokenizer's own special-token default is used.

Speed comes from three things:
- requests with the same context (the choices of one item) share one forward of that context:
  its KV cache is computed once and repeated for each continuation;
- groups are sorted by length and packed into batches under a token budget, so little padding;
- only continuation positions produce logits (the context forward keeps one logit row).

The last context token is fed with the continuation (not with the cached prefix), so every logit
needed comes out of the continuation forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from colakit.errors import ColakitError
from colakit.model.load import max_context
from colakit.model.placement import input_device


@dataclass(frozen=True)
class Request:
    context: str
    continuation: str


@dataclass(frozen=True)
class Score:
    logprob: float  # sum of log-probabilities of the continuation tokens (nats)
    is_greedy: bool  # every continuation token is the argmax
    n_tokens: int


def prefix_token_id(tokenizer) -> int:
    """The token an empty context becomes (lm-eval's convention: BOS, else EOS)."""
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if tid is None:
        raise ColakitError("tokenizer has neither a BOS nor an EOS token",
                           "set tokenizer.bos_token or eos_token so empty contexts can be scored")
    return tid


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    if not context:
        return [prefix_token_id(tokenizer)], tokenizer.encode(continuation, add_special_tokens=False)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx):]


@dataclass
class _Group:
    """Requests that share one context: the context is run once."""

    ctx: list[int]
    conts: list[tuple[int, list[int]]]  # (request index, continuation ids)

    @property
    def prefix(self) -> list[int]:  # cached part: everything but the last context token
        return self.ctx[:-1]

    @property
    def cost(self) -> int:
        return len(self.prefix) + sum(len(c) for _, c in self.conts)


def _groups(tokenizer, requests: list[Request], max_length: int) -> list[_Group]:
    by_ctx: dict[tuple[int, ...], _Group] = {}
    for i, req in enumerate(requests):
        ctx, cont = encode_pair(tokenizer, req.context, req.continuation)
        if not cont:
            raise ColakitError(f"continuation {req.continuation!r} encodes to no tokens",
                               "check the task's choices; an empty choice cannot be scored")
        if len(cont) >= max_length:
            raise ColakitError(f"a continuation has {len(cont)} tokens, the model takes {max_length}",
                               "shorten the continuation or use a model with a longer context")
        by_ctx.setdefault(tuple(ctx), _Group(list(ctx), [])).conts.append((i, cont))
    groups = list(by_ctx.values())
    for g in groups:  # lm-eval keeps the last max_length tokens: cut the context from the left
        longest = max(len(c) for _, c in g.conts)
        if len(g.ctx) + longest > max_length:
            g.ctx = g.ctx[-(max_length - longest):]
    return groups


def _batches(groups: list[_Group], token_budget: int) -> list[list[_Group]]:
    """Longest first, packed while the padded batch stays under ``token_budget`` tokens.

    Groups with and without a cached prefix go to different batches (a prefix row that is all
    padding would attend to nothing).
    """
    # continuation rows outnumber prefix rows (one per choice), so their length decides the padding
    order = sorted(groups, key=lambda g: (len(g.prefix) > 0, max(len(c) for _, c in g.conts), len(g.prefix)),
                   reverse=True)
    batches: list[list[_Group]] = []
    for g in order:
        if batches:
            cur = batches[-1]
            same_kind = (len(cur[0].prefix) > 0) == (len(g.prefix) > 0)
            cand = cur + [g]
            rows = sum(len(x.conts) for x in cand)
            cont_len = 1 + max(len(c) for x in cand for _, c in x.conts)
            padded = len(cand) * max(len(x.prefix) for x in cand) + rows * cont_len
            if same_kind and padded <= token_budget:
                cur.append(g)
                continue
        batches.append([g])
    return batches


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


@torch.inference_mode()
def _score_batch(model, batch: list[_Group], pad_id: int, out: list[Score | None]) -> None:
    device = input_device(model)
    cache, prefix_mask, prefix_lens = None, None, torch.zeros(len(batch), dtype=torch.long)
    if batch[0].prefix:
        ids, prefix_mask = _pad([g.prefix for g in batch], pad_id)
        prefix_lens = prefix_mask.sum(1)
        pos = torch.arange(ids.shape[1]).expand_as(ids)
        res = model(input_ids=ids.to(device), attention_mask=prefix_mask.to(device), position_ids=pos.to(device),
                    use_cache=True, logits_to_keep=1)
        cache = res.past_key_values

    rows, targets, owner, req_ids = [], [], [], []
    for gi, g in enumerate(batch):
        for req_index, cont in g.conts:
            rows.append([g.ctx[-1]] + cont[:-1])
            targets.append(cont)
            owner.append(gi)
            req_ids.append(req_index)
    ids, mask = _pad(rows, pad_id)
    owner_t = torch.tensor(owner, dtype=torch.long)
    pos = prefix_lens[owner_t].unsqueeze(1) + torch.arange(ids.shape[1]).unsqueeze(0)
    if cache is not None:
        cache.batch_select_indices(owner_t.to(device))  # one copy of the shared prefix per continuation
        mask = torch.cat([prefix_mask[owner_t], mask], dim=1)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                   past_key_values=cache, use_cache=cache is not None).logits
    # log p(target) = logit[target] - logsumexp(logits): no second vocabulary-sized tensor
    for r, (target, req_index) in enumerate(zip(targets, req_ids)):
        row = logits[r, : len(target)].float()
        t = torch.tensor(target, device=row.device)
        chosen = row.gather(1, t.unsqueeze(1)).squeeze(1) - torch.logsumexp(row, dim=-1)
        out[req_index] = Score(float(chosen.double().sum()), bool((row.argmax(-1) == t).all()), len(target))


def model_max_length(model, tokenizer=None, default: int = 2048) -> int:
    return max_context(model) or default


def score_requests(model, tokenizer, requests: list[Request], *, max_length: int | None = None,
                   token_budget: int = 2048, progress=None) -> list[Score]:
    """Log-likelihood of each request's continuation given its context, in request order.

    ``token_budget`` bounds the padded tokens per forward (memory); ``progress(n_done)`` is called
    after each batch with the number of requests scored so far.
    """
    if not requests:
        return []
    max_length = max_length or model_max_length(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix_token_id(tokenizer)
    out: list[Score | None] = [None] * len(requests)
    done = 0
    for batch in _batches(_groups(tokenizer, requests, max_length), token_budget):
        _score_batch(model, batch, pad_id, out)
        done += sum(len(g.conts) for g in batch)
        if progress:
            progress(done)
    return out  # type: ignore[return-value]
