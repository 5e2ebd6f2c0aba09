"""The CalibrationSet: colakit's product, a directory that any compressor can consume.

Layout of a CalibrationSet directory::

    samples.jsonl    one JSON object per sample: input_ids, text, provenance (source, doc_id,
                     doc_ids, start), and selector output (cluster, distance, score) when known
    manifest.json    colakit version, model id, tokenizer hash, method and parameters, seed,
                     source fingerprints and splits, sequence length, sample count, content hash

The content hash covers every sample record (tokens, text, provenance) and every manifest field
but the informational ones (``UNHASHED``), so ``load`` refuses a set edited after it was saved. The
manifest also records a short digest per field (``field_hashes``) and per sample (``sample_hashes``:
"TOKENS TEXT REST", REST the provenance and selector output), only so the refusal names what changed.
Sets of format 1 (older colakit) hashed their tokens alone; they load with a warning.

The directory is written to a temporary sibling and renamed into place, so a crash never leaves
a half-written set that loads. Saving the same set twice writes the same bytes (no timestamp).
``to_dataset`` gives the ``input_ids``/``attention_mask`` columns that llm-compressor's
``oneshot(dataset=...)`` takes as is, ``to_samples`` the dicts GPTQModel's ``quantize(calibration=...)``
takes, and ``to_autoround`` the ``dataset``/``nsamples``/``seqlen`` of auto-round's ``AutoRound``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from colakit import __version__
from colakit.cache import atomic_dir
from colakit.curate.process import pad_right
from colakit.errors import ColakitError
from colakit.model.load import tokenizer_hash

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2  # 2: the hash covers texts, provenance and the manifest; 1: tokens only
# Manifest fields outside the hash: which colakit wrote the files (the same inputs give the same set
# under any version that writes the same bytes), the timestamp older versions wrote, and the hashes.
UNHASHED = ("colakit_version", "created", "content_hash", "field_hashes", "sample_hashes")
SAMPLE_PARTS = ("tokens", "text", "provenance or selector output")  # the digests of a sample_hashes entry


@dataclass
class Sample:
    """One calibration sequence and where it came from."""

    input_ids: list[int]
    text: str = ""
    source: str = ""
    doc_id: str = ""
    doc_ids: list[str] = field(default_factory=list)  # every document the window touches
    start: int = 0  # token offset of the window in its first document
    cluster: int | None = None
    distance: float | None = None
    score: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _digest(obj) -> str:
    """A short digest that names what changed; the full check is the content hash."""
    return hashlib.sha256(_canonical(obj)).hexdigest()[:8]


def _hashed(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in UNHASHED}


def _sample_digests(s: Sample) -> str:
    record = asdict(s)
    tokens, text = record.pop("input_ids"), record.pop("text")
    return " ".join(_digest(part) for part in (tokens, text, record))  # in SAMPLE_PARTS order


def _content_hash(samples: list[Sample], manifest: dict) -> str:
    h = hashlib.sha256(_canonical(_hashed(manifest)))
    for s in samples:
        h.update(b"\n" + s.to_json().encode())
    return h.hexdigest()[:16]


def _tokens_hash(samples: list[Sample]) -> str:
    """Format 1's content hash: the token ids alone."""
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps(s.input_ids, separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def _check_files(path: Path, manifest: dict, samples: list[Sample]) -> None:
    """Refuse a saved set whose files disagree with what its manifest recorded, naming what disagrees."""
    def fail(problem: str):
        raise ColakitError(f"{path} does not match its manifest: {problem}",
                           "the set was edited or truncated after it was saved; curate it again")

    version = manifest.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ColakitError(f"{path} has manifest format {version!r}; this colakit reads up to {FORMAT_VERSION}",
                           "upgrade colakit")
    if manifest.get("n") != len(samples):
        fail(f"manifest field 'n' says {manifest.get('n')!r} but {SAMPLES_FILE} holds {len(samples)} samples")
    if version < 2:
        stored = manifest.get("content_hash")
        if stored is not None and stored != _tokens_hash(samples):
            fail(f"content hash {_tokens_hash(samples)} != {stored}")
        log.warning("%s was saved by an older colakit (manifest format %s): its tokens are checked, its texts and "
                    "manifest are not; save it again to protect them", path, version)
        return
    longest = max(range(len(samples)), key=lambda i: len(samples[i].input_ids))
    seq_len = manifest.get("seq_len")
    if isinstance(seq_len, int) and len(samples[longest].input_ids) > seq_len:  # else its digest decides
        fail(f"manifest field 'seq_len' says {seq_len!r} but sample {longest} holds "
             f"{len(samples[longest].input_ids)} tokens")
    recorded = manifest.get("sample_hashes") or []
    if len(recorded) != len(samples):
        fail(f"'sample_hashes' records {len(recorded)} samples but {SAMPLES_FILE} holds {len(samples)}")
    for i, (s, want) in enumerate(zip(samples, recorded)):
        for part, got, expected in zip(SAMPLE_PARTS, _sample_digests(s).split(), str(want).split()):
            if got != expected:
                fail(f"sample {i} ({SAMPLES_FILE} line {i + 1}): its {part} changed since it was saved")
    fields, now = manifest.get("field_hashes") or {}, _hashed(manifest)
    for key in sorted(set(fields) | set(now)):
        if key not in now:
            fail(f"manifest field {key!r} is missing")
        if key not in fields:
            fail(f"manifest field {key!r} was added after the set was saved")
        if _digest(now[key]) != fields[key]:
            fail(f"manifest field {key!r} changed since the set was saved (it now says {now[key]!r:.80})")
    if manifest.get("content_hash") != _content_hash(samples, manifest):  # e.g. the digests themselves edited
        fail(f"content hash {_content_hash(samples, manifest)} != {manifest.get('content_hash')}")


class CalibrationSet:
    """Token sequences with provenance and a manifest. Build, save, load, feed to compressors."""

    def __init__(self, samples: list[Sample], manifest: dict[str, Any]):
        if not samples:
            raise ColakitError("a CalibrationSet needs at least one sample", "increase the budget --n")
        for i, s in enumerate(samples):
            if not s.input_ids:
                raise ColakitError(f"sample {i} ({s.source}:{s.doc_id}) has no tokens", "drop empty documents")
        self.samples = samples
        self.manifest = dict(manifest)
        self.manifest.setdefault("colakit_version", __version__)
        self.manifest.setdefault("seq_len", max(len(s.input_ids) for s in samples))
        self._seal()

    def _seal(self) -> None:
        """Record what defines the set: its size, format, digests and the content hash over them all."""
        # as JSON gives it back (tuples -> lists, keys -> strings): the loaded set hashes like the saved one
        m = self.manifest = json.loads(json.dumps(self.manifest, default=str))
        m.update(n=len(self.samples), format_version=FORMAT_VERSION,
                 sample_hashes=[_sample_digests(s) for s in self.samples])
        m["field_hashes"] = {k: _digest(v) for k, v in _hashed(m).items()}
        m["content_hash"] = _content_hash(self.samples, m)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_token_ids(cls, sequences: Iterable[list[int]], tokenizer=None, **manifest) -> CalibrationSet:
        """An in-memory set from raw token ids (texts decoded when a tokenizer is given)."""
        samples = []
        for i, ids in enumerate(sequences):
            ids = [int(t) for t in ids]
            text = tokenizer.decode(ids) if tokenizer is not None else ""
            samples.append(Sample(input_ids=ids, text=text, source="manual", doc_id=str(i), doc_ids=[str(i)]))
        if tokenizer is not None:
            manifest.setdefault("tokenizer_hash", tokenizer_hash(tokenizer))
        manifest.setdefault("method", "manual")
        return cls(samples, manifest)

    # ------------------------------------------------------------------ properties

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"CalibrationSet(n={len(self)}, method={self.manifest.get('method')!r}, "
                f"model={self.manifest.get('model')!r}, tokens={self.num_tokens})")

    @property
    def content_hash(self) -> str:
        return self.manifest["content_hash"]

    @property
    def tokenizer_hash(self) -> str | None:
        return self.manifest.get("tokenizer_hash")

    @property
    def num_tokens(self) -> int:
        return sum(len(s.input_ids) for s in self.samples)

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]

    def check_tokenizer(self, tokenizer) -> None:
        """Refuse to feed token ids to a model whose tokenizer gives them another meaning."""
        theirs = tokenizer_hash(tokenizer)
        if self.tokenizer_hash is not None and self.tokenizer_hash != theirs:
            raise ColakitError(
                f"this CalibrationSet was built with tokenizer {self.tokenizer_hash} "
                f"(model {self.manifest.get('model')!r}), but the model's tokenizer is {theirs}",
                "curate a CalibrationSet with the same model (colakit curate --model ...)",
            )

    # ------------------------------------------------------------------ conversion

    def to_tensors(self, pad_token_id: int):
        """Right-padded ``(input_ids, attention_mask)`` LongTensors of shape [n, longest]."""
        return pad_right([s.input_ids for s in self.samples], pad_token_id)

    def to_dataset(self):
        """A ``datasets.Dataset`` with ``input_ids`` and ``attention_mask`` (unpadded rows)."""
        import datasets

        return datasets.Dataset.from_dict({
            "input_ids": [s.input_ids for s in self.samples],
            "attention_mask": [[1] * len(s.input_ids) for s in self.samples],
        })

    def to_samples(self) -> list[dict[str, list[int]]]:
        """One ``{"input_ids": [...], "attention_mask": [1, ...]}`` dict of int lists per sample, unpadded, in order.

        For GPTQModel's ``model.quantize(calibration=...)``. It uses a dict's ``input_ids`` as they are
        because the dict has no ``text`` key (it would tokenise ``text`` instead). By default it sorts the
        samples by length; ``calibration_sort=None`` keeps colakit's order::

            model.quantize(calibration=calib.to_samples(), calibration_sort=None)

        GPTQModel 7.7.0 drops samples of 10 tokens or fewer: its ``quantize`` does not pass
        ``calibration_data_min_length`` on.
        """
        return [{"input_ids": list(s.input_ids), "attention_mask": [1] * len(s.input_ids)} for s in self.samples]

    def to_autoround(self, pad_token_id: int | None = None) -> dict[str, Any]:
        """``dataset``, ``nsamples`` and ``seqlen`` for auto-round's ``AutoRound(model, tokenizer, ...)``.

        ``dataset`` holds one ``{"input_ids", "attention_mask"}`` pair of [1, L] LongTensors per sample, in
        order, where L is the longest sample. Shorter samples are right-padded with ``pad_token_id``
        (mask 0 there), which is needed only when lengths differ. ``nsamples`` is the set's size and
        ``seqlen`` is L. auto-round skips rows shorter than ``seqlen`` and stops after ``nsamples``, so
        every sample is used, and it tokenises nothing::

            ar = AutoRound(model, tokenizer, **calib.to_autoround(tokenizer.pad_token_id), iters=200)
            ar.quantize_and_save("runs/ar-w4", format="auto_round")

        Pass the tokenizer's pad id: auto-round leaves out of its loss the positions that hold it.
        Each call builds new tensors, because auto-round writes into the masks.
        """
        lengths = {len(s.input_ids) for s in self.samples}
        if len(lengths) > 1 and pad_token_id is None:
            raise ColakitError(f"the samples hold {min(lengths)} to {max(lengths)} tokens, and auto-round batches "
                               "rows of one length", "pass pad_token_id (tokenizer.pad_token_id) to pad them")
        ids, mask = self.to_tensors(0 if pad_token_id is None else pad_token_id)
        rows = [{"input_ids": ids[i:i + 1], "attention_mask": mask[i:i + 1]} for i in range(len(self))]
        return {"dataset": rows, "nsamples": len(self), "seqlen": ids.shape[1]}

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the set to directory ``path`` atomically; refuse an existing one unless ``overwrite``."""
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise ColakitError(f"output directory {path} already exists", "choose another --out or delete it")
            if not (path / MANIFEST_FILE).exists():
                raise ColakitError(f"{path} exists and is not a CalibrationSet", "refusing to overwrite it")
        self._seal()  # a caller may have edited self.manifest since the set was built
        if path.exists():
            shutil.rmtree(path)
        try:
            with atomic_dir(path) as tmp:
                with open(tmp / SAMPLES_FILE, "w", encoding="utf-8") as f:
                    for s in self.samples:
                        f.write(s.to_json() + "\n")
                (tmp / MANIFEST_FILE).write_text(json.dumps(self.manifest, indent=2, sort_keys=True, default=str)
                                                 + "\n")
        except PermissionError as err:
            raise ColakitError(f"cannot write {path}: {err.strerror}", "choose a writable --out") from err
        return path

    @classmethod
    def load(cls, path: str | Path) -> CalibrationSet:
        path = Path(path)
        manifest_file, samples_file = path / MANIFEST_FILE, path / SAMPLES_FILE
        if not path.is_dir() or not manifest_file.exists() or not samples_file.exists():
            raise ColakitError(f"{path} is not a CalibrationSet directory (needs {MANIFEST_FILE} and {SAMPLES_FILE})",
                               "create one with `colakit curate ... --out DIR`")
        try:
            manifest = json.loads(manifest_file.read_text())
            samples = [Sample(**json.loads(line)) for line in samples_file.read_text(encoding="utf-8").splitlines()
                       if line.strip()]
        except (json.JSONDecodeError, TypeError) as err:
            raise ColakitError(f"{path} is corrupt: {err}", "curate it again") from err
        if not isinstance(manifest, dict) or not samples:
            raise ColakitError(f"{path} is corrupt: no manifest or no samples", "curate it again")
        _check_files(path, manifest, samples)
        return cls(samples, manifest)  # sealed again: a format-1 set gets the current hashes in memory

    # ------------------------------------------------------------------ inspection

    def summary(self) -> dict[str, Any]:
        lengths = sorted(len(s.input_ids) for s in self.samples)
        mix = Counter(s.source for s in self.samples)
        return {
            "samples": len(self),
            "tokens": self.num_tokens,
            "method": self.manifest.get("method"),
            "model": self.manifest.get("model"),
            "seed": self.manifest.get("seed"),
            "seq_len": self.manifest.get("seq_len"),
            "length": {"min": lengths[0], "median": statistics.median(lengths), "max": lengths[-1],
                       "mean": round(statistics.fmean(lengths), 1)},
            "sources": dict(sorted(mix.items())),
            "content_hash": self.content_hash,
        }
