"""GPTQ (Frantar et al., 2022, arXiv 2210.17323): quantize one column at a time, push its error
onto the columns not yet quantized.

With ``H = X^T X`` and ``U`` the upper Cholesky factor of ``H^-1`` (``U^T U = H^-1``), column ``j``
is rounded to ``q_j`` and the remaining columns absorb the optimal (OBQ) correction

    err_j = (w_j - q_j) / U[j, j]          W[:, j+1:] -= err_j  U[j, j+1:]

Updates are applied lazily in blocks of ``block_size`` columns (the same result, fewer memory
passes). ``act_order`` visits columns by decreasing ``diag(H)`` (large activations first).
Quantization groups are always ``group_size`` consecutive columns of the original layout, so the
checkpoint packs like any group-quantized one; a group's scale and zero are set when its first
column is visited, from the current (already error-corrected) weights of that group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from colakit.compress import hessian
from colakit.compress.methods.base import RecipeStep, register_method
from colakit.compress.methods.params import LLMCOMPRESSOR_QUANTIZATION, HessianSolve, Quantization
from colakit.compress.quantizer import GroupParams, current_columns, quantize


class GPTQSolver(hessian.HessianStats):
    """Accumulate the Hessian with ``add_batch``; ``solve`` returns the quantized weight."""

    def solve(self, w: torch.Tensor, bits: int, group_size: int, sym: bool, act_order: bool = False,
              damp: float = 0.01, block_size: int = 128, what: str = "layer") -> tuple[torch.Tensor, dict]:
        w, h = hessian.prepare(w.float(), self.hessian)
        cols = w.shape[1]
        perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(cols, device=w.device)
        if act_order:  # (without it the permutation is the identity: no copies of w and h)
            w, h = w[:, perm], h[perm][:, perm]
        inv_perm = torch.argsort(perm)
        # the factor may occupy the Hessian's memory until the exit gives the Hessian back (hessian.factored)
        with hessian.factored(h, damp, what) as (hinv, used_damp):
            groups = GroupParams(cols, group_size, bits, sym)
            for i1 in range(0, cols, block_size):
                i2 = min(i1 + block_size, cols)
                w1 = w[:, i1:i2].clone()
                err1, q1 = torch.zeros_like(w1), torch.empty_like(w1)
                hinv1 = hinv[i1:i2, i1:i2]
                for i in range(i2 - i1):
                    g = groups.group_of(int(perm[i1 + i]))
                    members = inv_perm[g * groups.gs:(g + 1) * groups.gs]
                    scale, zero = groups.get(g, lambda: current_columns(w, w1, i1, i2, members))
                    col = w1[:, i]
                    q = quantize(col.unsqueeze(1), scale, zero, bits).squeeze(1)
                    q1[:, i] = q
                    e = (col - q) / hinv1[i, i]
                    w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
                    err1[:, i] = e
                w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
                # w is this solve's copy, and its columns before i2 are never read again (a group's
                # scale is set at its first column): the quantized ones go there
                w[:, i1:i2] = q1
            return (w[:, inv_perm] if act_order else w), {"damp": used_damp, "grid": groups.grid()}


@register_method
@dataclass
class GPTQ(HessianSolve, Quantization):
    """Quantize with error feedback; ``act_order`` visits columns by decreasing activation."""

    name = "gptq"
    act_order: bool = False

    def make_stats(self, columns: int, device: torch.device) -> GPTQSolver:
        return GPTQSolver(columns, device)

    def solve(self, stats: GPTQSolver, w: torch.Tensor, what: str) -> tuple[torch.Tensor, dict]:
        return stats.solve(w, self.bits, self.group_size, self.sym, self.act_order, self.damp, self.block_size, what)

    def llmcompressor_recipe(self) -> list[RecipeStep]:
        # actorder "weight" keeps the groups contiguous, like act_order here
        return [RecipeStep(LLMCOMPRESSOR_QUANTIZATION, "GPTQModifier", {
            "block_size": self.block_size, "dampening_frac": self.damp,
            "actorder": "weight" if self.act_order else None, "config_groups": self.compressed_tensors_groups()})]
