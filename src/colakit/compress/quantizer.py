"""Group-wise uniform quantization: scales, zero points, round-to-nearest (fake-quant).

A group is ``group_size`` consecutive input columns of one output row (``-1``: the whole row).
For ``bits`` b the integer grid is ``0 .. 2^b - 1``.

- asymmetric: ``scale = (max - min) / (2^b - 1)``, ``zero = round(-min / scale)``
- symmetric:  ``scale = 2 * absmax / (2^b - 1)``, ``zero = 2^(b-1)`` (the compressed-tensors grid
  ``[-2^(b-1), 2^(b-1) - 1]`` shifted to unsigned)

``min`` and ``max`` are widened to include 0, so a pruned (zero) weight stays exactly zero after
quantization (SparseGPT joint quantization relies on this), and an all-zero group gets a unit
range instead of a zero scale. ``dequant(w) = scale * (clamp(round(w / scale) + zero, 0, maxq) - zero)``
has at most ``2^b`` distinct values per group.

The column-by-column solvers (GPTQ, SparseGPT's joint quantization) fix a group's grid when they
first visit one of its columns (``GroupParams``), from the group's current, already
error-corrected weights (``current_columns``).

Every quantizing method hands its linears' grids (``Grid``) to the engine: the final weights
alone do not determine them (GPTQ fixes a group's grid before later columns move), and a packed
checkpoint stores the integer codes with exactly these scales and zero points (``compress/packed``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Grid:
    """The grid one linear's weights lie on: ``scale`` and ``zero`` per output row and group
    (``[out, groups]``, float32; zero points unsigned, in ``0 .. 2^b - 1``)."""

    scale: torch.Tensor
    zero: torch.Tensor

    def to(self, device) -> Grid:
        return Grid(self.scale.to(device), self.zero.to(device))

    @classmethod
    def of_rows(cls, parts: list[tuple[slice, Grid]], rows: int) -> Grid:
        """One grid from the grids of row blocks solved apart (a value projection's key/value groups)."""
        first = parts[0][1]
        scale = first.scale.new_empty(rows, first.scale.shape[1])
        zero = first.zero.new_empty(rows, first.zero.shape[1])
        for where, part in parts:
            scale[where], zero[where] = part.scale, part.zero
        return cls(scale, zero)


def max_q(bits: int) -> int:
    return 2**bits - 1


def find_params(w: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point per row of ``w`` (``[..., n]`` -> two ``[..., 1]`` tensors)."""
    maxq = max_q(bits)
    zeros = torch.zeros_like(w[..., :1])
    wmin = torch.minimum(w.amin(dim=-1, keepdim=True), zeros)
    wmax = torch.maximum(w.amax(dim=-1, keepdim=True), zeros)
    if sym:
        wmax = torch.maximum(wmin.abs(), wmax)
        wmin = -wmax
    empty = (wmin == 0) & (wmax == 0)
    wmin = torch.where(empty, -torch.ones_like(wmin), wmin)
    wmax = torch.where(empty, torch.ones_like(wmax), wmax)
    scale = (wmax - wmin) / maxq
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-wmin / scale)
    return scale, zero


def quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Round ``w`` to the grid given by ``scale``/``zero`` and return the dequantized values."""
    q = torch.clamp(torch.round(w / scale) + zero, 0, max_q(bits))
    return scale * (q - zero)


def _grouped(w: torch.Tensor, group_size: int) -> torch.Tensor:
    rows, cols = w.shape
    gs = cols if group_size in (-1, None) else group_size
    return w.reshape(rows, cols // gs, gs)


def quantize_groups_with_grid(w: torch.Tensor, bits: int, group_size: int, sym: bool) -> tuple[torch.Tensor, Grid]:
    """Round-to-nearest fake quantization of an ``[out, in]`` matrix, group-wise along ``in``, and its grid."""
    g = _grouped(w.float(), group_size)
    scale, zero = find_params(g, bits, sym)
    return quantize(g, scale, zero, bits).reshape(w.shape), Grid(scale.squeeze(-1), zero.squeeze(-1))


def quantize_groups(w: torch.Tensor, bits: int, group_size: int, sym: bool) -> torch.Tensor:
    """Round-to-nearest fake quantization of an ``[out, in]`` matrix, group-wise along ``in``."""
    return quantize_groups_with_grid(w, bits, group_size, sym)[0]


class GroupParams:
    """Lazily computed scale/zero per quantization group, from the weights current at first visit."""

    def __init__(self, columns: int, group_size: int, bits: int, sym: bool):
        self.gs = columns if group_size == -1 else group_size
        self.groups = columns // self.gs
        self.bits, self.sym = bits, sym
        self.params: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def group_of(self, column: int) -> int:
        return column // self.gs

    def get(self, group: int, current_values) -> tuple[torch.Tensor, torch.Tensor]:
        if group not in self.params:
            self.params[group] = find_params(current_values(), self.bits, self.sym)
        return self.params[group]

    def grid(self) -> Grid:
        """Every group's scale and zero, once the solver has visited them all."""
        scales, zeros = zip(*(self.params[g] for g in range(self.groups)))
        return Grid(torch.cat(scales, dim=1), torch.cat(zeros, dim=1))


def current_columns(w: torch.Tensor, w_block: torch.Tensor, i1: int, i2: int, positions: torch.Tensor):
    """Current values of ``positions`` (working order): the block copy inside [i1, i2), else ``w``."""
    vals = w[:, positions].clone()
    inside = (positions >= i1) & (positions < i2)
    vals[:, inside] = w_block[:, positions[inside] - i1]
    return vals
