import hashlib
import json
import logging

import pytest

from colakit.calibset import CalibrationSet, Sample
from colakit.errors import ColakitError
from tiny_models import tiny_tokenizer


def make(n=4, length=12):
    tok = tiny_tokenizer()
    seqs = [[(i * 7 + j) % 200 + 3 for j in range(length - i)] for i in range(n)]
    return CalibrationSet.from_token_ids(seqs, tokenizer=tok, model="tiny", seed=3), tok


def test_roundtrip_identical(tmp_path):
    calib, _ = make()
    calib.save(tmp_path / "cs")
    back = CalibrationSet.load(tmp_path / "cs")
    assert [s.input_ids for s in back.samples] == [s.input_ids for s in calib.samples]
    assert [s.text for s in back.samples] == [s.text for s in calib.samples]
    assert back.content_hash == calib.content_hash
    assert back.manifest["n"] == 4 and back.manifest["seed"] == 3


def test_tensors_and_dataset():
    calib, tok = make()
    ids, mask = calib.to_tensors(pad_token_id=0)
    assert ids.shape == mask.shape == (4, 12)
    assert mask.sum(1).tolist() == [12, 11, 10, 9]
    assert ids[3, 9:].tolist() == [0, 0, 0]
    ds = calib.to_dataset()
    assert ds.column_names == ["input_ids", "attention_mask"] and len(ds) == 4
    assert ds[1]["input_ids"] == calib.samples[1].input_ids


def test_refuses_existing_dir_and_other_tokenizer(tmp_path):
    calib, tok = make()
    calib.save(tmp_path / "cs")
    with pytest.raises(ColakitError, match="already exists"):
        calib.save(tmp_path / "cs")
    calib.save(tmp_path / "cs", overwrite=True)
    calib.check_tokenizer(tok)
    with pytest.raises(ColakitError, match="tokenizer"):
        calib.check_tokenizer(tiny_tokenizer(vocab=300))


def test_detects_corruption(tmp_path):
    calib, _ = make()
    path = calib.save(tmp_path / "cs")
    lines = (path / "samples.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["input_ids"][0] += 1
    (path / "samples.jsonl").write_text("\n".join([json.dumps(row)] + lines[1:]) + "\n")
    with pytest.raises(ColakitError, match="does not match its manifest: sample 0 .*its tokens changed"):
        CalibrationSet.load(path)
    (path / "samples.jsonl").write_text("{not json\n")
    with pytest.raises(ColakitError, match="corrupt"):
        CalibrationSet.load(path)
    with pytest.raises(ColakitError, match="not a CalibrationSet"):
        CalibrationSet.load(tmp_path)


def test_empty_set_rejected():
    with pytest.raises(ColakitError):
        CalibrationSet([], {})
    with pytest.raises(ColakitError, match="no tokens"):
        CalibrationSet([Sample(input_ids=[])], {})


def test_summary():
    calib, _ = make()
    s = calib.summary()
    assert s["samples"] == 4 and s["tokens"] == 12 + 11 + 10 + 9
    assert s["length"]["min"] == 9 and s["sources"] == {"manual": 4}


def _edit(path, manifest=None, sample=None, lines=None):
    """Edit a saved set in place: ``manifest(dict)``, ``sample(i, row)`` or ``lines(list)`` change it."""
    if manifest:
        m = json.loads((path / "manifest.json").read_text())
        manifest(m)
        (path / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))
    rows = [json.loads(line) for line in (path / "samples.jsonl").read_text().splitlines()]
    if sample:
        for i, row in enumerate(rows):
            sample(i, row)
    if lines:
        lines(rows)
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_every_manifest_field_text_and_provenance_is_covered(tmp_path):
    calib, _ = make()
    calib.manifest["method_params"] = {"k": 2}  # a caller's edit before saving is sealed by save
    calib.save(tmp_path / "orig")
    fields = [k for k in json.loads((tmp_path / "orig" / "manifest.json").read_text())
              if k not in ("colakit_version", "content_hash", "field_hashes", "sample_hashes")]
    assert set(fields) == {"n", "seq_len", "model", "tokenizer_hash", "method", "method_params", "seed",
                           "format_version"}
    expected = {"n": r"manifest field 'n' says 5 but samples.jsonl holds 4 samples",
                "seq_len": r"manifest field 'seq_len' says 6 but sample 0 holds 12 tokens",
                "format_version": r"manifest format 7"}
    for key in fields:
        path = tmp_path / key
        calib.save(path)
        bump = {"n": 5, "seq_len": 6, "format_version": 7, "seed": 4, "method_params": {"k": 3}}
        _edit(path, manifest=lambda m: m.update({key: bump.get(key, "edited")}))
        with pytest.raises(ColakitError, match=expected.get(key, rf"manifest field '{key}' changed since")):
            CalibrationSet.load(path)
    cases = {  # (edit, what the refusal names)
        "text": (dict(sample=lambda i, r: i == 2 and r.update(text=r["text"] + " ")), r"sample 2 .*its text changed"),
        "token": (dict(sample=lambda i, r: i == 1 and r["input_ids"].append(5)), r"sample 1 .*its tokens changed"),
        "doc_id": (dict(sample=lambda i, r: i == 3 and r.update(doc_id="x")), r"sample 3 .*its provenance or selector"),
        "dropped": (dict(lines=lambda rows: rows.pop()), r"'n' says 4 but samples.jsonl holds 3"),
        "dropped+n": (dict(lines=lambda rows: rows.pop(), manifest=lambda m: m.update(n=3)),
                      r"'sample_hashes' records 4 samples but samples.jsonl holds 3"),
        "swapped": (dict(lines=lambda rows: rows.reverse()), r"sample 0 .*its tokens changed"),
        "added": (dict(manifest=lambda m: m.update(target="math")), r"field 'target' was added"),
        "removed": (dict(manifest=lambda m: m.pop("model")), r"field 'model' is missing"),
        "hash": (dict(manifest=lambda m: m.update(content_hash="0" * 16)), r"content hash \w+ != 0000"),
    }
    for name, (edit, message) in cases.items():
        path = tmp_path / name
        calib.save(path)
        _edit(path, **edit)
        with pytest.raises(ColakitError, match=message):
            CalibrationSet.load(path)
    # informational fields are not part of what the set is
    _edit(tmp_path / "orig", manifest=lambda m: m.update(colakit_version="9.9", created="2020-01-01T00:00:00Z"))
    assert CalibrationSet.load(tmp_path / "orig").content_hash == calib.content_hash


def test_saving_the_same_set_twice_writes_the_same_bytes(tmp_path):
    a, _ = make()
    b, _ = make()
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    CalibrationSet.load(tmp_path / "a").save(tmp_path / "c")  # a round trip changes nothing either
    for name in ("manifest.json", "samples.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() == (
            tmp_path / "c" / name).read_bytes()
    other, _ = make()
    other.manifest["seed"] = 4
    other.save(tmp_path / "d")  # the manifest is part of the identity
    assert CalibrationSet.load(tmp_path / "d").content_hash != a.content_hash


def test_a_format_1_set_loads_with_a_warning_and_its_tokens_checked(tmp_path, caplog):
    path = tmp_path / "old"
    path.mkdir()
    rows = [{"input_ids": [5, 6, 7], "text": "a b c", "source": "c4", "doc_id": "1"},
            {"input_ids": [8, 9], "text": "d e", "source": "c4", "doc_id": "2"}]
    h = hashlib.sha256()  # format 1's content hash: the token ids alone
    for r in rows:
        h.update(json.dumps(r["input_ids"], separators=(",", ":")).encode() + b"\n")
    manifest = {"format_version": 1, "n": 2, "seq_len": 3, "method": "random", "model": "tiny",
                "created": "2024-01-01T00:00:00Z", "colakit_version": "0.0.9", "content_hash": h.hexdigest()[:16]}
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING, logger="colakit.calibset"):
        calib = CalibrationSet.load(path)
    assert "older colakit (manifest format 1)" in caplog.text and "not" in caplog.text
    assert len(calib) == 2 and calib.manifest["format_version"] == 2 and calib.manifest["created"]
    calib.save(tmp_path / "new")  # saved again: protected
    _edit(tmp_path / "new", manifest=lambda m: m.update(method="cola"))
    with pytest.raises(ColakitError, match="field 'method' changed"):
        CalibrationSet.load(tmp_path / "new")
    _edit(path, sample=lambda i, r: i == 0 and r["input_ids"].append(1))
    with pytest.raises(ColakitError, match="content hash"):
        CalibrationSet.load(path)
