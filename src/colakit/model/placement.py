"""Where a model's weights go: accelerate's device-map vocabulary, memory caps, and the checks on them.

``--device-map auto|balanced|balanced_low_0|sequential`` and ``--max-memory 0=20GiB,cpu=64GiB`` mean
what they mean to ``from_pretrained`` and lm-evaluation-harness (``parallelize=True``): accelerate
spreads the blocks over the GPUs, then CPU memory, then disk. Both are checked before any weight is
read: a cap that cannot hold the largest decoder block would leave nothing able to run it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate.utils import convert_file_size_to_int
from torch import nn

from colakit.cache import cache_dir
from colakit.errors import ColakitError
from colakit.model.checkpoint import Checkpoint
from colakit.model.layers import find_decoder
from colakit.model.streamed import module_names

DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def check_device_map(device_map: str | None) -> str | None:
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise ColakitError(f"unknown --device-map {device_map!r}", f"use one of: {', '.join(DEVICE_MAPS)}")
    return device_map


def parse_max_memory(text: str | dict | None) -> dict | None:
    """``"0=20GiB,cpu=64GiB"`` (or accelerate's dict) as accelerate's ``max_memory`` dict, sizes in bytes."""
    if text is None or isinstance(text, dict) and not text:
        return None
    items = text.items() if isinstance(text, dict) else (
        part.partition("=")[::2] for part in str(text).split(",") if part.strip())
    out: dict = {}
    for device, size in items:
        device = str(device).strip()
        key = int(device) if device.isdigit() else device
        if not (isinstance(key, int) or key in ("cpu", "disk", "mps") or key.startswith(("cuda:", "xpu:", "npu:"))):
            raise ColakitError(f"--max-memory names device {device!r}",
                               "write DEVICE=SIZE pairs, DEVICE a GPU index, cpu or disk: e.g. 0=20GiB,cpu=64GiB")
        if isinstance(key, str) and key.startswith("cuda:"):
            key = int(key.removeprefix("cuda:"))
        try:  # an int (or digits) is bytes, as in accelerate
            text = str(size).strip()
            out[key] = int(text) if text.isdigit() else convert_file_size_to_int(text)
        except ValueError as err:
            raise ColakitError(f"--max-memory size {str(size).strip()!r} for {device} is not a size",
                               "write sizes as accelerate does: 20GiB, 500MB, 64GB") from err
    return out


def largest_block(model: nn.Module, checkpoint: Checkpoint, dtype: torch.dtype) -> tuple[int, int]:
    """(index, bytes in ``dtype``) of the decoder block with the most weights."""
    itemsize = torch.tensor([], dtype=dtype).element_size()
    sizes = [checkpoint.count(module_names(model, block)) * itemsize for block in find_decoder(model).layers]
    index = max(range(len(sizes)), key=sizes.__getitem__)  # the first of equals
    return index, sizes[index]


def check_fits(max_memory: dict | None, block: tuple[int, int], what: str) -> None:
    """Refuse a ``max_memory`` whose largest device (disk aside) cannot hold the largest block."""
    if not max_memory:
        return
    room = {k: v for k, v in max_memory.items() if k != "disk"}
    index, size = block
    if not room or max(room.values()) < size:
        given = ", ".join(f"{k}={human_bytes(v)}" for k, v in max_memory.items())
        raise ColakitError(
            f"--max-memory {given} cannot hold decoder block {index} ({human_bytes(size)} of weights), "
            f"which {what} needs on one device at a time",
            f"give one device at least {human_bytes(size)} (plus room for activations)")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def input_device(model: nn.Module) -> torch.device:
    """Where a model's inputs go: its input embeddings' device (the CPU for a disk-offloaded model,
    whose dispatch hooks move the tensors where each module runs)."""
    embeddings = model.get_input_embeddings()
    device = embeddings.weight.device if embeddings is not None else next(model.parameters()).device
    return torch.device("cpu") if device.type == "meta" else device


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype the model computes in (its config's, or its first floating parameter's)."""
    dtype = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def offload_folder(directory: str | Path) -> Path:
    """Where accelerate may write weights that go to disk (safetensors checkpoints are read in place)."""
    return cache_dir() / "offload" / Path(directory).name
