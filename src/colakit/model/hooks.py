"""Cutting a forward pass short once the hooked part of the model has run.

Feature extraction needs the activations up to the deepest hooked decoder layer, and the
compression engine's input capture needs only what reaches the blocks; neither needs the rest of
the model (later blocks, final norm, LM head, logits). Both raise ``StopForward`` from a hook and
catch it around the model call: one exception class, so one ``except`` catches it whichever
module raised it.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle


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
