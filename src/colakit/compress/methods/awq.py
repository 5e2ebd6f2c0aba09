"""AWQ (Lin et al., 2023, arXiv 2306.00978): protect salient input channels by scaling, then round.

For linears that share an input ``x`` (q/k/v after the attention norm, gate/up after the MLP norm,
o after v, down after up), ``W x = (W diag(s)) (diag(s)^-1 x)``: multiplying input channel ``j`` of
the weights by ``s_j`` and dividing the op that produces ``x`` by ``s_j`` changes nothing in exact
arithmetic, but channels with large activations get a finer quantization grid. The scale is

    s = mean|x|^alpha (normalised so that max(s) * min(s) = 1),  alpha in {0, 1/n, ..., (n-1)/n}

and alpha is chosen to minimise the output error of the module that consumes ``x`` (the whole
attention or MLP module, so that errors are weighed as the model sees them) with the group's
weights quantized. The inverse scale is folded into the preceding RMSNorm/LayerNorm weight (and
bias), or Gemma's ``(1 + weight)`` norm, or the rows of the preceding linear when the shapes match
(not for grouped-query attention's v -> o). A fold is verified on one batch (the block's output
must not change); groups that cannot be folded are skipped with a note in the report.

The search scores on the leading calibration batches that hold ``awq_search_tokens`` tokens (whole
sequences; None: all), since each grid point re-runs the scoring module; channel means use all tokens.

Optional clipping search (``awq_clip``): per output row and group, the range ``max|w|`` shrunk by
``i/20`` (``i < 20 * awq_max_shrink``) that minimises the group's output error on sampled tokens.
Finally every linear is rounded to nearest on its group grid (fake-quant).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from colakit.compress import runtime
from colakit.compress.methods.base import RecipeStep, register_method
from colakit.compress.methods.params import Quantization, require_positive
from colakit.compress.quantizer import find_params, quantize, quantize_groups, quantize_groups_with_grid
from colakit.errors import ColakitError
from colakit.model.layers import block_linears, block_spec, in_features, set_weight_matrix, weight_matrix

CLIP_GRID = 20
ERROR_TOKENS = 4096
_CLIP_ELEMENTS = 1 << 24  # bound on the temporary [rows, tokens, groups] tensors of the clip search


@dataclass
class ScaleGroup:
    """Linears sharing one input, the op their input scale folds into, and the module to score with."""

    label: str
    prev: str  # name of the preceding op inside the block
    prev_is_norm: bool
    linears: tuple[str, ...]
    inspect: str | None  # module that consumes the input (None: score the linears themselves)


def _parent(names: tuple[str, ...]) -> str | None:
    parents = {n.rpartition(".")[0] for n in names}
    return parents.pop() if len(parents) == 1 and "" not in parents else None


def scale_groups(block: nn.Module, index: int, notes: list[str]) -> list[ScaleGroup]:
    spec = block_spec(block)
    groups = []
    for label, norm, members in (("attention input", spec.attn_norm, spec.attn_in),
                                 ("mlp input", spec.mlp_norm, spec.mlp_in)):
        if members and norm:
            groups.append(ScaleGroup(label, norm, True, members, _parent(members)))
        elif members:
            notes.append(f"block {index} {label}: no norm before {', '.join(members)}; no AWQ scale")
    for label, prev, target in (("attention output", spec.attn_v, spec.attn_out),
                                ("mlp output", spec.mlp_up, spec.mlp_out)):
        if target is None:
            continue
        lin = block.get_submodule(target)
        if prev and weight_matrix(block.get_submodule(prev)).shape[0] == in_features(lin):
            groups.append(ScaleGroup(label, prev, False, (target,), None))
        else:
            why = (f"{prev} has {weight_matrix(block.get_submodule(prev)).shape[0]} outputs for its "
                   f"{in_features(lin)} inputs" if prev else "no linear feeds it directly")
            notes.append(f"block {index} {target}: {why}; no AWQ scale (clipping and rounding only)")
    return groups


class _Captured:
    """Inputs of every linear and the (args, kwargs) of every scoring module, per batch."""

    def __init__(self, block: nn.Module, groups: list[ScaleGroup]):
        self.inputs: dict[str, list[torch.Tensor]] = {n: [] for n in block_linears(block)}
        self.calls: dict[str, list[tuple]] = {g.inspect: [] for g in groups if g.inspect}
        self.handles = []
        for name, lin in block_linears(block).items():
            self.handles.append(lin.register_forward_pre_hook(
                lambda _m, args, _n=name: self.inputs[_n].append(args[0].detach())))
        for name in self.calls:
            self.handles.append(block.get_submodule(name).register_forward_pre_hook(
                lambda _m, args, kwargs, _n=name: self.calls[_n].append((args, kwargs)), with_kwargs=True))

    def remove(self):
        for h in self.handles:
            h.remove()

    def rescale(self, names: tuple[str, ...], s: torch.Tensor) -> None:
        """After a fold the linears see ``x / s``; keep one shared tensor per shared input."""
        for b in range(len(self.inputs[names[0]])):
            new = self.inputs[names[0]][b] / s
            for n in names:
                self.inputs[n][b] = new

    def token_rows(self, name: str, batches: list[runtime.Batch], limit: int) -> torch.Tensor:
        """Up to ``limit`` non-padded input rows of ``name``, evenly strided over the set."""
        x = torch.cat([runtime.rows(t, b.mask) for t, b in zip(self.inputs[name], batches)])
        if x.shape[0] > limit:
            x = x[torch.linspace(0, x.shape[0] - 1, limit, device=x.device).long()]
        return x.float()


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _score_outputs(block, group: ScaleGroup, cap: _Captured, b: int) -> torch.Tensor:
    if group.inspect:
        args, kwargs = cap.calls[group.inspect][b]
        return _first(block.get_submodule(group.inspect)(*args, **kwargs))
    x = cap.inputs[group.linears[0]][b]
    return torch.cat([block.get_submodule(n)(x) for n in group.linears], dim=-1)


def search_batches(batches: list[runtime.Batch], tokens: int | None) -> int:
    """How many leading batches the scale search scores on: enough to hold ``tokens`` (None: all).

    Every grid point re-runs the scoring module over these batches, so this bounds the search cost
    (whole sequences, since attention needs them); the channel means use every token.
    """
    if tokens is None:
        return len(batches)
    seen = 0
    for count, b in enumerate(batches, 1):
        seen += b.tokens
        if seen >= tokens:
            return count
    return len(batches)


def _search_scale(block, group: ScaleGroup, cap: _Captured, batches, awq: AWQ) -> tuple[torch.Tensor, float]:
    lins = [block.get_submodule(n) for n in group.linears]
    xs = cap.inputs[group.linears[0]]
    count = sum(b.tokens for b in batches)
    x_mean = sum(runtime.rows(x, b.mask).abs().float().sum(0) for x, b in zip(xs, batches)) / count
    originals = [weight_matrix(lin).detach().float().clone() for lin in lins]
    batches = batches[:search_batches(batches, awq.awq_search_tokens)]
    reference = [_score_outputs(block, group, cap, i) for i in range(len(batches))]
    best = (float("inf"), None, 0.0)
    try:
        for step in range(awq.awq_grid):
            alpha = step / awq.awq_grid
            s = x_mean.pow(alpha).clamp(min=1e-4)
            s = s / (s.max() * s.min()).sqrt()
            for lin, w0 in zip(lins, originals):
                set_weight_matrix(lin, quantize_groups(w0 * s, awq.bits, awq.group_size, awq.sym) / s)
            loss = sum(runtime.masked_sq_error(_score_outputs(block, group, cap, i), reference[i], b.mask)[0]
                       for i, b in enumerate(batches))
            if loss < best[0]:
                best = (loss, s, alpha)
    finally:
        for lin, w0 in zip(lins, originals):
            set_weight_matrix(lin, w0)
    if best[1] is None:  # every candidate gave a non-finite loss: leave the channels unscaled
        return torch.ones_like(x_mean), 0.0
    return best[1], best[2]


@torch.no_grad()
def _norm_offset(norm: nn.Module) -> float:
    """1.0 for norms that multiply by ``(1 + weight)`` (Gemma), else 0.0: probe with a zero weight."""
    params = [p for p in (norm.weight, getattr(norm, "bias", None)) if isinstance(p, torch.Tensor)]
    saved = [p.detach().clone() for p in params]
    try:
        for p in params:
            p.data.zero_()
        y = norm(torch.randn(2, norm.weight.shape[0], device=norm.weight.device, dtype=norm.weight.dtype))
        return 1.0 if float(y.abs().max()) > 0 else 0.0
    finally:
        for p, s in zip(params, saved):
            p.data.copy_(s)


@torch.no_grad()
def _fold(block, group: ScaleGroup, s: torch.Tensor) -> None:
    prev = block.get_submodule(group.prev)
    if group.prev_is_norm:
        off = _norm_offset(prev)
        prev.weight.data.copy_(((prev.weight.float() + off) / s - off).to(prev.weight.dtype))
    else:
        set_weight_matrix(prev, weight_matrix(prev).float() / s.unsqueeze(1))
    bias = getattr(prev, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.data.copy_((bias.float() / s).to(bias.dtype))
    for name in group.linears:
        lin = block.get_submodule(name)
        set_weight_matrix(lin, weight_matrix(lin).float() * s.unsqueeze(0))


def _can_fold(block, group: ScaleGroup) -> bool:
    prev = block.get_submodule(group.prev)
    if not group.prev_is_norm:
        return True
    w = getattr(prev, "weight", None)
    return isinstance(w, torch.Tensor) and w.dim() == 1 and w.shape[0] == in_features(
        block.get_submodule(group.linears[0]))


def _clip(lin: nn.Module, x: torch.Tensor, awq: AWQ) -> None:
    """Shrink each (row, group) range to the clip that best preserves the group's partial outputs."""
    w = weight_matrix(lin).detach().float().clone()
    rows, cols = w.shape
    gs = cols if awq.group_size == -1 else awq.group_size
    groups = cols // gs
    xg = x.reshape(-1, groups, gs).permute(1, 0, 2)  # [groups, tokens, gs]
    chunk = max(1, _CLIP_ELEMENTS // (x.shape[0] * groups))
    steps = max(1, int(awq.awq_max_shrink * CLIP_GRID))
    for r0 in range(0, rows, chunk):
        wg = w[r0:r0 + chunk].reshape(-1, groups, gs)  # [r, groups, gs]
        ref = torch.einsum("gtk,rgk->gtr", xg, wg)
        top = wg.abs().amax(dim=-1, keepdim=True)
        best_err = torch.full(top.shape, float("inf"), device=w.device)
        best_max = top.clone()
        for i in range(steps):
            limit = top * (1 - i / CLIP_GRID)
            cur = torch.clamp(wg, -limit, limit)
            scale, zero = find_params(cur, awq.bits, awq.sym)
            out = torch.einsum("gtk,rgk->gtr", xg, quantize(cur, scale, zero, awq.bits))
            err = (out - ref).pow(2).mean(dim=1).t().unsqueeze(-1)  # [r, groups, 1]
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_max = torch.where(better, limit, best_max)
        w[r0:r0 + chunk] = torch.clamp(wg, -best_max, best_max).reshape(-1, cols)
    set_weight_matrix(lin, w)


@register_method
@dataclass
class AWQ(Quantization):
    """Activation-aware scaling, clipping search, then round-to-nearest; block by block."""

    name = "awq"
    calibration = {"n": 64, "seq_len": 512}  # COLA: per-channel scaling is the most robust to length and size
    awq_grid: int = 20
    awq_clip: bool = True
    awq_max_shrink: float = 0.5
    awq_clip_tokens: int = 512
    awq_search_tokens: int | None = 8192  # scale search scores on the first batches holding this many tokens

    def validate(self) -> None:
        super().validate()
        require_positive(self, "awq_grid", "awq_clip_tokens", "awq_search_tokens")
        if not 0 <= self.awq_max_shrink < 1:
            raise ColakitError(f"awq_max_shrink {self.awq_max_shrink} is outside [0, 1)", "use e.g. 0.5")

    def compress_block(self, block: nn.Module, index: int, batches: list[runtime.Batch],
                       notes: list[str]) -> tuple[dict, list[torch.Tensor]]:
        """Scale, clip and quantize the linears of one block; return per-linear errors and dense outputs."""
        groups = scale_groups(block, index, notes)
        cap = _Captured(block, groups)
        try:
            dense_out = [runtime.run_block(block, index, b) for b in batches]
        finally:
            cap.remove()
        tol = 1e-3 if next(block.parameters()).dtype == torch.float32 else 3e-2
        for group in groups:
            if not _can_fold(block, group):
                notes.append(f"block {index} {group.label}: {group.prev} has no per-channel weight; no AWQ scale")
                continue
            s, alpha = _search_scale(block, group, cap, batches, self)
            saved = {k: v.detach().clone() for k, v in block.state_dict().items()}
            _fold(block, group, s)
            err, ref = runtime.masked_sq_error(runtime.run_block(block, index, batches[0]), dense_out[0], batches[0].mask)
            if ref > 0 and err / ref > tol:
                block.load_state_dict(saved)
                notes.append(f"block {index} {group.label}: folding into {group.prev} changed the block output "
                             f"(relative error {err / ref:.2g}); no AWQ scale")
                continue
            cap.rescale(group.linears, s)
        spec = block_spec(block)
        unclipped = set(spec.attn_in) - {spec.attn_v}  # q/k errors are amplified by the q.k product
        errors = {}
        for name, lin in block_linears(block).items():
            reference = weight_matrix(lin).detach().float().clone()
            if self.awq_clip and name not in unclipped:
                _clip(lin, cap.token_rows(name, batches, self.awq_clip_tokens), self)
            quantized, grid = quantize_groups_with_grid(weight_matrix(lin).detach(), self.bits, self.group_size,
                                                        self.sym)
            set_weight_matrix(lin, quantized)
            x = cap.token_rows(name, batches, ERROR_TOKENS)
            y = x @ reference.t()
            errors[name] = {"rel_error": float(((x @ quantized.t() - y) ** 2).sum() / (y**2).sum().clamp(min=1e-30)),
                            "grid": grid}
        return errors, dense_out

    def llmcompressor_recipe(self) -> list[RecipeStep]:
        if not torch.cuda.is_available():
            raise ColakitError("llm-compressor's AWQ needs an accelerator (it pins memory), and none is available",
                               "use --backend builtin --save-format compressed-tensors: colakit's AWQ runs on CPU "
                               "and writes the same packed checkpoint")
        # llm-compressor 0.14: AWQ is a transform (the scale search) followed by the quantization modifier;
        # llmcompressor.modifiers.awq is a deprecated shim that builds the same pair
        return [RecipeStep("llmcompressor.modifiers.transform.awq", "AWQModifier", {}),
                self.llmcompressor_quantization()]
