"""Parameter groups that several methods share: what to prune, the quantization grid, the Hessian solve.

A method's dataclass inherits the groups it takes (SparseGPT takes all three, RTN only the grid).
Each group declares its fields with their defaults and checks them, on their own and against
every decoder linear of the model; the checks chain through ``super()``, so a method inherits
all of its groups' checks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from colakit.compress.methods.base import Method, RecipeStep
from colakit.compress.quantizer import quantize_groups_with_grid
from colakit.errors import ColakitError
from colakit.model.layers import find_decoder, in_features

AUTO = "auto"
AUTO_GROUP_SIZES = (128, 64, 32)  # 128 is the field's usual choice; smaller models need smaller groups
DEFAULT_BITS = 4
VALUE_HESSIANS = ("attention", "tokens")
LLMCOMPRESSOR_QUANTIZATION = "llmcompressor.modifiers.quantization"
LLMCOMPRESSOR_PRUNING = "llmcompressor.modifiers.pruning"


def require_positive(method: Method, *names: str) -> None:
    """Refuse a parameter below 1 (None passes: it means "no limit")."""
    for name in names:
        value = getattr(method, name)
        if value is not None and value < 1:
            raise ColakitError(f"{name} {value} must be >= 1", f"set {name} to a positive integer")


@dataclass
class Pruning(Method):
    """``sparsity`` (unstructured) or ``pattern="N:M"``: keep N of every M consecutive input
    weights per row (2:4 prunes half)."""

    prunes: ClassVar[bool] = True
    sparsity: float = 0.5
    pattern: str = "unstructured"

    @property
    def nm(self) -> tuple[int, int] | None:
        """(keep N, of M) for an N:M pattern, else None."""
        if self.pattern == "unstructured":
            return None
        n, m = (int(p) for p in self.pattern.split(":"))
        return n, m

    @property
    def target_sparsity(self) -> float:
        nm = self.nm
        return 1 - nm[0] / nm[1] if nm else self.sparsity

    @property
    def mask_structure(self) -> str:
        """llm-compressor's N:M counts the *pruned* weights, ours the kept ones (2:4 is the same either way)."""
        if not self.nm:
            return "0:0"
        n, m = self.nm
        return f"{m - n}:{m}"

    def validate(self) -> None:
        super().validate()
        if self.pattern != "unstructured":
            parts = self.pattern.split(":")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ColakitError(f"pattern {self.pattern!r} is neither 'unstructured' nor N:M",
                                   "use --pattern unstructured, 2:4 or 4:8")
            n, m = int(parts[0]), int(parts[1])
            if not 0 < n < m:
                raise ColakitError(f"pattern {self.pattern}: N must be between 1 and M-1 (N={n}, M={m})",
                                   "N:M keeps N of every M weights, e.g. --pattern 2:4")
        if self.nm is None and not (0 < self.sparsity < 1):
            raise ColakitError(f"sparsity {self.sparsity} is outside (0, 1)",
                               "give the fraction of weights to remove, e.g. --sparsity 0.5")

    def check_linear(self, where: str, columns: int, model: nn.Module) -> None:
        super().check_linear(where, columns, model)
        nm = self.nm
        if nm and columns % nm[1]:
            raise ColakitError(f"pattern {self.pattern}: M={nm[1]} does not divide the {columns} "
                               f"input features of {where}", "use an M that divides the input features")


def compressed_tensors_weights(bits: int, group_size: int, sym: bool) -> dict:
    """colakit's group grid as compressed-tensors weight arguments (llm-compressor's recipes and
    colakit's own packed checkpoints use the same)."""
    return {"num_bits": bits, "type": "int", "symmetric": sym, "strategy": "channel" if group_size == -1 else "group",
            "group_size": None if group_size == -1 else group_size}


@dataclass
class Quantization(Method):
    """``bits``, ``group_size`` (-1: one group per row; ``"auto"``: the largest of 128/64/32 that
    divides every quantized linear's input features, fixed by ``resolve``) and ``sym``.

    ``bits=None`` means no quantization for a method that prunes, and 4 bits for one that only quantizes.
    """

    bits: int | None = None
    group_size: int | str = 128
    sym: bool = False

    def __post_init__(self):
        if self.bits is None and not self.prunes:
            self.bits = DEFAULT_BITS

    @property
    def quantizes(self) -> bool:
        return self.bits is not None

    def validate(self) -> None:
        super().validate()
        if self.bits is not None and (not isinstance(self.bits, int) or not 2 <= self.bits <= 8):
            raise ColakitError(f"bits {self.bits} is outside 2-8", "use --bits 2 to 8 (4 is the usual choice)")
        if self.group_size not in (-1, AUTO) and (not isinstance(self.group_size, int) or self.group_size < 1):
            raise ColakitError(f"group size {self.group_size} is not a positive integer",
                               "use e.g. --group-size 64, auto, or -1 for one group per output row")

    def check_model(self, model: nn.Module) -> None:
        if self.quantizes and self.group_size == AUTO:
            auto_group_size(model)  # raises when no automatic size fits
        super().check_model(model)

    def check_linear(self, where: str, columns: int, model: nn.Module) -> None:
        super().check_linear(where, columns, model)
        if self.quantizes and self.group_size not in (-1, AUTO) and columns % self.group_size:
            raise ColakitError(
                f"group size {self.group_size} does not divide the {columns} input features of {where}",
                f"use a group size that divides every layer's input features "
                f"(e.g. --group-size {suggest_group_size(model)}), or -1 for one group per row")

    def resolve(self, model: nn.Module, notes: list[str]) -> Method:
        method = super().resolve(model, notes)
        if self.group_size != AUTO or not self.quantizes:
            return method
        chosen = auto_group_size(model)
        notes.append(f"group size {AUTO}: chose {chosen} "
                     "(the largest of 128/64/32 dividing every linear's input features)")
        return dataclasses.replace(method, group_size=chosen)

    def unresolved(self) -> str | None:
        if self.quantizes and self.group_size == AUTO:
            return f"group size {AUTO!r}"
        return super().unresolved()

    def round_to_grid(self, w: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Round-to-nearest on the group grid when quantizing (after pruning: the grid contains 0); the
        facts carry the grid (``"grid"``) for packing."""
        if not self.quantizes:
            return w, {}
        q, grid = quantize_groups_with_grid(w, self.bits, self.group_size, self.sym)
        return q, {"grid": grid}

    def compressed_tensors_groups(self) -> dict:
        """compressed-tensors ``config_groups`` for this grid: every decoder linear, weights only."""
        return {"group_0": {"targets": ["Linear"], "weights": compressed_tensors_weights(self.bits, self.group_size,
                                                                                          self.sym)}}

    def llmcompressor_quantization(self) -> RecipeStep:
        """llm-compressor's QuantizationModifier with this grid (round to nearest on it)."""
        return RecipeStep(LLMCOMPRESSOR_QUANTIZATION, "QuantizationModifier",
                          {"config_groups": self.compressed_tensors_groups()})

    def llmcompressor_rounding(self) -> list[RecipeStep]:
        """After a pruning modifier: round the kept weights to nearest (min/max grids contain 0, so the
        sparsity survives). Not llm-compressor's GPTQ: its error corrections refill pruned weights."""
        return [self.llmcompressor_quantization()] if self.quantizes else []


@dataclass
class HessianSolve(Method):
    """The layer-Hessian solvers' knobs (GPTQ, SparseGPT): dampening, lazy-update block size, and
    whether value projections get attention-weighted Hessians (``compress/attention.py``)."""

    damp: float = 0.01
    value_hessian: str = "attention"  # or "tokens": every token once, as the papers and llm-compressor do
    block_size: int = 128

    @property
    def value_hessians(self) -> bool:
        return self.value_hessian == "attention"

    def validate(self) -> None:
        super().validate()
        if self.value_hessian not in VALUE_HESSIANS:
            raise ColakitError(f"value_hessian {self.value_hessian!r} is not one of {', '.join(VALUE_HESSIANS)}",
                               "use attention (weight value inputs by how much they are attended to) or tokens")
        if not self.damp > 0:
            raise ColakitError(f"dampening {self.damp} must be > 0", "use e.g. 0.01 (1% of the mean Hessian diagonal)")
        require_positive(self, "block_size")


def _common_in_features(model: nn.Module) -> int:
    layout = find_decoder(model)
    common = 0
    for i in range(layout.num_layers):
        for lin in layout.linears(i).values():
            common = math.gcd(common, in_features(lin))
    return common


def auto_group_size(model: nn.Module) -> int:
    """The largest of ``AUTO_GROUP_SIZES`` that divides every decoder linear's input features."""
    common = _common_in_features(model)
    for size in AUTO_GROUP_SIZES:
        if common % size == 0:
            return size
    raise ColakitError(f"--group-size auto: none of {'/'.join(map(str, AUTO_GROUP_SIZES))} divides the input "
                       f"features of every decoder linear (their common divisor is {common})",
                       f"pass --group-size {suggest_group_size(model)} or -1 (one group per output row)")


def suggest_group_size(model: nn.Module) -> int:
    """The largest of 128, 64, 32, ... that divides every decoder linear's input features."""
    common = _common_in_features(model)
    size = 128
    while size > 1 and common % size:
        size //= 2
    return size
