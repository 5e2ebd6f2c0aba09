"""The llm-compressor backend: the same CalibrationSet and settings, a packed compressed-tensors checkpoint.

``oneshot(model, recipe, dataset)`` with the recipe equivalent to a ``CompressionConfig``:
SparseGPTModifier / WandaPruningModifier (llm-compressor's ``mask_structure`` "N:M" counts the
*pruned* weights, ours the kept ones: 2:4 is the same either way), GPTQModifier with a group
scheme (``actorder`` "weight" keeps groups contiguous, like the built-in act-order). Pruning with
``bits`` becomes the pruning modifier followed by a QuantizationModifier (round-to-nearest on the kept
weights; the min/max grid contains 0, so the sparsity pattern survives). It is not SparseGPT's joint
quantization: llm-compressor's GPTQ after SparseGPT writes error corrections into pruned weights and
breaks the sparsity (2:4 included), so it is not used for that. llm-compressor is an optional
extra, imported only here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from colakit.cache import atomic_dir
from colakit.compress.config import AUTO, CompressionConfig
from colakit.errors import ColakitError

INSTALL = "pip install 'colakit[llmcompressor]' (llmcompressor==0.14.0.1)"


def _import_llmcompressor():
    try:
        import llmcompressor  # noqa: F401
    except ImportError as err:
        raise ColakitError("the llm-compressor backend needs the llmcompressor package, which is not installed",
                           f"{INSTALL}, or use --backend builtin") from err
    return llmcompressor


def _weight_scheme(config: CompressionConfig) -> dict:
    return {"num_bits": config.bits, "type": "int", "symmetric": config.sym,
            "strategy": "channel" if config.group_size == -1 else "group",
            "group_size": None if config.group_size == -1 else config.group_size}


def check_supported(config: CompressionConfig) -> None:
    """Refuse, before any model is loaded, what this backend cannot run."""
    config.validate()
    if config.method == "awq" and not torch.cuda.is_available():
        raise ColakitError("llm-compressor's AWQ needs an accelerator (it pins memory), and none is available",
                           "use --backend builtin, which runs AWQ on CPU")
    if config.method in ("magnitude", "rtn"):
        raise ColakitError(f"the {config.method} baseline has no llm-compressor recipe here", "use --backend builtin")
    _import_llmcompressor()


def build_recipe(config: CompressionConfig) -> list:
    """llm-compressor modifiers equivalent to ``config`` (decoder linears only, never the LM head).

    ``group_size="auto"`` must be resolved first (``CompressionConfig.resolve(model)``).
    """
    check_supported(config)
    if config.quantizes and config.group_size == AUTO:
        raise ColakitError("group size 'auto' is not resolved for a model yet",
                           "call config.resolve(model) first, or pass a number")
    method = config.method
    ignore = ["lm_head", "re:.*lm_head"]
    mask = "0:0"
    if config.nm:
        n, m = config.nm
        mask = f"{m - n}:{m}"
    modifiers = []
    if method == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        modifiers.append(SparseGPTModifier(sparsity=config.target_sparsity, mask_structure=mask,
                                           block_size=config.block_size, dampening_frac=config.damp,
                                           targets=["Linear"], ignore=ignore))
    elif method == "wanda":
        from llmcompressor.modifiers.pruning import WandaPruningModifier

        modifiers.append(WandaPruningModifier(sparsity=config.target_sparsity, mask_structure=mask,
                                              targets=["Linear"], ignore=ignore))
    elif method == "awq":
        from llmcompressor.modifiers.awq import AWQModifier

        modifiers.append(AWQModifier(ignore=ignore, config_groups={
            "group_0": {"targets": ["Linear"], "weights": _weight_scheme(config)}}))
    groups = {"group_0": {"targets": ["Linear"], "weights": _weight_scheme(config)}}
    if method == "gptq":
        from llmcompressor.modifiers.quantization import GPTQModifier

        modifiers.append(GPTQModifier(ignore=ignore, block_size=config.block_size, dampening_frac=config.damp,
                                      actorder="weight" if config.act_order else None, config_groups=groups))
    elif config.prunes and config.bits:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        modifiers.append(QuantizationModifier(ignore=ignore, config_groups=groups))
    return modifiers


def _sparsity(model) -> dict:
    from colakit.model.layers import find_decoder, weight_matrix

    layout = find_decoder(model)
    out = {}
    for i in range(layout.num_layers):
        for name, lin in layout.linears(i).items():
            w = weight_matrix(lin)
            out[f"{layout.layers_path}.{i}.{name}"] = {"numel": w.numel(), "sparsity": float((w == 0).sum()) / w.numel()}
    return out


def compress_with_llmcompressor(model_name: str, cs, out_dir: str | Path, config: CompressionConfig,
                                device: str = "auto", dtype: str = "auto", meta: dict | None = None) -> dict:
    """Run ``oneshot`` on the CalibrationSet ``cs`` and save a compressed-tensors checkpoint to ``out_dir``."""
    from colakit.compress.output import REPORT_FILE, refuse_existing
    from colakit.model.load import load_model, load_tokenizer

    out = refuse_existing(out_dir)
    check_supported(config)
    # llm-compressor builds every Hessian from tokens; the report says so rather than echo the default
    config = dataclasses.replace(config, value_hessian="tokens")
    if cs is None:
        raise ColakitError(f"{config.method} needs calibration data", "pass --calib DIR (a CalibrationSet)")
    from llmcompressor import oneshot

    model = load_model(model_name, device=device, dtype=dtype)
    tokenizer = load_tokenizer(model_name)
    config = config.resolve(model)
    config.validate_for(model)
    recipe = build_recipe(config)
    longest = max(len(s.input_ids) for s in cs.samples)
    started = time.perf_counter()
    oneshot(model=model, recipe=recipe, dataset=cs.to_dataset(), num_calibration_samples=len(cs),
            max_seq_length=longest, shuffle_calibration_samples=False, tokenizer=tokenizer)
    wall = time.perf_counter() - started
    linears = _sparsity(model)
    total = sum(r["numel"] for r in linears.values())
    report = {**(meta or {}), "method": config.method, "config": config.to_dict(), "backend": "llmcompressor",
              "recipe": [f"{type(m).__name__}({m.model_dump(exclude_unset=True)})" for m in recipe],
              "wall_time_s": round(wall, 3), "model_class": type(model).__name__,
              "sparsity": sum(r["sparsity"] * r["numel"] for r in linears.values()) / total, "linears": linears}
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, save_compressed=True)
        tokenizer.save_pretrained(tmp)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
