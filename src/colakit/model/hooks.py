"""Cutting a forward pass short once the hooked part of the model has run.

Feature extraction needs the activations up to the deepest hooked decoder layer, and the
compression engine's input capture needs only what reaches the blocks; neither needs the rest of
the model (later blocks, final norm, LM head, logits). Both raise ``StopForward`` from a hook and
catch it around the model call: one exception class, so one ``except`` catches it whichever
module raised it. ``linear_input_hook`` is the one way to read a linear's input token by token
(moments pooling and ``balanced-trial`` both do).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from colakit.errors import ColakitError


class StopForward(Exception):
    """Raised from a hook: nothing after this point of the forward pass is needed."""


def _raise_stop(_module, _args, _output) -> None:
    raise StopForward


def stop_after(module: nn.Module) -> RemovableHandle:
    """A forward hook that ends the forward pass right after ``module`` has run.

    Hooks run in the order they were registered, so register this one after the hooks that read
    ``module``'s output.
    """
    return module.register_forward_hook(_raise_stop)


def forward_until_stop(model: nn.Module, **inputs: Any) -> bool:
    """``model(**inputs)`` that treats ``StopForward`` as the normal end; True when a hook stopped it."""
    try:
        model(**inputs)
    except StopForward:
        return True
    return False


def linear_input_hook(mask: torch.Tensor, sink: Callable[[torch.Tensor], None], fix: str):
    """A forward pre-hook that hands a linear's input to ``sink`` as ``[B, T, C]``, lined up with
    ``mask``'s tokens (OPT flattens ``[B, T, C]`` to ``[B*T, C]`` before its MLP); a ColakitError
    with ``fix`` when it cannot be lined up."""
    def hook(_module, args):
        x = args[0]
        if x.shape[:-1] != mask.shape:
            if x.shape[:-1].numel() != mask.numel():
                raise ColakitError(f"a linear's input {tuple(x.shape)} does not line up with the tokens "
                                   f"{tuple(mask.shape)}", fix)
            x = x.reshape(*mask.shape, x.shape[-1])
        sink(x)
    return hook
