"""Magnitude pruning, the data-free baseline of the SparseGPT and Wanda papers.

Removes the smallest ``|w|`` of the whole layer (unstructured) or the M-N smallest of every M
consecutive inputs per row (N:M); with ``bits``, the kept weights are rounded to nearest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from colakit.compress.methods.base import register_method
from colakit.compress.methods.params import Pruning, Quantization
from colakit.compress.methods.sparsegpt import smallest_mask
from colakit.compress.methods.wanda import prune_mask_rows


def magnitude_prune(w: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None) -> torch.Tensor:
    w = w.float()
    if nm:
        return w.masked_fill(prune_mask_rows(w.abs(), sparsity, nm), 0)
    return w.masked_fill(smallest_mask(w.abs(), int(w.numel() * sparsity)), 0)


@register_method
@dataclass
class Magnitude(Quantization, Pruning):
    """Prune the smallest weights; needs no calibration data (with data, the report has block errors)."""

    name = "magnitude"
    needs_data = False

    def solve(self, stats: None, w: torch.Tensor, what: str) -> tuple[torch.Tensor, dict]:
        return self.round_to_grid(magnitude_prune(w, self.sparsity, self.nm))
