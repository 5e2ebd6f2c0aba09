"""Stage 2, processing: documents -> formatted text -> token windows ("candidates").

Formats (COLA finds Q&A with explicit reasoning chains best for reasoning skills):
  plain    the document text as it is
  qa       "Question: ...\\nAnswer: ..." for documents that carry question/answer fields
  qa-cot   the same with the worked reasoning chain before the final answer
  chat     the model's chat template around the question (user) and answer (assistant), or
           around a document's ``messages``
Named sources without Q&A fields (web text, code, ...) stay plain in every format. The user's own
data must map the fields a format needs (``--field question=COL``, ``colakit.data.user``), or the
run stops before any work. The manifest's per-source record (``format``) counts the documents each
format changed and the ones it left as they were, and names the fields it read.

Packing:
  pack      documents are concatenated (EOS between them) and cut into non-overlapping windows
            of exactly ``seq_len`` tokens: no padding, every token counts (the GPTQ/SparseGPT way)
  truncate  one document per candidate, cut at ``seq_len``; shorter ones keep their length
            (padding is masked later), documents under ``min_tokens`` are dropped

BOS follows the tokenizer's own settings: a window starts with BOS only when the tokenizer adds
one to plain text itself (SmolLM2's does not).

Sampling (which documents a bounded pool is cut from), ``DocumentSample``: a source is read as a
stream. While its calibration documents hold at most ``SHUFFLE_BOUND`` characters of text (64 Mi;
every named source fits: the largest, ``commonsense``, holds 29 M), they are kept and shuffled with
``random.Random(seed)`` -- the order colakit has always used, so those pools are unchanged. A
larger source switches, once the bound is passed, to a seeded bounded-memory order: documents
ranked by ``sha256(f"pool:{seed}:{doc_id}")`` (then stream position), of which only the smallest
are kept, as many as the pool needs (``limit`` windows x ``seq_len`` tokens x 8 characters, at
least 2 x ``limit`` documents); should the windows need more, the next ones in that order are
collected in a further pass over the stream (each pass holding at most the bound). Memory is flat
in the source's size, time linear in the documents read, and the same seed gives the same pool.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch

from colakit.data.sources import get_source
from colakit.errors import ColakitError

FORMATS = ("plain", "qa", "qa-cot", "chat")
PACKINGS = ("pack", "truncate")


@dataclass
class Candidate:
    """A token window that a selector may pick; becomes a calibration Sample when chosen."""

    input_ids: list[int]
    text: str
    source: str
    doc_id: str
    doc_ids: list[str] = field(default_factory=list)
    start: int = 0


def qa_fields(doc) -> tuple[str, str | None, str] | None:
    """(question, reasoning, answer) when the document carries them, else None."""
    fields = getattr(doc, "fields", None) or {}
    question, answer = fields.get("question"), fields.get("answer")
    if not question or answer is None:
        return None
    return str(question), (str(fields["reasoning"]) if fields.get("reasoning") else None), str(answer)


def render(doc, fmt: str = "plain", tokenizer=None) -> str:
    """The text of ``doc`` in format ``fmt``."""
    if fmt not in FORMATS:
        raise ColakitError(f"unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    qa = qa_fields(doc) if fmt != "plain" else None
    if qa is None:
        messages = (getattr(doc, "fields", None) or {}).get("messages") if fmt == "chat" else None
        return _chat(tokenizer, messages) if messages else doc.text
    question, reasoning, answer = qa
    if fmt == "qa":
        return f"Question: {question}\nAnswer: {answer}"
    chain = f"{reasoning}\nSo the answer is {answer}." if reasoning else str(answer)
    if fmt == "qa-cot":
        return f"Question: {question}\nAnswer: Let's think step by step. {chain}"
    return _chat(tokenizer, [{"role": "user", "content": question}, {"role": "assistant", "content": chain}])


def _chat(tokenizer, messages: list[dict]) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ColakitError("format 'chat' needs a tokenizer with a chat template",
                           "use --format qa-cot for base models")
    return tokenizer.apply_chat_template(messages, tokenize=False)


def formats(doc, fmt: str) -> bool:
    """Whether ``render(doc, fmt)`` changes the document (False: its text is used as it is)."""
    if fmt == "plain":
        return False
    return qa_fields(doc) is not None or (fmt == "chat" and bool((getattr(doc, "fields", None) or {}).get("messages")))


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of plain text on its own."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def windows(docs: Iterable, tokenizer, seq_len: int, *, packing: str = "pack", fmt: str = "plain",
            limit: int | None = None, min_tokens: int = 16, counts: dict | None = None) -> Iterator[Candidate]:
    """Cut formatted, tokenized documents into candidate windows (at most ``limit``).

    ``counts``: filled with how many of the documents the windows read ``fmt`` changed
    (``formatted``) and how many it left as they were (``unchanged``).
    """
    if packing not in PACKINGS:
        raise ColakitError(f"unknown packing {packing!r}", f"use one of: {', '.join(PACKINGS)}")
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    body = seq_len - len(bos)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    made = 0
    buf: list[int] = []
    owners: list[tuple[int, str, str]] = []  # (position in buf where a doc starts, doc_id, source)
    for batch in _batched(docs, 64):
        texts = [render(d, fmt, tokenizer) for d in batch]
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        for doc, ids in zip(batch, encoded):
            if counts is not None:
                key = "formatted" if formats(doc, fmt) else "unchanged"
                counts[key] = counts.get(key, 0) + 1
            if packing == "truncate":
                if len(ids) < min_tokens:
                    continue
                window = bos + ids[:body]
                yield Candidate(window, tokenizer.decode(window), doc.source, doc.doc_id, [doc.doc_id], 0)
                made += 1
            else:
                owners.append((len(buf), doc.doc_id, doc.source))
                buf.extend(ids + eos)
                while len(buf) >= body and (limit is None or made < limit):
                    yield _cut(buf, owners, body, bos, tokenizer)
                    made += 1
                    buf, owners = _advance(buf, owners, body)
            if limit is not None and made >= limit:
                return


def _cut(buf: list[int], owners: list[tuple[int, str, str]], body: int, bos: list[int], tokenizer) -> Candidate:
    """The window ``bos + buf[:body]``, attributed to the document it starts in."""
    window = bos + buf[:body]
    first = max((o for o in owners if o[0] <= 0), key=lambda o: o[0])
    touched = [doc_id for pos, doc_id, _ in owners if pos < body]
    return Candidate(window, tokenizer.decode(window), first[2], first[1], touched, -first[0])


def _advance(buf: list[int], owners: list[tuple[int, str, str]], body: int):
    """Drop the first ``body`` tokens; keep the documents that continue past them."""
    ends = [nxt[0] for nxt in owners[1:]] + [len(buf)]
    kept = [(pos - body, doc_id, src) for (pos, doc_id, src), end in zip(owners, ends) if end > body]
    return buf[body:], kept


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int):
    """Right-padded ``(input_ids, attention_mask)`` LongTensors [len(seqs), longest].

    The one padding rule of colakit (features, CalibrationSet.to_tensors): real tokens first,
    ``pad_id`` after them, mask 1 on real tokens only.
    """
    if not seqs:
        raise ColakitError("nothing to pad", "pass at least one sequence")
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for r, seq in enumerate(seqs):
        ids[r, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[r, :len(seq)] = 1
    return ids, mask


def shuffled(docs: Iterable, seed: int) -> list:
    """Documents in a seeded random order (a bounded pool then samples the whole source)."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    return docs


SHUFFLE_BOUND = 64 * 2**20  # characters of document text a source may hold for the in-memory shuffle
CHARS_PER_TOKEN = 8  # generous (English ~4.5, code ~3): the bounded order rarely needs a second pass


def sample_key(doc_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"pool:{seed}:{doc_id}".encode()).digest()[:8], "big")


class _Smallest:
    """The documents with the smallest keys whose text reaches ``chars`` and whose count reaches ``docs``.

    A max-heap: after each push, the largest key goes while the rest still reach both.
    """

    def __init__(self, chars: int, docs: int):
        self.chars, self.docs = chars, docs
        self.heap: list = []  # (-key, -position, length, doc)
        self.total = 0

    def push(self, key: tuple[int, int], doc) -> None:
        heapq.heappush(self.heap, (-key[0], -key[1], len(doc.text), doc))
        self.total += len(doc.text)
        while len(self.heap) > self.docs and self.total - self.heap[0][2] >= self.chars:
            self.total -= heapq.heappop(self.heap)[2]

    def ordered(self) -> list[tuple[tuple[int, int], object]]:
        return sorted(((-k, -i), doc) for k, i, _, doc in self.heap)


class DocumentSample:
    """A seeded sample of ``stream()``'s documents in the order a pool is cut from (module docstring).

    The first pass runs here, so ``documents_read`` (documents in the stream) is known at once;
    iterating (once) yields the documents, with further passes over ``stream()`` only if asked for
    more than the first pass kept.
    """

    def __init__(self, stream: Callable[[], Iterable], seed: int, *, need_chars: int | None = None,
                 need_docs: int = 1, bound: int | None = None):
        bound = SHUFFLE_BOUND if bound is None else bound
        self.stream, self.seed, self.bound = stream, seed, bound
        it = iter(stream())
        buf, chars, self.documents_read = [], 0, 0
        for doc in it:
            self.documents_read += 1
            buf.append(doc)
            chars += len(doc.text)
            if chars > bound:
                break
        else:
            self.bounded, self._docs = False, shuffled(buf, seed)
            return
        self.bounded, self._docs = True, None
        first = _Smallest(bound if need_chars is None else min(need_chars, bound), max(need_docs, 1))
        for pos, doc in enumerate(buf):
            first.push((sample_key(doc.doc_id, seed), pos), doc)
        del buf
        for pos, doc in enumerate(it, start=self.documents_read):
            self.documents_read += 1
            first.push((sample_key(doc.doc_id, seed), pos), doc)
        self._first = first.ordered()

    def __iter__(self) -> Iterator:
        if not self.bounded:
            yield from self._docs
            return
        kept, self._first = self._first, []
        while kept:
            for _, doc in kept:
                yield doc
            last = kept[-1][0]
            more = _Smallest(self.bound, 1)  # the pool wants more: the next documents in the same order
            for pos, doc in enumerate(self.stream()):
                key = (sample_key(doc.doc_id, self.seed), pos)
                if key > last:
                    more.push(key, doc)
            kept = more.ordered()


@dataclass(frozen=True)
class SourceJob:
    """Read one source and cut its calibration part into windows: the unit an executor runs."""

    spec: str
    seq_len: int
    packing: str = "pack"
    fmt: str = "plain"
    limit: int | None = None
    seed: int = 0  # document order
    split_seed: int = 0
    heldout_fraction: float = 0.1


def pool_sample(source, seed: int, seq_len: int, packing: str, limit: int | None,
                tally: dict | None = None, split: str = "calibration") -> DocumentSample:
    """The documents of ``split`` of ``source`` in the order windows are cut from (``DocumentSample``)."""
    need_chars = None if limit is None else (limit * seq_len * CHARS_PER_TOKEN if packing == "pack" else 0)
    need_docs = 1 if limit is None else 2 * limit
    first = [True]

    def stream():
        counting, first[0] = first[0], False  # the first pass counts both parts; later passes only re-read
        return source.documents(split, tally=tally if counting else None)

    return DocumentSample(stream, seed, need_chars=need_chars, need_docs=need_docs)


def source_windows(job: SourceJob, tokenizer) -> tuple[dict, Iterator[Candidate]]:
    """(provenance of the source, its candidate windows as a stream).

    Deterministic in ``job``: the same windows in the same order on any machine, so sources can be
    processed in parallel and merged in source order afterwards. ``info["format"]`` (formats other
    than plain) fills in as the windows are read.
    """
    source = get_source(job.spec, seed=job.split_seed, heldout_fraction=job.heldout_fraction)
    source.check(job.fmt)  # a format the data cannot give fails before any reading
    tally: dict = {}
    docs = pool_sample(source, job.seed, job.seq_len, job.packing, job.limit, tally)
    info = {"spec": job.spec, "name": source.name, "fingerprint": source.fingerprint(),
            "split": source.split_info(), "documents_read": docs.documents_read, "documents": tally,
            "user": source.user}
    counts = None
    if job.fmt != "plain":
        counts = {"formatted": 0, "unchanged": 0}
        plan = getattr(source, "plan", None)
        # fields: the user's columns read for each role; None for a named source (its own Q&A fields)
        info["format"] = {"format": job.fmt, "documents": counts,
                          "fields": dict(plan.mapping) if plan is not None else None}
    return info, windows(docs, tokenizer, job.seq_len, packing=job.packing, fmt=job.fmt, limit=job.limit,
                         counts=counts)
