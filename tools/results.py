"""README and docs figures from results files: ``make results`` writes them, ``make results-check`` checks them.

A figure cites its results file in a marker, and everything between the marker and ``<!-- /results -->``
is generated (markers are HTML comments: GitHub does not show them)::

    <!-- results results/demo headline -->        a block: the headline retention table
    ...
    <!-- /results -->
    COLA keeps <!-- results results/demo mean gptq-w4 cola -->0.901<!-- /results --> ...   inline

A results file is a run directory snapshot, kept in the repository under ``results/`` by ``snapshot``:
the figures read its ``run.json``, ``results.csv`` and ``head_to_head.csv`` (when the config asked for
it), as ``colakit run`` wrote them. A snapshot also keeps the rest of the run's evidence (each cell's
record, per-item evaluation and compression report, the calibration sets; no models), so ``restore``
gives a later session a run directory that ``colakit run`` resumes with more seeds. Kinds:
``headline`` (table), ``tasks`` (retention per task), ``fractions`` (each task's retention over the
best single source's), ``proxies`` (Spearman's rho of the proxy scores
with mean retention), ``verdicts`` (one line per curation against the baseline, as ``colakit report``
prints them), ``head-to-head`` (the config's head_to_head tests, a line each), ``verdict COMPRESSION
CURATION`` (that line alone), ``mean COMPRESSION CURATION [CAPABILITY]`` (mean retention, ± its
spread), ``delta COMPRESSION CURATION`` (mean retention minus the baseline's), ``task COMPRESSION
CURATION TASK`` (one task's retention), ``fraction COMPRESSION CURATION [TASK]`` (of the best single
source: on TASK, or the lowest and its task), ``rho SCORE COMPRESSION [CURATION ...]`` (one proxy
score's Spearman rho with mean retention within a compression, over the cells of the named curations
if any), ``made`` (the version, commit and config that made the run);
``KEY=VALUE`` picks a swept setting (``mean gptq-w4 cola seq_len=256``), and ``seed=N`` one seed of a
multi-seed run (every kind but ``head-to-head``, which pools the seeds).

``check`` fails (exit 1), naming the file, the figure and the fix, when a generated figure differs
from what its results file gives, or when the results file is stale: colakit records in run.json a
digest of the defaults behind each part of a result (``colakit.provenance.defaults_digests``:
curation, evaluation, each compression and curation method), and a file whose digests for the parts
it used differ from the code's was made with other defaults than the code now has. A change that
moves no default (a refactor, a new method) leaves every file current; a results file made from a
tree with uncommitted changes is reported, not failed. It also fails when a snapshot's cell records
disagree with its results.csv (status, config digest, commit).

    python tools/results.py snapshot runs/demo results/demo    # after `colakit run configs/demo.yaml`
    python tools/results.py restore results/q3 runs/q3         # then: colakit run configs/q3.yaml --out runs/q3
    python tools/results.py keep runs/q3 results/q3            # a session's finished cells, tables unchanged
    python tools/results.py write                               # regenerate every marked figure
    python tools/results.py check                               # what CI runs
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs")
MARKER = re.compile(r"<!-- results (?P<file>\S+) (?P<kind>[\w-]+)(?P<args>[^>]*?) -->(?P<body>.*?)<!-- /results -->",
                    re.S)
SNAPSHOT_FILES = ("run.json", "results.csv")  # what a snapshot needs; it keeps all the run's evidence


def documents(root: Path = ROOT) -> list[Path]:
    out = []
    for name in DOCS:
        path = root / name
        out += sorted(path.rglob("*.md")) if path.is_dir() else [path] if path.is_file() else []
    return out


def _run(root: Path, file: str):
    from colakit.report.data import load_run

    path = root / file
    if not (path / "run.json").is_file() or not (path / "results.csv").is_file():
        raise ValueError(f"{file} is not a results snapshot (run.json + results.csv)")
    return load_run(path)


def _pick(items, run, compression: str, curation: str, settings: dict, what: str, curation_free: bool = False):
    """The one item of (compression, curation) whose swept settings include ``settings`` (``curation_free``:
    items of a whole compression block, which have no curation)."""
    found = [x for x in items if x.compression == compression and (curation_free or x.curation == curation)
             and settings.items() <= dict(x.settings).items()]
    if len(found) != 1:
        raise ValueError(f"{len(found)} {what} for {compression} x {curation} {settings or ''} in {run.root.name} "
                         f"(compressions {run.compressions}, curations {run.curations}; a swept setting "
                         "is picked with KEY=VALUE)")
    return found[0]


def render(root: Path, file: str, kind: str, args: list[str]) -> str:
    """The text a marker stands for; a block kind is wrapped in newlines."""
    from colakit.errors import ColakitError
    from colakit.report import data as d
    from colakit.report.markdown import fraction_markdown, headline_markdown, proxy_markdown, task_markdown

    settings = dict(a.split("=", 1) for a in args if "=" in a)
    args = [a for a in args if "=" not in a]
    run = _run(root, file)
    if "seed" in settings:  # one seed of a multi-seed run; head_to_head.csv pools the seeds, so it has none
        if kind == "head-to-head":
            raise ValueError(f"head-to-head in {file} pools its seeds: drop seed={settings['seed']}")
        try:
            run = d.seed_slice(run, settings.pop("seed"))
        except ColakitError as err:
            raise ValueError(str(err)) from None
    if kind == "headline":
        return "\n" + headline_markdown(run, d.headline_table(run))
    if kind == "tasks":
        return "\n" + task_markdown(run).rstrip("\n") + "\n"
    if kind == "proxies":
        return "\n" + proxy_markdown(run, d.cell_scores(run))
    if kind == "fractions":
        return "\n" + fraction_markdown(run).rstrip("\n") + "\n"
    if kind == "verdicts":
        return "\n" + "".join(f"- {v.line()}\n" for v in d.verdicts(run))
    if kind == "head-to-head":
        return "\n" + "".join(f"- {h.line()}\n" for h in d.head_to_head(run))
    if kind == "made":
        return d.made_with(run.meta)
    if kind == "task" and len(args) == 3:  # the retention of one task, under the metric the report uses for it
        metric = {task: r.metric for (_, task), r in d.select_rows(run).items()}
        rows = [t for t in d.task_details(run) if t.task == args[2] and t.metric == metric.get(args[2])]
        return d.fmt_value(_pick(rows, run, *args[:2], settings, f"{args[2]} rows").retention)
    if kind == "rho" and len(args) >= 2:  # one score's Spearman rho with mean retention within one compression
        from colakit.report.markdown import rho_text

        found = {c.score: c for c in d.score_correlations(run, d.cell_scores(run))}
        if args[0] not in found or args[1] not in found[args[0]].by_compression:
            raise ValueError(f"no rho of {args[0]!r} within {args[1]!r} in {file} (scores: {', '.join(found)}; "
                             f"compressions: {', '.join(run.compressions)})")
        if len(args) == 2:
            return rho_text(*found[args[0]].by_compression[args[1]])
        # over the cells of some curations only (e.g. the single sources): a question the report does not ask
        unknown = [c for c in args[2:] if c not in run.curations]
        if unknown:
            raise ValueError(f"no curation {unknown[0]!r} in {file} (curations: {', '.join(run.curations)})")
        return rho_text(*d.rho_within(run, found[args[0]].points, args[1], args[2:]))
    if kind == "fraction" and len(args) in (2, 3):  # of the best single source: one task's, or the lowest and where
        block = _pick(d.fraction_of_best(run), run, args[0], "", settings, "fraction blocks", curation_free=True)
        fractions = block.fractions.get(args[1])
        if not fractions:
            raise ValueError(f"no fractions for {args[1]!r} in {file} (curations: {', '.join(block.fractions)})")
        if len(args) == 3:
            return d.fmt(fractions[args[2]])
        task = min(fractions, key=fractions.get)
        return f"{d.fmt(fractions[task])} ({task})"
    if kind in ("mean", "delta", "verdict") and len(args) >= 2:
        if kind in ("verdict", "delta"):
            verdict = _pick(d.verdicts(run), run, *args[:2], settings, "verdicts")
            return verdict.line() if kind == "verdict" else f"{verdict.delta:+.3f}"
        column = args[2] if len(args) > 2 else d.MEAN
        entry = _pick(d.headline_table(run).rows, run, *args[:2], settings, "headline rows").entries.get(column)
        if entry is None:
            raise ValueError(f"no {column!r} column in {file}'s headline")
        return d.fmt_value(entry.value)
    raise ValueError(f"unknown figure {kind!r} {' '.join(args)} (kinds: headline, tasks, fractions, proxies, verdicts, "
                     "head-to-head, verdict, mean, delta, task, fraction, rho, made; mean/delta/verdict/fraction take "
                     "COMPRESSION CURATION, task also TASK, fraction optionally TASK; rho takes SCORE COMPRESSION [CURATION ...])")


def stale_parts(meta: dict) -> list[str]:
    """The parts of the defaults (``defaults_digests``) that changed since the run of ``meta`` (its run.json)."""
    from colakit.provenance import defaults_digests

    config = meta.get("config") or {}
    used = ["curate", "evaluate"]
    used += [f"compress.{c['method']}" for c in (config.get("compression") or {}).values()]
    used += [f"select.{c['method']}" for c in (config.get("curation") or {}).values()]
    made, now = meta.get("defaults") or {}, defaults_digests()
    return [part for part in dict.fromkeys(used) if made.get(part) != now.get(part)]


def _first_difference(have: str, want: str) -> tuple[str, str]:
    """The first line where a generated figure and its text differ (the whole text when it is one line)."""
    for a, b in zip(have.strip().splitlines() or [""], want.strip().splitlines() or [""]):
        if a != b:
            return a[:160], b[:160]
    return have.strip()[-160:], want.strip()[-160:]  # one is a prefix of the other


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def process(root: Path = ROOT, write: bool = False) -> tuple[list[str], list[str]]:
    """(problems, notes) over every document; with ``write``, generated figures are rewritten first."""
    problems, notes, seen = [], [], {}
    for doc in documents(root):
        text = doc.read_text(encoding="utf-8")
        rel = doc.relative_to(root)

        def replace(m: re.Match) -> str:
            where = f"{rel}:{_line(text, m.start())}"
            try:
                want = render(root, m["file"], m["kind"], m["args"].split())
            except (ValueError, OSError) as err:
                problems.append(f"{where}: {err}")
                return m[0]
            seen.setdefault(m["file"], where)
            if m["body"] != want and not write:
                have, give = _first_difference(m["body"], want)
                problems.append(f"{where}: the {m['kind']} figure from {m['file']} reads {have!r} where the file "
                                f"gives {give!r}: run `make results`")
            return m[0][:m.start("body") - m.start()] + want + "<!-- /results -->"

        new = MARKER.sub(replace, text)
        if write and new != text:
            doc.write_text(new, encoding="utf-8")
            notes.append(f"wrote {rel}")
    for file, where in seen.items():
        problems += evidence_problems(root, file)
        meta = json.loads((root / file / "run.json").read_text())
        stale = stale_parts(meta)
        if stale:
            config = (meta.get("config") or {}).get("name", file)
            problems.append(f"{file} (cited at {where}) is stale: the defaults of {', '.join(stale)} changed since it "
                            f"was made at commit {str(meta.get('git_commit'))[:7]}: rerun its config ({config}) with "
                            f"`colakit run`, then `python tools/results.py snapshot RUNDIR {file}` and `make results`")
        if meta.get("git_dirty"):
            notes.append(f"note: {file} was made from a tree with uncommitted changes (commit "
                         f"{str(meta.get('git_commit'))[:7]})")
    return problems, notes


def snapshot(rundir: Path, dest: Path) -> None:
    """Copy a run directory's evidence (``RunDir.evidence_files``: run.json, results.csv, each cell's
    record, evaluation and compression report, the calibration sets; no models) to ``dest``. The figures
    read run.json and results.csv; the rest lets a later session add seeds or cells to the run
    (``restore``, then ``colakit run``) and keeps the per-item results the paired tests need."""
    from colakit.grid.rundir import RunDir

    missing = [f for f in SNAPSHOT_FILES if not (rundir / f).is_file()]
    if missing:
        raise SystemExit(f"error: {rundir} lacks {', '.join(missing)}: pass a finished `colakit run` directory")
    files = RunDir(rundir).evidence_files()
    tmp = dest.with_name(f".{dest.name}.tmp")  # a snapshot is replaced whole: no cell of an older run stays
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in files:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rundir / rel, tmp / rel)
    from colakit.cache import replace_dir

    replace_dir(tmp, dest)
    print(f"{dest}: {len(files)} files", file=sys.stderr)
    print(dest)


def _copy_missing(source: Path, files: list[Path], dest: Path, fix: str) -> None:
    """Copy ``files`` (relative) from ``source`` to ``dest``, leaving those ``dest`` has with the same bytes;
    one that differs stops the copy before anything is copied (nothing the user had is changed)."""
    clash = [rel for rel in files if (dest / rel).exists() and (dest / rel).read_bytes() != (source / rel).read_bytes()]
    if clash:
        raise SystemExit(f"error: {dest} already has {len(clash)} of these files with other contents "
                         f"(e.g. {clash[0]}): {fix}")
    for rel in files:
        if not (dest / rel).exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, dest / rel)


def restore(source: Path, rundir: Path) -> None:
    """Copy snapshot ``source`` into run directory ``rundir``, so ``colakit run`` resumes it (adds seeds,
    cells) without redoing what the snapshot holds. A file already in ``rundir`` is left as it is when it
    has the same bytes; one that differs stops the restore before anything is copied."""
    from colakit.grid.rundir import RunDir

    if not (source / "run.json").is_file():
        raise SystemExit(f"error: {source} is not a results snapshot (no run.json): pass e.g. results/pareto")
    files = RunDir(source).evidence_files()
    if not any(source.glob("cells/*/cell.json")):
        raise SystemExit(f"error: {source} holds no cells (a snapshot made before snapshots kept the evidence): "
                         "it cannot be resumed; run its config again")
    _copy_missing(source, files, rundir, f"restore into a new directory, or move {rundir} aside")
    print(f"{rundir}: {len(files)} files from {source}; resume with `colakit run CONFIG --out {rundir}`",
          file=sys.stderr)


def keep(rundir: Path, dest: Path) -> None:
    """Add to snapshot ``dest`` the finished cells of ``rundir`` that it lacks (their records, evaluations,
    compression reports) and the calibration sets, leaving its tables (run.json, results.csv,
    head_to_head.csv) and so every figure that cites it as they are. For a study that spans sessions:
    what a session finished survives in the repository, and ``restore`` gives it back to ``colakit run``
    before the tables are rewritten with the new seeds (then ``snapshot``)."""
    from colakit.grid.rundir import RunDir

    if not (dest / "run.json").is_file():
        raise SystemExit(f"error: {dest} is not a results snapshot (no run.json): `snapshot` it first")
    run = RunDir(rundir)
    finished = {record.parent.name for record in run.cells.glob("*/cell.json")
                if json.loads(record.read_text()).get("status") == "ok"}
    files = [rel for rel in run.evidence_files() if len(rel.parts) > 1  # not the tables
             and (rel.parts[0] != "cells" or rel.parts[1] in finished)]
    new = [rel for rel in files if not (dest / rel).exists()]
    _copy_missing(rundir, files, dest, f"those cells differ from the snapshot's: `snapshot` {rundir} whole instead")
    cells = sorted({rel.parts[1] for rel in new if rel.parts[0] == "cells"})
    print(f"{dest}: {len(new)} new files, {len(cells)} cells ({', '.join(cells) or 'none'}); "
          f"its tables are unchanged", file=sys.stderr)


def evidence_problems(root: Path, file: str) -> list[str]:
    """Where a snapshot's table and its cells' records disagree (none when it keeps no cells)."""
    import csv

    path = root / file
    if not any(path.glob("cells/*/cell.json")):  # a snapshot made before snapshots kept the cells' records
        return []
    problems = []
    with open(path / "results.csv", newline="") as fh:
        table = {r["cell"]: r for r in csv.DictReader(fh)}
    for cell, row in table.items():
        record = path / "cells" / cell / "cell.json"
        if not record.is_file():
            problems.append(f"{file}: results.csv has cell {cell} but cells/{cell}/cell.json is missing")
            continue
        made = json.loads(record.read_text())
        for key in ("status", "config_hash", "git_commit"):
            if row.get(key) and str(made.get(key, "")) != row[key]:
                problems.append(f"{file}: cell {cell}'s {key} is {made.get(key)!r} in cell.json, {row[key]!r} in "
                                "results.csv")
    if problems:
        problems[-1] += ": snapshot the run directory again (`python tools/results.py snapshot RUNDIR DEST`)"
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write", help="regenerate every marked figure in README.md and docs/")
    sub.add_parser("check", help="fail when a figure differs from its results file, or the file is stale")
    snap = sub.add_parser("snapshot", help="copy RUNDIR's evidence (no models) to DEST (e.g. results/demo)")
    snap.add_argument("rundir", type=Path)
    snap.add_argument("dest", type=Path)
    back = sub.add_parser("restore", help="copy snapshot SOURCE into RUNDIR, for `colakit run` to resume")
    back.add_argument("source", type=Path)
    back.add_argument("rundir", type=Path)
    add = sub.add_parser("keep", help="add RUNDIR's finished cells to snapshot DEST, leaving its tables as they are")
    add.add_argument("rundir", type=Path)
    add.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        snapshot(args.rundir, args.dest)
        return 0
    if args.command == "restore":
        restore(args.source, args.rundir)
        return 0
    if args.command == "keep":
        keep(args.rundir, args.dest)
        return 0
    problems, notes = process(ROOT, write=args.command == "write")
    for line in notes:
        print(line, file=sys.stderr)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if not problems:
        print(f"results: every figure matches its results file ({len(documents())} documents)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
