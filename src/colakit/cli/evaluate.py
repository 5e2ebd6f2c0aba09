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
    table = Table("task", "capability", "n", "metric", "value", "stderr", "time (s)", "flag")
    notes = []
    for name, t in results["tasks"].items():
        m = t["metrics"]
        flags = t.get("flags") or {}
        if flags.get("chance"):
            notes.append(f"  {name}: {flags['reason']}")
        table.add_row(name, t["capability"], str(t["n"]), t["primary"], _fmt(m[t["primary"]]),
                      _fmt(m.get(t["primary"] + "_stderr", float("nan"))), _fmt(t["wall_time_s"]),
                      "[yellow]at chance[/]" if flags.get("chance") else "")
    console.print(table)
    for line in (["at chance (left out of capability scores):"] + notes) if notes else []:
        console.print(line, highlight=False)


def _ci(entry: dict) -> str:
    if "ci_low" not in entry:
        return ""
    return f"[{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def _p(entry: dict) -> str:
    if "p_adjusted" not in entry:
        return ""
    mark = " *" if entry.get("significant") else ""
    return f"{_fmt(entry['p_adjusted'])}{mark}"


def _print_retention(retention: dict) -> None:
    table = Table("task", "kind", "metric", "dense", "compressed", "retention", "95% CI (paired)",
                  "p (Holm)", "flag", title="retention vs dense (* = significant after Holm correction)")
    from colakit.evaluate.comparison import excluded

    notes = []
    for name, r in retention["tasks"].items():
        flags = r.get("flags") or {}
        if flags.get("chance"):
            notes.append(f"  {name}: {flags['reason']}")
        mark = "[yellow]left out[/]" if excluded(flags, r.get("metric_kind", "accuracy")) else ""
        table.add_row(name, r.get("metric_kind", ""), r["metric"], _fmt(r["dense"]), _fmt(r["compressed"]),
                      _fmt(r["retention"]), _ci(r), _p(r), mark)
        lik = r.get("likelihood")
        if lik:
            table.add_row("", "likelihood", lik["metric"], _fmt(lik["dense"]), _fmt(lik["compressed"]),
                          _fmt(lik["retention"]), _ci(lik), _p(lik),
                          "[yellow]left out[/]" if excluded(flags, "likelihood") else "")
    console.print(table)
    if notes:
        console.print("dense model at chance (left out of capability averages; --include-flagged keeps them):")
        for line in notes:
            console.print(line, highlight=False)
    console.print("retention: " + retention["definition"])
    caps = Table("capability", "primary (mean)", "accuracy", "likelihood", "perplexity", "left out (at chance)",
                 title="capability retention by metric kind")
    for cap, v in retention["capabilities"].items():
        caps.add_row(cap, *(_fmt(v.get(k)) if v.get(k) is not None else "-"
                            for k in ("retention", "accuracy", "likelihood", "perplexity")),
                     ", ".join(v.get("flagged", [])))
    console.print(caps)


def _print_power() -> None:
    from colakit.evaluate.power import (
        QUICK_BUDGET_S, QUICK_ESTIMATES, QUICK_OVERHEAD_S, capability_mdd, power_table, quick_sizes,
    )

    rows = power_table(quick_sizes(), QUICK_ESTIMATES)
    table = Table("task", "n", "kind", "sd/item", "MDD", "MDD acc", "time (s)",
                  title="quick suite: minimum detectable retention difference (MDD) between two compressed "
                        "models at 80% power (paired, two-sided, alpha 0.05)")
    for r in rows:
        table.add_row(r["task"], str(r["n"]), r["kind"], f"{r['sd']:.4f}", f"{r['mdd']:.4f}",
                      "-" if r["mdd_accuracy"] is None else f"{r['mdd_accuracy']:.3f}", f"{r['seconds']:.0f}")
    console.print(table)
    caps = capability_mdd(quick_sizes(), QUICK_ESTIMATES)
    console.print("capability MDD (mean over its tasks): " + ", ".join(f"{c} {v:.4f}" for c, v in caps.items()))
    console.print(f"budget {QUICK_BUDGET_S:.0f} s on 2 CPU cores: {sum(r['seconds'] for r in rows):.0f} s of scoring "
                  f"+ {QUICK_OVERHEAD_S:.0f} s overhead; derivation in colakit.evaluate.power")


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
    chat: bool = typer.Option(False, "--chat",
                              help="Use the tokenizer's chat template for tasks with a chat format (GSM8K)."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Cap on generated tokens (default: per task)."),
    ppl_seq_len: int = typer.Option(1024, "--ppl-seq-len", help="Window length for perplexity."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    include_flagged: bool = typer.Option(False, "--include-flagged",
                                         help="Keep tasks whose dense model is at chance in capability averages."),
    power: bool = typer.Option(False, "--power",
                               help="Print the quick suite's power calculation (items per task, smallest "
                                    "detectable retention difference) and exit."),
):
    """Evaluate capabilities (perplexity, commonsense, knowledge, math, code, multilingual)."""
    from colakit.errors import ColakitError
    from colakit.evaluate import EvalConfig, compare, evaluate_model, read_results, resolve_tasks
    from colakit.evaluate.results import write_results

    if power:
        _print_power()
        return

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
        results["retention"] = compare(results, dense, include_flagged=include_flagged)
        write_results(out, results)
        _print_retention(results["retention"])
    console.print(f"wrote {out} ({results['wall_time_s']} s)")
    print(json.dumps({n: t["metrics"][t["primary"]] for n, t in results["tasks"].items()}))
