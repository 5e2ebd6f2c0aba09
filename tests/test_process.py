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


# --------------------------------------------------------------------------- issue 22: bounded-memory sampling


def _stream(k=300, size=50):
    return lambda: (Doc("x" * (size + i % 7), doc_id=f"d{i}") for i in range(k))


def test_a_source_within_the_bound_is_shuffled_as_before():
    from colakit.curate.process import DocumentSample

    sample = DocumentSample(_stream(), 3, need_chars=100, bound=10**9)
    assert not sample.bounded and sample.documents_read == 300
    assert [d.doc_id for d in sample] == [d.doc_id for d in shuffled(_stream()(), 3)]


def test_beyond_the_bound_the_order_is_seeded_flat_and_needs_no_estimate():
    from colakit.curate.process import DocumentSample, sample_key

    full = sorted(_stream()(), key=lambda d: sample_key(d.doc_id, 5))
    small = DocumentSample(_stream(), 5, need_chars=200, need_docs=2, bound=1000)
    assert small.bounded and small.documents_read == 300
    assert len(small._first) < 10  # kept: what the pool needs, not the source
    # reading on goes to further passes over the stream, in the same order: the estimate never changes the pool
    assert [d.doc_id for d in small] == [d.doc_id for d in full]
    big = DocumentSample(_stream(), 5, need_chars=5000, bound=1000)
    assert [d.doc_id for d in big][:40] == [d.doc_id for d in full][:40]
    counted = DocumentSample(_stream(), 5, need_chars=0, need_docs=4, bound=1000)  # truncate: documents, not text
    assert len(counted._first) == 4 and [d.doc_id for d in counted][:40] == [d.doc_id for d in full][:40]
    other = DocumentSample(_stream(), 6, need_chars=200, bound=1000)
    assert [d.doc_id for d in other][:20] != [d.doc_id for d in full][:20]


def test_chat_renders_messages_and_counts_what_a_format_changed():
    tok = tiny_tokenizer()
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
    chat = Doc("raw", fields={"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    assert render(chat, "chat", tok) == "<user>hi\n<assistant>yo\n"
    assert render(chat, "qa", tok) == "raw"  # qa needs question/answer: user sources are checked before this
    qa = Doc("raw", doc_id="q", fields={"question": "What is 2+3?", "reasoning": "", "answer": "5"})
    counts = {}
    list(windows([qa, Doc("web text " * 20, doc_id="w"), chat], tok, 16, fmt="chat", counts=counts))
    assert counts == {"formatted": 2, "unchanged": 1}
