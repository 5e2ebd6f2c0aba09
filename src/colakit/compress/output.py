"""Writing a compressed model: a Hugging Face directory plus ``compression.json``.

Quantized weights are packed in the compressed-tensors format by default (``packed``: what vLLM
and transformers load, and what the llm-compressor backend writes too), or stored dequantized
("fake-quant", the model's own dtype) with ``save_format="fake-quant"``; pruned weights are
zeros in either. Both reload with ``AutoModelForCausalLM.from_pretrained`` and evaluate alike
(``colakit.model.load`` decompresses packed ones). The directory is written beside its final
place and renamed in one step: an interrupted run never leaves a directory that looks done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from colakit.cache import atomic_dir
from colakit.calibset import CalibrationSet
from colakit.compress.config import CompressionConfig
from colakit.compress.directory import refuse_existing, write_report
from colakit.compress.engine import CompressionReport, compress
from colakit.compress.llmcompressor_backend import compress_with_llmcompressor
from colakit.compress.packed import (
    COMPRESSED_TENSORS,
    DEFAULT_SAVE_FORMAT,
    check_packable,
    check_save_format,
    packing_notes,
    save_packed,
    saved_format,
)
from colakit.compress.quantizer import Grid
from colakit.compress.streamed import ShardWriter, StreamedWeights, copy_outside, outside_blocks, save_config
from colakit.errors import ColakitError
from colakit.memory import peak_memory
from colakit.model.checkpoint import has_safetensors
from colakit.model.layers import find_decoder
from colakit.model.load import ModelHandle, check_checkpoint, max_context, resolve_device, resolve_dtype
from colakit.model.packed import packed_config
from colakit.model.placement import check_fits, parse_max_memory
from colakit.model.streamed import move_buffers
from colakit.provenance import provenance


def save_compressed(model, tokenizer, out_dir: str | Path, report: dict, grids: dict[str, Grid] | None = None) -> Path:
    """Save ``model`` (+ tokenizer) and ``report`` as compression.json to a new directory.

    With ``grids`` (``CompressionReport.grids``) the quantized linears are packed in the
    compressed-tensors format on the grids of ``report["config"]``; without, weights are saved as
    they are (fake-quant).
    """
    out = refuse_existing(out_dir)
    try:
        with atomic_dir(out) as tmp:
            if grids:
                save_packed(model, tmp, grids, report["config"])
            else:
                model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            write_report(tmp, report)
    except PermissionError as err:
        raise ColakitError(f"cannot write {out}: {err.strerror}", "choose a writable --out") from err
    return out


def load_calibration(calib_dir: str | Path, tokenizer):
    """The CalibrationSet at ``calib_dir``, checked against the model's tokenizer and context."""
    cs = CalibrationSet.load(calib_dir)
    if len(cs) == 0:
        raise ColakitError(f"CalibrationSet {calib_dir} is empty", "curate a set with at least one sample")
    cs.check_tokenizer(tokenizer)
    return cs


def _check_length(cs, model) -> None:
    longest = max(len(s.input_ids) for s in cs.samples)
    limit = max_context(model)
    if limit is not None and longest > limit:
        raise ColakitError(f"calibration samples have up to {longest} tokens; the model takes {limit}",
                           f"curate the set with --seq-len {limit} or less")


def compress_to_dir(model_name: ModelHandle | str, calib_dir: str | Path, out_dir: str | Path,
                    config: CompressionConfig, device: str = "auto", dtype: str = "auto", backend: str = "builtin",
                    save_format: str = DEFAULT_SAVE_FORMAT, max_memory: str | dict | None = None,
                    streamed: bool | None = None, on_block: Callable[[int, int], None] | None = None) -> dict:
    """Compress the model with the CalibrationSet at ``calib_dir``, write ``out_dir``.

    ``save_format``: ``compressed-tensors`` (packed quantized weights) or ``fake-quant``.
    A model named by its id or directory, in safetensors files, is compressed from them block by
    block (``streamed``, the default when it can be: the model never sits in memory whole);
    ``streamed=False``, other files, or a ``ModelHandle`` (whose model is compressed in place)
    load it whole first. ``max_memory`` (accelerate's
    ``{device: size}``, or ``"cpu=8GiB"``) is checked against the largest block before any work.
    Returns the compression.json content. Nothing is written unless the whole run succeeds.
    ``on_block(done, num_layers)``: the engine's progress (``engine.compress``; the llm-compressor
    backend reports none).
    """
    refuse_existing(out_dir)
    config.validate()
    if backend not in ("builtin", "llmcompressor"):
        raise ColakitError(f"unknown backend {backend!r}", "use --backend builtin or llmcompressor")
    check_save_format(save_format, backend)
    max_memory = parse_max_memory(max_memory)
    handle = ModelHandle.of(model_name, device=device, dtype=dtype, max_memory=max_memory)
    tokenizer = handle.tokenizer
    if calib_dir is None and config.method.needs_data:
        raise ColakitError(f"{config.method.name} needs calibration data", "pass --calib DIR (a CalibrationSet)")
    cs = load_calibration(calib_dir, tokenizer) if calib_dir is not None else None
    calibration = ({"path": str(Path(calib_dir).resolve()), "content_hash": cs.content_hash, "manifest": cs.manifest}
                   if cs is not None else {})
    # provenance (version, commit, dirty tree) and a digest of what was asked: compression.json says
    # which code made the checkpoint, and with which settings
    meta = {**provenance(), "model": handle.name, "backend": backend,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config_hash": hashlib.sha256(json.dumps(
                [handle.name, config.to_dict(), calibration.get("content_hash"), backend, save_format],
                sort_keys=True, default=str).encode()).hexdigest()[:16]}
    if backend == "llmcompressor":
        return compress_with_llmcompressor(handle, cs, out_dir, config, meta | {"calibration": calibration})
    # a handle the caller passes is compressed in place, so it is loaded whole; a name streams
    directory = None if isinstance(model_name, ModelHandle) else handle.directory
    can_stream = directory is not None and has_safetensors(directory) and packed_config(str(directory)) is None
    if streamed and not can_stream:
        raise ColakitError(f"{handle.name} cannot be compressed block by block from its files",
                           "it needs a model name or directory (not a ModelHandle, which is compressed in "
                           "place) of safetensors files that are not already packed; or load it whole "
                           "(streamed=False)")
    if can_stream and streamed is not False:
        return _compress_streamed(directory, handle, cs, out_dir, config, save_format, max_memory,
                                  meta | {"calibration": calibration}, on_block)
    model = handle.model
    if max_memory:
        check_fits(max_memory, _largest_loaded_block(model), "compression")
    config = dataclasses.replace(config, keep_backup=False)  # a fresh model: nothing to restore on failure
    config.validate_for(model)
    pack = save_format == COMPRESSED_TENSORS
    if pack:
        check_packable(config.method, model)
    ids = mask = None
    if cs is not None:
        _check_length(cs, model)
        ids, mask = cs.to_tensors(tokenizer.pad_token_id)
    report: CompressionReport = compress(model, ids, mask, config, on_block=on_block)
    result = _result(meta | {"calibration": calibration}, report, config, save_format, model)
    save_compressed(model, tokenizer, out_dir, result, grids=report.grids if pack else None)
    return result


def _result(meta: dict, report: CompressionReport, config: CompressionConfig, save_format: str, model,
            notes: list[str] = ()) -> dict:
    """compression.json: what was asked (``meta``), what the engine did, what was written, the peak memory."""
    result = meta | report.to_dict()
    result["calibration"] = {**report.calibration, **meta["calibration"]}
    result["save_format"] = saved_format(config.method.quantizes, save_format == COMPRESSED_TENSORS)
    result["notes"] = [*notes, *result["notes"], *packing_notes(result["save_format"], save_format, model)]
    result["peak_memory"] = peak_memory()
    return result


def _largest_loaded_block(model) -> tuple[int, int]:
    sizes = [sum(t.numel() * t.element_size() for t in b.state_dict().values()) for b in find_decoder(model).layers]
    index = max(range(len(sizes)), key=sizes.__getitem__)
    return index, sizes[index]


def _compress_streamed(directory: Path, handle: ModelHandle, cs, out_dir, config: CompressionConfig,
                       save_format: str, max_memory: dict | None, meta: dict, on_block=None) -> dict:
    """``compress_to_dir`` from the files: a meta skeleton, each block read, compressed, written, freed."""
    dev = resolve_device(handle.device_request)
    dt = resolve_dtype(handle.dtype_request, dev)
    # every file's header and every tensor the model needs, and --max-memory, before any work
    model, checkpoint = check_checkpoint(directory, dt, max_memory, "compression")
    notes: list[str] = []
    config = dataclasses.replace(config.resolve(model, notes), keep_backup=False)  # the files are the backup
    config.validate_for(model)
    layout = find_decoder(model)
    outside = outside_blocks(model)
    pack = save_format == COMPRESSED_TENSORS
    if pack:
        check_packable(config.method, model)
    pack_config = config.to_dict() if pack and config.method.quantizes else None
    ids = mask = None
    if cs is not None:
        _check_length(cs, model)
        ids, mask = cs.to_tensors(handle.tokenizer.pad_token_id)
    out = refuse_existing(out_dir)
    try:
        with atomic_dir(out) as tmp:
            writer = ShardWriter(tmp, len(outside) + layout.num_layers)
            copy_outside(outside, checkpoint, dt, writer)
            move_buffers(model, dev)
            report = compress(model, ids, mask, config,
                              weights=StreamedWeights(model, checkpoint, dev, dt, writer, pack_config),
                              on_block=on_block)
            writer.close()
            result = _result(meta, report, config, save_format, model, notes) | {"loading": "streamed"}
            save_config(model, tmp, pack_config)
            handle.tokenizer.save_pretrained(tmp)
            write_report(tmp, result)
    except PermissionError as err:
        raise ColakitError(f"cannot write {out}: {err.strerror}", "choose a writable --out") from err
    return result
