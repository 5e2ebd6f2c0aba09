"""Models whose weights stay on disk until the module that needs them runs.

A 70B model does not fit in a host's memory, let alone one GPU's; but every colakit stage runs the
decoder one block at a time or stops early, so it never needs the whole model at once. The model
is built on the meta device (``skeleton``: shapes only, no memory; buffers such as rotary
frequencies are computed for real), and ``onload`` reads one module's tensors from the safetensors
files onto the compute device when its turn comes; ``offload`` returns them to meta and frees the
memory. The values are those ``from_pretrained`` gives (the same files, the same dtype cast), so a
stage computes the same bits either way.

This is llm-compressor's sequential onloading and accelerate's disk offload, done with
accelerate's own pieces (``init_empty_weights``, ``set_module_tensor_to_device``): colakit's stages
need explicit control of *when* a block is read and freed (compress writes each block out before
the next is read), which a dispatch hook does not give.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import init_empty_weights
from accelerate.utils import set_module_tensor_to_device
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from colakit.model.checkpoint import Checkpoint
from colakit.model.layers import find_decoder


def skeleton(directory: str | Path, dtype: torch.dtype) -> nn.Module:
    """The model of ``directory`` with every parameter on the meta device, in eval mode."""
    config = AutoConfig.from_pretrained(directory)
    with init_empty_weights():  # parameters on meta; buffers (rotary inv_freq, embed scales) are real
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def _tensors(module: nn.Module) -> list[str]:
    """The names (relative to ``module``) of what its checkpoint holds: parameters and persistent buffers."""
    return list(module.state_dict(keep_vars=True))


def module_names(model: nn.Module, module: nn.Module) -> list[str]:
    """The full names of ``module``'s checkpoint tensors inside ``model``."""
    prefix = next(name for name, m in model.named_modules() if m is module)
    return [f"{prefix}.{n}" if prefix else n for n in _tensors(module)]


def expected_tensors(model: nn.Module) -> list[str]:
    """Every tensor name the model's checkpoint must hold: its state dict, less a tied LM head's
    weight (save_pretrained omits it; loading ties it to the embeddings again)."""
    names = list(model.state_dict(keep_vars=True))
    head = model.get_output_embeddings()
    if head is None or not model.config.get_text_config().tie_word_embeddings:
        return names
    head_weight = f"{next(n for n, m in model.named_modules() if m is head)}.weight"
    return [n for n in names if n != head_weight]


def onload(model: nn.Module, module: nn.Module, checkpoint: Checkpoint, device: torch.device | str,
           dtype: torch.dtype) -> None:
    """Read ``module``'s tensors from ``checkpoint`` onto ``device`` (floating ones cast to ``dtype``)."""
    for local, full in zip(_tensors(module), module_names(model, module)):
        set_module_tensor_to_device(module, local, device, value=_cast(checkpoint.read(full), dtype))


def _cast(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A tensor as loading gives it: floating ones in ``dtype``, the rest (integer buffers) as stored."""
    return value.to(dtype) if value.is_floating_point() else value


def onload_rows(model: nn.Module, embedding: nn.Embedding, checkpoint: Checkpoint, device: torch.device | str,
                dtype: torch.dtype, rows: torch.Tensor):
    """Give ``embedding`` only the rows ``rows`` (sorted, unique token ids) of its table, read from
    ``checkpoint`` and cast like ``onload`` (its other tensors whole); returns the callable that puts
    the meta table back. Token ``rows[i]`` is then looked up as ``i``: a forward over calibration
    ids needs only their rows (a 128k-entry table is 2 GiB in float32; 16 x 128 tokens use at most 2,048)."""
    table = embedding.weight  # the meta parameter (a tied LM head shares it): put back as the same object
    padding = embedding.padding_idx  # F.embedding refuses a padding index past the rows; it only affects gradients
    embedding.padding_idx = None
    for local, full in zip(_tensors(embedding), module_names(model, embedding)):
        if local == "weight":
            values = _cast(checkpoint.read_rows(full, rows.cpu()), dtype).to(device)
            embedding.weight = nn.Parameter(values, requires_grad=False)
        else:
            set_module_tensor_to_device(embedding, local, device, value=_cast(checkpoint.read(full), dtype))

    def restore() -> None:
        offload(embedding)
        embedding.weight, embedding.padding_idx = table, padding
    return restore


def offload(module: nn.Module) -> None:
    """Free ``module``'s parameters and persistent buffers (back to meta; ``onload`` brings them again)."""
    for local in _tensors(module):
        set_module_tensor_to_device(module, local, "meta")


def move_buffers(model: nn.Module, device: torch.device | str) -> None:
    """Put the real (non-meta) buffers, computed at construction, on the compute device."""
    for module in model.modules():
        for name, buf in module._buffers.items():
            if buf is not None and buf.device.type != "meta":
                module._buffers[name] = buf.to(device)


def input_modules(model: nn.Module) -> list[nn.Module]:
    """What the forward runs before the first decoder block: every top-level module outside the
    block list and the output head (embeddings, position embeddings, input projections); the
    final norm is left out too. Each is one module whose tensors ``onload`` reads."""
    layout = find_decoder(model)
    head = model.get_output_embeddings()
    skip = {id(layout.layers), id(layout.final_norm), id(head)}
    out = []
    for _, module in model.named_modules():
        if id(module) in skip or not _owns_tensors(module):
            continue
        if any(_inside(module, model_part) for model_part in (layout.layers, head, layout.final_norm) if model_part):
            continue
        out.append(module)
    return out


def _owns_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        name not in module._non_persistent_buffers_set for name, b in module._buffers.items() if b is not None)


def _inside(module: nn.Module, part: nn.Module) -> bool:
    return any(m is module for m in part.modules())


def load_partial(directory: str | Path, device: torch.device, dtype: torch.dtype, upto: int) -> nn.Module:
    """The model with only what a forward up to decoder block ``upto`` runs: the input modules and
    blocks ``0..upto``; later blocks, the final norm and the head stay on meta, never read."""
    model = skeleton(directory, dtype)
    checkpoint = Checkpoint(directory, model.base_model_prefix)
    layout = find_decoder(model)
    needed = input_modules(model) + list(layout.layers[:upto + 1])
    checkpoint.require(n for m in needed for n in module_names(model, m))
    move_buffers(model, device)
    for module in needed:
        onload(model, module, checkpoint, device, dtype)
    return model
