"""A model directory's safetensors files, read one tensor at a time.

Models larger than memory are never loaded whole: each stage reads the tensors of the module it is
about to run (``colakit.model.streamed``). This module knows where each tensor lives: a single
``model.safetensors`` or the shards of ``model.safetensors.index.json``. Opening it reads every
file's header only (a few KB), which is also what proves the files complete: a truncated file or
an index naming a missing shard is refused here, naming the file, before any stage starts.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from colakit.errors import ColakitError

SINGLE_FILE, INDEX_FILE = "model.safetensors", "model.safetensors.index.json"


def has_safetensors(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / SINGLE_FILE).exists() or (d / INDEX_FILE).exists()


class Checkpoint:
    """Where each tensor of a safetensors checkpoint lives, from the files' headers.

    ``prefix`` is the base model's prefix (``model``, ``transformer``): checkpoints saved from the
    base model (``LlamaModel``) name their tensors without it, and ``read`` accepts either name.
    """

    def __init__(self, directory: str | Path, prefix: str = ""):
        self.directory = Path(directory)
        self.prefix = f"{prefix}." if prefix else ""
        self.files = self._files()  # tensor name -> file ("" -> the single file)
        self.where: dict[str, Path] = {}  # tensor name -> file
        self.numel: dict[str, int] = {}  # tensor name -> number of elements
        for file in dict.fromkeys(self.files.values()):
            for name, shape in self._header(file).items():
                if "" in self.files or self.files.get(name) == file:  # the index is the authority on names
                    self.where[name], self.numel[name] = file, math.prod(shape)
        missing = [name for name in self.files if name and name not in self.where]
        if missing:
            raise ColakitError(f"{self.files[missing[0]]} holds no tensor {missing[0]!r}, which {INDEX_FILE} "
                               "places there", "the shard is from another checkpoint: download or save the model again")

    def _files(self) -> dict[str, Path]:
        index = self.directory / INDEX_FILE
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ColakitError(f"{index} is not a safetensors index ({err})",
                                   "re-save the model with save_pretrained, or restore the file") from err
            return {name: self.directory / file for name, file in weight_map.items()}
        single = self.directory / SINGLE_FILE
        if not single.exists():
            raise ColakitError(f"{self.directory} has no {SINGLE_FILE} or {INDEX_FILE}",
                               "convert the checkpoint to safetensors (save_pretrained writes it)")
        return {"": single}

    @staticmethod
    def _header(file: Path) -> dict[str, list[int]]:
        """tensor name -> shape, from ``file``'s header. Opening it makes safetensors check
        that the data the header describes is all in the file, so a truncated file fails here."""
        if not file.exists():
            raise ColakitError(f"safetensors shard {file} is missing", "restore it or download the model again")
        try:
            with safe_open(str(file), "pt") as f:
                return {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118 (not a dict)
        except (SafetensorError, OSError) as err:
            raise ColakitError(f"{file} is not a complete safetensors file ({err})",
                               "the file is truncated or damaged: download or save the model again") from err

    def name_of(self, name: str) -> str | None:
        """The checkpoint's name for the model's tensor ``name`` (with or without the base prefix)."""
        if name in self.where:
            return name
        if self.prefix and name.startswith(self.prefix) and name[len(self.prefix):] in self.where:
            return name[len(self.prefix):]
        return None

    def require(self, names) -> None:
        """Refuse, naming it, the first tensor the model needs that no file holds."""
        for name in names:
            if self.name_of(name) is None:
                raise ColakitError(
                    f"{self.directory} holds no tensor {name!r} (the model's config needs it)",
                    "the checkpoint is incomplete, or names its tensors differently from this transformers "
                    "version: re-save it with save_pretrained")

    def read(self, name: str) -> torch.Tensor:
        """Tensor ``name`` read from its file (only its own bytes are read), in memory of its own."""
        stored = self.name_of(name)
        if stored is None:
            self.require([name])
        file = self.where[stored]
        try:
            with safe_open(str(file), "pt") as f:
                # a copy: the tensor safetensors returns maps the whole file for as long as it
                # lives (and the engine writes into weights in place: never into the file's pages)
                return f.get_tensor(stored).clone()
        except SafetensorError as err:
            raise ColakitError(f"cannot read tensor {stored!r} from {file} ({err})",
                               "the file is damaged: download or save the model again") from err

    def read_rows(self, name: str, rows: torch.Tensor, slab: int = 8192) -> torch.Tensor:
        """Rows ``rows`` (sorted, unique) of tensor ``name``, as stored: the tensor is read ``slab``
        rows at a time, so an 8B model's embedding (1 GiB in bfloat16) never sits in memory whole."""
        stored = self.name_of(name)
        if stored is None:
            self.require([name])
        file = self.where[stored]
        parts = []
        try:
            with safe_open(str(file), "pt") as f:
                table = f.get_slice(stored)
                for start in range(0, table.get_shape()[0], slab):
                    inside = rows[(rows >= start) & (rows < start + slab)]
                    if len(inside):
                        parts.append(table[start:start + slab][inside - start])
        except SafetensorError as err:
            raise ColakitError(f"cannot read tensor {stored!r} from {file} ({err})",
                               "the file is damaged: download or save the model again") from err
        return torch.cat(parts)

    def span(self, name: str) -> tuple[Path, str, list[int], int, int]:
        """Where tensor ``name``'s bytes lie: (file, safetensors dtype code, shape, first byte, end
        byte), from the file's header, for a caller that copies them without mapping the file."""
        stored = self.name_of(name)
        if stored is None:
            self.require([name])
        file = self.where[stored]
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            entry = json.loads(f.read(length))[stored]
        begin, end = entry["data_offsets"]
        return file, entry["dtype"], entry["shape"], 8 + length + begin, 8 + length + end

    def count(self, names) -> int:
        """Elements in the tensors ``names`` (those the checkpoint holds)."""
        return sum(self.numel[stored] for n in names if (stored := self.name_of(n)) is not None)
