"""Real data and the real default model (marked integration; a few minutes on 2 cores in all)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_every_humaneval_canonical_solution_passes_the_sandbox():
    from colakit.data.evalsets import load_items
    from colakit.evaluate.sandbox import run_programs
    from colakit.evaluate.tasks import get_task

    task, items = get_task("humaneval"), load_items("humaneval")
    runs = run_programs([task.program(d, task.canonical(d)) for d in items])
    assert sum(r.passed for r in runs) == 164


def test_mbpp_canonical_solutions_pass_except_the_known_one():
    from colakit.data.evalsets import load_items
    from colakit.evaluate.sandbox import run_programs
    from colakit.evaluate.tasks import get_task

    task, items = get_task("mbpp"), load_items("mbpp")
    runs = run_programs([task.program(d, task.canonical(d)) for d in items])
    assert sum(r.passed for r in runs) >= 499


def test_cli_evaluates_the_default_model(tmp_path):
    from typer.testing import CliRunner

    from colakit.cli import app

    out = tmp_path / "r.json"
    run = CliRunner().invoke(app, ["evaluate", "--suite", "arc_easy,boolq,ppl_wiki", "--limit", "4",
                                   "--ppl-seq-len", "256", "--out", str(out)])
    assert run.exit_code == 0, run.output
    results = json.loads(out.read_text())
    arc = results["tasks"]["arc_easy"]
    assert arc["n"] == 4 and len(arc["item_ids"]) == 4 and 0 <= arc["metrics"]["acc"] <= 1
    assert 5 < results["tasks"]["ppl_wiki"]["metrics"]["token_perplexity"] < 200
    assert results["model"]["hash"] and results["capabilities"]["Commonsense"]["tasks"] == ["arc_easy", "boolq"]
    again = CliRunner().invoke(app, ["evaluate", "--suite", "arc_easy", "--limit", "4", "--out", str(tmp_path / "c.json"),
                                     "--compare", str(out)])
    assert again.exit_code == 0, again.output
    entry = json.loads((tmp_path / "c.json").read_text())["retention"]["tasks"]["arc_easy"]
    assert entry["same_items"] and entry["compressed"] == entry["dense"]  # same model, same items


@pytest.mark.integration
def test_compressed_model_calibration_overlap_is_checked(tmp_path):
    import json

    from colakit.calibset import CalibrationSet, Sample
    from colakit.errors import ColakitError
    from colakit.data.evalsets import load_items
    from colakit.evaluate.runner import check_calibration_overlap

    def model_dir(name, texts):
        calib = CalibrationSet([Sample(input_ids=[1, 2, 3], text=t) for t in texts], {"method": "manual"})
        calib.save(tmp_path / f"calib-{name}")
        folder = tmp_path / f"model-{name}"
        folder.mkdir()
        (folder / "compression.json").write_text(json.dumps({"calibration": {"path": str(tmp_path / f"calib-{name}")}}))
        return folder

    clean = check_calibration_overlap(model_dir("clean", ["A plain sentence about gardening and tomatoes."]), False)
    assert clean["checked"] is True
    question = load_items("gsm8k")[0]["question"]
    dirty = model_dir("dirty", ["Some web text. " + question])
    with pytest.raises(ColakitError, match="gsm8k"):
        check_calibration_overlap(dirty, False)
    assert check_calibration_overlap(dirty, True)["checked"] is True
