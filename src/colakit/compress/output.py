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
import time
from pathlib import Path

from colakit import __version__
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
from colakit.errors import ColakitError
from colakit.model.load import ModelHandle, max_context


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
                    save_format: str = DEFAULT_SAVE_FORMAT) -> dict:
    """Load the model, compress it with the CalibrationSet at ``calib_dir``, write ``out_dir``.

    ``save_format``: ``compressed-tensors`` (packed quantized weights) or ``fake-quant``.
    Returns the compression.json content. Nothing is written unless the whole run succeeds.
    """
    refuse_existing(out_dir)
    config.validate()
    if backend not in ("builtin", "llmcompressor"):
        raise ColakitError(f"unknown backend {backend!r}", "use --backend builtin or llmcompressor")
    check_save_format(save_format, backend)
    handle = ModelHandle.of(model_name, device=device, dtype=dtype)
    tokenizer = handle.tokenizer
    if calib_dir is None and config.method.needs_data:
        raise ColakitError(f"{config.method.name} needs calibration data", "pass --calib DIR (a CalibrationSet)")
    cs = load_calibration(calib_dir, tokenizer) if calib_dir is not None else None
    calibration = ({"path": str(Path(calib_dir).resolve()), "content_hash": cs.content_hash, "manifest": cs.manifest}
                   if cs is not None else {})
    meta = {"colakit_version": __version__, "model": handle.name, "backend": backend,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if backend == "llmcompressor":
        return compress_with_llmcompressor(handle, cs, out_dir, config, meta | {"calibration": calibration})
    model = handle.model
    config = dataclasses.replace(config, keep_backup=False)  # a fresh model: nothing to restore on failure
    config.validate_for(model)
    pack = save_format == COMPRESSED_TENSORS
    if pack:
        check_packable(config.method, model)
    ids = mask = None
    if cs is not None:
        _check_length(cs, model)
        ids, mask = cs.to_tensors(tokenizer.pad_token_id)
    report: CompressionReport = compress(model, ids, mask, config)
    result = meta | report.to_dict()
    result["calibration"] = {**report.calibration, **calibration}
    result["save_format"] = saved_format(config.method.quantizes, pack)
    result["notes"] = [*result["notes"], *packing_notes(result["save_format"], save_format, model)]
    save_compressed(model, tokenizer, out_dir, result, grids=report.grids if pack else None)
    return result
