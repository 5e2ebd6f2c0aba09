"""Sources over the user's own data: local files of every common format, saved datasets, hub datasets.

The spec grammar is ``colakit.data.spec``; the file readers are ``colakit.data.readers``. Every
source streams its documents (memory does not grow with its size) and names the file and the line
or row of anything it cannot read.

Text of a record: ``field`` (default ``text``), or ``template`` over several fields; a spec that maps
Q&A fields (``question``/``answer``) or ``messages`` but has no text field gets its text from them
(question, reasoning and answer separated by blank lines; the messages' contents). Format fields
are read only when the format needs them (``check(fmt)``), so plain text never depends on them;
columns literally named ``question`` and ``answer`` (or ``messages``) map themselves.

Document ids: ``FILE:LINE`` (JSON Lines, CSV: the line the record starts on), ``FILE:ROW`` (Parquet,
from 0), ``FILE:INDEX`` (a JSON array), ``FILE#PARAGRAPH`` (one text file), ``FILE`` (a text file in a
directory or glob), ``NAME:ROW`` (datasets); FILE is relative to the directory or the glob's fixed
part, so ids do not depend on where the data lives.
"""

from __future__ import annotations

import glob
import os
import re
import string
from pathlib import Path
from typing import Iterator

from colakit.cache import sha256_file
from colakit.data.base import Document, Source
from colakit.data.readers import file_kind, first_record, paragraphs, parquet_file, read_text, records, resolve_files
from colakit.data.spec import FORMAT_FIELDS, SPEC_FORMS, SourceSpec
from colakit.errors import ColakitError

QA_FORMATS = ("qa", "qa-cot")
MAP_HINT = ("map them with --field question=COL --field answer=COL (or ?question=COL&answer=COL in the spec), "
            "or use --format plain")


def _unescape(template: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` in a template typed on a command line."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], template)


def _fields_of(record: dict) -> str:
    return ", ".join(map(str, record)) or "none"


class RecordPlan:
    """How a record (a dict) becomes a ``Document``: its text, and the fields a format needs."""

    def __init__(self, spec: SourceSpec, legacy_kind: str | None):
        self.spec, self.legacy_kind = spec, legacy_kind
        self.field = spec.option("field")
        self.template = _unescape(spec.option("template")) if spec.option("template") else None
        self.template_names: list[str] = []
        if self.template is not None:
            try:
                names = [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]
            except ValueError as err:
                raise ColakitError(f"cannot read template {spec.option('template')!r} ({err})",
                                   "name fields in braces, e.g. template={question}\\n\\n{answer}; write {{ for a brace")
            bad = [n for n in names if not n or re.search(r"[.\[\]]", n)]
            if bad or not names:
                raise ColakitError(f"template {spec.option('template')!r} must name fields in braces",
                                   "e.g. template={question}\\n\\n{answer} (plain names only)")
            self.template_names = list(dict.fromkeys(names))
        self.mapping = {role: spec.options[role] for role in FORMAT_FIELDS if role in spec.options}
        self.explicit = bool(self.mapping)
        self.derived = False  # text from the format fields (no text field)
        self.active = self.explicit  # read the format fields (a format needs them, or the text does)
        self.columns_seen: list[str] | None = None

    def adapt(self, columns: list[str] | None) -> None:
        """Fill in what the data's first record (or schema) decides: self-mapping names, derived text."""
        if self.columns_seen is not None or columns is None:
            return
        self.columns_seen = list(columns)
        if not self.mapping:
            if "question" in columns and "answer" in columns:
                self.mapping = {r: r for r in ("question", "reasoning", "answer") if r in columns}
            elif "messages" in columns:
                self.mapping = {"messages": "messages"}
        if self.mapping and self.template is None and self.field is None and "text" not in columns:
            self.derived = self.active = True  # the text is built from the format fields

    @property
    def text_field(self) -> str:
        return self.field or "text"

    def columns(self) -> list[str]:
        """Columns to read (Parquet and datasets read only these)."""
        cols = list(self.template_names) if self.template is not None else ([] if self.derived else [self.text_field])
        if self.active:
            cols += [c for c in self.mapping.values() if c not in cols]
        return cols

    def check(self, fmt: str, where: str, name: str) -> None:
        """Raise, naming the source and its fields, when ``fmt`` or the text cannot be built."""
        cols = self.columns_seen
        if fmt in QA_FORMATS and not {"question", "answer"} <= set(self.mapping):
            raise ColakitError(f"source {name!r} has no question/answer fields for --format {fmt} "
                               f"(fields: {', '.join(cols) if cols else 'unknown'})", MAP_HINT)
        if fmt == "chat" and "messages" not in self.mapping and not {"question", "answer"} <= set(self.mapping):
            raise ColakitError(f"source {name!r} has no messages (or question/answer) fields for --format chat "
                               f"(fields: {', '.join(cols) if cols else 'unknown'})",
                               "map them with --field messages=COL, or --field question=COL --field answer=COL")
        if fmt != "plain":
            self.active = True
        if cols is None:
            return
        needed = {"text field": [] if self.derived or self.template is not None else [self.text_field],
                  "template field": self.template_names,
                  "format field": list(self.mapping.values()) if self.active else []}
        for what, names in needed.items():
            missing = [c for c in names if c not in cols]
            if missing:
                hint = ("name the text field with ?field=COL (or --field text=COL), or build it with "
                        "?template={a}\\n\\n{b}" if what == "text field" else
                        "check the names (fields are case-sensitive)")
                raise ColakitError(f"{where} has no {what} {missing[0]!r} (fields: {', '.join(map(str, cols))})", hint)

    def _scalar(self, record: dict, name: str, where: str) -> str:
        value = record.get(name)
        if value is None:
            raise ColakitError(f"{where} has no field {name!r} (fields: {_fields_of(record)})",
                               "give every record the field, or map another one")
        if isinstance(value, (str, int, float, bool)):
            return str(value)
        raise ColakitError(f"{where}: field {name!r} is {type(value).__name__}, not text",
                           "map a string (or number) field")

    def _messages(self, record: dict, name: str, where: str) -> list[dict]:
        value = record.get(name)
        ok = isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
        if not ok:
            raise ColakitError(f"{where}: field {name!r} is not a list of {{role, content}} messages",
                               'write e.g. [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]')
        return [{"role": m["role"], "content": m["content"]} for m in value]

    def document(self, record, where: str, doc_id: str, source: str) -> Document | None:
        if not isinstance(record, dict):
            raise ColakitError(f"{where} is a JSON {type(record).__name__}, not an object",
                               "write one JSON object per line")
        fields = None
        if self.active and self.mapping:
            fields = {role: (self._messages(record, col, where) if role == "messages" else self._scalar(record, col, where))
                      for role, col in self.mapping.items()}
            if "question" in fields:
                fields.setdefault("reasoning", "")  # render() reads it; empty: no reasoning chain
        if self.template is not None:
            text = self.template.format_map({n: self._scalar(record, n, where) for n in self.template_names})
        elif self.derived:
            text = ("\n\n".join(m["content"] for m in fields["messages"]) if "messages" in fields else
                    "\n\n".join(fields[r] for r in ("question", "reasoning", "answer") if fields.get(r)))
        else:
            text = _check_text(record.get(self.text_field), where, self.text_field, record, self.legacy_kind)
        if text is None or not text.strip():
            return None
        return Document(text, source, doc_id, fields)


def _check_text(value, where: str, fld: str, record: dict, legacy_kind: str | None) -> str | None:
    if value is None:
        example = f"{legacy_kind}:PATH:{fld if fld != 'text' else 'content'}" if legacy_kind else "PATH?field=COL"
        raise ColakitError(f"{where} has no field {fld!r} (fields: {_fields_of(record)})",
                           f"name the text field, e.g. {example}, or build it with ?template={{a}}\\n\\n{{b}}")
    if not isinstance(value, str):
        raise ColakitError(f"{where}: field {fld!r} is {type(value).__name__}, not text",
                           "point the spec at a string field")
    return value if value.strip() else None


def _check_limit(docs: Iterator[Document], limit: int | None) -> Iterator[Document]:
    for i, doc in enumerate(docs):
        if limit is not None and i >= limit:
            return
        yield doc


class FileSource(Source):
    """Local files: one, a directory (recursive) or a glob, of any record or text kind, compressed or not."""

    user = True

    def __init__(self, spec: SourceSpec, **kw):
        self.spec = spec
        kind = spec.kind
        what = {"text": "text path", "jsonl": "JSONL file", "parquet": "Parquet file"}.get(kind or "", "path")
        self.base, paths, self.single = resolve_files(spec.where, kind, what)
        comp = spec.option("compression")
        self.files = []
        for p in paths:
            found, compression = file_kind(p, comp)
            k = kind or found
            if k is None:
                raise ColakitError(f"cannot tell the format of {str(p)!r} from its name",
                                   "name it: jsonl:PATH, json:PATH, csv:PATH, parquet:PATH or text:PATH")
            if k == "csv" and found == "tsv":
                k = "tsv"
            self.files.append((p, k, compression))
        kinds = {k for _, k, _ in self.files}
        self.paragraphs = self.single and kinds == {"text"}
        if "text" in kinds and (set(spec.options) & {"field", "template", *FORMAT_FIELDS}):
            raise ColakitError(f"source {spec.text!r} reads text files, which have no fields",
                               "drop field/template/question/... or use jsonl, csv or parquet data")
        legacy_kind = kind if spec.legacy and kind in ("jsonl", "parquet") else None
        self.plan = RecordPlan(spec, legacy_kind)
        if spec.legacy and kind in ("jsonl", "parquet"):
            name = f"{kind}:{spec.where}:{self.plan.text_field}"
        elif spec.legacy and kind == "text":
            name = f"text:{spec.where}"
        else:
            name = spec.text
        desc = {"jsonl": "local JSONL records", "parquet": "local Parquet rows", "text": "local text files"}
        super().__init__(name, desc.get(kind or "", "local files"), str(Path(spec.where).expanduser().resolve()),
                         **_split_kw(spec, kw))
        first = self.files[0]
        if first[1] == "parquet":  # a schema costs nothing: unknown columns fail here, before any work
            names = parquet_file(first[0]).schema_arrow.names
            self.plan.adapt(names)
            if legacy_kind and self.plan.text_field not in names:
                raise ColakitError(f"{spec.where!r} has no column {self.plan.text_field!r} (columns: {', '.join(names)})",
                                   "name the text column, e.g. parquet:PATH:COLUMN")
            self.plan.check("plain", str(first[0]), self.name)

    def _rel(self, path: Path) -> str:
        return path.name if self.single else path.relative_to(self.base).as_posix()

    def _prepare(self) -> None:
        path, kind, comp = self.files[0]
        if kind != "text" and self.plan.columns_seen is None:
            record = first_record(path, kind, comp)
            self.plan.adapt(list(record) if isinstance(record, dict) else None)

    def check(self, fmt: str = "plain") -> None:
        if self.files[0][1] == "text":
            if fmt != "plain":
                raise ColakitError(f"source {self.name!r} is plain text: --format {fmt} needs question/answer "
                                   "(or messages) fields", "use JSON Lines, CSV or Parquet data with those fields, "
                                   "or --format plain")
            return
        self._prepare()
        self.plan.check(fmt, f"{self.files[0][0]} (first record)", self.name)

    def _documents(self) -> Iterator[Document]:
        self._prepare()
        return _check_limit(self._all_documents(), self.spec.option("limit"))

    def _all_documents(self) -> Iterator[Document]:
        for path, kind, comp in self.files:
            rel = self._rel(path)
            if kind == "text" and self.paragraphs:
                for i, para in enumerate(paragraphs(path, comp)):
                    yield Document(para, self.name, f"{rel}#{i}")
            elif kind == "text":
                text = read_text(path, comp)
                if text.strip():
                    yield Document(text, self.name, rel)
            else:
                for label, n, record in records(path, kind, comp, self.plan.columns()):
                    doc = self.plan.document(record, f"{path} {label} {n}", f"{rel}:{n}", self.name)
                    if doc is not None:
                        yield doc

    def _content_hashes(self):
        return [sha256_file(p) for p, _, _ in self.files]


def _split_kw(spec: SourceSpec, kw: dict) -> dict:
    """The split parameters, with the spec's own ``heldout=`` over the run's fraction."""
    return {**kw, **({"heldout_fraction": spec.option("heldout")} if "heldout" in spec.options else {})}


def is_saved_dataset(path: Path) -> bool:
    """A directory written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or
                              ((path / "state.json").is_file() and (path / "dataset_info.json").is_file()))


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _split_name(split: str) -> str:
    return split.split("[", 1)[0].strip()


def _bounds(split: str | None, name: str, length: int | None) -> tuple[int, int | None]:
    """[from, to) rows of ``split`` (``train[:1000]``, ``train[10%:20%]``) via ``datasets.ReadInstruction``."""
    if not split or "[" not in split:
        return 0, None
    from datasets import ReadInstruction  # datasets loads only for datasets

    try:
        instructions = ReadInstruction.from_spec(split)
        if length is None and ("%" in split or "-" in split):
            raise ColakitError(f"split {split!r}: a percent or negative slice needs the split's size, which this "
                               "streamed dataset does not publish", "use an absolute slice, e.g. train[:1000]")
        absolute = instructions.to_absolute({_split_name(split): length if length is not None else 2**62})
    except ColakitError:
        raise
    except (ValueError, AssertionError) as err:
        raise ColakitError(f"cannot read split {split!r} ({err})",
                           "write NAME or NAME[SLICE], e.g. train, train[:1000], train[10%:20%]") from err
    if len(absolute) != 1:
        raise ColakitError(f"split {split!r} joins several splits", "give one split per source (one spec each)")
    a = absolute[0]
    return a.from_, (a.to if length is not None or a.to != 2**62 else None)


class DatasetSource(Source):
    """A ``datasets`` dataset: a ``save_to_disk`` folder (memory-mapped), a local data folder or file
    (``load_dataset(..., streaming=True)``, no hub), or a hub dataset (streamed; needs the hub)."""

    user = True

    def __init__(self, spec: SourceSpec, **kw):
        self.spec, self.where = spec, spec.where
        path = Path(spec.where).expanduser()
        self.local = path.exists()
        self.saved = is_saved_dataset(path)
        self.config, self.split = spec.option("config"), spec.option("split")
        if self.saved and self.config is not None and self.split is None:
            self.config, self.split = None, self.config  # saved data has no configs: hf:PATH:SPLIT
        if spec.legacy:
            name = ":".join(["hf", spec.where] + [p for p in (self.config, self.split) if p])
        else:
            name = spec.text
        self.label = path.name if self.local else spec.where  # doc ids: NAME:ROW
        self.plan = RecordPlan(spec, None)
        origin = str(path.resolve()) if self.local else f"https://huggingface.co/datasets/{spec.where}"
        super().__init__(name, "saved dataset" if self.saved else "Hugging Face dataset", origin, **_split_kw(spec, kw))
        self._obj = None

    def _fail(self, err: Exception) -> ColakitError:
        msg = str(err).splitlines()[0][:200] if str(err) else ""
        where = "from disk" if self.local else "from the Hugging Face hub"
        hint = ("check the name/config/split and network access, or use a local file "
                f"({SPEC_FORMS})") if not self.local else "check that the folder holds a dataset (save_to_disk or data files)"
        return ColakitError(f"cannot load {self.name} {where} ({type(err).__name__}: {msg})", hint)

    def _load(self):
        """(dataset, first row, end row or None, streamed)."""
        if self._obj is not None:
            return self._obj
        import datasets  # heavy; only datasets sources need it

        if not self.local and _hub_offline():
            raise ColakitError(f"cannot load {self.name}: HF_HUB_OFFLINE is set, the hub is unreachable",
                               "unset HF_HUB_OFFLINE on a machine with hub access, or use local data (a file, a folder, "
                               "or a save_to_disk dataset: see colakit sources --help)")
        split = self.split
        try:
            if self.saved:
                if self.config is not None:
                    raise ColakitError(f"{self.where!r} is a saved dataset: it has no configs", "drop config")
                obj = datasets.load_from_disk(str(Path(self.where).expanduser()))
                if isinstance(obj, datasets.DatasetDict):
                    names = list(obj)
                    want = _split_name(split) if split else ("train" if "train" in names else
                                                             names[0] if len(names) == 1 else None)
                    if want not in names:
                        raise ColakitError(f"{self.where!r} is a DatasetDict with splits {', '.join(names)}",
                                           f"pick one: ?split={names[0]} (a slice too: ?split={names[0]}[:1000])")
                    obj = obj[want]
                start, end = _bounds(split, _split_name(split) if split else "", len(obj))
                self._obj = (obj, start, len(obj) if end is None else min(end, len(obj)), False)
                return self._obj
            base = _split_name(split) if split else "train"
            obj = datasets.load_dataset(str(Path(self.where).expanduser()) if self.local else self.where,
                                        self.config, split=base, streaming=True)
        except ColakitError:
            raise
        except Exception as err:  # network errors, missing data sets, bad configs, unreadable folders
            raise self._fail(err) from err
        length = None
        splits = getattr(obj.info, "splits", None) or {}
        if base in splits and getattr(splits[base], "num_examples", None):
            length = splits[base].num_examples
        start, end = _bounds(split, base, length)
        if start:
            obj = obj.skip(start)
        if end is not None:
            obj = obj.take(end - start)
        self._obj = (obj, start, end, True)
        return self._obj

    def _columns(self) -> list[str]:
        obj = self._load()[0]
        names = obj.column_names
        if names is None:  # a streamed dataset without declared features: its first row says
            try:
                names = list(next(iter(obj)))
            except StopIteration:
                names = []
            except Exception as err:
                raise self._fail(err) from err
        return list(names)

    def check(self, fmt: str = "plain") -> None:
        self.plan.adapt(self._columns())
        self.plan.check(fmt, self.name, self.name)

    def _rows(self) -> Iterator[tuple[int, dict]]:
        obj, start, end, streamed = self._load()
        self.plan.adapt(self._columns())
        cols = [c for c in self.plan.columns() if c in (self.plan.columns_seen or [])]
        if cols and set(cols) != set(self.plan.columns_seen or []):
            obj = obj.select_columns(cols)  # read only what the documents need
        if streamed:
            try:
                yield from enumerate(obj, start)
            except Exception as err:
                raise self._fail(err) from err
            return
        for a in range(start, end, 1000):
            batch = obj[a:min(end, a + 1000)]
            names = list(batch)
            for k, values in enumerate(zip(*(batch[n] for n in names))):
                yield a + k, dict(zip(names, values))

    def _documents(self) -> Iterator[Document]:
        def docs():
            for i, row in self._rows():
                doc = self.plan.document(row, f"{self.name} row {i}", f"{self.label}:{i}", self.name)
                if doc is not None:
                    yield doc

        return _check_limit(docs(), self.spec.option("limit"))

    def _content_hashes(self):
        obj, _, _, streamed = self._load()
        if not streamed:
            return [obj._fingerprint]
        if self.local:
            path = Path(self.where).expanduser()
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            return [sha256_file(p) for p in files]
        try:
            from huggingface_hub import HfApi  # the hub revision pins a streamed dataset

            return [f"{self.where}@{HfApi().dataset_info(self.where).sha}"]
        except Exception:  # no network for the revision: the name is all there is
            return [f"{self.where}@unpinned"]


def user_source(spec: SourceSpec, unknown: ColakitError, **kw) -> Source:
    """The source ``spec`` names; ``unknown`` is raised when it names nothing that exists."""
    path = Path(spec.where).expanduser()
    if spec.kind == "hf" or (spec.kind is None and is_saved_dataset(path)):
        return DatasetSource(spec, **kw)
    if spec.kind is None and not path.exists() and not glob.has_magic(spec.where):
        raise unknown
    return FileSource(spec, **kw)
