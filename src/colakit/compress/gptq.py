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

import torch

from colakit.compress import hessian
from colakit.compress.quantizer import find_params, quantize


class GroupParams:
    """Lazily computed scale/zero per quantization group, from the weights current at first visit."""

    def __init__(self, columns: int, group_size: int, bits: int, sym: bool):
        self.gs = columns if group_size == -1 else group_size
        self.bits, self.sym = bits, sym
        self.params: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def group_of(self, column: int) -> int:
        return column // self.gs

    def get(self, group: int, current_values) -> tuple[torch.Tensor, torch.Tensor]:
        if group not in self.params:
            self.params[group] = find_params(current_values(), self.bits, self.sym)
        return self.params[group]


def current_columns(w: torch.Tensor, w_block: torch.Tensor, i1: int, i2: int, positions: torch.Tensor):
    """Current values of ``positions`` (working order): the block copy inside [i1, i2), else ``w``."""
    vals = w[:, positions].clone()
    inside = (positions >= i1) & (positions < i2)
    vals[:, inside] = w_block[:, positions[inside] - i1]
    return vals


class GPTQ(hessian.HessianStats):
    """Accumulate the Hessian with ``add_batch``; ``solve`` returns the quantized weight."""

    def solve(self, w: torch.Tensor, bits: int, group_size: int, sym: bool, act_order: bool = False,
              damp: float = 0.01, block_size: int = 128, what: str = "layer") -> tuple[torch.Tensor, dict]:
        w, h = hessian.prepare(w.float(), self.hessian)
        cols = w.shape[1]
        perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(cols, device=w.device)
        w, h = w[:, perm], h[perm][:, perm]
        inv_perm = torch.argsort(perm)
        hinv, used_damp = hessian.inverse_cholesky(h, damp, what)
        groups = GroupParams(cols, group_size, bits, sym)
        q_all = torch.zeros_like(w)
        for i1 in range(0, cols, block_size):
            i2 = min(i1 + block_size, cols)
            w1 = w[:, i1:i2].clone()
            err1 = torch.zeros_like(w1)
            hinv1 = hinv[i1:i2, i1:i2]
            for i in range(i2 - i1):
                g = groups.group_of(int(perm[i1 + i]))
                members = inv_perm[g * groups.gs:(g + 1) * groups.gs]
                scale, zero = groups.get(g, lambda: current_columns(w, w1, i1, i2, members))
                col = w1[:, i]
                q = quantize(col.unsqueeze(1), scale, zero, bits).squeeze(1)
                q_all[:, i1 + i] = q
                e = (col - q) / hinv1[i, i]
                w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
                err1[:, i] = e
            w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
        return q_all[:, inv_perm], {"damp": used_damp}
