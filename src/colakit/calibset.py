"""The CalibrationSet: colakit's product, a directory that any compressor can consume.

Layout of a CalibrationSet directory::

    samples.jsonl    one JSON object per sample: input_ids, text, provenance (source, doc_id,
                     doc_ids, start), and selector output (cluster, distance, score) when known
    manifest.json    colakit version, model id, tokenizer hash, method and parameters, seed,
                     source fingerprints and splits, sequence length, sample count, content hash

The directory is written to a temporary sibling and renamed into place, so a crash never leaves
a half-written set that loads. ``to_dataset`` gives the ``input_ids``/``attention_mask`` columns
that llm-compressor's ``oneshot(dataset=...)`` takes as is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from colakit import __version__
from colakit.cache import atomic_dir
from colakit.curate.process import pad_right
from colakit.errors import ColakitError
from colakit.model.load import tokenizer_hash

SAMPLES_FILE = "samples.jsonl"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


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


def _content_hash(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps(s.input_ids, separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


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
        self.manifest.update(n=len(samples), content_hash=_content_hash(samples))
        self.manifest.setdefault("colakit_version", __version__)
        self.manifest.setdefault("format_version", FORMAT_VERSION)
        self.manifest.setdefault("seq_len", max(len(s.input_ids) for s in samples))

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

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the set to directory ``path`` atomically; refuse an existing one unless ``overwrite``."""
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise ColakitError(f"output directory {path} already exists", "choose another --out or delete it")
            if not (path / MANIFEST_FILE).exists():
                raise ColakitError(f"{path} exists and is not a CalibrationSet", "refusing to overwrite it")
        manifest = dict(self.manifest)
        manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if path.exists():
            shutil.rmtree(path)
        try:
            with atomic_dir(path) as tmp:
                with open(tmp / SAMPLES_FILE, "w", encoding="utf-8") as f:
                    for s in self.samples:
                        f.write(s.to_json() + "\n")
                (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        except PermissionError as err:
            raise ColakitError(f"cannot write {path}: {err.strerror}", "choose a writable --out") from err
        self.manifest = manifest
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
        stored = manifest.get("content_hash")
        calib = cls(samples, manifest)
        if stored is not None and stored != calib.content_hash:
            raise ColakitError(f"{samples_file} does not match its manifest (content hash {calib.content_hash} != "
                               f"{stored})", "the set was modified or truncated; curate it again")
        return calib

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
