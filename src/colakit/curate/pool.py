"""The candidate pool on disk: shards written once, read back lazily by index.

A pool of millions of windows does not fit in RAM as Python lists (a 512-token window is ~15 KB
as a list of ints plus its text), so ``curate.build_pool`` streams candidates into a ``PoolStore``
directory and selectors get a ``StoredPool``: a read-only ``Sequence[Candidate]`` whose ``len``,
indexing, slicing and iteration read the shards on demand, holding at most a few shards' index
arrays at a time. Layout (``S`` = ``shard_size`` rows per shard, shard ``i`` = rows
``[i*S, (i+1)*S)``)::

    tokens-00000.i32   raw little-endian int32: every window's token ids, concatenated
    offsets-00000.npy  int64 [rows + 1], where each window starts in tokens
    lines-00000.npy    int64 [rows + 1], byte offset of each window's line in meta
    meta-00000.jsonl   one JSON object per window: text, source, doc_id, doc_ids, start
    manifest.json      rows, shard_size, shards, key (written last: its presence = complete)

``key`` is the same content hash ``features`` computes over the token ids, so a pool read from
disk and the same candidates as a list share one feature store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from colakit.cache import atomic_path, write_json_atomic
from colakit.errors import ColakitError
from colakit.curate.process import Candidate

POOL_SHARD = 4096
MANIFEST = "manifest.json"


def token_hash_update(h, input_ids) -> None:
    """The pool key's per-candidate step (shared with ``features``: one definition of the key)."""
    h.update(np.asarray(input_ids, dtype=np.int64).tobytes())
    h.update(b"|")


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)


def _tmp_file(folder: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=".shard.", suffix=".tmp", dir=folder)
    os.close(fd)
    return Path(name)


class PoolWriter:
    """Append candidates; every ``shard_size`` of them become one shard on disk.

    Tokens and metadata go straight to the shard's files as candidates arrive, so the writer
    holds two offsets per candidate of the current shard, never the candidates themselves.
    """

    def __init__(self, path: str | Path, shard_size: int = POOL_SHARD):
        if shard_size < 1:
            raise ColakitError(f"pool shard size {shard_size} is not positive", "use e.g. 4096")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.rows = 0
        self.shards = 0
        self._hash = hashlib.sha256()
        self._files = None  # (tokens file, meta file, tmp paths) of the shard being written
        self._offsets: list[int] = [0]
        self._lines: list[int] = [0]

    def add(self, cand: Candidate) -> None:
        token_hash_update(self._hash, cand.input_ids)
        ids = np.asarray(cand.input_ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= 2**31):
            raise ColakitError("token ids outside int32", "this is a colakit bug")
        line = json.dumps({"text": cand.text, "source": cand.source, "doc_id": cand.doc_id, "doc_ids": cand.doc_ids,
                           "start": cand.start}, ensure_ascii=False).encode() + b"\n"
        if self._files is None:
            tmp = [_tmp_file(self.path) for _ in range(2)]
            self._files = (open(tmp[0], "wb"), open(tmp[1], "wb"), tmp)
        self._files[0].write(ids.astype("<i4").tobytes())
        self._files[1].write(line)
        self._offsets.append(self._offsets[-1] + len(ids))
        self._lines.append(self._lines[-1] + len(line))
        self.rows += 1
        if len(self._offsets) - 1 == self.shard_size:
            self._flush()

    def extend(self, cands: Iterable[Candidate]) -> None:
        for c in cands:
            self.add(c)

    def _flush(self) -> None:
        if self._files is None:
            return
        tokens, meta, (tmp_tokens, tmp_meta) = self._files
        tokens.close()
        meta.close()
        name = f"{self.shards:05d}"
        os.replace(tmp_tokens, self.path / f"tokens-{name}.i32")
        os.replace(tmp_meta, self.path / f"meta-{name}.jsonl")
        _save_npy(self.path / f"offsets-{name}.npy", np.asarray(self._offsets, dtype=np.int64))
        _save_npy(self.path / f"lines-{name}.npy", np.asarray(self._lines, dtype=np.int64))
        self.shards += 1
        self._files, self._offsets, self._lines = None, [0], [0]

    def close(self, extra: dict | None = None) -> dict:
        """Write the last shard and the manifest (last: its presence marks the pool complete)."""
        self._flush()
        manifest = {"rows": self.rows, "shard_size": self.shard_size, "shards": self.shards,
                    "key": self._hash.hexdigest()[:16], **(extra or {})}
        write_json_atomic(self.path / MANIFEST, manifest)
        return manifest

    def abort(self) -> None:
        """Drop the shard being written (its temporary files)."""
        if self._files is not None:
            for f in self._files[:2]:
                f.close()
            for tmp in self._files[2]:
                Path(tmp).unlink(missing_ok=True)
            self._files = None


class StoredPool(Sequence):
    """A read-only ``Sequence[Candidate]`` over a pool directory (see the module docstring).

    ``owned=True``: the directory is deleted when this object is garbage-collected (a scratch pool
    that lives as long as the run). Pickling (to a Ray worker) gives a copy that never deletes.
    """

    def __init__(self, path: str | Path, *, owned: bool = False, cache_shards: int = 2):
        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ColakitError(f"{self.path} is not a complete candidate pool ({err})",
                               "rebuild it: the run that wrote it did not finish") from err
        self.rows = int(self.manifest["rows"])
        self.shard_size = int(self.manifest["shard_size"])
        self._cache_size = cache_shards
        self._open: OrderedDict[int, tuple] = OrderedDict()
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True) if owned else None

    @property
    def key(self) -> str:
        """Content hash of every candidate's token ids (the feature store's pool key)."""
        return self.manifest["key"]

    def __reduce__(self):
        return (StoredPool, (str(self.path),), None)

    def __len__(self) -> int:
        return self.rows

    def _shard(self, s: int):
        if s in self._open:
            self._open.move_to_end(s)
            return self._open[s]
        name = f"{s:05d}"
        tokens_path = self.path / f"tokens-{name}.i32"
        tokens = np.memmap(tokens_path, dtype="<i4", mode="r") if tokens_path.stat().st_size else np.zeros(0, "<i4")
        entry = (tokens,
                 np.load(self.path / f"offsets-{name}.npy"), np.load(self.path / f"lines-{name}.npy"),
                 open(self.path / f"meta-{name}.jsonl", "rb"))
        self._open[s] = entry
        while len(self._open) > self._cache_size:
            _, old = self._open.popitem(last=False)
            old[3].close()
        return entry

    def _row(self, i: int) -> Candidate:
        tokens, offsets, lines, meta = self._shard(i // self.shard_size)
        j = i % self.shard_size
        meta.seek(int(lines[j]))
        m = json.loads(meta.read(int(lines[j + 1] - lines[j])))
        return Candidate(tokens[offsets[j]:offsets[j + 1]].tolist(), m["text"], m["source"], m["doc_id"],
                         m["doc_ids"], m["start"])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._row(k) for k in range(*i.indices(self.rows))]
        i = int(i)
        if i < 0:
            i += self.rows
        if not 0 <= i < self.rows:
            raise IndexError(f"candidate {i} outside a pool of {self.rows}")
        return self._row(i)

    def __iter__(self) -> Iterator[Candidate]:
        for i in range(self.rows):
            yield self._row(i)

    def token_ids(self, start: int, stop: int) -> list[list[int]]:
        """Token ids of rows [start, stop) without reading their text (what feature workers need)."""
        out = []
        for i in range(start, min(stop, self.rows)):
            tokens, offsets, _, _ = self._shard(i // self.shard_size)
            j = i % self.shard_size
            out.append(tokens[offsets[j]:offsets[j + 1]].tolist())
        return out

    def close(self) -> None:
        while self._open:
            _, entry = self._open.popitem()
            entry[3].close()

    def delete(self) -> None:
        """Remove the directory now (only for a pool this object owns)."""
        self.close()
        if self._finalizer is not None:
            self._finalizer()


class Chain(Sequence):
    """Several sequences read as one, without copying them into a list."""

    def __init__(self, *parts: Sequence):
        self.parts = parts
        self._starts = np.cumsum([0] + [len(p) for p in parts])

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for p in self.parts:
            if isinstance(p, StoredPool):  # token ids only: no text read and parsed
                for start in range(0, len(p), p.shard_size):
                    for ids in p.token_ids(start, start + p.shard_size):
                        token_hash_update(h, ids)
            else:
                for c in p:
                    token_hash_update(h, c.input_ids)
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        p = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self.parts[p][i - int(self._starts[p])]

    def __iter__(self):
        for p in self.parts:
            yield from p


def scratch_dir(root: Path, prefix: str = "pool") -> Path:
    """A fresh directory under ``root`` named after this process; leftovers of dead processes go."""
    root.mkdir(parents=True, exist_ok=True)
    # the host is in the name: on a shared cache another machine's pids mean nothing here
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    for old in root.glob(f"{prefix}-{host}-*"):
        try:
            pid = int(old.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(old, ignore_errors=True)  # a killed run's scratch pool
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{host}-{os.getpid()}-", dir=root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
