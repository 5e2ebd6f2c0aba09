"""``colakit compress``: compress a model with a CalibrationSet (built-in engine or llm-compressor)."""

from __future__ import annotations

from pathlib import Path

import typer

from colakit.cli.app import app, console, escape, json_option, max_memory_option, parse_params, print_json
from colakit.defaults import DEFAULT_MODEL
from colakit.errors import ColakitError
from colakit.paths import check_output, output_dir
from colakit.progress import StageProgress

# the options that are method parameters: only those given on the command line reach the method,
# so a method is never handed a key it does not take (and one given for the wrong method is refused)
METHOD_OPTIONS = ("sparsity", "pattern", "bits", "group_size", "sym", "act_order", "damp", "value_hessian",
                  "awq_clip", "awq_search_tokens")


def _parse_group_size(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise ColakitError(f"--group-size {text!r} is not a number", "use e.g. --group-size 64, auto, or -1") from None



@app.command("compress")
def compress_command(
    ctx: typer.Context,
    calib: Path = typer.Option(None, "--calib", help="CalibrationSet directory (magnitude and rtn need none)."),
    method: str = typer.Option(..., "--method", help="sparsegpt, wanda, gptq, awq, or the baselines magnitude, rtn "
                                                     "(any registered method)."),
    out: Path = typer.Option(..., "--out", help="New output directory (an existing one is refused without "
                                                "--overwrite)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Built-in model id or Hugging Face model directory."),
    sparsity: float = typer.Option(0.5, "--sparsity", help="Fraction of weights to remove (unstructured pruning)."),
    pattern: str = typer.Option("unstructured", "--pattern", help="unstructured, or N:M (keep N of every M, e.g. 2:4)."),
    bits: int = typer.Option(None, "--bits", help="Quantization bits 2-8 (gptq/awq/rtn: default 4; sparsegpt: joint)."),
    group_size: str = typer.Option(
        "auto", "--group-size",
        help="Quantization group size; -1: one group per row; auto: 128 when it divides every quantized linear's "
             "input features, else the largest of 64/32 that does (the choice is recorded in compression.json)."),
    sym: bool = typer.Option(False, "--sym/--asym", help="Symmetric grid, or asymmetric with a zero point."),
    act_order: bool = typer.Option(False, "--act-order", help="GPTQ: visit columns by decreasing activation."),
    damp: float = typer.Option(0.01, "--damp", help="GPTQ/SparseGPT dampening (fraction of the mean Hessian diagonal)."),
    value_hessian: str = typer.Option(
        "attention", "--value-hessian",
        help="GPTQ/SparseGPT: attention (value projections weighted by how much each token is attended to, "
             "per key/value head) or tokens (every token once, as the papers and llm-compressor do; the default "
             "with --backend llmcompressor, which has no other)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Calibration samples per forward (bounds memory)."),
    awq_clip: bool = typer.Option(True, "--awq-clip/--no-awq-clip", help="AWQ: search weight clipping ranges."),
    awq_search_tokens: int = typer.Option(
        8192, "--awq-search-tokens", help="AWQ: calibration tokens the scale search scores on (0: all of them)."),
    param: list[str] = typer.Option(None, "--param", "-p",
                                    help="Any other method key NAME=VALUE (repeatable), e.g. -p awq_grid=10."),
    backend: str = typer.Option("builtin", "--backend", help="builtin, or llmcompressor (pip install llmcompressor)."),
    save_format: str = typer.Option(
        "compressed-tensors", "--save-format",
        help="compressed-tensors (the default): quantized weights packed as int codes + group scales/zero points, "
             "the checkpoint vLLM and transformers load, about 0.3x the float32 size, and colakit evaluates it "
             "like any other; fake-quant: weights dequantized to the model's dtype (full size). Pruned weights are "
             "zeros in both (nothing to pack without --bits)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float32 on CPU), float32, bfloat16, float16."),
    max_memory: str = max_memory_option(),
    streamed: bool = typer.Option(None, "--streamed/--load-whole",
                                  help="Read each decoder block from the safetensors files when its turn comes and "
                                       "write it out when done (the default for a safetensors model: it never sits "
                                       "in memory whole), or load the whole model first."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing compressed model at --out, once "
                                                              "the new one is completely written."),
    as_json: bool = json_option(),
):
    """Prune or quantize MODEL, calibrated by the CalibrationSet at --calib; write a model directory + compression.json."""
    # the paths first: a bad --out is refused before torch is even imported (seconds on a small machine)
    check_output(out, directory=True, overwrite=overwrite, ours=lambda p: (p / "compression.json").is_file(),
                 what="a compressed model directory (no compression.json)")
    if calib is not None and not calib.is_dir():  # before the model loads
        raise ColakitError(f"--calib {calib} is not a directory", "pass a CalibrationSet (colakit curate --out DIR)")
    from colakit.compress import CompressionConfig, compress_to_dir, get_method

    # the source by name: recent typer versions bring their own copy of click and its enum
    params = {k: ctx.params[k] for k in METHOD_OPTIONS if ctx.get_parameter_source(k).name != "DEFAULT"}
    if "awq_search_tokens" in params:
        params["awq_search_tokens"] = awq_search_tokens or None  # 0: all of them
    if "group_size" in params:
        params["group_size"] = _parse_group_size(group_size)
    for key, value in parse_params(param or [], "awq_grid=10").items():
        if key in ctx.params:
            raise ColakitError(f"--param {key} has an option of its own", f"use --{key.replace('_', '-')}")
        params[key] = value
    if "group_size" in get_method(method).parameters():  # this command's default (auto) is not the library's (128)
        params.setdefault("group_size", "auto")
    if backend == "llmcompressor" and "value_hessian" in get_method(method).parameters():
        params.setdefault("value_hessian", "tokens")  # its only kind; an explicit attention is refused
    config = CompressionConfig(method, batch_size=batch_size, **params)
    with StageProgress("compress", unit="block", console=console, note=f"{method}, {model} ({backend})") as bar, \
            output_dir(out) as dest:
        result = compress_to_dir(model, calib, dest, config, device=device, dtype=dtype, backend=backend,
                                 save_format=save_format, max_memory=max_memory, streamed=streamed,
                                 on_block=lambda done, total: bar.update(completed=done, total=total))
    sparsity_note = f", sparsity {result['sparsity']:.3f}" if result.get("sparsity") else ""
    console.print(f"{escape(method)}: {escape(out)} ({result['save_format']}, {result['wall_time_s']:.1f}s"
                  f"{sparsity_note})")
    if as_json:
        print_json({"out": str(out), **{k: result.get(k) for k in (
            "method", "model", "backend", "save_format", "sparsity", "wall_time_s", "config")}})
        return
    print(out)
