import json

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
    with pytest.raises(ColakitError, match="does not match its manifest"):
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
