"""SparseGPT (Frantar & Alistarh, 2023, arXiv 2301.00774): prune with OBS updates, column by column.

Same machinery as GPTQ (``U`` = upper Cholesky factor of ``H^-1``). For each block of
``block_size`` columns, the pruning score of weight ``w_ij`` is the OBS saliency
``w_ij^2 / U[j, j]^2``:

- unstructured: the block's ``sparsity * size`` lowest-scoring weights are masked (block counts
  are rounded cumulatively, so the layer as a whole has exactly ``round(sparsity * numel)`` zeros);
- N:M (keep N of every M inputs per row): at the first column of each M-group, the M-N lowest
  scores of every row are masked.

Then column ``j`` is replaced by ``q_j`` (0 where masked; with joint quantization, the kept
weights rounded to the group grid, which contains 0), and the error
``(w_j - q_j) / U[j, j]`` is pushed onto the later columns exactly as in GPTQ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from colakit.compress import hessian
from colakit.compress.methods.base import RecipeStep, register_method
from colakit.compress.methods.params import LLMCOMPRESSOR_PRUNING, HessianSolve, Pruning, Quantization
from colakit.compress.quantizer import GroupParams, current_columns, quantize


def smallest_mask(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of the ``count`` smallest entries of ``scores`` (flattened), ties broken by index."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if count > 0:
        mask[torch.topk(scores.flatten(), count, largest=False, sorted=False).indices] = True
    return mask.reshape(scores.shape)


class SparseGPTSolver(hessian.HessianStats):
    """Accumulate the Hessian with ``add_batch``; ``solve`` returns the pruned (optionally quantized) weight."""

    def solve(self, w: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None, bits: int | None = None,
              group_size: int = 128, sym: bool = False, damp: float = 0.01, block_size: int = 128,
              what: str = "layer") -> tuple[torch.Tensor, dict]:
        w, h = hessian.prepare(w.float(), self.hessian)
        rows, cols = w.shape
        # the factor may occupy the Hessian's memory until the exit gives the Hessian back (hessian.factored)
        with hessian.factored(h, damp, what) as (hinv, used_damp):
            if nm:
                block_size = max(nm[1], block_size - block_size % nm[1])  # N:M groups must not straddle blocks
            groups = GroupParams(cols, group_size, bits, sym) if bits else None
            for i1 in range(0, cols, block_size):
                i2 = min(i1 + block_size, cols)
                w1 = w[:, i1:i2].clone()
                err1, q1 = torch.zeros_like(w1), torch.empty_like(w1)
                hinv1 = hinv[i1:i2, i1:i2]
                saliency = w1**2 / torch.diag(hinv1).unsqueeze(0) ** 2
                mask1 = (torch.zeros_like(w1, dtype=torch.bool) if nm
                         else smallest_mask(saliency, round(rows * i2 * sparsity) - round(rows * i1 * sparsity)))
                for i in range(i2 - i1):
                    if nm and i % nm[1] == 0:
                        s = w1[:, i:i + nm[1]] ** 2 / torch.diag(hinv1)[i:i + nm[1]].unsqueeze(0) ** 2
                        drop = torch.topk(s, nm[1] - nm[0], dim=1, largest=False).indices
                        mask1.scatter_(1, i + drop, True)
                    col = w1[:, i]
                    q = torch.where(mask1[:, i], torch.zeros_like(col), col)
                    if groups:
                        g = groups.group_of(i1 + i)
                        members = torch.arange(g * groups.gs, min((g + 1) * groups.gs, cols), device=w.device)
                        scale, zero = groups.get(g, lambda: _masked(current_columns(w, w1, i1, i2, members),
                                                                    members, mask1, i1, i2))
                        q = quantize(q.unsqueeze(1), scale, zero, bits).squeeze(1)
                    q1[:, i] = q
                    e = (col - q) / hinv1[i, i]
                    w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
                    err1[:, i] = e
                w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
                w[:, i1:i2] = q1  # this solve's copy; its columns before i2 are never read again
            return w, {"damp": used_damp, **({"grid": groups.grid()} if groups else {})}


def _masked(values: torch.Tensor, members: torch.Tensor, mask1: torch.Tensor, i1: int, i2: int) -> torch.Tensor:
    """Zero the entries already chosen for pruning, so the quantization grid fits the kept weights."""
    inside = (members >= i1) & (members < i2)
    values[:, inside] = values[:, inside].masked_fill(mask1[:, members[inside] - i1], 0)
    return values


@register_method
@dataclass
class SparseGPT(HessianSolve, Quantization, Pruning):
    """Prune with OBS updates; with ``bits``, quantize the kept weights jointly."""

    name = "sparsegpt"

    def make_stats(self, columns: int, device: torch.device) -> SparseGPTSolver:
        return SparseGPTSolver(columns, device)

    def solve(self, stats: SparseGPTSolver, w: torch.Tensor, what: str) -> tuple[torch.Tensor, dict]:
        return stats.solve(w, self.sparsity, self.nm, self.bits, self.group_size, self.sym, self.damp,
                           self.block_size, what)

    def llmcompressor_recipe(self) -> list[RecipeStep]:
        # joint quantization has no llm-compressor equivalent: the kept weights are rounded afterwards
        return [RecipeStep(LLMCOMPRESSOR_PRUNING, "SparseGPTModifier", {
            "sparsity": self.target_sparsity, "mask_structure": self.mask_structure,
            "block_size": self.block_size, "dampening_frac": self.damp, "targets": ["Linear"]}),
            *self.llmcompressor_rounding()]
