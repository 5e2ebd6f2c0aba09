"""The sequential block-by-block engine behind every method.

It knows no method by name: it asks the config's ``Method`` (``compress/methods``) what to do.

1. Validate the config against the model (nothing is touched before this passes).
2. Capture what block 0 receives for each calibration batch (``runtime.capture_inputs``).
3. For each block: run it on every batch with hooks that feed each linear's non-padded inputs to
   the statistics the method asked for (``make_stats``: a Hessian, input norms, ...); have the
   method ``solve`` each linear and write the weight back (or let it ``compress_block`` the whole
   block); run the compressed block again, whose outputs are the next block's inputs. Memory
   holds one block's activations for the calibration set, never the whole model's.

Where the weights are is the ``Residency``'s business: in memory (the default), or read from the
safetensors files block by block and written out as each block finishes (``compress.streamed``,
for models larger than memory); the engine runs the same steps either way.

A failure part-way restores every block already changed (``keep_backup``), so the caller's model
is either fully compressed or untouched. The grids quantizing methods report stay beside the
report (``CompressionReport.grids``, on the CPU): a packed checkpoint stores its codes on them.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from colakit.compress import attention, runtime
from colakit.compress.config import CompressionConfig
from colakit.compress.hessian import HessianStats, NumericalWarning, error_terms, relative_error, single_cpu_thread
from colakit.compress.methods import Method
from colakit.compress.quantizer import Grid
from colakit.errors import ColakitError
from colakit.model.layers import block_linears, find_decoder, set_weight_matrix, weight_matrix

log = logging.getLogger(__name__)


@dataclass
class CompressionReport:
    """What a run did, per block and per linear; ``to_dict`` is what compression.json stores."""

    method: str
    config: dict
    model_class: str
    layers_path: str
    blocks: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    block_seconds: list[float] = field(default_factory=list)  # each block's wall time, reading and writing included
    # the quantization grid of every quantized linear, by its full name (not in compression.json)
    grids: dict[str, Grid] = field(default_factory=dict, repr=False, compare=False)

    @property
    def linears(self) -> dict[str, dict]:
        return {f"{self.layers_path}.{b['index']}.{n}": rec for b in self.blocks for n, rec in b["linears"].items()}

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights over every compressed linear."""
        recs = self.linears.values()
        total = sum(r["numel"] for r in recs)
        return sum(r["sparsity"] * r["numel"] for r in recs) / total if total else 0.0

    def to_dict(self) -> dict:
        return {"method": self.method, "config": self.config, "model_class": self.model_class,
                "layers_path": self.layers_path, "calibration": self.calibration,
                "wall_time_s": round(self.wall_time_s, 3), "block_seconds": self.block_seconds,
                "sparsity": self.sparsity,
                "notes": self.notes, "blocks": self.blocks}


class Residency:
    """Where the weights are while the engine runs. This one: all in memory, nothing moves.

    ``compress.streamed`` keeps them on disk instead: it reads the input modules for the capture
    and each block when its turn comes, and writes the compressed block out and frees it in
    ``finished``. The engine computes the same either way.
    """

    def device(self, model: nn.Module) -> torch.device:
        return next(model.parameters()).device

    @contextlib.contextmanager
    def inputs(self, input_ids: torch.Tensor):
        """The modules the forward runs before block 0 are usable inside (the input capture) on the
        ids it yields: ``input_ids`` here; a residency may renumber them to the rows it read."""
        yield input_ids

    @contextlib.contextmanager
    def block(self, index: int, block: nn.Module):
        """Block ``index``'s weights are usable inside."""
        yield

    def finished(self, index: int, block: nn.Module, grids: dict[str, Grid]) -> dict[str, Grid]:
        """Block ``index`` is compressed; returns the grids the report keeps (here: all of them)."""
        return grids


class _Backup:
    """CPU copies of each block's parameters taken before the block is changed."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.saved: list[tuple[nn.Module, dict]] = []

    def save(self, block: nn.Module) -> None:
        if self.enabled:
            self.saved.append((block, {k: v.detach().to("cpu", copy=True) for k, v in block.state_dict().items()}))

    def restore(self) -> None:
        for block, state in self.saved:
            block.load_state_dict(state)
        self.saved.clear()


def compress(model: nn.Module, calib_input_ids: torch.Tensor | None, calib_attention_mask: torch.Tensor | None,
             config: CompressionConfig, weights: Residency | None = None,
             on_block: Callable[[int, int], None] | None = None) -> CompressionReport:
    """Compress the decoder linears of ``model`` in place; return what was done.

    ``calib_input_ids``/``calib_attention_mask`` are ``[samples, length]`` (right-padded, as
    ``CalibrationSet.to_tensors`` gives); magnitude and RTN need no data (pass ``None``). A
    ``group_size="auto"`` is resolved for ``model``; the report's config holds the size used.
    ``weights`` says where the weights are (default: in memory; see ``Residency``).
    ``on_block(done, num_layers)`` is called with 0 before the first block and after each block.
    """
    notes: list[str] = []
    config = config.resolve(model, notes)
    config.validate_for(model)
    method = config.method
    layout = find_decoder(model)
    has_data = calib_input_ids is not None
    if method.needs_data and not has_data:
        raise ColakitError(f"{method.name} needs calibration data", "pass calibration input ids (a CalibrationSet)")
    if has_data:
        calib_attention_mask = runtime.validate_calibration(
            calib_input_ids, calib_attention_mask, getattr(model.config, "vocab_size", None))
    weights = weights or Residency()
    report = CompressionReport(method=method.name, config=config.to_dict(), model_class=type(model).__name__,
                               layers_path=layout.layers_path, notes=notes)
    started = time.perf_counter()
    backup = _Backup(config.keep_backup)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NumericalWarning)
            batches = None
            if has_data:
                with weights.inputs(calib_input_ids) as input_ids:
                    batches = runtime.capture_inputs(model, layout.layers, input_ids, calib_attention_mask,
                                                     config.batch_size, weights.device(model))
            if batches:
                report.calibration.update(samples=int(calib_input_ids.shape[0]),
                                          tokens=sum(b.tokens for b in batches))
            if on_block:
                on_block(0, layout.num_layers)
            for index, block in enumerate(layout.layers):
                block_started = time.perf_counter()
                with weights.block(index, block):
                    backup.save(block)
                    record, grids = _compress_block(block, index, batches, method, report.notes)
                    report.blocks.append(record)
                    grids = {f"{layout.layers_path}.{index}.{name}": g.to("cpu") for name, g in grids.items()}
                    report.grids.update(weights.finished(index, block, grids))
                report.block_seconds.append(round(time.perf_counter() - block_started, 3))
                log.info("block %d/%d done (%.1fs)", index + 1, layout.num_layers, time.perf_counter() - started)
                if on_block:
                    on_block(index + 1, layout.num_layers)
        for w in caught:  # re-raise the numerical warnings to the caller, and keep them in the report
            report.notes.append(str(w.message))
            warnings.warn(w.message, w.category, stacklevel=2)
    except BaseException:
        backup.restore()
        raise
    finally:
        model.train(was_training)
    report.wall_time_s = time.perf_counter() - started
    return report


def _compress_block(block: nn.Module, index: int, batches: list[runtime.Batch] | None,
                    method: Method, notes: list[str]) -> tuple[dict, dict[str, Grid]]:
    """The block's report record, and the grids of its quantized linears."""
    linears = block_linears(block)
    done = method.compress_block(block, index, batches, notes)
    errors, dense_out = done if done is not None else _compress_linears(block, index, linears, batches, method)
    grids = {name: facts.pop("grid") for name, facts in errors.items() if "grid" in facts}
    record = {"index": index, "linears": {}}
    for name, lin in linears.items():
        w = weight_matrix(lin)
        record["linears"][name] = {"shape": list(w.shape), "numel": w.numel(),
                                   "sparsity": float((w == 0).sum()) / w.numel(), **errors.get(name, {})}
    if batches:
        record["rel_error"] = _advance(block, index, batches, dense_out)
    return record, grids


def _make_stats(method: Method, lin: nn.Module):
    return method.make_stats(weight_matrix(lin).shape[1], weight_matrix(lin).device)


def _compress_linears(block, index, linears, batches, method) -> tuple[dict, list[torch.Tensor] | None]:
    """One pass to accumulate each linear's statistics (and keep the block's outputs), then solve every linear."""
    dense_out = None
    if not batches:
        stats = {name: _make_stats(method, lin) for name, lin in linears.items()}
    else:
        # each linear's statistics are made at its first input: a linear fed the input of the one before it
        # (k and v after q, up after gate) shares that one's and never allocates its own (three [4096, 4096]
        # float32 Hessians, 192 MiB, of an 8B model's block, at the peak of its forward). The first one
        # made says whether the method gathers any (rtn and magnitude do not: no hooks then).
        first = next(iter(linears), None)
        stats = {first: _make_stats(method, linears[first])} if first is not None else {}
        gathering = linears if stats.get(first) is not None else {}

        def gather(name: str, x: torch.Tensor) -> None:
            if name not in stats:
                stats[name] = _make_stats(method, linears[name])
            stats[name].add_batch(x)

        values = _value_hessians(block, linears, method) if method.value_hessians else None
        state = runtime.MaskState()
        dense_out = []
        with runtime.input_hooks(gathering, state, gather, share_inputs=True) as shared, \
                _probe_values(linears, values, state) as probed:
            for b in batches:
                state.mask = b.mask
                dense_out.append(runtime.run_block(block, index, b))
        for name, owner in shared.items():  # statistics are only read: one set serves every sharer
            stats[name] = stats[owner]
        for name, lin in linears.items():  # a linear the forward never ran: its statistics saw no data
            if name not in stats:
                stats[name] = _make_stats(method, lin)
        if values is not None and probed():
            stats[values[0]] = values[2]
        del values  # only stats holds the value Hessians now: they are freed once the value projection is solved
    errors = {}
    for name, lin in linears.items():
        what = f"block {index} {name}"
        # no copy: the solvers only read w (a view of the parameter in float32), and _write comes after
        # the error is measured (an 8B model's down_proj: 224 MiB saved at the peak of the solve)
        w = weight_matrix(lin).detach().float()
        version = w._version
        with single_cpu_thread(w.device):
            if isinstance(stats[name], attention.ValueHessians):
                new, info = _solve_value_groups(method, stats[name], w, what)
            else:
                new, info = method.solve(stats[name], w, what)
            if w._version != version:
                raise ColakitError(f"{method.name}'s solve changed the weight of {what} in place",
                                   "a method's solve must return a new tensor and leave its input as it was")
            if isinstance(stats[name], HessianStats):
                info["rel_error"] = relative_error(w, new, stats[name].hessian)
        _write(lin, new, what)
        errors[name] = info
        del w, new  # before the next linear's solve allocates its own
        stats[name] = None  # free the Hessian before the next one is factorised
    return errors, dense_out


def _value_hessians(block, linears, method) -> tuple[str, nn.Module, attention.ValueHessians] | None:
    """(name, its attention module, per-group statistics) for the block's value projection, if it has one."""
    name = attention.value_linear(linears)
    attn = block.get_submodule(name.rsplit(".", 1)[0]) if name and "." in name else None
    head_dim = getattr(attn, "head_dim", None)
    if name is None or attn is None or not head_dim or weight_matrix(linears[name]).shape[0] % head_dim:
        return None
    return name, attn, attention.ValueHessians(lambda: _make_stats(method, linears[name]),
                                               weight_matrix(linears[name]).shape[0], head_dim)


@contextlib.contextmanager
def _probe_values(linears, values, state):
    """Feed the value projection's attention-weighted inputs to its per-group solvers; yields a
    callable telling whether the attention was seen (else the plain token Hessian is used)."""
    if values is None:
        yield lambda: False
        return
    name, attn, hessians = values
    seen = {"x": None, "n": 0}

    def keep_input(_mod, inp):
        seen["x"] = inp[0].detach()

    def take(probs):
        hessians.add(seen["x"], probs, state.mask)
        seen["n"] += 1

    handle = linears[name].register_forward_pre_hook(keep_input)
    try:
        with attention.probe_attention(attn, take):
            yield lambda: seen["n"] > 0
    finally:
        handle.remove()


def _solve_value_groups(method: Method, hessians: attention.ValueHessians, w, what) -> tuple[torch.Tensor, dict]:
    """Solve each key/value group's rows with its own attention-weighted Hessian."""
    new, info = torch.empty_like(w), {"value_hessian": "attention"}
    err = ref = 0.0
    grids = []
    for g, solver in enumerate(hessians.solvers):
        rows = hessians.rows(g)
        new[rows], part = method.solve(solver, w[rows].clone(), f"{what} group {g}")
        if "damp" in part:  # the strongest dampening any group needed
            info["damp"] = max(info.get("damp", 0.0), part["damp"])
        if "grid" in part:
            grids.append((rows, part["grid"]))
        e, r = error_terms(w[rows], new[rows], solver.hessian)
        err, ref = err + e, ref + r
    info["rel_error"] = err / ref if ref > 0 else 0.0
    if grids:
        info["grid"] = Grid.of_rows(grids, w.shape[0])
    return new, info


def _write(lin: nn.Module, new: torch.Tensor, what: str) -> None:
    if not torch.isfinite(new.sum()):  # a NaN or Inf anywhere makes the sum non-finite (4x cheaper than isfinite().all())
        raise ColakitError(f"{what}: the solver produced non-finite weights",
                           "use more calibration data or a larger --damp; please report this case")
    set_weight_matrix(lin, new)


def _advance(block, index, batches, dense_out) -> float | None:
    """Run the compressed block: its outputs become the next inputs; return its relative output error."""
    err = ref = 0.0
    for b, dense in zip(batches, dense_out):
        out = runtime.run_block(block, index, b)
        e, r = runtime.masked_sq_error(out, dense, b.mask)
        err, ref = err + e, ref + r
        b.hidden = out
    return err / ref if ref > 0 else None
