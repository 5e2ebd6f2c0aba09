"""Calibration sources: user specs, the deterministic split, errors; named sources on real data."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from colakit.errors import ColakitError
from colakit.data.sources import (MIXED_WEIGHTS, get_source, list_sources, render_commonsense, source_stats,
                             split_sections, split_wiki)


def _ids(source, split):
    return [d.doc_id for d in source.documents(split)]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_text_directory_gives_one_document_per_file_in_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_text("second file")
    (tmp_path / "a.txt").write_text("first file")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "notes.md").write_text("not a .txt file")
    docs = list(get_source(f"text:{tmp_path}", heldout_fraction=0).documents("all"))
    assert [(d.doc_id, d.text) for d in docs] == [("a.txt", "first file"), ("b/two.txt", "second file")]


def test_single_text_file_gives_one_document_per_paragraph(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("para one\nstill one\n\npara two\n   \npara three\n")
    texts = [d.text for d in get_source(f"text:{f}", heldout_fraction=0).documents("all")]
    assert texts == ["para one\nstill one", "para two", "para three"]


def test_jsonl_default_and_named_field(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [{"text": "alpha", "body": "A"}, {"text": "beta", "body": "B"}])
    assert [d.text for d in get_source(f"jsonl:{f}", heldout_fraction=0).documents("all")] == ["alpha", "beta"]
    assert [d.text for d in get_source(f"jsonl:{f}:body", heldout_fraction=0).documents("all")] == ["A", "B"]


def test_jsonl_errors_name_the_record(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, {"content": "no text field"}])
    with pytest.raises(ColakitError, match="line 2 has no field 'text'"):
        list(get_source(f"jsonl:{f}").documents("all"))
    g = _write_jsonl(tmp_path / "e.jsonl", [{"text": 3}])
    with pytest.raises(ColakitError, match="line 1: field 'text' is int, not text"):
        list(get_source(f"jsonl:{g}").documents("all"))
    h = tmp_path / "bad.jsonl"
    h.write_text('{"text": "fine"}\n{not json\n')
    with pytest.raises(ColakitError, match="line 2 is not valid JSON"):
        list(get_source(f"jsonl:{h}").documents("all"))


def test_parquet_column_and_errors(tmp_path):
    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"content": ["one", "two", None], "n": [1, 2, 3]}), f)
    src = get_source(f"parquet:{f}:content", heldout_fraction=0)
    with pytest.raises(ColakitError, match="row 2 has no field 'content'"):
        list(src.documents("all"))
    with pytest.raises(ColakitError, match=r"no column 'text' \(columns: content, n\)"):
        get_source(f"parquet:{f}")
    with pytest.raises(ColakitError, match="row 0: field 'n' is int"):
        list(get_source(f"parquet:{f}:n").documents("all"))
    g = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"text": ["x", "y"]}), g)
    assert [d.text for d in get_source(f"parquet:{g}", heldout_fraction=0).documents("all")] == ["x", "y"]


def test_split_is_deterministic_disjoint_and_complete(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [{"text": f"doc {i}"} for i in range(400)])
    src = get_source(f"jsonl:{f}", seed=3, heldout_fraction=0.25)
    cal, held, every = _ids(src, "calibration"), _ids(src, "heldout"), _ids(src, "all")
    assert not set(cal) & set(held) and sorted(cal + held) == sorted(every) and len(every) == 400
    assert 60 < len(held) < 140  # about a quarter
    assert _ids(get_source(f"jsonl:{f}", seed=3, heldout_fraction=0.25), "heldout") == held
    assert _ids(get_source(f"jsonl:{f}", seed=4, heldout_fraction=0.25), "heldout") != held
    assert src.split_info() == {"seed": 3, "heldout_fraction": 0.25, "method": src.split_info()["method"]}


def test_split_is_stable_when_the_pool_grows(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [{"text": f"doc {i}"} for i in range(200)])
    held_before = set(_ids(get_source(f"jsonl:{f}"), "heldout"))
    _write_jsonl(f, [{"text": f"doc {i}"} for i in range(300)])
    held_after = set(_ids(get_source(f"jsonl:{f}"), "heldout"))
    old_ids = {f"d.jsonl:{i}" for i in range(1, 201)}
    assert held_after & old_ids == held_before


def test_fingerprint_tracks_content_and_split(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": "b"}])
    fp = get_source(f"jsonl:{f}").fingerprint()
    assert fp == get_source(f"jsonl:{f}").fingerprint()
    assert fp != get_source(f"jsonl:{f}", seed=1).fingerprint()
    _write_jsonl(f, [{"text": "a"}, {"text": "c"}])
    assert fp != get_source(f"jsonl:{f}").fingerprint()


def test_errors_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ColakitError, match="unknown source 'nope'.*c4, wiki.*jsonl:PATH"):
        get_source("nope")
    with pytest.raises(ColakitError, match="does not exist"):
        get_source(f"text:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ColakitError, match="has no .txt files"):
        get_source(f"text:{tmp_path / 'empty'}")
    (tmp_path / "one.txt").write_text("only paragraph")
    with pytest.raises(ColakitError, match="no documents in split 'heldout'"):
        list(get_source(f"text:{tmp_path / 'one.txt'}", heldout_fraction=0).documents("heldout"))
    with pytest.raises(ColakitError, match="heldout_fraction"):
        get_source("c4", heldout_fraction=1.0)
    with pytest.raises(ColakitError, match="unknown split"):
        list(get_source(f"text:{tmp_path / 'one.txt'}").documents("train"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ColakitError, match="not UTF-8"):
        list(get_source(f"text:{tmp_path / 'latin1.txt'}", heldout_fraction=0).documents("all"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ColakitError, match="HF_HUB_OFFLINE"):
        list(get_source("hf:allenai/c4:en:validation").documents())


def test_splitters_and_rendering():
    wiki = '<doc id="7" title="A">\nA\n\nBody.\n</doc>\n<doc id="9" title="B">\nB text\n</doc>\n'
    assert split_wiki(wiki) == [("7", "A\n\nBody."), ("9", "B text")]
    text = "p1 " * 10 + "\n\n" + "p2\n\n\n\nblock two"
    assert split_sections(text, min_chars=20) == ["p1 " * 9 + "p1 ", "p2", "block two"]
    text, fields = render_commonsense("csqa", {"query": "Question: Where is a fox?\nAnswer:",
                                               "choices": ["forest", "sea"], "gold": 0})
    assert text == "Question: Where is a fox?\nAnswer: forest"
    assert fields == {"question": "Where is a fox?", "reasoning": "", "answer": "forest"}
    text, fields = render_commonsense("winogrande", {"sentence": "Ann beat Bo so _ won.", "option1": "Ann",
                                                     "option2": "Bo", "answer": "1"})
    assert text == "Ann beat Bo so Ann won." and fields["answer"] == "Ann"


@pytest.mark.integration
def test_every_named_source_yields_documents():
    for name in list_sources():
        src = get_source(name)
        first = next(src.documents())
        assert first.text.strip() and first.source == name and not src.is_heldout(first.doc_id)
        stats = source_stats(src)
        assert stats["calibration"] > 10 * stats["heldout"] / 2 > 0, name
    math_doc = next(get_source("math").documents())
    assert math_doc.text.startswith("Problem: ") and set(math_doc.fields) == {"question", "reasoning", "answer"}
    assert source_stats(get_source("c4"))["calibration"] + source_stats(get_source("c4"))["heldout"] == 584
    assert source_stats(get_source("wiki"))["calibration"] + source_stats(get_source("wiki"))["heldout"] == 2349


@pytest.mark.integration
def test_mixed_follows_its_weights_and_the_component_splits():
    mixed = get_source("mixed")
    per_source: dict[str, int] = {}
    for doc in mixed.documents("all"):
        component = doc.doc_id.split("/")[0]
        per_source[component] = per_source.get(component, 0) + len(doc.text.encode())
        assert mixed.is_heldout(doc.doc_id) == get_source(component).is_heldout(doc.doc_id)
    total = sum(per_source.values())
    for name, weight in MIXED_WEIGHTS.items():
        assert abs(per_source[name] / total - weight) < 0.5 * weight, (name, per_source[name] / total)
