"""``colakit evaluate``: capability evaluation of a model, optionally against a dense reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from colakit.cli.app import app, console


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _print_results(results: dict) -> None:
    table = Table("task", "capability", "n", "metric", "value", "stderr", "time (s)")
    for name, t in results["tasks"].items():
        m = t["metrics"]
        table.add_row(name, t["capability"], str(t["n"]), t["primary"], _fmt(m[t["primary"]]),
                      _fmt(m.get(t["primary"] + "_stderr", float("nan"))), _fmt(t["wall_time_s"]))
    console.print(table)


def _print_retention(retention: dict) -> None:
    table = Table("task", "metric", "dense", "compressed", "retention", "paired p")
    for name, r in retention["tasks"].items():
        p = (r.get("mcnemar") or r.get("paired_bootstrap_bpb") or {}).get("p_value", float("nan"))
        table.add_row(name, r["metric"], _fmt(r["dense"]), _fmt(r["compressed"]), _fmt(r["retention"]), _fmt(p))
    console.print(table)
    console.print("capability retention (" + retention["definition"] + "): " +
                  ", ".join(f"{c} {v['retention']:.3f}" for c, v in retention["capabilities"].items()))


@app.command("evaluate")
def evaluate_cmd(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Built-in id, model directory or hub id."),
    suite: str = typer.Option("quick", "--suite", "--tasks", "-t",
                              help="quick, standard, full, or task names (comma-separated)."),
    limit: int = typer.Option(None, "--limit", "-n", help="At most N items per task (seeded subset)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit subsets."),
    out: Path = typer.Option(Path("results.json"), "--out", "-o", help="Where to write results.json."),
    compare_with: str = typer.Option(None, "--compare",
                                     help="Dense results.json, or a dense model to evaluate on the same tasks."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap",
                                       help="Warn instead of refusing when calibration data overlaps an eval set."),
    chat: bool = typer.Option(False, "--chat", help="Use the tokenizer's chat template for GSM8K."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Cap on generated tokens (default: per task)."),
    ppl_seq_len: int = typer.Option(1024, "--ppl-seq-len", help="Window length for perplexity."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
):
    """Evaluate capabilities (perplexity, commonsense, knowledge, math, code, multilingual)."""
    from colakit.errors import ColakitError
    from colakit.evaluate import EvalConfig, compare, evaluate_model, read_results, resolve_tasks
    from colakit.evaluate.results import write_results

    if max_new_tokens is not None and max_new_tokens <= 0:
        raise ColakitError(f"--max-new-tokens must be positive, got {max_new_tokens}", "use e.g. 256")
    plan = resolve_tasks(suite, limit)
    config = EvalConfig(seed=seed, chat=chat, max_new_tokens=max_new_tokens, ppl_seq_len=ppl_seq_len)

    def progress(name, result):
        m = result["metrics"][result["primary"]]
        console.print(f"  {name}: {result['primary']} = {_fmt(m)} ({result['n']} items, {result['wall_time_s']} s)")

    console.print(f"evaluating {model} on {len(plan)} tasks: {', '.join(plan)}")
    results = evaluate_model(model, suite, limit=limit, seed=seed, device=device, dtype=dtype, out=out,
                             allow_overlap=allow_overlap, config=config, on_task=progress)
    _print_results(results)
    if compare_with:
        if Path(compare_with).is_file():
            dense = read_results(Path(compare_with))
        else:
            dense_out = out.with_name(out.stem + ".dense.json")
            console.print(f"evaluating the dense model {compare_with} on the same tasks -> {dense_out}")
            dense = evaluate_model(compare_with, suite, limit=limit, seed=seed, device=device, dtype=dtype,
                                   out=dense_out, allow_overlap=True, config=config, on_task=progress)
        results["retention"] = compare(results, dense)
        write_results(out, results)
        _print_retention(results["retention"])
    console.print(f"wrote {out} ({results['wall_time_s']} s)")
    print(json.dumps({n: t["metrics"][t["primary"]] for n, t in results["tasks"].items()}))
