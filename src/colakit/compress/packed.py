"""Packed checkpoints: colakit's quantized weights in the compressed-tensors format.

compressed-tensors is the format vLLM, transformers and llm-compressor share. A quantized linear
is stored as ``weight_packed`` (the integer codes, bit-packed into int32 words), ``weight_scale``
and, for an asymmetric grid, ``weight_zero_point``, one per output row and group
(``pack-quantized``); ``config.json`` carries the scheme. colakit's grid (``quantizer``) maps onto
it exactly: its unsigned codes and zero points in ``0 .. 2^b - 1`` are the format's signed ones
shifted by ``2^(b-1)``, a symmetric grid's zero point ``2^(b-1)`` is the format's implicit 0, and
both dequantize as ``scale * (q - z)``. The library computes the codes from the fake-quant weights
and the grid, ``round(w / scale) + z``, which recovers them exactly (``w`` is ``scale * (q - z)``
rounded once), so a float32 model decompresses to colakit's weights bit for bit. The format keeps
scales in the model's dtype, so a bfloat16 or float16 model gets its scales rounded to it.

Sparsity has no packed form: compressed-tensors dropped its sparse formats (the 2:4 bitmask) after
0.14, and the transformers colakit runs with needs 0.15 or later. Pruned weights stay zeros, inside
the packed codes when they are quantized, in a dense checkpoint when not.
"""

from __future__ import annotations

from pathlib import Path

import torch
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.compressors.format import infer_module_format
from compressed_tensors.compressors.model_compressors import ModelCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme, QuantizationStatus
from torch import nn

from colakit.compress.methods import Method
from colakit.compress.methods.params import compressed_tensors_weights
from colakit.compress.quantizer import Grid
from colakit.errors import ColakitError
from colakit.model.layers import find_decoder

COMPRESSED_TENSORS, FAKE_QUANT = "compressed-tensors", "fake-quant"
SAVE_FORMATS = (COMPRESSED_TENSORS, FAKE_QUANT)
# packed by default: the checkpoint vLLM and transformers serve, 0.3x the size; colakit evaluates
# it like any other (decompressed on load), and a run with nothing to pack is dense either way
DEFAULT_SAVE_FORMAT = COMPRESSED_TENSORS


def check_save_format(save_format: str, backend: str) -> None:
    """Refuse an unknown format, or one the backend cannot write, before any model loads."""
    if save_format not in SAVE_FORMATS:
        raise ColakitError(f"unknown save format {save_format!r}", f"use --save-format {' or '.join(SAVE_FORMATS)}")
    if backend == "llmcompressor" and save_format != COMPRESSED_TENSORS:
        raise ColakitError(f"the llm-compressor backend writes compressed-tensors checkpoints only, not {save_format}",
                           "use --backend builtin for a fake-quant directory")


def check_packable(method: Method, model: nn.Module) -> None:
    """Refuse, before compressing, quantized linears that compressed-tensors cannot hold."""
    if not method.quantizes:
        return
    layout = find_decoder(model)
    for i in range(layout.num_layers):
        for name, lin in layout.linears(i).items():
            if not isinstance(lin, nn.Linear):  # GPT-2's Conv1D: the format and its loaders know nn.Linear only
                raise ColakitError(f"{type(model).__name__}'s {type(lin).__name__} layers ({layout.layers_path}.{i}."
                                   f"{name}) cannot be packed: compressed-tensors packs nn.Linear weights only",
                                   "use --save-format fake-quant")


def saved_format(quantizes: bool, packed: bool) -> str:
    """What a directory's weights are: packed, quantized but dequantized (fake-quant), or dense."""
    if not quantizes:
        return "dense"
    return COMPRESSED_TENSORS if packed else FAKE_QUANT


def packing_notes(written: str, requested: str, model: nn.Module) -> list[str]:
    """What compression.json should say about the format: what had nothing to pack, what the format rounds."""
    if written == "dense" and requested == COMPRESSED_TENSORS:
        return ["nothing to pack: no weights are quantized, so the checkpoint is dense (pruned weights are zeros; "
                "compressed-tensors >= 0.15 has no sparse format)"]
    dtype = next(model.parameters()).dtype
    if written == COMPRESSED_TENSORS and dtype != torch.float32:
        return [f"packed scales are stored in {str(dtype).removeprefix('torch.')}, the model's dtype (the format's "
                "rule): the packed weights equal the fake-quant ones up to that rounding of the scales"]
    return []


def scheme_of(config: dict) -> QuantizationScheme:
    """The compressed-tensors scheme of a compression.json config (its resolved bits, group size, grid)."""
    weights = QuantizationArgs(**compressed_tensors_weights(config["bits"], config["group_size"], config["sym"]))
    scheme = QuantizationScheme(targets=["Linear"], weights=weights)
    scheme.format = infer_module_format(nn.Linear, scheme)
    return scheme


def pack_linears(state: dict, grids: dict[str, Grid], scheme: QuantizationScheme) -> dict:
    """``state`` (full tensor names) with every linear in ``grids`` replaced by its packed tensors."""
    compressor = BaseCompressor.get_value_from_registry(scheme.format.value)
    offset = 2 ** (scheme.weights.num_bits - 1)  # colakit's unsigned zero points -> the format's signed ones
    state = dict(state)
    for name, grid in grids.items():
        weight = state.pop(f"{name}.weight")
        # float32 throughout: the codes are recovered exactly whatever the model's dtype
        local = {"weight": weight.detach().to("cpu", torch.float32), "weight_scale": grid.scale.float()}
        if not scheme.weights.symmetric:
            local["weight_zero_point"] = (grid.zero - offset).to(torch.int8)
        packed = compressor.compress(local, scheme)
        packed["weight_scale"] = packed["weight_scale"].to(weight.dtype)  # the format's scale dtype
        state.update({f"{name}.{key}": value for key, value in packed.items()})
    return state


def check_grids(linears: list[str], grids: dict[str, Grid]) -> None:
    """Every quantized linear needs its grid to be packed."""
    missing = [name for name in linears if name not in grids]
    if missing:  # a registered method that quantizes without reporting its grids
        raise ColakitError(f"the method reported no quantization grid for {missing[0]} ({len(missing)} linears)",
                           "its solve must return the grid as facts['grid']; or use --save-format fake-quant")


def decoder_linears(model: nn.Module) -> list[str]:
    layout = find_decoder(model)
    return [f"{layout.layers_path}.{i}.{name}" for i in range(layout.num_layers) for name in layout.linears(i)]


def write_scheme(directory: Path, model: nn.Module, config: dict) -> None:
    """Put the compressed-tensors scheme of ``config`` in ``directory``'s config.json; linears outside
    the decoder blocks (the LM head) are listed as ignored, as llm-compressor writes them."""
    scheme = scheme_of(config)
    quantized = set(decoder_linears(model))
    ignore = [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and name not in quantized]
    quantization = QuantizationConfig(config_groups={"group_0": scheme}, format=scheme.format.value, ignore=ignore,
                                      quantization_status=QuantizationStatus.COMPRESSED)
    ModelCompressor(quantization_config=quantization).update_config(str(directory))


def save_packed(model: nn.Module, directory: Path, grids: dict[str, Grid], config: dict) -> None:
    """Save ``model`` to ``directory`` with the linears in ``grids`` packed, the scheme in config.json.

    ``config`` is compression.json's (bits, resolved group size, sym). The model is left as it was.
    """
    check_grids(decoder_linears(model), grids)
    model.save_pretrained(directory, state_dict=pack_linears(model.state_dict(), grids, scheme_of(config)))
    write_scheme(directory, model, config)
