from dataclasses import dataclass, field

import pytest

from colakit.errors import ColakitError
from colakit.curate.process import adds_bos, render, shuffled, windows
from tiny_models import tiny_tokenizer


@dataclass(frozen=True)
class Doc:
    text: str
    source: str = "t"
    doc_id: str = "0"
    fields: dict = field(default_factory=dict)


def docs(k=20):
    return [Doc(f"document {i}: the quick brown fox jumps over the lazy dog. " * (1 + i % 4), doc_id=str(i))
            for i in range(k)]


def test_pack_gives_exact_windows_and_provenance():
    tok = tiny_tokenizer()
    cands = list(windows(docs(), tok, 32, packing="pack"))
    assert cands and all(len(c.input_ids) == 32 for c in cands)
    # the packed stream, cut into windows, is the concatenation of the documents (EOS between)
    stream = []
    for d in docs():
        stream += tok(d.text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert sum((c.input_ids for c in cands), []) == stream[: 32 * len(cands)]
    # each window starts in the document it is attributed to, at the recorded offset
    for c in cands:
        ids = tok(docs()[int(c.doc_id)].text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        head = ids[c.start:c.start + 32]
        assert c.input_ids[: len(head)] == head
        assert c.doc_id == c.doc_ids[0]


def test_limit_and_truncate():
    tok = tiny_tokenizer()
    assert len(list(windows(docs(), tok, 16, limit=3))) == 3
    cands = list(windows(docs(), tok, 24, packing="truncate", min_tokens=4))
    assert len(cands) == 20 and all(len(c.input_ids) <= 24 for c in cands)
    assert [c.doc_id for c in cands] == [str(i) for i in range(20)]


def test_bos_follows_tokenizer():
    assert not adds_bos(tiny_tokenizer())
    tok = tiny_tokenizer(add_bos=True)
    assert adds_bos(tok)
    cands = list(windows(docs(), tok, 16, limit=4))
    assert all(c.input_ids[0] == tok.bos_token_id and len(c.input_ids) == 16 for c in cands)


def test_formats():
    qa = Doc("raw", fields={"question": "What is 2+3?", "reasoning": "2 plus 3 is 5.", "answer": "5"})
    assert render(qa, "plain") == "raw"
    assert render(qa, "qa") == "Question: What is 2+3?\nAnswer: 5"
    cot = render(qa, "qa-cot")
    assert "2 plus 3 is 5." in cot and cot.endswith("So the answer is 5.")
    assert render(Doc("web text"), "qa-cot") == "web text"  # no Q&A fields: stays plain
    with pytest.raises(ColakitError, match="chat template"):
        render(qa, "chat", tiny_tokenizer())
    with pytest.raises(ColakitError, match="unknown format"):
        render(qa, "markdown")


def test_shuffled_is_seeded():
    assert shuffled(range(50), 1) == shuffled(range(50), 1) != shuffled(range(50), 2)
