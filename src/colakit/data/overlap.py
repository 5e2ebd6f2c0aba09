"""Contamination check: does calibration text share content with evaluation items?

Two tests, on text normalised the same way (Unicode NFKC, lower case, punctuation and whitespace
collapsed, i.e. the sequence of ``\\w+`` words):

- exact duplicates: a calibration text whose normalised form equals a whole evaluation item, or
  one line of it (a question, a choice, a solution line) of at least ``MIN_EXACT_WORDS`` words;
- shared word n-grams (n=13 by default, the GPT-3 contamination convention).

Words are hashed to stable 64-bit integers (blake2b) and n-grams to a polynomial combination of
them, so the index of every evaluation n-gram is a sorted ``uint64`` array (about 60 MB on disk for all
sets), built once and cached on disk under a key made of the evaluation sets' version, n and the
normalisation version. N-grams that occur in more than ``MAX_ITEMS_PER_NGRAM`` evaluation items
are boilerplate (instructions repeated in every item) and are not counted as evidence.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from colakit.cache import atomic_path, cache_dir
from colakit.data.evalsets import eval_documents, evalsets_version
from colakit.errors import ColakitError

log = logging.getLogger(__name__)

NORMALISATION_VERSION = 3
MIN_EXACT_WORDS = 5
MAX_ITEMS_PER_NGRAM = 10
MAX_EXAMPLES = 5
# An item counts as overlapping when it shares at least this many distinct n-grams, or when the
# shared n-grams cover at least MIN_COVERAGE of its words: one lone 13-gram in a long item is
# usually a stock phrase ("... ability to continue as a going concern"), a pasted item shares many.
MIN_SHARED_NGRAMS = 2
MIN_COVERAGE = 0.5
_WORD = re.compile(r"\w+")
_PRIME = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial n-gram hash


def normalised_words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


class _WordHasher:
    """Stable 64-bit word hashes (Python's ``hash`` is salted per process, so unusable on disk)."""

    def __init__(self):
        self._memo: dict[str, int] = {}

    def __call__(self, words: list[str]) -> np.ndarray:
        memo = self._memo
        for w in set(words).difference(memo):
            memo[w] = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        return np.array([memo[w] for w in words], dtype=np.uint64)


def _ngram_hashes(words: list[str], word_hashes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash and start position of every window of ``n`` words that is mostly words, not numbers.

    Windows with fewer than half their words containing a letter ("1 2 3 ... 13", tables of
    numbers) are shared by unrelated texts and are skipped. uint64 arithmetic wraps, by design.
    """
    count = len(word_hashes) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int32)
    h = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _PRIME + word_hashes[j:j + count]
    has_letter = np.fromiter((not w.isdigit() for w in words), dtype=np.int32, count=len(words))
    lettered = np.convolve(has_letter, np.ones(n, dtype=np.int32), mode="valid")
    keep = np.flatnonzero(2 * lettered >= n).astype(np.int32)
    return h[keep], keep


def _text_hash(words: list[str]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(words).encode(), digest_size=8).digest(), "little")


def _concat_ngrams(texts: Iterable[str], n: int, hasher: _WordHasher):
    """n-gram hashes of all texts, with the index of the text and word position of each."""
    hashes, owners, starts, words_per_text = [], [], [], []
    for i, text in enumerate(texts):
        words = normalised_words(text)
        words_per_text.append(words)
        h, start = _ngram_hashes(words, hasher(words), n)
        hashes.append(h)
        owners.append(np.full(len(h), i, dtype=np.int32))
        starts.append(start)
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.empty(0, dtype=dt))
    return cat(hashes, np.uint64), cat(owners, np.int32), cat(starts, np.int32), words_per_text


@dataclass
class EvalIndex:
    """Sorted n-gram hashes of evaluation items (``doc`` says whose), plus exact-text hashes."""

    n: int
    tasks: np.ndarray  # task name per item
    item_ids: np.ndarray  # item id per item
    ngrams: np.ndarray  # uint64, sorted
    ngram_item: np.ndarray  # int32, item index of each n-gram
    exact: np.ndarray  # uint64, sorted: whole items and their long lines
    exact_item: np.ndarray
    item_words: np.ndarray  # int32, words per item (for the coverage rule)

    @classmethod
    def build(cls, eval_docs, n: int) -> "EvalIndex":
        hasher = _WordHasher()
        tasks, ids, exact, exact_item, item_words = [], [], [], [], []

        def texts():
            for i, doc in enumerate(eval_docs):
                tasks.append(doc.task)
                ids.append(doc.item_id)
                item_words.append(len(normalised_words(doc.text)))
                for part in [doc.text, *doc.text.split("\n")]:
                    words = normalised_words(part)
                    if len(words) >= MIN_EXACT_WORDS:
                        exact.append(_text_hash(words))
                        exact_item.append(i)
                yield doc.text

        hashes, owners, _, _ = _concat_ngrams(texts(), n, hasher)
        hashes, owners = _unique_pairs(hashes, owners)
        hashes, owners = _drop_common(hashes, owners, MAX_ITEMS_PER_NGRAM)
        ex, ex_item = _unique_pairs(np.array(exact, dtype=np.uint64), np.array(exact_item, dtype=np.int32))
        return cls(n, np.array(tasks), np.array(ids), hashes, owners, ex, ex_item,
                   np.array(item_words, dtype=np.int32))

    def save(self, path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, n=self.n, tasks=self.tasks, item_ids=self.item_ids, ngrams=self.ngrams,
                         ngram_item=self.ngram_item, exact=self.exact, exact_item=self.exact_item,
                         item_words=self.item_words)

    @classmethod
    def load(cls, path) -> "EvalIndex":
        with np.load(path, allow_pickle=False) as z:
            return cls(int(z["n"]), z["tasks"], z["item_ids"], z["ngrams"], z["ngram_item"], z["exact"], z["exact_item"],
                       z["item_words"])

    def lookup(self, keys: np.ndarray, table: np.ndarray, owner: np.ndarray):
        """(query position, item index) for every key found in ``table``."""
        lo = np.searchsorted(table, keys, side="left")
        hi = np.searchsorted(table, keys, side="right")
        counts = hi - lo
        query = np.repeat(np.arange(len(keys)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return query, owner[np.repeat(lo, counts) + offsets]


def _unique_pairs(hashes: np.ndarray, owners: np.ndarray):
    """Sort by hash and drop repeats of the same (hash, item)."""
    order = np.lexsort((owners, hashes))
    hashes, owners = hashes[order], owners[order]
    keep = np.ones(len(hashes), dtype=bool)
    keep[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
    return hashes[keep], owners[keep]


def _drop_common(hashes: np.ndarray, owners: np.ndarray, max_items: int):
    """Remove n-grams found in more than ``max_items`` items (hashes are sorted, pairs unique)."""
    _, counts = np.unique(hashes, return_counts=True)
    common = np.repeat(counts > max_items, counts)
    return hashes[~common], owners[~common]


def default_index(n: int = 13) -> EvalIndex:
    """The index over every evaluation set, cached on disk (first build: seconds to a minute)."""
    path = cache_dir() / "overlap" / f"index-{evalsets_version()}-n{n}-v{NORMALISATION_VERSION}.npz"
    if path.exists():
        try:
            return EvalIndex.load(path)
        except (OSError, ValueError, KeyError):
            log.warning("overlap index %s is unreadable; rebuilding it", path)
    index = EvalIndex.build(eval_documents(), n)
    index.save(path)
    return index


@dataclass
class TaskOverlap:
    task: str
    items: int = 0  # evaluation items that share content with the calibration texts
    exact_items: int = 0  # of those, exact duplicates
    texts: list[int] = field(default_factory=list)  # calibration texts involved (indices)
    examples: list[dict] = field(default_factory=list)


@dataclass
class OverlapReport:
    n: int
    n_texts: int
    n_eval_items: int
    tasks: dict[str, TaskOverlap]  # only tasks with overlap
    seconds: float

    @property
    def clean(self) -> bool:
        return not self.tasks

    @property
    def contaminated_texts(self) -> list[int]:
        return sorted({i for t in self.tasks.values() for i in t.texts})

    def summary(self) -> str:
        if self.clean:
            return (f"no overlap: {self.n_texts} calibration texts vs {self.n_eval_items} evaluation items "
                    f"(exact and {self.n}-gram)")
        per_task = ", ".join(f"{t.task}: {t.items} items ({t.exact_items} exact)" for t in self.tasks.values())
        return (f"{len(self.contaminated_texts)} of {self.n_texts} calibration texts overlap evaluation items "
                f"({self.n}-gram or exact): {per_task}")

    def to_dict(self) -> dict:
        return {"n": self.n, "n_texts": self.n_texts, "n_eval_items": self.n_eval_items, "clean": self.clean,
                "seconds": round(self.seconds, 3), "contaminated_texts": self.contaminated_texts,
                "tasks": {k: vars(v) for k, v in self.tasks.items()}}


def _shared_ngram_counts(items: np.ndarray, texts: np.ndarray, hashes: np.ndarray) -> dict[tuple[int, int], int]:
    """Distinct matched n-grams per (evaluation item, calibration text) pair."""
    if len(items) == 0:
        return {}
    triples = np.unique(np.stack([items.astype(np.uint64), texts.astype(np.uint64), hashes]), axis=1)
    pairs, counts = np.unique(triples[:2], axis=1, return_counts=True)
    return {(int(i), int(t)): int(c) for (i, t), c in zip(pairs.T.tolist(), counts.tolist())}


def check_overlap(texts: Iterable[str], eval_docs=None, n: int = 13) -> OverlapReport:
    """Find calibration texts that duplicate, or share ``n``-grams with, evaluation items.

    ``eval_docs``: ``EvalDocument``s to check against; default every evaluation set (cached index).
    """
    if n < 1:
        raise ColakitError(f"n-gram length must be at least 1, got {n}", "use the default n=13")
    t0 = time.perf_counter()
    index = default_index(n) if eval_docs is None else EvalIndex.build(eval_docs, n)
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ColakitError(f"calibration text {i} is {type(text).__name__}, not str", "pass a list of strings")
    hashes, owners, starts, words = _concat_ngrams(texts, n, _WordHasher())
    # (eval item, calibration text) -> (kind, evidence); exact duplicates first.
    hits: dict[tuple[int, int], tuple[str, str]] = {}
    exact = np.array([_text_hash(w) for w in words], dtype=np.uint64)
    for q, item in zip(*index.lookup(exact, index.exact, index.exact_item)):
        hits.setdefault((int(item), int(q)), ("exact", " ".join(words[q][:40])))
    queries, items = index.lookup(hashes, index.ngrams, index.ngram_item)
    shared = _shared_ngram_counts(items, owners[queries], hashes[queries])
    for q, item in zip(queries.tolist(), items.tolist()):
        t = int(owners[q])
        count = shared[(item, t)]
        if count >= MIN_SHARED_NGRAMS or count + n - 1 >= MIN_COVERAGE * index.item_words[item]:
            s = int(starts[q])
            hits.setdefault((item, t), ("ngram", " ".join(words[t][s:s + n])))
    tasks: dict[str, TaskOverlap] = {}
    seen_items: set[int] = set()
    for (item, text_index), (kind, evidence) in sorted(hits.items()):
        task = str(index.tasks[item])
        entry = tasks.setdefault(task, TaskOverlap(task))
        if item not in seen_items:
            seen_items.add(item)
            entry.items += 1
            entry.exact_items += kind == "exact"
            if len(entry.examples) < MAX_EXAMPLES:
                entry.examples.append({"item_id": str(index.item_ids[item]), "text_index": text_index,
                                       "kind": kind, "evidence": evidence})
        if text_index not in entry.texts:
            entry.texts.append(text_index)
    for entry in tasks.values():
        entry.texts.sort()
    return OverlapReport(n, len(texts), len(index.tasks), tasks, time.perf_counter() - t0)


def assert_no_overlap(texts: Iterable[str], *, allow: bool = False, eval_docs=None, n: int = 13) -> OverlapReport:
    """Raise when calibration texts overlap evaluation items; with ``allow=True`` warn loudly instead."""
    report = check_overlap(texts, eval_docs=eval_docs, n=n)
    if report.clean:
        return report
    if not allow:
        raise ColakitError(f"calibration data is contaminated: {report.summary()}",
                           "use another source, or pass --allow-overlap (allow=True) to go on with a warning")
    log.warning("CONTAMINATION: %s. Results on these tasks are not a fair measure.", report.summary())
    return report
