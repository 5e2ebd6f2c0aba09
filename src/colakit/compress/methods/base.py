"""What every compression method is, and the registry that finds one by name.

After llm-compressor's Modifier: a method is a dataclass of its own parameters (the keys a config,
a grid's ``compression:`` block or the CLI may set for it) whose class says what it does:

- ``name``; ``needs_data`` (False: data-free, like magnitude and RTN); ``prunes``; ``quantizes``;
  ``calibration``, the budget (``n`` samples of ``seq_len`` tokens) that suits it.
- ``validate()`` checks the parameters on their own, ``check_model(model)`` against the model
  (``check_linear`` per decoder linear: group sizes, N:M), before any weight changes.
  ``resolve(model, notes)`` fixes what depends on the model (``group_size="auto"``).
- Per linear (the engine drives it, block by block): ``make_stats(columns, device)`` returns a
  fresh accumulator whose ``add_batch(x)`` gets the linear's non-padded inputs (None: the method
  gathers nothing), and ``solve(stats, w, what)`` returns the new ``[out, in]`` weight and a dict
  of facts for the report. Statistics that are a ``HessianStats`` also give the report the
  linear's relative output error. A method that quantizes puts the linear's ``quantizer.Grid``
  in the facts as ``"grid"``: the engine keeps it for packed checkpoints (``CompressionReport.grids``)
  and leaves it out of compression.json.
- Per block instead (AWQ's scale search): ``compress_block`` changes the whole block itself.
- ``value_hessians``: whether the value projection is solved per key/value group with
  attention-weighted Hessians (``compress/attention.py``; needs Hessian statistics).
- ``llmcompressor_recipe()``: the equivalent llm-compressor modifiers, or None.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from colakit.errors import ColakitError
from colakit.model.layers import find_decoder, in_features

# every registered method by name, in registration order (the built-ins: by file name)
METHODS: dict[str, type[Method]] = {}


class RecipeStep(NamedTuple):
    """One llm-compressor modifier by import path: only the backend imports llmcompressor (an optional extra)."""

    module: str
    name: str
    kwargs: dict


@dataclass
class Method:
    """Base of every method; the parameter groups in ``params`` and the method classes extend it."""

    name: ClassVar[str]
    needs_data: ClassVar[bool] = True
    prunes: ClassVar[bool] = False
    # the calibration budget that suits the method (``colakit curate --compression NAME``); COLA stage 2:
    # pruning and GPTQ are the most length-sensitive and want more and longer sequences
    calibration: ClassVar[dict[str, int]] = {"n": 128, "seq_len": 2048}

    @property
    def quantizes(self) -> bool:
        return False

    @property
    def value_hessians(self) -> bool:
        return False

    @classmethod
    def parameters(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check the parameters on their own; each parameter group adds its checks."""

    def check_model(self, model: nn.Module) -> None:
        """Check every decoder linear that will be touched can take these parameters."""
        layout = find_decoder(model)
        for i in range(layout.num_layers):
            for name, lin in layout.linears(i).items():
                self.check_linear(f"{layout.layers_path}.{i}.{name}", in_features(lin), model)

    def check_linear(self, where: str, columns: int, model: nn.Module) -> None:
        """Check one decoder linear (``where``: its path) with ``columns`` input features."""

    def resolve(self, model: nn.Module, notes: list[str]) -> Method:
        """This method with the model-dependent choices made for ``model`` (each noted in ``notes``)."""
        return self

    def unresolved(self) -> str | None:
        """What still waits for ``resolve`` (e.g. "group size 'auto'"), or None."""
        return None

    def make_stats(self, columns: int, device: torch.device):
        """A fresh accumulator of one linear's calibration statistics, or None."""
        return None

    def solve(self, stats, w: torch.Tensor, what: str) -> tuple[torch.Tensor, dict]:
        """The compressed weight for one linear's weight ``w`` (float32, ``[out, in]``), and facts for the
        report (with ``"grid"`` when it quantizes). ``w`` is read only (it may be the parameter itself):
        return a new tensor; the engine refuses a solve that changed ``w`` in place."""
        raise NotImplementedError(f"{self.name} overrides neither solve nor compress_block")

    def compress_block(self, block: nn.Module, index: int, batches: list | None,
                       notes: list[str]) -> tuple[dict, list[torch.Tensor]] | None:
        """Compress a whole block at once: (per-linear facts, with ``"grid"`` when quantizing; the dense
        block outputs per batch).

        None (the default): the engine gathers ``make_stats`` and calls ``solve`` per linear.
        """
        return None

    def llmcompressor_recipe(self) -> list[RecipeStep] | None:
        """llm-compressor modifiers equivalent to this method (None: it has no equivalent)."""
        return None


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator that makes a ``Method`` dataclass available by its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Method) and "__dataclass_fields__" in vars(cls)):
        raise ColakitError(f"{cls!r} is not a dataclass subclass of Method", "decorate it with @dataclass too")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ColakitError(f"{cls.__name__} has no name", "set name = '...' on the class")
    if name in METHODS and METHODS[name] is not cls:
        raise ColakitError(f"compression method {name!r} is registered twice "
                           f"({METHODS[name].__name__} and {cls.__name__})", "give the new method another name")
    METHODS[name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ColakitError(f"unknown compression method {name!r}", f"use one of: {', '.join(METHODS)}")
    return METHODS[name]


class ParameterError(ColakitError):
    """A key the chosen method does not take; ``key`` names it (a grid error points at its line)."""

    def __init__(self, method: type[Method], key: str, valid: tuple[str, ...]):
        takers = [m for m in METHODS.values() if key in m.parameters()]
        pruners = [m for m in METHODS.values() if m.prunes]
        if not takers:
            problem = f"unknown key {key!r} for {method.name}"
        else:
            who = "pruning" if takers == pruners else ", ".join(m.name for m in takers)
            problem = f"{key} applies to {who}, not {method.name}"
        super().__init__(problem, f"{method.name} takes: {', '.join(valid)}")
        self.key = key
