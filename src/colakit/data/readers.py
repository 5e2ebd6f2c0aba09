"""Streaming readers for local files: every bad file is one line naming the file, the line or row, and the fix.

Files are read in chunks (1 MiB), never whole, except a ``.json`` file holding one JSON array (JSON
has no streaming parser in the standard library: write JSON Lines for large data). Compression
comes from the suffix (``.gz`` gzip, ``.zst``/``.zstd`` zstd) or is given. Text is UTF-8, with
universal newlines (``\\r\\n`` and ``\\r`` read as ``\\n``, as ``open(..., encoding="utf-8")`` does).
"""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import io
import json
import re
import sys
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from colakit.errors import ColakitError

CHUNK = 1 << 20
COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
KIND_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                 ".parquet": "parquet", ".txt": "text"}
TO_UTF8 = "convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)"


def file_kind(path: Path | str, compression: str | None = None) -> tuple[str | None, str]:
    """(kind from the suffix or None, compression) of ``path``: ``a.jsonl.gz`` -> ("jsonl", "gzip")."""
    name = Path(path).name  # case-sensitive, as text:DIR has always matched *.txt
    comp = "none"
    for suffix, c in COMPRESSION_SUFFIXES.items():
        if name.endswith(suffix):
            name, comp = name[: -len(suffix)], c
            break
    kind = next((k for s, k in KIND_SUFFIXES.items() if name.endswith(s)), None)
    return kind, (compression if compression not in (None, "") else comp)


def _glob_base(pattern: str) -> Path:
    """The directory part of ``pattern`` before its first wildcard (doc ids are relative to it)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def resolve_files(where: str, kind: str | None, what: str = "path") -> tuple[Path, list[Path], bool]:
    """(base directory, files, single) for a file, a directory (recursive) or a glob.

    A directory and a glob keep the files of ``kind`` (any known kind when None), sorted by their
    path relative to the base. ``single``: ``where`` named one file.
    """
    path = Path(where).expanduser()
    if path.is_file():
        return path.parent, [path], True
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and _keeps(p, kind)]
        if not files:
            suffix = f".{'txt' if kind == 'text' else kind}" if kind else "data"
            raise ColakitError(f"directory {where!r} has no {suffix} files",
                               "put one document per .txt file there" if kind == "text" else
                               f"check the directory, or name the files' kind ({'/'.join(KIND_SUFFIXES)})")
        return path, sorted(files, key=lambda p: p.relative_to(path).as_posix()), False
    if not glob.has_magic(str(path)):
        raise ColakitError(f"{what} {where!r} does not exist", "check the path")
    base = _glob_base(str(path))
    files = [Path(p) for p in glob.glob(str(path), recursive=True)]
    files = [p for p in files if p.is_file() and (kind is not None or file_kind(p)[0] is not None)]
    if not files:
        raise ColakitError(f"no file matches {where!r}",
                           "check the pattern (quote it so the shell does not expand it; [[] matches a literal [)")
    return base, sorted(files, key=lambda p: p.relative_to(base).as_posix()), False


def _keeps(path: Path, kind: str | None) -> bool:
    found = file_kind(path)[0]
    return found is not None and (kind is None or found == kind or (kind == "csv" and found == "tsv"))


# --------------------------------------------------------------------------- bytes and text


class _ZstdRaw(io.RawIOBase):
    """A zstd file as a raw stream that fails on truncation (zstandard's own reader ends quietly)."""

    def __init__(self, f: BinaryIO):
        import zstandard  # only for .zst files

        self._f, self._zstd = f, zstandard
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._out, self._started = b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self._out:
            data = self._f.read(CHUNK)
            if not data:
                if self._started and not self._d.eof:
                    raise EOFError("the zstd stream ends in the middle of a frame")
                return 0
            while data:  # a file may hold several frames
                if self._d.eof:
                    self._d = self._zstd.ZstdDecompressor().decompressobj()
                self._started = True
                self._out += self._d.decompress(data)
                data = self._d.unused_data if self._d.eof else b""
        n = min(len(buf), len(self._out))
        buf[:n], self._out = self._out[:n], self._out[n:]
        return n

    def close(self):
        self._f.close()
        super().close()


def open_binary(path: Path, compression: str = "none") -> BinaryIO:
    try:
        if compression == "gzip":
            return gzip.open(path, "rb")
        if compression == "zstd":
            return io.BufferedReader(_ZstdRaw(open(path, "rb")), CHUNK)
        return open(path, "rb")
    except OSError as err:
        raise ColakitError(f"cannot read {path}: {err.strerror or err}", "check the file's permissions") from err


def _decode_errors():
    import zstandard  # only compressed files need it: its error type joins the ones a corrupt stream raises

    return (OSError, EOFError, zlib.error, zstandard.ZstdError)


def raw_chunks(path: Path, compression: str, lines_before=lambda: 0) -> Iterator[bytes]:
    """Decompressed bytes of ``path``; a corrupt or truncated stream is one line naming the file."""
    errors = _decode_errors() if compression != "none" else (OSError,)
    # compressed: small reads, so the lines before a corrupt block still come out and the error can name them
    size = CHUNK if compression == "none" else CHUNK // 16
    with open_binary(path, compression) as f:
        while True:
            try:
                data = f.read(size)
            except errors as err:
                where = f"after line {lines_before()}" if lines_before() else "before its first line"
                what = f"{compression} data" if compression != "none" else "file"
                tool = {"gzip": " (check it with gzip -t)", "zstd": " (check it with zstd -t)"}.get(compression, "")
                raise ColakitError(f"{path}: the {what} is corrupt or truncated {where} ({type(err).__name__}: {err})",
                                   f"write the file again{tool}") from err
            if not data:
                return
            yield data


def text_chunks(path: Path, compression: str = "none") -> Iterator[str]:
    """UTF-8 text of ``path`` in chunks, universal newlines; bad bytes are named by line and byte."""
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")(), translate=True)
    lines = 0
    for data in raw_chunks(path, compression, lambda: lines):
        try:
            text = decoder.decode(data)
        except UnicodeDecodeError as err:
            line = lines + data[: err.start].count(b"\n") + 1
            col = err.start - (data.rfind(b"\n", 0, err.start) + 1)
            raise ColakitError(f"{path} line {line} is not UTF-8 ({err.reason} at byte {col} of the line)",
                               TO_UTF8) from err
        lines += text.count("\n")
        yield text
    try:
        tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:
        raise ColakitError(f"{path} line {lines + 1} is not UTF-8 (it ends inside a character)", TO_UTF8) from err
    if tail:
        yield tail


def read_text(path: Path, compression: str = "none") -> str:
    return "".join(text_chunks(path, compression))


def lines(path: Path, compression: str = "none") -> Iterator[tuple[int, str]]:
    """(line number from 1, line without its newline) for every line of ``path``."""
    carry, n = "", 0
    for chunk in text_chunks(path, compression):
        parts = (carry + chunk).split("\n")
        carry = parts.pop()
        for part in parts:
            n += 1
            yield n, part
    if carry:
        yield n + 1, carry


_PARAGRAPH = re.compile(r"\n[ \t]*\n")


def paragraphs(path: Path, compression: str = "none") -> Iterator[str]:
    """Blank-line separated paragraphs, exactly as ``sources.split_paragraphs`` cuts the whole text.

    Streamed: the text after the last separator seen is carried to the next chunk (a separator
    found inside the buffer is the one a scan of the whole text finds, so the cut is the same).
    """
    carry = ""
    for chunk in text_chunks(path, compression):
        buf, last = carry + chunk, 0
        for m in _PARAGRAPH.finditer(buf):
            yield from _nonblank(buf[last:m.start()])
            last = m.end()
        carry = buf[last:]
    yield from _nonblank(carry)


def _nonblank(part: str) -> Iterator[str]:
    if part.strip():
        yield part.strip("\n")


# --------------------------------------------------------------------------- records


def _json_error(path: Path, label: str, n: int, err: json.JSONDecodeError) -> ColakitError:
    return ColakitError(f"{path} {label} {n} is not valid JSON ({err.msg})", "write one JSON object per line")


def jsonl_records(path: Path, compression: str = "none") -> Iterator[tuple[str, int, object]]:
    """("line", line number, parsed value) for every non-blank line."""
    for n, line in lines(path, compression):
        if not line.strip():
            continue
        if n == 1 and line.startswith("\ufeff"):
            line = line[1:]
        try:
            yield "line", n, json.loads(line)
        except json.JSONDecodeError as err:
            raise _json_error(path, "line", n, err) from err


def json_records(path: Path, compression: str = "none") -> Iterator[tuple[str, int, object]]:
    """A ``.json`` file: one JSON array of records (read whole), or JSON Lines (streamed)."""
    head = ""
    for chunk in text_chunks(path, compression):
        head = chunk.lstrip("\ufeff \t\n")
        if head:
            break
    if not head.startswith("["):
        yield from jsonl_records(path, compression)
        return
    text = read_text(path, compression)
    try:
        items = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as err:
        raise ColakitError(f"{path} line {err.lineno} is not valid JSON ({err.msg})",
                           "write a JSON array of objects, or JSON Lines (one object per line)") from err
    for i, item in enumerate(items):
        yield "item", i, item


def csv_records(path: Path, compression: str = "none", delimiter: str = ",") -> Iterator[tuple[str, int, dict]]:
    """("line", line where the record starts, {column: value}) for every CSV row after the header."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # documents are longer than the 128 KiB default
    numbered = lines(path, compression)
    at = {"line": 0}

    def feed():
        for n, line in numbered:
            at["line"] = n
            yield line.lstrip("\ufeff") if n == 1 else line

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        if len(set(header)) != len(header):
            raise ColakitError(f"{path} line 1: the header repeats a column name ({', '.join(header)})",
                               "give every column its own name")
        start = at["line"] + 1
        for row in reader:
            if row:
                if len(row) != len(header):
                    raise ColakitError(f"{path} line {start} has {len(row)} columns, the header {len(header)}",
                                       "quote values that contain the delimiter or line breaks")
                yield "line", start, dict(zip(header, row))
            start = at["line"] + 1
    except csv.Error as err:
        raise ColakitError(f"{path} line {at['line']} is not valid CSV ({err})",
                           "quote values that contain the delimiter, quotes or line breaks") from err


def parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, buffer_size=CHUNK)  # buffered: column chunks are read page by page
    except (OSError, pa.ArrowException) as err:
        raise ColakitError(f"cannot read {str(path)!r} as Parquet ({str(err).splitlines()[0]})",
                           "the file is truncated or not Parquet: write it again "
                           "(pyarrow.parquet.write_table or DataFrame.to_parquet)") from err


def parquet_records(path: Path, columns: list[str], batch_size: int = 1024) -> Iterator[tuple[str, int, dict]]:
    """("row", row number from 0, {column: value}) in file order, one row group at a time."""
    pf = parquet_file(path)
    row = 0
    for group in range(pf.metadata.num_row_groups):
        first = row
        try:
            for batch in pf.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns):
                values = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                names = batch.schema.names
                for k in range(batch.num_rows):
                    yield "row", row, {name: col[k] for name, col in zip(names, values)}
                    row += 1
        except UnicodeDecodeError as err:
            bad = _first_bad_row(pf, group, columns)
            where = f"row {first + bad[0]} (column {bad[1]!r})" if bad else f"row group {group} (rows from {first})"
            raise ColakitError(f"{path} {where} is not UTF-8 ({err.reason})", "write the column as UTF-8 strings") from err
        except (OSError, pa.ArrowException) as err:
            raise ColakitError(f"{path} row group {group} (rows from {first}) cannot be read "
                               f"({str(err).splitlines()[0]})", "the file is corrupt or truncated: write it again") from err


def _first_bad_row(pf: pq.ParquetFile, group: int, columns: list[str]) -> tuple[int, str] | None:
    """(row within the row group, column) of the first string that is not UTF-8 (only after an error)."""
    table = pf.read_row_group(group, columns=columns or None)
    for name in table.schema.names:
        if pa.types.is_string(table.schema.field(name).type) or pa.types.is_large_string(table.schema.field(name).type):
            for row, value in enumerate(table.column(name).cast(pa.binary()).to_pylist()):
                try:
                    value is None or value.decode("utf-8")
                except UnicodeDecodeError:
                    return row, name
    return None


def records(path: Path, kind: str, compression: str, columns: list[str]) -> Iterator[tuple[str, int, object]]:
    """The records of one file of ``kind`` (jsonl, json, csv, tsv, parquet)."""
    if kind == "parquet":
        if compression != "none":
            raise ColakitError(f"{path}: Parquet files are compressed inside; an outer {compression} layer is not read",
                               "decompress it first")
        return parquet_records(path, columns)
    if kind in ("csv", "tsv"):
        return csv_records(path, compression, "\t" if kind == "tsv" else ",")
    if kind == "json":
        return json_records(path, compression)
    return jsonl_records(path, compression)


def first_record(path: Path, kind: str, compression: str) -> dict | None:
    """The first record of a file (or None when it has none): the fields a spec can name."""
    if kind == "parquet":
        names = parquet_file(path).schema_arrow.names
        return dict.fromkeys(names, "")
    for _, _, record in records(path, kind, compression, []):
        return record if isinstance(record, dict) else None
    return None
