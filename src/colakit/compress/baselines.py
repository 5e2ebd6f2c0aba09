"""Data-free baselines: magnitude pruning and round-to-nearest quantization.

Magnitude pruning removes the smallest ``|w|`` of the whole layer (unstructured; the baseline of
the SparseGPT and Wanda papers) or the M-N smallest of every M consecutive inputs (N:M).
Round-to-nearest quantizes each group on its own min/max grid (``quantizer.quantize_groups``).
"""

from __future__ import annotations

import torch

from colakit.compress.quantizer import quantize_groups
from colakit.compress.sparsegpt import _smallest_mask
from colakit.compress.wanda import prune_mask_rows


def magnitude_prune(w: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None) -> torch.Tensor:
    w = w.float()
    if nm:
        return w.masked_fill(prune_mask_rows(w.abs(), sparsity, nm), 0)
    return w.masked_fill(_smallest_mask(w.abs(), int(w.numel() * sparsity)), 0)


def rtn(w: torch.Tensor, bits: int, group_size: int, sym: bool) -> torch.Tensor:
    return quantize_groups(w, bits, group_size, sym)
