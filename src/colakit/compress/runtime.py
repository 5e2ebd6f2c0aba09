"""Running decoder blocks one at a time on the calibration set.

``capture_inputs`` runs the model once per batch with every decoder block swapped for a recorder
that keeps what the block would have received (hidden states for block 0; for every block the
other arguments: attention mask, position embeddings, ...; Gemma's sliding-window blocks get other
masks than its global ones) and passes the hidden states through untouched, so no block computes
and the LM head never runs. After that, ``run_block`` feeds block ``i`` its inputs, and its outputs
become the inputs of block ``i + 1``.

Padding never counts: ``rows`` keeps only the positions where ``attention_mask`` is 1.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from colakit.errors import ColakitError
from colakit.model.hooks import StopForward, forward_until_stop


@dataclass
class Batch:
    """One calibration batch: token mask, the current block's input, and every block's other arguments."""

    mask: torch.Tensor  # [B, L] bool, True on real tokens
    hidden: torch.Tensor  # [B, L, C]: input of the block being processed
    block_args: list[tuple[tuple, dict]] = field(default_factory=list)  # per block

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


class _Recorder(nn.Module):
    """Stands in for a block during capture: records its call and returns the hidden states."""

    def __init__(self, inner: nn.Module, index: int, calls: list, last: bool):
        super().__init__()
        self.inner = inner
        self.index, self.calls, self.last = index, calls, last

    def __getattr__(self, name):  # the model loop may read block attributes (e.g. attention_type)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    def forward(self, *args, **kwargs):
        if args:
            hidden, rest = args[0], args[1:]
        else:
            hidden, rest = kwargs.pop("hidden_states"), ()
        self.calls.append((hidden, rest, kwargs))
        if self.last:
            raise StopForward
        return hidden


def validate_calibration(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, vocab: int | None):
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.numel() == 0:
        raise ColakitError("calibration input_ids must be a non-empty [samples, length] tensor",
                           "build it with CalibrationSet.to_tensors(pad_token_id)")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ColakitError(f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids "
                           f"{tuple(input_ids.shape)}", "pass the mask that CalibrationSet.to_tensors returns")
    if int(attention_mask.sum()) == 0:
        raise ColakitError("the calibration set has no real tokens (attention_mask is all zero)",
                           "use a calibration set with text in it")
    if vocab is not None and int(input_ids.max()) >= vocab:
        raise ColakitError(f"calibration token id {int(input_ids.max())} is outside the model's vocabulary "
                           f"({vocab})", "build the calibration set with this model's tokenizer")
    return attention_mask


def capture_inputs(model: nn.Module, layers: nn.ModuleList, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor, batch_size: int, device: torch.device) -> list[Batch]:
    """The inputs of block 0 and the extra arguments of every block, per batch (trimmed to its longest row),
    computed on ``device``."""
    originals = list(layers)
    batches = []
    try:
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start:start + batch_size]
            mask = attention_mask[start:start + batch_size]
            keep = int(mask.any(dim=0).nonzero().max()) + 1  # columns that are padding in every row are dropped
            ids, mask = ids[:, :keep].to(device), mask[:, :keep].to(device)
            calls: list = []
            for i, block in enumerate(originals):
                layers[i] = _Recorder(block, i, calls, last=i == len(originals) - 1)
            try:
                forward_until_stop(model, input_ids=ids, attention_mask=mask, use_cache=False)
            finally:
                for i, block in enumerate(originals):
                    layers[i] = block
            if len(calls) != len(originals):
                raise ColakitError(f"the model called {len(calls)} of its {len(originals)} decoder blocks",
                                   "this architecture's forward is not supported by the block-by-block engine")
            batches.append(Batch(mask=mask.bool(), hidden=calls[0][0],
                                 block_args=[(rest, kw) for _, rest, kw in calls]))
    finally:
        for i, block in enumerate(originals):
            layers[i] = block
    return batches


def run_block(block: nn.Module, index: int, batch: Batch) -> torch.Tensor:
    args, kwargs = batch.block_args[index]
    out = block(batch.hidden, *args, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The non-padded rows of an activation ``[B, L, C]`` as ``[tokens, C]``."""
    flat = x.reshape(-1, x.shape[-1])
    if x.shape[:-1] == mask.shape and not bool(mask.all()):  # unpadded batches need no copy
        return flat[mask.reshape(-1)]
    return flat  # no padding, or a module that reshapes its input (e.g. routed experts): no per-token mask


class MaskState:
    """The mask of the batch being run, read by the statistics hooks."""

    mask: torch.Tensor | None = None


@contextlib.contextmanager
def input_hooks(modules: dict[str, nn.Module], state: MaskState, sink: Callable[[str, torch.Tensor], None],
                share_inputs: bool = False) -> Iterator[dict[str, str]]:
    """Call ``sink(name, non-padded input rows)`` on every forward of each module.

    With ``share_inputs``, a module fed the very tensor that the module hooked just before it got
    (q/k/v after one norm, gate/up after another) is not passed to ``sink``; the yielded dict maps
    its name to that module's, so the caller reuses one set of statistics for both (identical
    inputs give identical Hessians: this saves a third of the Hessian products of a llama block).
    """
    shared: dict[str, str] = {}
    last: list = [None, None]  # the tensor and the module name of the previous sink call
    handles = []

    def hook(_mod, inp, name):
        x = inp[0]
        if share_inputs and x is last[0] and name != last[1]:  # (a module called twice on one tensor counts twice)
            if shared.setdefault(name, last[1]) != last[1]:
                raise ColakitError(f"{name} shares its input with {last[1]} here and with {shared[name]} before",
                                   "this block routes its inputs unusually; please report the model")
            return
        if name in shared:
            raise ColakitError(f"{name} shared the input of {shared[name]} in an earlier batch but not now",
                               "this block routes its inputs unusually; please report the model")
        last[0], last[1] = x, name
        sink(name, rows(x.detach(), state.mask))

    for name, mod in modules.items():
        handles.append(mod.register_forward_pre_hook(lambda m, inp, _name=name: hook(m, inp, _name)))
    try:
        yield shared
    finally:
        last[0] = None
        for h in handles:
            h.remove()


def masked_sq_error(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(sum of squared differences, sum of squares of ``b``) over the non-padded positions."""
    ra, rb = rows(a.float(), mask), rows(b.float(), mask)
    return float(torch.sub(ra, rb).square_().sum()), float(rb.square().sum())
