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


# --------------------------------------------------------------------------- issue 22: your own data


def _records(k=30):
    return [{"text": f"document {i} about foxes", "prompt": f"What is {i} + 1?", "response": str(i + 1),
             "steps": f"{i} plus one", "n": i} for i in range(k)]


def _texts(spec, **kw):
    return [d.text for d in get_source(spec, heldout_fraction=0, **kw).documents("all")]


def test_every_file_format_and_compression_gives_the_same_documents(tmp_path):
    import csv
    import gzip

    import zstandard

    recs = _records()
    want = [r["text"] for r in recs]
    jsonl = "".join(json.dumps(r) + "\n" for r in recs).encode()
    (tmp_path / "a.jsonl").write_bytes(jsonl)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(jsonl))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl))
    (tmp_path / "d.json").write_text(json.dumps(recs))
    (tmp_path / "e.json").write_bytes(jsonl)  # JSON Lines in a .json file
    for name, delim in (("f.csv", ","), ("g.tsv", "\t")):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(recs[0]), delimiter=delim)
            w.writeheader()
            w.writerows(recs)
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "h.parquet")
    for name in ("a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.json", "e.json", "f.csv", "g.tsv", "h.parquet"):
        assert _texts(str(tmp_path / name)) == want, name
    assert _texts(f"jsonl:{tmp_path / 'b.jsonl.gz'}") == want  # today's form reads compressed files too
    docs = list(get_source(str(tmp_path / "f.csv"), heldout_fraction=0).documents("all"))
    assert docs[0].doc_id == "f.csv:2"  # the line the record starts on (the header is line 1)
    assert [d.doc_id for d in get_source(str(tmp_path / "d.json"), heldout_fraction=0).documents("all")][:2] == [
        "d.json:0", "d.json:1"]


def test_directories_and_globs_read_every_file_with_relative_ids(tmp_path):
    (tmp_path / "shards" / "x").mkdir(parents=True)
    recs = _records(9)
    for i in range(3):
        _write_jsonl(tmp_path / "shards" / "x" / f"p{i}.jsonl", recs[3 * i:3 * i + 3])
    (tmp_path / "shards" / "README.md").write_text("not data")
    every = [r["text"] for r in recs]
    for spec in (f"{tmp_path}/shards", f"{tmp_path}/shards/**/*.jsonl", f"{tmp_path}/shards/x/p?.jsonl",
                 f"jsonl:{tmp_path}/shards"):
        assert _texts(spec) == every, spec
    ids = [d.doc_id for d in get_source(f"{tmp_path}/shards", heldout_fraction=0).documents("all")]
    assert ids[:2] == ["x/p0.jsonl:1", "x/p0.jsonl:2"]  # relative to the folder: moving the data keeps the split
    assert _texts(f"{tmp_path}/shards/x/p[12].jsonl") == every[3:]


def test_paths_with_commas_colons_and_brackets(tmp_path):
    from colakit.data.spec import split_specs

    odd = tmp_path / "my,data:[v1].jsonl"
    _write_jsonl(odd, _records(5))
    assert _texts(str(odd)) == [r["text"] for r in _records(5)]  # an existing path is read literally
    assert _texts(f"jsonl:{odd}") == _texts(str(odd))
    assert _texts(f"{odd}?field=prompt&limit=2") == ["What is 0 + 1?", "What is 1 + 1?"]
    assert _texts(f"{tmp_path}/my,data:[[]v1].jsonl") == _texts(str(odd))  # a glob: [[] is a literal [
    assert split_specs(f'c4, "{odd}",wiki') == ["c4", str(odd), "wiki"]  # CSV quoting in --sources
    assert split_specs("c4,wiki,") == ["c4", "wiki"]
    # quotes around part of a spec, before its options, in any position (csv refused text after a quote)
    assert split_specs(f'"{odd}"?field=text,c4') == [f"{odd}?field=text", "c4"]
    assert split_specs(f'wiki, "{odd}"?field=text ,c4') == ["wiki", f"{odd}?field=text", "c4"]
    assert split_specs('"a.jsonl?field=x" ,c4') == ["a.jsonl?field=x", "c4"]
    assert split_specs('"say ""hi"".jsonl",c4') == ['say "hi".jsonl', "c4"]
    with pytest.raises(ColakitError, match="not closed"):
        split_specs('c4,"a,b.jsonl')


def test_template_limit_and_per_source_heldout(tmp_path):
    f = _write_jsonl(tmp_path / "qa.jsonl", _records(40))
    assert _texts(f"{f}?template=Q: {{prompt}}\\nA: {{response}} ({{n}})")[0] == "Q: What is 0 + 1?\nA: 1 (0)"
    assert len(_texts(f"{f}?limit=7")) == 7
    assert _texts(f"jsonl:{f}:prompt") == _texts(f"{f}?field=prompt")  # today's PATH:FIELD and the option agree
    src = get_source(f"{f}?heldout=0", heldout_fraction=0.5)
    assert src.heldout_fraction == 0 and len(list(src.documents("calibration"))) == 40
    assert get_source(str(f), heldout_fraction=0.5).heldout_fraction == 0.5


def test_todays_forms_keep_their_names_ids_and_text(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", _records(4))
    assert get_source(f"jsonl:{f}").name == f"jsonl:{f}:text"
    assert get_source(f"jsonl:{f}:prompt").name == f"jsonl:{f}:prompt"
    assert [d.doc_id for d in get_source(f"jsonl:{f}", heldout_fraction=0).documents("all")] == [
        f"d.jsonl:{i}" for i in range(1, 5)]
    g = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(_records(3)), g)
    assert get_source(f"parquet:{g}:prompt").name == f"parquet:{g}:prompt"
    (tmp_path / "note.txt").write_text("a note")
    assert get_source(f"text:{tmp_path}").name == f"text:{tmp_path}"


def test_text_paragraphs_streamed_in_chunks_cut_as_the_whole_text(tmp_path, monkeypatch):
    import random

    from colakit.data import readers
    from colakit.data.sources import split_paragraphs

    rng = random.Random(0)
    pieces = ["a", "é", "日本", " ", "\t", "\n", "\n\n", "\n \n", "\r\n", "\r\n\r\n", "\n\t\n\n", "word"]
    text = "".join(rng.choice(pieces) for _ in range(3000))
    f = tmp_path / "t.txt"
    f.write_bytes(text.encode())
    want = split_paragraphs(f.read_text(encoding="utf-8"))
    monkeypatch.setattr(readers, "CHUNK", 7)  # separators and characters split across chunks
    assert _texts(f"text:{f}") == want and len(want) > 50


def test_saved_datasets_and_local_dataset_folders_never_need_the_hub(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recs = _records(20)
    ds = datasets.Dataset.from_list(recs)
    ds.save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": ds, "test": ds.select(range(5))}).save_to_disk(str(tmp_path / "dd"))
    every = [r["text"] for r in recs]
    assert _texts(str(tmp_path / "ds")) == every  # a bare folder written by save_to_disk
    assert _texts(f"hf:{tmp_path / 'ds'}") == every  # hf: with a local path: load_from_disk, not the hub
    assert _texts(str(tmp_path / "dd")) == every  # DatasetDict: its train split
    assert _texts(f"{tmp_path / 'dd'}?split=test") == every[:5]
    assert _texts(f"hf:{tmp_path / 'dd'}:train[3:6]") == every[3:6]
    assert _texts(f"{tmp_path / 'dd'}?split=train[:10%]&field=prompt") == [r["prompt"] for r in recs[:2]]
    ids = [d.doc_id for d in get_source(f"hf:{tmp_path / 'dd'}:train[3:6]", heldout_fraction=0).documents("all")]
    assert ids == ["dd:3", "dd:4", "dd:5"]
    with pytest.raises(ColakitError, match="splits train, test.*split=train"):
        list(get_source(f"{tmp_path / 'dd'}?split=valid").documents())
    # a folder of data files goes through datasets' streaming loader, as a hub dataset would
    (tmp_path / "hub").mkdir()
    _write_jsonl(tmp_path / "hub" / "train.jsonl", recs)
    assert _texts(f"hf:{tmp_path / 'hub'}") == every
    assert _texts(f"hf:{tmp_path / 'hub'}:default:train[10:13]") == every[10:13]
    assert _texts(f"hf:{tmp_path / 'hub'}?split=train[:4]&limit=2") == every[:2]
    with pytest.raises(ColakitError, match="HF_HUB_OFFLINE"):  # a remote name still needs the hub
        list(get_source("hf:allenai/c4?split=validation[:1000]").documents())


def test_format_fields_are_checked_before_any_work(tmp_path):
    f = _write_jsonl(tmp_path / "qa.jsonl", _records(5))
    for fmt in ("qa", "qa-cot", "chat"):
        with pytest.raises(ColakitError, match=f"no .*fields for --format {fmt}.*prompt, response.*--field"):
            get_source(str(f)).check(fmt)
    src = get_source(f"{f}?question=prompt&answer=response&reasoning=steps")
    src.check("qa-cot")
    doc = next(src.documents("all"))
    assert doc.fields == {"question": "What is 0 + 1?", "answer": "1", "reasoning": "0 plus one"}
    assert doc.text == "document 0 about foxes"
    with pytest.raises(ColakitError, match=r"first record\) has no format field 'answr'"):
        get_source(f"{f}?question=prompt&answer=answr").check("qa")
    g = _write_jsonl(tmp_path / "only_qa.jsonl", [{"prompt": "Why?", "response": "Because."}])
    derived = get_source(f"{g}?question=prompt&answer=response", heldout_fraction=0)
    derived.check("plain")
    assert [d.text for d in derived.documents("all")] == ["Why?\n\nBecause."]  # no text field: the Q&A is the text
    own = _write_jsonl(tmp_path / "own.jsonl", [{"question": "Q?", "answer": "A."}, {"question": "R?", "answer": "B."}])
    get_source(str(own)).check("qa")  # fields named question/answer map themselves
    chat = _write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}]},
                                                  {"messages": "hello"}])
    src = get_source(f"{chat}?messages=messages", heldout_fraction=0)
    src.check("chat")
    with pytest.raises(ColakitError, match="chat.jsonl line 2: field 'messages' is not a list of"):
        list(src.documents("all"))
    (tmp_path / "notes.txt").write_text("plain prose")
    with pytest.raises(ColakitError, match="is plain text: --format qa"):
        get_source(f"text:{tmp_path}").check("qa")


def test_spec_errors_say_how_to_write_it(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", _records(3))
    cases = {f"{f}?bogus=1": "unknown option 'bogus'.*use one of: field",
             f"{f}?limit=0": "limit .* positive whole number",
             f"{f}?heldout=1.5": r"heldout .* in \[0, 1\)",
             f"{f}?field=a&template={{b}}": "both field and template",
             f"{f}?template=plain": "must name fields in braces",
             "hf:a:b:c:d": "bad hub spec",
             "allenai/c4": "a hub dataset is hf:allenai/c4",
             f"{f}?config=en": "config .* is for hub datasets"}
    for spec, pattern in cases.items():
        with pytest.raises(ColakitError, match=pattern):
            get_source(spec)


def _one_line(spec, pattern):
    with pytest.raises(ColakitError) as err:
        list(get_source(spec, heldout_fraction=0).documents("all"))
    text = str(err.value)
    assert "\n" not in text and err.value.hint, text
    assert __import__("re").search(pattern, text), text


def test_every_bad_file_is_one_line_naming_file_line_and_fix(tmp_path):
    import gzip

    import zstandard

    good = b'{"text": "fine"}\n'
    latin = '{"text": "caf\xe9"}\n'.encode("latin-1")
    (tmp_path / "l.jsonl").write_bytes(good * 2 + latin)
    _one_line(str(tmp_path / "l.jsonl"), r"l\.jsonl line 3 is not UTF-8 .*-- convert it to UTF-8")
    (tmp_path / "l.jsonl.gz").write_bytes(gzip.compress(good + latin))
    _one_line(str(tmp_path / "l.jsonl.gz"), r"l\.jsonl\.gz line 2 is not UTF-8")
    (tmp_path / "l.csv").write_bytes(b"text\nok\n" + "caf\xe9\n".encode("latin-1"))
    _one_line(str(tmp_path / "l.csv"), r"l\.csv line 3 is not UTF-8")
    (tmp_path / "l.json").write_bytes(b'[{"text": "ok"},\n' + '{"text": "caf\xe9"}]'.encode("latin-1"))
    _one_line(str(tmp_path / "l.json"), r"l\.json line 2 is not UTF-8")
    (tmp_path / "l.txt").write_bytes(b"one\n\ntwo\n" + "caf\xe9 au lait\n".encode("latin-1"))
    _one_line(f"text:{tmp_path / 'l.txt'}", r"l\.txt line 4 is not UTF-8")
    offsets = pa.py_buffer(bytes([0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0]))
    strings = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok\xe9\xff")])
    pq.write_table(pa.table({"text": strings}), tmp_path / "l.parquet")
    _one_line(str(tmp_path / "l.parquet"), r"l\.parquet row 1 \(column 'text'\) is not UTF-8")
    pq.write_table(pa.table({"text": ["x" * 100] * 500}), tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ColakitError, match=r"cannot read '.*cut\.parquet' as Parquet .*truncated or not Parquet"):
        get_source(str(tmp_path / "cut.parquet"))
    _one_line(f"{tmp_path}/nothing/*.jsonl", "no file matches .*check the pattern")
    (tmp_path / "types.jsonl").write_text('{"text": "ok"}\n{"text": ["a", "b"]}\n')
    _one_line(str(tmp_path / "types.jsonl"), r"types\.jsonl line 2: field 'text' is list, not text")
    pq.write_table(pa.table({"text": ["a", "b"], "n": [1, 2]}), tmp_path / "n.parquet")
    _one_line(f"{tmp_path / 'n.parquet'}?field=n", r"n\.parquet row 0: field 'n' is int")
    many = good * 20000
    gz = gzip.compress(many)
    (tmp_path / "cut.jsonl.gz").write_bytes(gz[: len(gz) // 2])
    _one_line(str(tmp_path / "cut.jsonl.gz"), r"cut\.jsonl\.gz: the gzip data is corrupt or truncated after line "
                                              r"\d+ .*check it with gzip -t")
    (tmp_path / "fake.jsonl.gz").write_bytes(b"not gzip at all")
    _one_line(str(tmp_path / "fake.jsonl.gz"), r"fake\.jsonl\.gz: the gzip data is corrupt")
    zst = zstandard.ZstdCompressor().compress(many)
    (tmp_path / "cut.jsonl.zst").write_bytes(zst[: len(zst) // 2])
    _one_line(str(tmp_path / "cut.jsonl.zst"), r"cut\.jsonl\.zst: the zstd data is corrupt or truncated")
    (tmp_path / "ragged.csv").write_text("text,b\nok,1\nbad\n")
    _one_line(str(tmp_path / "ragged.csv"), r"ragged\.csv line 3 has 1 columns")


def test_a_too_small_file_suggests_a_flag_that_exists(tmp_path):
    f = _write_jsonl(tmp_path / "one.jsonl", [{"text": "only one"}])
    held = next(s for s in range(100) if get_source(str(f), seed=s, heldout_fraction=0.9).is_heldout("one.jsonl:1"))
    with pytest.raises(ColakitError, match="all in the other part: use --heldout-fraction 0"):
        list(get_source(str(f), seed=held, heldout_fraction=0.9).documents("calibration"))


def test_sources_show_reads_one_spec_as_curate_would(tmp_path):
    from typer.testing import CliRunner

    from colakit.cli import app

    f = _write_jsonl(tmp_path / "qa.jsonl", _records(30))
    result = CliRunner().invoke(app, ["sources", "show", str(f), "--field", "question=prompt", "--field",
                                      "answer=response", "--format", "qa", "--heldout-fraction", "0", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["calibration"] == 30 and info["heldout"] == 0
    assert info["fields"] == {"question": "prompt", "answer": "response"} and info["first_doc_id"] == "qa.jsonl:1"
    bad = CliRunner().invoke(app, ["sources", "show", str(f), "--format", "qa"])
    assert isinstance(bad.exception, ColakitError) and "--field question=COL" in str(bad.exception)


def test_check_overlap_input_that_is_not_utf8_is_one_line(tmp_path):
    from colakit.cli.data import read_texts

    (tmp_path / "x.txt").write_bytes("ok\n\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ColakitError, match=r"x\.txt line 3 is not UTF-8"):
        read_texts(tmp_path / "x.txt")
    (tmp_path / "x.jsonl").write_bytes(b'{"text": "a"}\n' + '{"text": "\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ColakitError, match=r"x\.jsonl line 2 is not UTF-8"):
        read_texts(tmp_path / "x.jsonl")
