"""``--json``: one JSON document on stdout and nothing else there; logs and progress stay on stderr.

Without ``--json`` the same facts go to stdout as tables, and text the user gave (paths, names) is
printed verbatim. Stages that take minutes (a real evaluation, curation, scoring) are replaced by
test doubles returning what they return; the CLI's part (what it prints, and where) is what is tested.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from colakit.calibset import CalibrationSet
from colakit.cli import app
from test_bad_input import fake_results
from tiny_models import tiny_model, tiny_tokenizer

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "general.yaml"
RESULT_COMMANDS = [["sources", "list"], ["sources", "show"], ["models", "list"], ["models", "fetch"], ["inspect"],
                   ["score"], ["evaluate"], ["compress"], ["curate"], ["check-overlap"], ["report"], ["run"],
                   ["data", "fetch"]]


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)], env={"COLUMNS": "200"})


def document(result):
    """The one JSON document that is the whole of stdout."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def calib_dir(tmp_path):
    tok = tiny_tokenizer()
    seqs = [tok("The quick brown fox jumps over the lazy dog.")["input_ids"] for _ in range(3)]
    CalibrationSet.from_token_ids(seqs, tokenizer=tok, model="my[model]").save(tmp_path / "calib[v2]")
    return tmp_path / "calib[v2]"


@pytest.mark.parametrize("command", RESULT_COMMANDS, ids=" ".join)
def test_every_command_with_a_result_takes_json(command):
    assert "--json" in invoke(*command, "--help").stdout


def test_models_list(monkeypatch, tmp_path):
    rows = document(invoke("models", "list", "--json"))
    assert {"id": "smollm2-135m", "default": True} == {k: rows[0][k] for k in ("id", "default")}
    assert "smollm2-135m (default)" in invoke("models", "list").stdout  # the table is a result: stdout

    from colakit.model import load

    monkeypatch.setattr(load, "fetch_model", lambda name: tmp_path / name)
    assert document(invoke("models", "fetch", "--json"))["path"] == str(tmp_path / "smollm2-135m")


def test_sources_show_and_list(tmp_path):
    mine = tmp_path / "my[data].jsonl"
    mine.write_text("".join(json.dumps({"text": f"document [b]{i}[/b]"}) + "\n" for i in range(20)))
    info = document(invoke("sources", "show", mine, "--heldout-fraction", "0", "--json"))
    assert info["calibration"] == 20 and info["heldout"] == 0
    table = invoke("sources", "show", mine, "--heldout-fraction", "0").stdout
    assert f"source {mine}" in table and "document [b]0[/b]" in table  # verbatim, not read as markup
    rows = document(invoke("sources", "list", "--json"))
    assert {r["name"] for r in rows} >= {"c4", "wiki", "code"} and all(r["calibration"] > 0 for r in rows)


def test_inspect_and_score(calib_dir, monkeypatch):
    summary = document(invoke("inspect", calib_dir, "--json"))
    assert summary["samples"] == 3 and summary["model"] == "my[model]"
    monkeypatch.chdir(calib_dir.parent)  # a short path: the title is not folded
    table = invoke("inspect", calib_dir.name).stdout
    assert "CalibrationSet calib[v2]" in table and "my[model]" in table and "first sample:" in table  # verbatim

    import colakit.curate.score

    scores = {"representativeness": 0.5, "diversity": 0.25, "proxy": 0.4, "representativeness_centred": 0.1,
              "coverage": {"math": 0.5},
              "weights": {"math": 1.0}}
    monkeypatch.setattr(colakit.curate.score, "score_set", lambda *a, **k: scores)
    assert document(invoke("score", calib_dir, "--json")) == scores
    assert "coverage[math]" in invoke("score", calib_dir).stdout


def test_evaluate(monkeypatch, tmp_path):
    import colakit.evaluate

    retention = {"definition": "compressed / dense", "capabilities": {"Commonsense": {"retention": 1.0}},
                 "tasks": {"arc_easy": {"metric_kind": "accuracy", "metric": "acc", "dense": 0.5, "compressed": 0.5,
                                        "retention": 1.0}}}
    monkeypatch.setattr(colakit.evaluate, "evaluate_model", lambda *a, out, **k: fake_results(out))
    monkeypatch.setattr(colakit.evaluate, "compare", lambda *a, **k: retention)
    dense = tmp_path / "dense.json"
    fake_results(dense)
    result = invoke("evaluate", "--suite", "arc_easy", "--out", tmp_path / "r.json", "--compare", dense, "--json")
    summary = document(result)
    assert summary["tasks"]["arc_easy"]["value"] == 0.5 and summary["out"] == str(tmp_path / "r.json")
    assert summary["retention"]["tasks"]["arc_easy"]["retention"] == 1.0
    assert "evaluating" in result.stderr  # progress stays on stderr
    tables = invoke("evaluate", "--suite", "arc_easy", "--out", tmp_path / "r.json", "--compare", dense)
    assert "arc_easy" in tables.stdout and "retention vs dense" in tables.stdout
    power = document(invoke("evaluate", "--power", "--json"))
    assert power["tasks"] and power["capability_mdd"]


def test_compress(tmp_path):
    model_dir = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    info = document(invoke("compress", "--method", "rtn", "--group-size", "16", "--model", model_dir,
                           "--out", tmp_path / "q", "--json"))
    assert info["out"] == str(tmp_path / "q") and info["method"] == "rtn" and info["config"]["bits"] == 4


def test_curate(calib_dir, monkeypatch, tmp_path):
    import colakit.curate.pipeline

    def fake_curate(config, out=None, **_):
        calib = CalibrationSet.load(calib_dir)
        calib.save(out)
        return calib

    monkeypatch.setattr(colakit.curate.pipeline, "curate", fake_curate)
    info = document(invoke("curate", "--method", "random", "--out", tmp_path / "set", "--json"))
    assert info["out"] == str(tmp_path / "set") and info["samples"] == 3
    assert "already exists" in str(invoke("curate", "--out", tmp_path / "set").exception)
    again = document(invoke("curate", "--method", "random", "--out", tmp_path / "set", "--overwrite", "--json"))
    assert again["samples"] == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["calib[v2]", "set"]


def test_check_overlap(tmp_path):
    text = tmp_path / "clean.txt"
    text.write_text("A harmless calibration paragraph about foxes and lazy dogs.\n")
    report = document(invoke("check-overlap", text, "--json"))
    assert report["clean"] and report["n_texts"] == 1


def test_report(tmp_path):
    from report_rundir import fabricate_rundir

    rundir = fabricate_rundir(tmp_path / "run")
    info = document(invoke("report", rundir, "--json"))
    assert info["html"] == str(rundir / "report.html") and info["headline"]["rows"]
    assert len(info["failed_cells"]) == 1
    again = invoke("report", rundir)  # its own report.html: rewritten without --overwrite
    assert again.exit_code == 0 and "retention vs dense" in again.stdout


def test_run_dry_run(tmp_path):
    plan = document(invoke("run", CONFIG, "--out", tmp_path / "run", "--dry-run", "--json"))
    assert plan["cells"] and {"cell", "curation", "compression", "settings", "seed"} == set(plan["cells"][0])
    assert not (tmp_path / "run").exists()


def test_data_fetch(monkeypatch):
    import colakit.cli.data

    monkeypatch.setattr(colakit.cli.data, "_fetch_steps", lambda: [])  # the cache is fetched already
    info = document(invoke("data", "fetch", "--json"))
    assert info["cached"] and {"name", "path", "bytes"} == set(info["cached"][0])
