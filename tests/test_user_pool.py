"""Issue 22 end to end at the pool: the user's own data through build_pool (tiny tokenizer, no model)."""

import json
import logging

import pytest
from tiny_models import tiny_tokenizer

from colakit.curate import process
from colakit.curate.pipeline import CurateConfig, build_pool
from colakit.errors import ColakitError


def _qa_file(path, k=60):
    path.write_text("".join(json.dumps({"prompt": f"What is {i} + 2?", "response": f"It is {i + 2}.",
                                        "text": f"Plain note {i}: the quick brown fox jumps over the lazy dog."}) + "\n"
                            for i in range(k)))
    return path


_TOK = []


def _pool(spec, **kw):
    _TOK or _TOK.append(tiny_tokenizer())
    cfg = CurateConfig(sources=[spec], seq_len=kw.pop("seq_len", 24), pool_per_source=kw.pop("pool", 16), **kw)
    pool, prov = build_pool(cfg, _TOK[0])
    return [c for c in pool], prov


def test_qa_format_maps_named_fields_and_the_manifest_says_so(tmp_path):
    f = _qa_file(tmp_path / "qa.jsonl")
    cands, prov = _pool(f"{f}?question=prompt&answer=response", format="qa", packing="truncate",
                       seq_len=64)
    assert cands and all(c.text.startswith("Question: What is ") and "\nAnswer: It is" in c.text for c in cands)
    record = prov[0]["format"]
    assert record["format"] == "qa" and record["fields"] == {"question": "prompt", "answer": "response"}
    assert record["documents"]["unchanged"] == 0 and record["documents"]["formatted"] >= len(cands)
    plain, prov_plain = _pool(str(f), packing="truncate")
    assert "format" not in prov_plain[0] and all(c.text.startswith("Plain note") for c in plain)


def test_a_format_the_data_cannot_give_fails_before_any_work(tmp_path):
    f = _qa_file(tmp_path / "qa.jsonl")
    with pytest.raises(ColakitError, match="no question/answer fields for --format qa.*--field question=COL"):
        CurateConfig(sources=["c4", str(f)], format="qa").validate(None)
    CurateConfig(sources=["c4", f"{f}?question=prompt&answer=response"], format="qa").validate(None)
    with pytest.raises(ColakitError, match="--heldout-fraction 1.0 is not in"):
        CurateConfig(sources=[str(f)], heldout_fraction=1.0).validate(None)
    with pytest.raises(ColakitError, match="no file matches"):
        CurateConfig(sources=[f"{tmp_path}/*.parquet"]).validate(None)


def test_the_split_of_a_user_source_is_reported(tmp_path, caplog):
    f = _qa_file(tmp_path / "qa.jsonl")
    with caplog.at_level(logging.INFO, logger="colakit.curate.pipeline.split"):
        _, prov = _pool(str(f), heldout_fraction=0.25)
        _pool(f"{f}?heldout=0")
    lines = [r.getMessage() for r in caplog.records if r.name == "colakit.curate.pipeline.split"]
    assert len(lines) == 2 and "held out (heldout_fraction 0.25; --heldout-fraction 0" in lines[0]
    cal = prov[0]["documents_read"]
    assert f"{cal} documents for calibration, {60 - cal} held out" in lines[0]
    assert lines[1].endswith("60 documents for calibration, 0 held out (heldout_fraction 0)")


def test_a_source_beyond_the_memory_bound_gives_a_seeded_stable_pool(tmp_path, monkeypatch):
    f = _qa_file(tmp_path / "qa.jsonl", k=400)
    inside = _pool(str(f), seed=1)[0]
    monkeypatch.setattr(process, "SHUFFLE_BOUND", 2000)  # ~30 documents: the bounded order takes over
    a, b, c = _pool(str(f), seed=1)[0], _pool(str(f), seed=1)[0], _pool(str(f), seed=2)[0]
    ids = lambda cs: [x.input_ids for x in cs]  # noqa: E731
    assert ids(a) == ids(b) != ids(c) and len(a) == 16
    assert ids(a) != ids(inside)  # a different (documented) order than the in-memory shuffle
    big = _pool(str(f), seed=1, pool=200)[0]  # needs more than the first pass keeps: further passes
    assert ids(big)[:16] == ids(a)
