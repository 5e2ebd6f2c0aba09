"""Wanda (Sun et al., 2023, arXiv 2306.11695): prune by weight magnitude times input norm.

The score of ``w_ij`` is ``|w_ij| * ||X_j||_2`` (``X_j``: input feature ``j`` over all calibration
tokens). Weights compete within their output row: each row loses its ``sparsity * in`` lowest
scores (unstructured), or the M-N lowest of every M consecutive inputs (N:M). No weight update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from colakit.compress.methods.base import RecipeStep, register_method
from colakit.compress.methods.params import LLMCOMPRESSOR_PRUNING, Pruning, Quantization


def prune_mask_rows(scores: torch.Tensor, sparsity: float, nm: tuple[int, int] | None) -> torch.Tensor:
    """True where a weight is removed: per output row (unstructured) or per M-group (N:M)."""
    rows, cols = scores.shape
    if nm:
        n, m = nm
        grouped = scores.reshape(rows, cols // m, m)
        drop = torch.topk(grouped, m - n, dim=-1, largest=False).indices
        return torch.zeros_like(grouped, dtype=torch.bool).scatter_(-1, drop, True).reshape(rows, cols)
    k = int(cols * sparsity)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k:
        mask.scatter_(1, torch.topk(scores, k, dim=1, largest=False).indices, True)
    return mask


class WandaSolver:
    """Accumulate squared input norms per feature with ``add_batch``; ``solve`` returns the pruned weight."""

    def __init__(self, columns: int, device: torch.device):
        self.sq_norm = torch.zeros(columns, dtype=torch.float32, device=device)
        self.count = 0

    def add_batch(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.sq_norm += (x * x).sum(dim=0)
        self.count += x.shape[0]

    def solve(self, w: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict]:
        w = w.float()
        scores = w.abs() * self.sq_norm.sqrt().unsqueeze(0)
        return w.masked_fill(prune_mask_rows(scores, sparsity, nm), 0), {}


@register_method
@dataclass
class Wanda(Quantization, Pruning):
    """Prune by ``|w| * ||x||``; with ``bits``, round the kept weights to nearest afterwards."""

    name = "wanda"

    def make_stats(self, columns: int, device: torch.device) -> WandaSolver:
        return WandaSolver(columns, device)

    def solve(self, stats: WandaSolver, w: torch.Tensor, what: str) -> tuple[torch.Tensor, dict]:
        new, info = stats.solve(w, self.sparsity, self.nm)
        new, facts = self.round_to_grid(new)
        return new, {**info, **facts}

    def llmcompressor_recipe(self) -> list[RecipeStep]:
        return [RecipeStep(LLMCOMPRESSOR_PRUNING, "WandaPruningModifier", {
            "sparsity": self.target_sparsity, "mask_structure": self.mask_structure, "targets": ["Linear"]}),
            *self.llmcompressor_rounding()]
