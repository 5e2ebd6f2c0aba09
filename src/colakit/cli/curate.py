"""``colakit curate`` and ``colakit inspect``: build and look at CalibrationSets."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import typer
from rich.table import Table

from colakit.cli.app import (
    app,
    console,
    device_map_option,
    escape,
    json_option,
    max_memory_option,
    parse_params,
    print_json,
)
from colakit.cli.app import out as stdout  # results; "out" is the --out option here
from colakit.curate.budget import check_budget
from colakit.data.spec import HELP as SPEC_HELP
from colakit.defaults import (
    DEFAULT_FORMAT,
    DEFAULT_HELDOUT_FRACTION,
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    DEFAULT_N,
    DEFAULT_PACKING,
    DEFAULT_SEED,
    DEFAULT_SEQ_LEN,
    DEFAULT_SOURCES,
    DEFAULT_TARGET,
)
from colakit.errors import ColakitError
from colakit.executors import EXECUTORS
from colakit.paths import check_output, output_dir
from colakit.progress import StageProgress


def _user_fields(specs: list[str], fields: dict[str, str]) -> list[str]:
    """``--field`` mappings onto every user spec (named sources carry their own fields)."""
    from colakit.data.sources import NAMED_SOURCES
    from colakit.data.spec import with_options
    from colakit.errors import ColakitError

    if not fields:
        return specs
    if all(s in NAMED_SOURCES for s in specs):
        raise ColakitError("--field maps your own data's fields, but every source is a named one",
                           "add your source to --sources (e.g. data.jsonl), or drop --field")
    return [s if s in NAMED_SOURCES else with_options(s, fields) for s in specs]



class _ConsoleLines(logging.Handler):
    """Log records as plain lines on the (stderr) console, above its spinner; specs are not markup."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(record.getMessage(), markup=False, highlight=False, soft_wrap=True)


def _report_splits() -> None:
    """Show the pipeline's one line per user source (documents per part) on stderr."""
    log = logging.getLogger("colakit.curate.pipeline.split")
    if not any(isinstance(h, _ConsoleLines) for h in log.handlers):
        log.addHandler(_ConsoleLines())
    log.setLevel(logging.INFO)
    log.propagate = False


@contextlib.contextmanager
def _feature_progress(label: str, note: str):
    """The command's one progress display (elapsed time, then the feature rows as each batch is done),
    as the ``progress(done, total)`` callback feature extraction calls: the library draws no bar of
    its own beside it."""
    with StageProgress(label, unit="feature rows", console=console, note=note) as bar:
        def on_rows(done, total):
            bar.update(completed=done, total=total, note="activation features")
        yield on_rows


@app.command(epilog=SPEC_HELP)
def curate(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the CalibrationSet."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Built-in id, model directory or hub id."),
    sources: str = typer.Option(",".join(DEFAULT_SOURCES), "--sources", "-s",
                                help="Comma-separated source specs: named sources (colakit sources list) or your "
                                "own files, folders, globs, saved or hub datasets (grammar below; a spec with a "
                                "comma goes in double quotes)."),
    method: str = typer.Option(DEFAULT_METHOD, "--method", help="Curation method (selector): cola, random, mix-uniform, "
                               "igsp, zipcal, self-gen, self-cal."),
    n: int = typer.Option(None, "--n", help=f"Number of calibration samples, the budget (default {DEFAULT_N}, or per "
                   "--compression)."),
    seq_len: int = typer.Option(None, "--seq-len", help=f"Tokens per sample (default {DEFAULT_SEQ_LEN}, or per --compression)."),
    compression: str = typer.Option(None, "--compression", help="sparsegpt, wanda, gptq or awq: the method the set is "
                                    "for; sets --n/--seq-len defaults (pruning 128 x 2048, AWQ 64 x 512)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Random seed: same inputs and seed give the same set."),
    fmt: str = typer.Option(DEFAULT_FORMAT, "--format", help="plain, qa, qa-cot or chat. Your own data needs the fields: "
                            "--field question=COL --field answer=COL (qa, qa-cot, chat) or --field messages=COL (chat)."),
    field_map: list[str] = typer.Option(None, "--field", help="ROLE=FIELD (repeatable) for your own sources: text, "
                                        "question, answer, reasoning, messages, e.g. --field question=prompt "
                                        "--field answer=response. A spec's own ?question=... wins."),
    heldout_fraction: float = typer.Option(DEFAULT_HELDOUT_FRACTION, "--heldout-fraction", help="Fraction of each source's documents "
                                           "held out of calibration, by a seeded hash of the document id. The "
                                           "default is the same for named sources and your own (whose counts are "
                                           "printed on stderr); 0 uses every document; ?heldout=F on one spec sets "
                                           "that source alone."),
    packing: str = typer.Option(DEFAULT_PACKING, "--packing", help="pack (concatenate + cut) or truncate (one doc each)."),
    pool: int = typer.Option(None, "--pool", help="Candidate windows per source (default max(8n, 256))."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="Warn instead of refusing on eval overlap."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing CalibrationSet at --out, once "
                                   "the new one is completely written."),
    target: str = typer.Option(DEFAULT_TARGET, "--target", help="general, language, commonsense, math, code or multilingual."),
    weights: str = typer.Option(None, "--weights", help="Capability weights, e.g. commonsense=1,math=2."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Method parameter NAME=VALUE (repeatable), e.g. -p n_init=5."),
    feature_layers: str = typer.Option("all", "--feature-layers", help="Layers probed: all, every:K or 0,5,9."),
    proj_dim: int = typer.Option(None, "--proj-dim", help="Random projection size (default: JL bound, eps 0.5)."),
    feature_pooling: str = typer.Option("mean", "--feature-pooling", help="mean (layer outputs) or moments "
                                        "(sketched second moments of the linears' inputs: GPTQ/SparseGPT Hessians)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:1 ..."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16."),
    device_map: str = device_map_option(),
    max_memory: str = max_memory_option(),
    executor: str = typer.Option("local", "--executor", help=f"Where sources and feature shards run: "
                                 f"{' or '.join(EXECUTORS)} (local: this process; ray: Ray workers, pip install "
                                 "'colakit\\[ray]'). Same result either way."),
    address: str = typer.Option(None, "--address", help="Ray cluster to join (e.g. auto, ray://head:10001); "
                                "default: start a local Ray with --workers CPUs."),
    workers: int = typer.Option(2, "--workers", help="Ray feature workers (actors), each loading the model once."),
    gpus_per_worker: float = typer.Option(0, "--gpus-per-worker", help="GPUs per Ray feature worker."),
    as_json: bool = json_option(),
):
    """Curate a CalibrationSet from SOURCES with METHOD and save it to OUT."""
    # the path first: a bad --out is refused before torch is even imported (seconds on a small machine)
    check_output(out, directory=True, overwrite=overwrite, ours=lambda p: (p / "manifest.json").is_file(),
                 what="a CalibrationSet (no manifest.json)")
    check_budget(n, seq_len, pool)  # --n 0 answers in under a second, not after the imports and the model
    from colakit.curate.coverage import parse_weights, target_weights
    from colakit.curate.features import FeatureConfig
    from colakit.curate.pipeline import CurateConfig, defaults_for
    from colakit.curate.pipeline import curate as run_curate
    from colakit.data.spec import parse_field_flags, split_specs
    from colakit.executors import get_executor

    target_weights(target, parse_weights(weights))  # a bad --target/--weights is refused now, not after the pool
    defaults = defaults_for(compression)
    n = defaults["n"] if n is None else n
    seq_len = defaults["seq_len"] if seq_len is None else seq_len
    specs = _user_fields(split_specs(sources), parse_field_flags(field_map or []))
    config = CurateConfig(model=model, compression=compression, sources=specs, method=method, n=n, seq_len=seq_len,
                          seed=seed, format=fmt, packing=packing, pool_per_source=pool, heldout_fraction=heldout_fraction,
                          allow_overlap=allow_overlap, target=target, weights=parse_weights(weights),
                          method_params=parse_params(param or [], "n_init=5"),
                          features=FeatureConfig(layers=feature_layers, proj_dim=proj_dim, device=device, dtype=dtype,
                                                   pooling=feature_pooling, device_map=device_map,
                                                   max_memory=max_memory))
    runner = get_executor(executor, address=address, workers=workers, gpus_per_worker=gpus_per_worker)
    _report_splits()
    t0 = time.time()
    with _feature_progress("curate", f"{n} x {seq_len} tokens from {sources} with {method} ({executor})") as bar, \
            output_dir(out) as dest:
        calib = run_curate(config, out=dest, executor=runner, features_progress=bar)
    seconds = time.time() - t0
    console.print(f"wrote {len(calib)} samples ({calib.num_tokens} tokens) to {escape(out)} in {seconds:.1f}s")
    if as_json:
        print_json({"out": str(out), "seconds": round(seconds, 3), **calib.summary()})
        return
    print(out)


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A CalibrationSet directory."),
    as_json: bool = json_option(),
):
    """Sample count, source mix, length distribution and token count of a CalibrationSet."""
    from colakit.calibset import CalibrationSet

    calib = CalibrationSet.load(path)
    summary = calib.summary()
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"CalibrationSet {escape(path)}", show_header=False)
    for key in ("samples", "tokens", "method", "model", "seed", "seq_len", "content_hash"):
        table.add_row(key, escape(summary[key]))
    length = summary["length"]
    table.add_row("length (tokens)", f"min {length['min']}  median {length['median']}  mean {length['mean']}  "
                                     f"max {length['max']}")
    table.add_row("sources", escape("  ".join(f"{k}: {v}" for k, v in summary["sources"].items())))
    stdout.print(table)
    example = calib.samples[0].text[:300].replace("\n", " ") if len(calib) else ""
    stdout.print(f"[dim]first sample:[/] {escape(example)}...", highlight=False)


@app.command()
def score(
    path: Path = typer.Argument(..., help="A CalibrationSet directory."),
    model: str = typer.Option(None, "--model", "-m", help="Model whose activations define the space (default: the set's)."),
    target: str = typer.Option(DEFAULT_TARGET, "--target", help="general, language, commonsense, math, code or multilingual."),
    weights: str = typer.Option(None, "--weights", help="Capability weights, e.g. math=2,code=1."),
    probes: int = typer.Option(16, "--probes", help="Probe windows per capability."),
    probes_from: str = typer.Option(
        "heldout", "--probes-from",
        help="heldout: probes from documents no curation stage reads (a selection never saw them); "
             "calibration: the probes curation itself uses."),
    feature_layers: str = typer.Option("all", "--feature-layers", help="Layers probed: all, every:K or 0,5,9."),
    device: str = typer.Option("auto", "--device"),
    device_map: str = device_map_option(),
    max_memory: str = max_memory_option(),
    as_json: bool = json_option(),
):
    """Representativeness, diversity and proxy score of a CalibrationSet, without compressing anything."""
    from colakit.curate.coverage import parse_weights, target_weights
    from colakit.curate.features import FeatureConfig
    from colakit.curate.score import PROBE_SPLITS, SCORE_KEYS, score_set

    target_weights(target, parse_weights(weights))  # before the model loads
    if probes_from not in PROBE_SPLITS:
        raise ColakitError(f"--probes-from {probes_from!r} is not a split", f"use one of: {', '.join(PROBE_SPLITS)}")

    with _feature_progress("score", "in activation space") as bar:
        result = score_set(path, model=model, target=target, weights=parse_weights(weights),
                           probes_per_capability=probes, probes_from=probes_from,
                           features=FeatureConfig(layers=feature_layers, device=device, device_map=device_map,
                                                  max_memory=max_memory),
                           features_progress=bar)
    if as_json:
        print_json(result)
        return
    seen = ("documents no stage of curation read" if probes_from == "heldout"
            else "the documents curation's probes come from")
    table = Table(title=f"{escape(path)} ({escape(target)})", show_header=False,
                  caption=f"probes: {probes} per capability from the {probes_from} part of each source ({seen})")
    for key in SCORE_KEYS:
        table.add_row(key, f"{result[key]:.4f}")
    for cap, value in result["coverage"].items():
        table.add_row(escape(f"coverage[{cap}] (w={result['weights'][cap]:g})"), f"{value:.4f}")
    stdout.print(table)
