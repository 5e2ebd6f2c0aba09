"""Stage 2, processing: documents -> formatted text -> token windows ("candidates").

Formats (COLA finds Q&A with explicit reasoning chains best for reasoning skills):
  plain    the document text as it is
  qa       "Question: ...\\nAnswer: ..." for documents that carry question/answer fields
  qa-cot   the same with the worked reasoning chain before the final answer
  chat     the model's chat template around the question (user) and answer (assistant)
Documents without Q&A fields (web text, code, ...) stay plain in every format; the manifest
records how many documents each format actually changed.

Packing:
  pack      documents are concatenated (EOS between them) and cut into non-overlapping windows
            of exactly ``seq_len`` tokens: no padding, every token counts (the GPTQ/SparseGPT way)
  truncate  one document per candidate, cut at ``seq_len``; shorter ones keep their length
            (padding is masked later), documents under ``min_tokens`` are dropped

BOS follows the tokenizer's own settings: a window starts with BOS only when the tokenizer adds
one to plain text itself (SmolLM2's does not).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

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
        return doc.text
    question, reasoning, answer = qa
    if fmt == "qa":
        return f"Question: {question}\nAnswer: {answer}"
    chain = f"{reasoning}\nSo the answer is {answer}." if reasoning else str(answer)
    if fmt == "qa-cot":
        return f"Question: {question}\nAnswer: Let's think step by step. {chain}"
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ColakitError("format 'chat' needs a tokenizer with a chat template",
                           "use --format qa-cot for base models")
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": chain}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


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
            limit: int | None = None, min_tokens: int = 16) -> Iterator[Candidate]:
    """Cut formatted, tokenized documents into candidate windows (at most ``limit``)."""
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


def source_windows(job: SourceJob, tokenizer) -> tuple[dict, Iterator[Candidate]]:
    """(provenance of the source, its candidate windows as a stream).

    Deterministic in ``job``: the same windows in the same order on any machine, so sources can be
    processed in parallel and merged in source order afterwards.
    """
    source = get_source(job.spec, seed=job.split_seed, heldout_fraction=job.heldout_fraction)
    docs = shuffled(source.documents("calibration"), seed=job.seed)
    info = {"spec": job.spec, "name": source.name, "fingerprint": source.fingerprint(),
            "split": source.split_info(), "documents_read": len(docs)}
    return info, windows(docs, tokenizer, job.seq_len, packing=job.packing, fmt=job.fmt, limit=job.limit)
