"""Compressing a model that never sits in memory whole: from its files, block by block, to new files.

The model is a meta-device skeleton (``colakit.model.streamed``). The engine's input capture runs
with only the input modules read, and of the token embedding only the rows of the calibration
ids; then each decoder block is read from the
safetensors files when its turn comes, compressed, written to its own shard of the output (packed
or dense) and freed. The tensors outside the blocks (embeddings, final norm, an untied LM head)
are copied one at a time; none of them is ever run. Peak memory is one block's weights, its
statistics and the calibration activations, whatever the model's depth.

The output holds the same weights, bit for bit, as compressing the loaded model and saving it
(``output.save_compressed``): the engine, the solvers and the packing are the same code.
"""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from colakit.compress.engine import Residency
from colakit.compress.packed import check_grids, pack_linears, scheme_of, write_scheme
from colakit.compress.quantizer import Grid
from colakit.errors import ColakitError
from colakit.model.checkpoint import INDEX_FILE, Checkpoint
from colakit.model.layers import find_decoder
from colakit.model.streamed import expected_tensors, input_modules, module_names, offload, onload, onload_rows


class ShardWriter:
    """A Hugging Face sharded checkpoint written one shard at a time, with its index at the end."""

    def __init__(self, directory: Path, shards: int):
        self.directory, self.shards, self.count = directory, shards, 0
        self.weight_map: dict[str, str] = {}
        self.total = 0

    def _next(self, names, size: int) -> Path:
        self.count += 1
        name = f"model-{self.count:05d}-of-{self.shards:05d}.safetensors"
        self.weight_map.update(dict.fromkeys(names, name))
        self.total += size
        return self.directory / name

    def write(self, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        path = self._next(tensors, sum(t.numel() * t.element_size() for t in tensors.values()))
        save_file(tensors, str(path), metadata={"format": "pt"})

    def copy(self, name: str, checkpoint: Checkpoint, dtype: torch.dtype, chunk: int = 16 * 2**20) -> None:
        """Tensor ``name`` from ``checkpoint`` into a shard of its own, ``chunk`` bytes at a time.

        Written here rather than with ``save_file``: that takes the tensor in memory, and reading it
        from the file maps it, so a copy of an 8B model's embedding (2 GiB in float32) or Gemma-3's
        (640 MiB) would be resident whole. Plain reads keep one chunk resident. A tensor stored
        narrower than ``dtype`` in a type it widens exactly (bfloat16 or float16 to float32) stays
        as stored: loading it in ``dtype`` gives the very values loading the widened copy would, at
        half the bytes; any other floating tensor is cast to ``dtype`` as loading does."""
        source, code, shape, begin, end = checkpoint.span(name)
        stored = _DTYPES.get(code)
        if stored is None:
            raise ColakitError(f"tensor {name!r} in {source} has dtype {code}, which colakit cannot copy",
                               "re-save the model in float32, bfloat16 or float16")
        target = dtype if stored.is_floating_point and not _widens_exactly(stored, dtype) else stored
        width = stored.itemsize
        size = (end - begin) // width * target.itemsize
        path = self._next([name], size)
        header = json.dumps({"__metadata__": {"format": "pt"}, name: {
            "dtype": _CODES[target], "shape": shape, "data_offsets": [0, size]}}, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        step = max(1, chunk // width) * width  # whole elements, so a chunk casts on its own
        buffer = memoryview(bytearray(min(step, end - begin)))  # one buffer, reused
        with open(source, "rb") as src, open(path, "wb") as out:
            out.write(struct.pack("<Q", len(header)) + header)
            src.seek(begin)
            for start in range(begin, end, step):
                part = buffer[:min(step, end - start)]
                if src.readinto(part) != len(part):
                    raise ColakitError(f"{source} ends inside tensor {name!r}",
                                       "the file is truncated: download or save the model again")
                out.write(part if target == stored else
                          torch.frombuffer(part, dtype=stored).to(target).view(torch.uint8).numpy())

    def close(self) -> None:
        if self.count != self.shards:
            raise ColakitError(f"wrote {self.count} of {self.shards} shards", "please report this bug")
        index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(self.weight_map.items()))}
        (self.directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


class StreamedWeights(Residency):
    """The engine's weights read from ``checkpoint`` when needed; each finished block goes to ``writer``."""

    def __init__(self, model: nn.Module, checkpoint: Checkpoint, device: torch.device, dtype: torch.dtype,
                 writer: ShardWriter, pack_config: dict | None):
        self.model, self.checkpoint, self._device, self.dtype = model, checkpoint, device, dtype
        self.writer = writer
        self.scheme = scheme_of(pack_config) if pack_config else None
        self.layers_path = find_decoder(model).layers_path

    def device(self, model: nn.Module) -> torch.device:
        return self._device

    @contextlib.contextmanager
    def inputs(self, input_ids: torch.Tensor):
        modules = input_modules(self.model)
        table = self.model.get_input_embeddings()
        restore = None
        try:
            if isinstance(table, nn.Embedding) and any(m is table for m in modules):
                # of the token embedding, only the rows of the calibration ids (renumbered to match)
                rows, input_ids = torch.unique(input_ids, sorted=True, return_inverse=True)
                modules = [m for m in modules if m is not table]
                restore = onload_rows(self.model, table, self.checkpoint, self._device, self.dtype, rows)
            for module in modules:
                onload(self.model, module, self.checkpoint, self._device, self.dtype)
            yield input_ids
        finally:
            for module in modules:
                offload(module)
            if restore is not None:
                restore()

    @contextlib.contextmanager
    def block(self, index: int, block: nn.Module):
        try:
            onload(self.model, block, self.checkpoint, self._device, self.dtype)
            yield
        finally:
            offload(block)

    def finished(self, index: int, block: nn.Module, grids: dict[str, Grid]) -> dict[str, Grid]:
        prefix = f"{self.layers_path}.{index}"
        state = {f"{prefix}.{k}": v for k, v in block.state_dict().items()}
        if self.scheme is not None:
            check_grids([f"{prefix}.{name}" for name, mod in block.named_modules() if isinstance(mod, nn.Linear)], grids)
            state = pack_linears(state, grids, self.scheme)
        self.writer.write(state)
        return {}  # written: the grids are not kept (32 blocks of grids would be a block's weights again)


def outside_blocks(model: nn.Module) -> list[str]:
    """The checkpoint's tensors outside the decoder blocks (a tied LM head is not one of them)."""
    inside = {n for block in find_decoder(model).layers for n in module_names(model, block)}
    return [n for n in expected_tensors(model) if n not in inside]


def copy_outside(names: list[str], checkpoint: Checkpoint, dtype: torch.dtype, writer: ShardWriter) -> None:
    """Copy each tensor outside the blocks to its own shard, a chunk at a time (``ShardWriter.copy``)."""
    for name in names:
        writer.copy(name, checkpoint, dtype)


_CODES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.int64: "I64", torch.int32: "I32",
          torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}  # the format's names
_DTYPES = {code: dtype for dtype, code in _CODES.items()}


def _widens_exactly(stored: torch.dtype, target: torch.dtype) -> bool:
    return stored == target or (target == torch.float32 and stored in (torch.bfloat16, torch.float16))


def save_config(model: nn.Module, directory: Path, pack_config: dict | None) -> None:
    """config.json (with the packing scheme when packed) and generation_config.json, as save_pretrained writes them."""
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(directory)
    if model.can_generate() and getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(directory)
    if pack_config is not None:
        write_scheme(directory, model, pack_config)
