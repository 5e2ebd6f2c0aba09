"""The llm-compressor backend: the same CalibrationSet and settings, a packed compressed-tensors checkpoint.

``oneshot(model, recipe, dataset)`` with the recipe each method gives for itself
(``Method.llmcompressor_recipe``: SparseGPT, Wanda and GPTQ have one; AWQ on an accelerator;
a method without one is refused before any model loads). Every modifier leaves the LM head
alone. llm-compressor builds every Hessian from tokens, so colakit's attention-weighted value
Hessians (``value_hessian="attention"``) are refused too, pointing at the built-in engine's own
compressed-tensors output. llm-compressor is an optional extra, imported only here.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from colakit.cache import atomic_dir
from colakit.compress.config import CompressionConfig
from colakit.compress.directory import refuse_existing, write_report
from colakit.compress.packed import saved_format
from colakit.errors import ColakitError
from colakit.memory import peak_memory
from colakit.model.layers import find_decoder, weight_matrix
from colakit.model.load import ModelHandle

INSTALL = "pip install 'colakit[llmcompressor]' (llmcompressor==0.14.0.1)"
IGNORE = ["lm_head", "re:.*lm_head"]


def _import_llmcompressor():
    try:
        import llmcompressor  # an optional extra: imported only when this backend runs
    except ImportError as err:
        raise ColakitError("the llm-compressor backend needs the llmcompressor package, which is not installed",
                           f"{INSTALL}, or use --backend builtin") from err
    return llmcompressor


def check_supported(config: CompressionConfig) -> None:
    """Refuse, before any model is loaded, what this backend cannot run."""
    config.validate()
    if config.method.value_hessians:
        raise ColakitError(f"llm-compressor builds every Hessian from tokens; it cannot run {config.method.name} with "
                           "value_hessian 'attention' (colakit's attention-weighted value Hessians)",
                           "use --backend builtin --save-format compressed-tensors (the same packed checkpoint, with "
                           "them), or pass --value-hessian tokens")
    if config.method.llmcompressor_recipe() is None:
        raise ColakitError(f"{config.method.name} has no llm-compressor recipe here", "use --backend builtin")
    _import_llmcompressor()


def build_recipe(config: CompressionConfig) -> list:
    """llm-compressor modifiers equivalent to ``config`` (decoder linears only, never the LM head).

    ``group_size="auto"`` must be resolved first (``CompressionConfig.resolve(model)``).
    """
    check_supported(config)
    pending = config.method.unresolved()
    if pending:
        raise ColakitError(f"{pending} is not resolved for a model yet",
                           "call config.resolve(model) first, or pass a number")
    return [getattr(importlib.import_module(step.module), step.name)(**step.kwargs, ignore=IGNORE)
            for step in config.method.llmcompressor_recipe()]


def _sparsity(model) -> dict:
    layout = find_decoder(model)
    out = {}
    for i in range(layout.num_layers):
        for name, lin in layout.linears(i).items():
            w = weight_matrix(lin)
            out[f"{layout.layers_path}.{i}.{name}"] = {"numel": w.numel(), "sparsity": float((w == 0).sum()) / w.numel()}
    return out


def compress_with_llmcompressor(model: ModelHandle, cs, out_dir: str | Path, config: CompressionConfig,
                                meta: dict | None = None) -> dict:
    """Run ``oneshot`` on the CalibrationSet ``cs`` and save a compressed-tensors checkpoint to ``out_dir``."""
    out = refuse_existing(out_dir)
    check_supported(config)
    if cs is None:
        raise ColakitError(f"{config.method.name} needs calibration data", "pass --calib DIR (a CalibrationSet)")
    from llmcompressor import oneshot  # the optional extra, checked by check_supported

    tokenizer, model = model.tokenizer, model.model
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
    # llm-compressor builds every Hessian from tokens (attention is refused above): the report says so for every method
    settings = {**config.to_dict(), "value_hessian": "tokens"}
    report = {**(meta or {}), "method": config.method.name, "config": settings, "backend": "llmcompressor",
              "save_format": saved_format(config.method.quantizes, packed=True),
              "recipe": [f"{type(m).__name__}({m.model_dump(exclude_unset=True)})" for m in recipe],
              "wall_time_s": round(wall, 3), "model_class": type(model).__name__,
              "sparsity": sum(r["sparsity"] * r["numel"] for r in linears.values()) / total, "linears": linears,
              "peak_memory": peak_memory()}
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, save_compressed=True)
        tokenizer.save_pretrained(tmp)
        write_report(tmp, report)
    return report
