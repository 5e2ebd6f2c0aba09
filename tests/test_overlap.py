"""Contamination check: planted evaluation items are caught, unrelated text is not."""

import json
import logging

import pytest

from colakit.errors import ColakitError
from colakit.data.evalsets import EvalDocument
from colakit.data.overlap import assert_no_overlap, check_overlap, normalised_words

QUESTION = ("A bakery sells muffins in boxes of six and cookies in tins of twenty, and on Saturday it sold "
            "forty boxes and thirty tins; how many baked goods did the bakery sell on Saturday altogether?")
EVAL = [
    EvalDocument("toy_math", "m1", QUESTION + "\n6 * 40 + 20 * 30 = 840\n#### 840"),
    EvalDocument("toy_qa", "q1", "Which planet in our solar system has the most moons?\nSaturn\nMars"),
    EvalDocument("toy_qa", "q2", "The auditor expressed substantial doubt about the entity's ability to continue as a "
                                 "going concern " + " ".join(f"word{i}" for i in range(80))),
]
UNRELATED = ("Once upon a time a small fox lived at the edge of a quiet forest and spent every morning "
             "watching the river carry leaves past the old mill toward the sea.")


def test_normalisation_ignores_case_and_punctuation():
    assert normalised_words("Hello, WORLD!  It's\tfine.") == ["hello", "world", "it", "s", "fine"]


def test_planted_item_is_caught_and_unrelated_text_is_clean():
    planted = UNRELATED + " Here is a puzzle: " + QUESTION.upper().replace(",", " ,") + " Think it over."
    report = check_overlap([UNRELATED, planted], eval_docs=EVAL)
    assert not report.clean and list(report.tasks) == ["toy_math"]
    hit = report.tasks["toy_math"]
    assert hit.items == 1 and hit.texts == [1] and hit.examples[0]["item_id"] == "m1"
    assert hit.examples[0]["kind"] == "ngram" and len(hit.examples[0]["evidence"].split()) == 13
    assert report.contaminated_texts == [1]
    assert check_overlap([UNRELATED], eval_docs=EVAL).clean


def test_exact_duplicate_of_a_short_field_is_caught():
    report = check_overlap(["which planet in our solar system has the MOST moons"], eval_docs=EVAL)
    assert report.tasks["toy_qa"].exact_items == 1 and report.tasks["toy_qa"].examples[0]["item_id"] == "q1"


def test_one_stock_phrase_or_a_run_of_numbers_is_not_contamination():
    stock = ("Our report notes substantial doubt about the entity's ability to continue as a going concern, "
             "as is usual. " + " ".join(str(i) for i in range(1, 40)))
    assert check_overlap([stock], eval_docs=EVAL + [
        EvalDocument("toy_num", "n1", " ".join(str(i) for i in range(1, 40)))]).clean


def test_assert_no_overlap_raises_or_warns(caplog):
    texts = [UNRELATED, QUESTION]
    with pytest.raises(ColakitError, match=r"contaminated.*toy_math: 1 items.*--allow-overlap"):
        assert_no_overlap(texts, eval_docs=EVAL)
    with caplog.at_level(logging.WARNING, logger="colakit.data.overlap"):
        report = assert_no_overlap(texts, allow=True, eval_docs=EVAL)
    assert not report.clean and "CONTAMINATION" in caplog.text
    assert assert_no_overlap([UNRELATED], eval_docs=EVAL).clean
    with pytest.raises(ColakitError, match="n-gram length"):
        check_overlap([UNRELATED], eval_docs=EVAL, n=0)


@pytest.mark.integration
def test_real_gsm8k_item_planted_in_c4_is_caught(tmp_path):
    from typer.testing import CliRunner

    from colakit.cli import app
    from colakit.data.evalsets import load_items
    from colakit.data.sources import get_source

    c4 = [d.text for _, d in zip(range(64), get_source("c4").documents())]
    assert check_overlap(c4).clean
    item = load_items("gsm8k")[123]
    planted = c4[:10] + [c4[10][:600] + "\n" + item["question"] + "\n" + c4[10][600:]] + c4[11:]
    report = check_overlap(planted)
    assert list(report.tasks) == ["gsm8k"] and report.tasks["gsm8k"].texts == [10]
    assert report.tasks["gsm8k"].examples[0]["item_id"] == "123"

    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "samples.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in planted))
    result = CliRunner().invoke(app, ["check-overlap", str(folder), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["tasks"]["gsm8k"]["items"] == 1
    (folder / "samples.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in c4))
    assert CliRunner().invoke(app, ["check-overlap", str(folder)]).exit_code == 0
