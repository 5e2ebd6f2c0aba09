"""``colakit evaluate``: capability evaluation of a model, optionally against a dense reference."""

from __future__ import annotations

import math
import re
from pathlib import Path

import typer
from rich.table import Table

from colakit.cli.app import app, console, device_map_option, escape, json_option, max_memory_option, print_json
from colakit.cli.app import out as stdout  # results; "out" is the --out option here
from colakit.defaults import DEFAULT_MODEL, DEFAULT_SEED, DEFAULT_TASKS
from colakit.errors import ColakitError
from colakit.paths import check_output
from colakit.progress import StageProgress


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
        table.add_row(escape(name), t["capability"], str(t["n"]), t["primary"], _fmt(m[t["primary"]]),
                      _fmt(m.get(t["primary"] + "_stderr", float("nan"))), _fmt(t["wall_time_s"]),
                      "[yellow]at chance[/]" if flags.get("chance") else "")
    stdout.print(table)
    for line in (["at chance (left out of capability scores):"] + notes) if notes else []:
        stdout.print(line, highlight=False, markup=False)


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
        table.add_row(escape(name), r.get("metric_kind", ""), r["metric"], _fmt(r["dense"]), _fmt(r["compressed"]),
                      _fmt(r["retention"]), _ci(r), _p(r), mark)
        lik = r.get("likelihood")
        if lik:
            table.add_row("", "likelihood", lik["metric"], _fmt(lik["dense"]), _fmt(lik["compressed"]),
                          _fmt(lik["retention"]), _ci(lik), _p(lik),
                          "[yellow]left out[/]" if excluded(flags, "likelihood") else "")
    stdout.print(table)
    if notes:
        stdout.print("dense model at chance (left out of capability averages; --include-flagged keeps them):")
        for line in notes:
            stdout.print(line, highlight=False, markup=False)
    stdout.print("retention: " + retention["definition"], markup=False)
    caps = Table("capability", "primary (mean)", "accuracy", "likelihood", "perplexity", "left out (at chance)",
                 title="capability retention by metric kind")
    for cap, v in retention["capabilities"].items():
        caps.add_row(cap, *(_fmt(v.get(k)) if v.get(k) is not None else "-"
                            for k in ("retention", "accuracy", "likelihood", "perplexity")),
                     escape(", ".join(v.get("flagged", []))))
    stdout.print(caps)


def _print_power(as_json: bool) -> None:
    from colakit.evaluate.power import (
        QUICK_BUDGET_S,
        QUICK_ESTIMATES,
        QUICK_OVERHEAD_S,
        capability_mdd,
        power_table,
        quick_sizes,
    )

    rows = power_table(quick_sizes(), QUICK_ESTIMATES)
    caps = capability_mdd(quick_sizes(), QUICK_ESTIMATES)
    if as_json:
        print_json({"tasks": rows, "capability_mdd": caps, "budget_s": QUICK_BUDGET_S, "overhead_s": QUICK_OVERHEAD_S})
        return
    table = Table("task", "n", "kind", "sd/item", "MDD", "MDD acc", "time (s)",
                  title="quick suite: minimum detectable retention difference (MDD) between two compressed "
                        "models at 80% power (paired, two-sided, alpha 0.05)")
    for r in rows:
        table.add_row(r["task"], str(r["n"]), r["kind"], f"{r['sd']:.4f}", f"{r['mdd']:.4f}",
                      "-" if r["mdd_accuracy"] is None else f"{r['mdd_accuracy']:.3f}", f"{r['seconds']:.0f}")
    stdout.print(table)
    stdout.print("capability MDD (mean over its tasks): " + ", ".join(f"{c} {v:.4f}" for c, v in caps.items()))
    stdout.print(f"budget {QUICK_BUDGET_S:.0f} s on 2 CPU cores: {sum(r['seconds'] for r in rows):.0f} s of scoring "
                 f"+ {QUICK_OVERHEAD_S:.0f} s overhead; derivation in colakit.evaluate.power")


def _is_results(path: Path) -> bool:
    """A results.json that ``colakit evaluate`` wrote (so a rerun may rewrite it)."""
    from colakit.evaluate import read_results

    try:
        read_results(path)
    except ColakitError:
        return False
    return True


def _summary(results: dict, out: Path) -> dict:
    """What the tables show, as --json prints it."""
    tasks = {name: {"capability": t["capability"], "n": t["n"], "metric": t["primary"],
                    "value": t["metrics"][t["primary"]], "stderr": t["metrics"].get(t["primary"] + "_stderr"),
                    "wall_time_s": t["wall_time_s"], "flags": t.get("flags") or {}}
             for name, t in results["tasks"].items()}
    return {"out": str(out), "wall_time_s": results["wall_time_s"], "tasks": tasks,
            "capabilities": results.get("capabilities"), "retention": results.get("retention")}


def _check_dense_model(name: str) -> None:
    """A --compare model is refused now, not after the whole evaluation of the compressed one."""
    from colakit.model.load import BUILTIN_MODELS

    path = Path(name).expanduser()
    if name in BUILTIN_MODELS or (path / "config.json").is_file() or _hub_id(name):
        return
    what = "a directory without config.json" if path.is_dir() else "not a results JSON, a built-in model id, " \
        "a model directory or a hub id"
    raise ColakitError(f"--compare {name} is {what}",
                       "pass a results JSON from `colakit evaluate --out`, a built-in id from `colakit models "
                       "list`, a Hugging Face model directory (with config.json) or a hub id (owner/name)")


def _hub_id(name: str) -> bool:
    """``owner/name``, and not a path into a local folder (that would be a mistyped directory)."""
    owner = name.split("/", 1)[0]
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and owner not in (".", "..") \
        and not Path(owner).exists()


def _evaluate_with_progress(label: str, model: str, **kwargs) -> dict:
    """``evaluate_model`` with a task bar (ETA over tasks; the current task's items as the note) and
    one line per finished task."""
    from colakit.evaluate import evaluate_model, resolve_tasks

    suite = kwargs.pop("suite")
    n_tasks = len(resolve_tasks(suite, kwargs["limit"]))
    # the total comes with the first task: the ETA clock starts after the model has loaded
    with StageProgress(label, unit="task", console=console, note=model) as bar:
        def on_task(name, result):
            m = result["metrics"][result["primary"]]
            console.print(f"  {name}: {result['primary']} = {_fmt(m)} ({result['n']} items, "
                          f"{result['wall_time_s']} s)", markup=False, highlight=False)
            bar.update(total=n_tasks)
            bar.advance(note=f"{name} done")

        def on_items(name, done, total):
            bar.update(total=n_tasks, note=f"{name} {done}/{total}")

        return evaluate_model(model, suite, on_task=on_task, on_items=on_items, **kwargs)


@app.command("evaluate")
def evaluate_cmd(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Built-in id, model directory or hub id."),
    suite: str = typer.Option(DEFAULT_TASKS, "--suite", "--tasks", "-t",
                              help="quick, standard, full, or task names (comma-separated)."),
    limit: int = typer.Option(None, "--limit", "-n", help="At most N items per task (seeded subset)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Seed of the --limit subsets."),
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
    device_map: str = device_map_option(),
    max_memory: str = max_memory_option(),
    include_flagged: bool = typer.Option(False, "--include-flagged",
                                         help="Keep tasks whose dense model is at chance in capability averages."),
    power: bool = typer.Option(False, "--power",
                               help="Print the quick suite's power calculation (items per task, smallest "
                                    "detectable retention difference) and exit."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --out file that colakit did not write."),
    as_json: bool = json_option(),
):
    """Evaluate capabilities (perplexity, commonsense, knowledge, math, code, multilingual)."""
    from colakit.evaluate import EvalConfig, compare, read_results, resolve_tasks
    from colakit.evaluate.results import write_results
    from colakit.model.placement import check_device_map, parse_max_memory

    if power:
        _print_power(as_json)
        return

    if max_new_tokens is not None and max_new_tokens <= 0:
        raise ColakitError(f"--max-new-tokens must be positive, got {max_new_tokens}", "use e.g. 256")
    plan = resolve_tasks(suite, limit)
    check_device_map(device_map)  # before anything is printed or loaded
    parse_max_memory(max_memory)
    config = EvalConfig(seed=seed, chat=chat, max_new_tokens=max_new_tokens, ppl_seq_len=ppl_seq_len)
    # every file this run writes, and a --compare file it reads, is checked before the first model load
    what = "a colakit evaluation result"
    check_output(out, overwrite=overwrite, ours=_is_results, what=what)
    dense, dense_out = None, out.with_name(out.stem + ".dense.json")
    if compare_with and (compare_with.endswith(".json") or Path(compare_with).is_file()):
        dense = read_results(Path(compare_with))
    elif compare_with:
        _check_dense_model(compare_with)
        check_output(dense_out, overwrite=overwrite, ours=_is_results, what=what)
    kwargs = {"suite": suite, "limit": limit, "seed": seed, "device": device, "dtype": dtype, "config": config,
              "device_map": device_map, "max_memory": max_memory}

    console.print(f"evaluating {escape(model)} on {len(plan)} tasks: {escape(', '.join(plan))}")
    results = _evaluate_with_progress("evaluate", model, out=out, allow_overlap=allow_overlap, **kwargs)
    if compare_with:
        if dense is None:
            console.print(f"evaluating the dense model {escape(compare_with)} on the same tasks -> {escape(dense_out)}")
            dense = _evaluate_with_progress("evaluate dense", compare_with, out=dense_out, allow_overlap=True,
                                            **kwargs)
        results["retention"] = compare(results, dense, include_flagged=include_flagged)
        write_results(out, results)
    console.print(f"wrote {escape(out)} ({results['wall_time_s']} s)")
    if as_json:
        print_json(_summary(results, out))
        return
    _print_results(results)
    if compare_with:
        _print_retention(results["retention"])
