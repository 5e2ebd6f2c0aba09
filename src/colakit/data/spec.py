"""The source spec grammar: one string says where documents come from and how to read them.

::

    SPEC      NAME                                   a named source (colakit sources list)
              [KIND:]WHERE[?OPTION=VALUE&...]         your own data
    KIND      jsonl | json | csv | tsv | parquet | text | hf   (default: from the file suffix)
    WHERE     a file, a directory, a glob (* ? [...] **), a save_to_disk directory,
              or (hf:) a hub dataset id or a local dataset folder

Files may be gzip (``.gz``) or zstd (``.zst``) compressed. A directory gives every file of the
kind under it (recursive, sorted); without a kind, a directory written by ``save_to_disk`` is
read as that dataset. Options:

    field=NAME        the text field or column (default ``text``)
    template=T        text built from several fields, e.g. ``{question}\\n\\n{answer}``
    limit=N           read at most the first N documents (before the split)
    config=C          hub dataset config (``hf:``)
    split=S           split of a hub dataset or DatasetDict, with a slice: ``train[:1000]``, ``train[:10%]``
    question= answer= reasoning= messages=   fields for --format qa / qa-cot / chat
    heldout=F         held-out fraction of this source (default: --heldout-fraction)
    compression=gzip|zstd|none   when the suffix does not say

Today's forms keep their meaning and their pools: ``jsonl:PATH[:FIELD]``, ``parquet:PATH[:FIELD]``,
``text:PATH``, ``hf:NAME[:CONFIG[:SPLIT]]`` (SPLIT may carry a slice). Special characters: a path
that exists is always taken literally (colons, brackets, ``?`` included); otherwise ``*?[`` make it
a glob (``[[]`` matches a literal ``[``). Option values are percent-decoded (``%26`` for ``&``,
``%25`` for ``%``). In ``--sources`` specs are separated by commas; put a spec that contains a comma
in double quotes (CSV rules: ``--sources 'c4,"my,data.jsonl"'``), and quote the whole value in the
shell.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from colakit.errors import ColakitError

KINDS = ("jsonl", "json", "csv", "tsv", "parquet", "text", "hf")
KIND_ALIASES = {"txt": "text", "ndjson": "jsonl"}
FORMAT_FIELDS = ("question", "answer", "reasoning", "messages")
OPTIONS = ("field", "template", "limit", "config", "split", *FORMAT_FIELDS, "heldout", "compression")
COMPRESSIONS = ("gzip", "zstd", "none")
LEGACY_FORMS = "jsonl:PATH[:FIELD], parquet:PATH[:FIELD], text:PATH, hf:NAME[:CONFIG[:SPLIT]]"

# One short form for error hints and help lines (the full grammar is this module's docstring).
SPEC_FORMS = ("[KIND:]PATH|DIR|GLOB[?field=F&template=T&limit=N&heldout=F&question=Q&answer=A...] "
              "(KIND jsonl, json, csv, tsv, parquet, text; .gz/.zst ok), "
              "hf:NAME[:CONFIG[:SPLIT[SLICE]]] or hf:NAME?config=C&split=train[:1000], a save_to_disk folder")

HELP = """\
Source specs (--sources: comma-separated; "double-quote" a spec with a comma)

  c4, wiki, code, math, ...   a named source (colakit sources list)
  data.jsonl  rows.csv  t.tsv  x.parquet  notes.txt  a.json   a file: kind
                              from the suffix, .gz/.zst compressed ok
  KIND:PATH                   force the kind: jsonl json csv tsv parquet text
  corpus/   'shards/*.jsonl.gz'   a directory (recursive) or a glob (**)
  saved/  hf:saved/           a datasets save_to_disk folder (Dataset or
                              DatasetDict); never needs the hub
  hf:NAME[:CONFIG[:SPLIT]]    a hub dataset, streamed, e.g.
                              hf:allenai/c4:en:validation[:1000]

Options follow '?', joined by '&':  'qa.jsonl?question=q&answer=a&limit=500'
  field=F        text field (default text)
  template=T     text from several fields: {question}\\n\\n{answer}
  limit=N        only the first N documents
  heldout=F      held-out fraction of this source (else --heldout-fraction)
  question=Q answer=A reasoning=R messages=M   fields for --format
  config=C split=S   hub dataset / DatasetDict: split=train[:10%]
  compression=gzip|zstd|none   when the suffix does not say

A path that exists is read literally (colons, brackets, '?' are fine);
otherwise * ? [ make a glob ([[] is a literal [). Option values are
percent-decoded (%26 is &, %3F is ?). Text files give one document per
blank-line paragraph; in a directory or glob, one per file. Old forms
keep their pools: jsonl:PATH[:FIELD] parquet:PATH[:FIELD] text:PATH
hf:NAME[:CONFIG[:SPLIT]].
"""

_KIND_RE = re.compile(r"^([a-z]+):(.*)$", re.S)
_OPTIONS_RE = re.compile(r"\?([a-z_]+=[^?]*)$", re.S)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed user spec. ``legacy``: one of today's forms, whose source names and pools are kept."""

    kind: str | None  # None: from the suffix (or a save_to_disk folder)
    where: str
    options: dict = field(default_factory=dict)
    legacy: bool = False
    text: str = ""  # the spec as written

    def option(self, key: str, default=None):
        return self.options.get(key, default)


def _split_quoted(value: str) -> list[str]:
    """Split at commas outside double quotes; quotes may wrap any part of a spec (``"a,b.jsonl"?field=x``)
    and are dropped, ``""`` inside them is one quote. The csv module would refuse text after a closing quote."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(value):
        ch = value[i]
        if ch == '"':
            if quoted and value[i + 1:i + 2] == '"':
                current.append('"')
                i += 1
            else:
                quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if quoted:
        raise ColakitError(f"cannot read --sources {value!r}: a double quote is not closed",
                           'close every double quote (a spec with a comma goes in them: --sources \'c4,"a,b.jsonl"\')')
    return [*parts, "".join(current)]


def split_specs(value: str) -> list[str]:
    """``--sources``: comma-separated specs; double quotes around a spec, or a part of one, keep its commas."""
    specs = [v.strip() for v in _split_quoted(value) if v.strip()]
    for a, b in zip(specs, specs[1:]):  # an unquoted path with a comma: say so instead of "unknown source"
        joined = f"{a},{b}"
        if not _exists(a) and not _exists(a.split("?")[0]) and any(_exists(p) for p in (joined, joined.split("?")[0])):
            raise ColakitError(f"--sources splits the path {joined!r} at its comma",
                               f'put it in double quotes: --sources \'..."{joined}"...\'')
    return specs


def _exists(path: str) -> bool:
    return os.path.exists(os.path.expanduser(path))


def _parse_options(text: str, spec: str) -> dict:
    out = {}
    for item in text.split("&"):
        key, sep, value = item.partition("=")
        if not sep:
            raise ColakitError(f"cannot read option {item!r} in source {spec!r}", "write options as ?KEY=VALUE&KEY=VALUE")
        if key not in OPTIONS:
            raise ColakitError(f"unknown option {key!r} in source {spec!r}", f"use one of: {', '.join(OPTIONS)}")
        if key in out:
            raise ColakitError(f"option {key!r} given twice in source {spec!r}", "give each option once")
        out[key] = unquote(value)
    return _check_options(out, spec)


def _check_options(opts: dict, spec: str) -> dict:
    if "limit" in opts:
        try:
            opts["limit"] = int(opts["limit"])
        except (TypeError, ValueError):
            opts["limit"] = -1
        if opts["limit"] < 1:
            raise ColakitError(f"limit in source {spec!r} must be a positive whole number", "e.g. ?limit=10000")
    if "heldout" in opts:
        try:
            opts["heldout"] = float(opts["heldout"])
        except (TypeError, ValueError):
            opts["heldout"] = -1.0
        if not 0.0 <= opts["heldout"] < 1.0:
            raise ColakitError(f"heldout in source {spec!r} must be a number in [0, 1)",
                               "e.g. ?heldout=0 (every document for calibration) or ?heldout=0.1")
    if opts.get("compression", "none") not in COMPRESSIONS:
        raise ColakitError(f"compression in source {spec!r} must be one of {', '.join(COMPRESSIONS)}",
                           "or leave it out: .gz and .zst files are recognised by their suffix")
    if "field" in opts and "template" in opts:
        raise ColakitError(f"source {spec!r} gives both field and template", "use one: template can name any field")
    for key in ("field", "template", "question", "answer", "reasoning", "messages", "config", "split"):
        if key in opts and not opts[key]:
            raise ColakitError(f"option {key} in source {spec!r} is empty", f"give a value, e.g. ?{key}=NAME")
    return opts


def _split_outside_brackets(text: str) -> list[str]:
    """``NAME:CONFIG:train[:1000]`` -> [NAME, CONFIG, "train[:1000]"] (colons in a slice stay)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == ":" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def parse_spec(spec: str) -> SourceSpec:
    """A user spec (not a named source) -> ``SourceSpec``; errors name what is wrong and how to write it."""
    text = spec.strip()
    if not text:
        raise ColakitError("empty source spec", "name a source, e.g. c4 or data.jsonl")
    kind, rest = None, text
    m = _KIND_RE.match(text)
    if m and (m.group(1) in KINDS or m.group(1) in KIND_ALIASES) and not _exists(text):
        kind, rest = KIND_ALIASES.get(m.group(1), m.group(1)), m.group(2)
    if not rest:
        raise ColakitError(f"source {spec!r} names no path", f"write {kind}:PATH")
    options: dict = {}
    om = None if _exists(rest) else _OPTIONS_RE.search(rest)
    if om:
        options = _parse_options(om.group(1), spec)
        rest = rest[: om.start()]
        if not rest:
            raise ColakitError(f"source {spec!r} names no path", "write PATH?OPTION=VALUE")
    legacy = False
    if kind in ("jsonl", "parquet") and not options:
        legacy = True  # jsonl:PATH[:FIELD] / parquet:PATH[:FIELD]: an existing path wins
        if not _exists(rest) and ":" in rest:
            rest, fld = rest.rsplit(":", 1)
            if fld:
                options["field"] = fld
    elif kind in ("json", "csv", "tsv") and not options and not _exists(rest) and ":" in rest:
        rest, fld = rest.rsplit(":", 1)  # the same PATH:FIELD short form for the other record formats
        if fld:
            options["field"] = fld
    elif kind == "text" and not options:
        legacy = True
    elif kind == "hf" and not _exists(rest):
        parts = _split_outside_brackets(rest)
        if len(parts) > 3 or not parts[0] or any(p.count("[") != p.count("]") for p in parts):
            raise ColakitError(f"bad hub spec {spec!r}",
                               "use hf:NAME[:CONFIG[:SPLIT]] or hf:NAME?config=C&split=train[:1000]")
        rest = parts[0]
        for key, value in zip(("config", "split"), parts[1:]):
            if value and key in options:
                raise ColakitError(f"source {spec!r} gives {key} twice", f"give it once, as ?{key}= or positionally")
            if value:
                options[key] = value
        legacy = not om
    if kind == "hf" and _exists(rest) and not om:
        legacy = True
    if kind != "hf" and ({"config"} & set(options)):
        raise ColakitError(f"option config in source {spec!r} is for hub datasets", "use hf:NAME?config=C")
    return SourceSpec(kind, rest, _check_options(options, spec), legacy, text)


def has_magic(path: str) -> bool:
    return glob.has_magic(path)


def format_spec(spec: SourceSpec) -> str:
    """The spec written back, options in the grammar's order (values percent-encoded where needed)."""
    head = f"{spec.kind}:{spec.where}" if spec.kind else spec.where
    opts = [f"{k}={quote(str(spec.options[k]), safe='{}[]:/%,.-_ ')}" for k in OPTIONS if k in spec.options]
    return head + ("?" + "&".join(opts) if opts else "")


def with_options(spec: str, extra: dict[str, str]) -> str:
    """``spec`` with the options of ``extra`` that it does not set itself (``--field``)."""
    parsed = parse_spec(spec)
    missing = {k: v for k, v in extra.items() if k not in parsed.options}
    if not missing:
        return spec
    return format_spec(SourceSpec(parsed.kind, parsed.where, {**parsed.options, **missing}))


def parse_field_flags(items: list[str]) -> dict[str, str]:
    """``--field question=prompt`` (repeatable) -> {"question": "prompt"}; ``text=COL`` sets the text field."""
    out = {}
    for item in items:
        role, sep, column = item.partition("=")
        role, column = role.strip(), column.strip()
        if role == "text":
            role = "field"
        if not sep or not column or role not in (*FORMAT_FIELDS, "field"):
            raise ColakitError(f"cannot read --field {item!r}",
                               "write ROLE=FIELD with ROLE one of text, question, answer, reasoning, messages, "
                               "e.g. --field question=prompt --field answer=response")
        out[role] = column
    return out
