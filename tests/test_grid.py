"""``colakit run``: grid configs (validation with line numbers), cells, and a tiny grid end to end with resume."""

import csv
import json

import pytest
import yaml
from tiny_models import tiny_model, tiny_tokenizer
from typer.testing import CliRunner

from colakit.cli import app
from colakit.errors import ColakitError
from colakit.grid import load_grid, parse_grid, run_grid
from colakit.provenance import provenance

BASE = {
    "model": "m", "seeds": [0],
    "curation": {"random-c4": {"method": "random", "sources": ["c4"]}},
    "compression": {"gptq-w4": {"method": "gptq", "bits": 4, "group_size": 32}},
    "evaluate": {"tasks": "ppl_wiki:2"},
}


def write(tmp_path, cfg, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_every_shipped_config_parses():
    from pathlib import Path

    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    assert {p.stem for p in configs} >= {"general", "domain", "q1", "q3", "demo"}
    for path in configs:
        grid = load_grid(path)
        assert grid.cells(), path
    general = load_grid(Path(__file__).parent.parent / "configs" / "general.yaml")
    assert set(general.curation) >= {"random-wiki", "random-c4", "self-gen", "cola", "self-cal", "zipcal",
                                     "mix-uniform", "igsp"}
    assert {v.params["method"] for v in general.compression.values()} == {"sparsegpt", "wanda", "gptq", "awq"}
    q3 = load_grid(Path(__file__).parent.parent / "configs" / "q3.yaml")
    assert len(q3.curation) * len(q3.seeds) >= 20  # at least 20 calibration sets


def test_unknown_key_names_its_line_and_the_valid_keys(tmp_path):
    cfg = {**BASE, "curation": {"random-c4": {"method": "random", "sources": ["c4"], "seqlen": 128}}}
    path = write(tmp_path, cfg)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "seqlen" in text)
    with pytest.raises(ColakitError, match=rf"line {line}: unknown key 'seqlen'") as err:
        load_grid(path)
    assert "seq_len" in err.value.hint
    with pytest.raises(ColakitError, match=r"unknown key 'seed' in the grid config"):
        load_grid(write(tmp_path, {**BASE, "seed": 1}))


def test_a_value_of_the_wrong_type_names_its_key_line_and_the_type(tmp_path):
    def refused(cfg, key, message):
        path = write(tmp_path, cfg)
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(key))
        with pytest.raises(ColakitError, match=rf"line {line}: (.*: )?{message}") as err:
            load_grid(path)
        return err.value

    cur = BASE["curation"]["random-c4"]
    err = refused({**BASE, "defaults": {"n": "eight"}}, "n:", r"defaults: n must be an integer, got 'eight' \(a string\)")
    assert err.hint == "e.g. n: 128"
    refused({**BASE, "curation": {"random-c4": {**cur, "seq_len": 12.5}}}, "seq_len:",
            r"curation 'random-c4': seq_len must be an integer, got 12.5")
    refused({**BASE, "curation": {"random-c4": {**cur, "allow_overlap": "yes please"}}}, "allow_overlap:",
            "allow_overlap must be true or false")
    refused({**BASE, "curation": {"random-c4": {**cur, "sources": [1]}}}, "sources:",
            r"sources must be a string or a list of strings, got \[1\]")
    refused({**BASE, "curation": {"random-c4": {**cur, "features": {"batch_size": "big"}}}}, "batch_size:",
            "features: batch_size must be an integer")
    refused({**BASE, "curation": {"c": {"method": "cola", "params": {"n_init": "five"}}}}, "n_init:",
            "cola parameters: n_init must be an integer")
    refused({**BASE, "curation": {"c": {"method": "cola", "params": {"k": 2}}}}, "k:", "unknown key 'k' in cola")
    refused({**BASE, "compression": {"g": {"method": "gptq", "bits": "four"}}}, "bits:",
            "compression 'g': bits must be an integer or null, got 'four'")
    err = refused({**BASE, "compression": {"g": {"method": "gptq", "bits": 4, "damp": "1e-2"}}}, "damp:",
                  "damp must be a number")
    assert "1.0e-2" in err.hint
    refused({**BASE, "evaluate": {"tasks": "ppl_wiki:2", "limit": "all"}}, "limit:", "evaluate: limit must be")
    refused({**BASE, "score": {"probes": [8]}}, "probes:", "score: probes must be an integer")
    refused({**BASE, "map": "no"}, "map:", "map must be true or false")
    refused({**BASE, "model": None}, "model:", "model must be a string, got None")
    refused({**BASE, "seeds": [0, True]}, "seeds:", "seeds must be an integer or a list of integers")
    refused({**BASE, "sweep": {"n": [16, "32x"]}}, "- 32x", r"sweep value of n must be an integer, got '32x'")
    # the same check refuses it before `colakit run --dry-run` prints a cell
    bad = write(tmp_path, {**BASE, "defaults": {"n": "eight"}})
    result = CliRunner().invoke(app, ["run", str(bad), "--out", str(tmp_path / "run"), "--dry-run"])
    assert result.exit_code != 0 and "n must be an integer" in str(result.exception or result.output)
    assert not (tmp_path / "run").exists()
    # right types pass: an integer is a fine number, null a fine optional value
    parse_grid({**BASE, "defaults": {"heldout_fraction": 0, "pool_per_source": None},
                "compression": {"g": {"method": "gptq", "bits": 4, "group_size": "auto", "damp": 1}}})


def test_a_sources_string_is_read_as_curate_reads_it():
    grid = parse_grid({**BASE, "curation": {"m": {"method": "mix-uniform",
                                                  "sources": 'c4, "my,data.jsonl"?field=body,wiki'}}})
    assert grid.curation["m"].params["sources"] == ["c4", "my,data.jsonl?field=body", "wiki"]


def test_unknown_method_lists_the_valid_ones(tmp_path):
    cfg = {**BASE, "curation": {"x": {"method": "kmeans", "sources": ["c4"]}}}
    with pytest.raises(ColakitError, match=r"line \d+: unknown curation method 'kmeans'") as err:
        load_grid(write(tmp_path, cfg))
    assert "cola" in err.value.hint and "self-gen" in err.value.hint
    with pytest.raises(ColakitError, match="unknown compression method"):
        parse_grid({**BASE, "compression": {"c": {"method": "obc"}}})


def test_impossible_combinations_are_refused():
    with pytest.raises(ColakitError, match="pattern applies to pruning, not awq"):
        parse_grid({**BASE, "compression": {"awq": {"method": "awq", "pattern": "2:4"}}})
    with pytest.raises(ColakitError, match="sparsity applies to pruning, not gptq"):
        parse_grid({**BASE, "compression": {"g": {"method": "gptq", "sparsity": 0.5}}})
    with pytest.raises(ColakitError, match="N must be between 1 and M-1"):
        parse_grid({**BASE, "compression": {"w": {"method": "wanda", "pattern": "4:4"}}})
    with pytest.raises(ColakitError, match="baseline 'nope' is not a curation label"):
        parse_grid({**BASE, "baseline": "nope"})
    with pytest.raises(ColakitError, match="unknown task"):
        parse_grid({**BASE, "evaluate": {"tasks": "ppl_nowhere"}})
    two = {**BASE, "curation": {**BASE["curation"], "wiki": {"method": "random", "sources": ["wiki"]}}}
    assert parse_grid({**two, "head_to_head": {"wiki": "random-c4"}}).head_to_head == {"wiki": ["random-c4"]}
    with pytest.raises(ColakitError, match="head_to_head names 'nope', which is not a curation label"):
        parse_grid({**two, "head_to_head": {"wiki": ["nope"]}})
    with pytest.raises(ColakitError, match="against itself"):
        parse_grid({**two, "head_to_head": {"wiki": ["wiki"]}})
    with pytest.raises(ColakitError, match="give a list of curation labels"):
        parse_grid({**two, "head_to_head": {"wiki": []}})
    with pytest.raises(ColakitError, match="must map a curation label"):
        parse_grid({**two, "head_to_head": ["wiki"]})


def test_sweeps_are_a_union_of_products_and_cells_are_named_by_their_settings():
    grid = parse_grid({**BASE, "seeds": [0, 1], "defaults": {"n": 32, "seq_len": 256},
                       "sweeps": [{"seq_len": [128, 256]}, {"n": [16, 32], "format": ["qa"]}]})
    assert grid.settings == [{"seq_len": 128}, {"seq_len": 256}, {"n": 16, "format": "qa"},
                             {"n": 32, "format": "qa"}]
    assert grid.sweeps == {"seq_len": [128, 256], "n": [16, 32], "format": ["qa"]}
    ids = [c.id for c in grid.cells()]
    assert len(ids) == len(set(ids)) == 8
    assert "random-c4__gptq-w4__seq_len128__s1" in ids
    # a point equal to the curation's own setting is the plain cell, named without it
    assert "random-c4__gptq-w4__s0" in ids and "random-c4__gptq-w4__formatqa__s0" in ids
    assert grid.cells()[0].calib_key == "random-c4__seq_len128__s0"


def test_a_sweeps_default_point_is_one_cell_and_a_sweep_can_be_scoped_to_curations():
    curation = {"c4": {"method": "random", "sources": ["c4"]}, "wiki": {"method": "random", "sources": ["wiki"]},
                "math-qa": {"method": "random", "sources": ["math"], "format": "qa"}}
    grid = parse_grid({**BASE, "curation": curation, "defaults": {"n": 32, "seq_len": 256},
                       "sweeps": [{"seq_len": [128, 256, 512], "curations": ["c4", "math-qa"]},
                                  {"n": [16, 32], "curations": "c4"},
                                  {"format": ["plain", "qa"], "curations": ["math-qa"]}]})
    ids = [c.id for c in grid.cells()]
    assert len(ids) == len(set(ids))
    c4 = [i for i in ids if i.startswith("c4__")]
    # seq_len 256 and n 32 are c4's own settings: one default cell, not one per sweep
    assert sorted(c4) == sorted(["c4__gptq-w4__seq_len128__s0", "c4__gptq-w4__s0", "c4__gptq-w4__seq_len512__s0",
                                 "c4__gptq-w4__n16__s0"])
    assert [i for i in ids if i.startswith("wiki__")] == ["wiki__gptq-w4__s0"]  # no sweep applies to it
    assert sorted(i for i in ids if i.startswith("math-qa__")) == sorted(
        ["math-qa__gptq-w4__seq_len128__s0", "math-qa__gptq-w4__s0", "math-qa__gptq-w4__seq_len512__s0",
         "math-qa__gptq-w4__formatplain__s0"])
    assert grid.sweeps == {"seq_len": [128, 256, 512], "n": [16, 32], "format": ["plain", "qa"]}
    # the baseline of a swept cell is looked up by the same rule
    assert grid.cell("c4", "gptq-w4", {"n": 32, "seq_len": 128}, 0).id == "c4__gptq-w4__seq_len128__s0"
    with pytest.raises(ColakitError, match="curations names 'c5', not a curation label"):
        parse_grid({**BASE, "curation": curation, "sweeps": [{"n": [16], "curations": ["c5"]}]})


def test_unwritable_output_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ColakitError, match="cannot write to the run directory"):
        run_grid(parse_grid(BASE), blocker / "run")


@pytest.fixture
def tiny_grid(tmp_path):
    model_dir = tmp_path / "tiny"
    tok = tiny_tokenizer()
    tiny_model("llama", vocab=len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    cfg = {
        "name": "tiny", "model": str(model_dir), "seeds": [0], "baseline": "random-c4",
        "head_to_head": {"cola": ["random-c4"]}, "defaults": {"n": 4, "seq_len": 32},
        "curation": {"random-c4": {"method": "random", "sources": ["c4"]},
                     "cola": {"method": "cola", "sources": ["c4", "wiki"], "pool_per_source": 12,
                              "probes_per_capability": 2}},
        "compression": {"gptq-w4": {"method": "gptq", "bits": 4, "group_size": 32},
                        "wanda-50": {"method": "wanda", "sparsity": 0.5},
                        # 48 does not divide the tiny model's 64 input features: fails when the cell runs
                        "gptq-g48": {"method": "gptq", "bits": 4, "group_size": 48}},
        "evaluate": {"tasks": "ppl_wiki:2,arc_easy:6", "ppl_seq_len": 64},
        "score": {"probes": 2, "feature_layers": "all"},
    }
    return tmp_path, write(tmp_path, cfg)


@pytest.mark.integration
def test_tiny_grid_end_to_end_with_a_failing_cell_and_resume(tiny_grid, monkeypatch):
    tmp_path, config = tiny_grid
    rundir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(rundir)])
    assert result.exit_code == 0, result.output
    assert "4 cells ok, 2 failed" in result.output
    rows = list(csv.DictReader(open(rundir / "results.csv")))
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and all("group size 48 does not divide" in r["error"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["cell"] for r in ok} == {"random-c4__gptq-w4__s0", "random-c4__wanda-50__s0", "cola__gptq-w4__s0",
                                       "cola__wanda-50__s0"}
    kinds = {(r["task"], r["metric_kind"]) for r in ok}
    assert kinds >= {("ppl_wiki", "perplexity"), ("arc_easy", "accuracy"), ("arc_easy", "likelihood")}
    assert all(0 < float(r["retention"]) for r in ok)
    cola = [r for r in ok if r["curation"] == "cola"]
    assert all(r["p_value"] != "" and r["p_adjusted"] != "" for r in cola)  # paired against the baseline
    assert all(r["proxy"] != "" for r in ok)
    # head to head on the mean: a row per compression both finished and metric kind, its means the report's
    duels = list(csv.DictReader(open(rundir / "head_to_head.csv")))
    assert {(r["compression"], r["metric_kind"]) for r in duels} == {
        (c, k) for c in ("gptq-w4", "wanda-50") for k in ("likelihood", "accuracy")}
    from colakit.report import data as report_data

    run = report_data.load_run(rundir)
    scores = report_data.cell_scores(run)
    for duel in report_data.head_to_head(run):
        assert (duel.curation, duel.versus, duel.seeds) == ("cola", "random-c4", 1)
        assert duel.mean == pytest.approx(scores.per_cell[f"cola__{duel.compression}__s0"]["mean"].mean)
        assert duel.versus_mean == pytest.approx(scores.per_cell[f"random-c4__{duel.compression}__s0"]["mean"].mean)
        assert duel.p_adjusted >= duel.p_value and "cola vs random-c4" in duel.line()
    amap = json.loads((rundir / "cells" / "cola__gptq-w4__s0" / "activation_map.json").read_text())
    assert sum(p["selected"] for p in amap["points"]) == 4 and {p["source"] for p in amap["points"]} == {"c4", "wiki"}
    assert not (rundir / "cells" / "cola__gptq-w4__s0" / "model").exists()  # models are not kept by default
    import pyarrow.parquet as pq

    assert pq.read_table(rundir / "results.parquet").num_rows == len(rows)
    # every row says which code made it (the test runs in a git checkout) and with which settings
    made = provenance()
    assert made["git_commit"] and all(r["git_commit"] == made["git_commit"] for r in rows)
    assert all(r["colakit_version"] == made["colakit_version"] and len(r["config_hash"]) == 16 for r in rows)
    assert len({r["config_hash"] for r in ok}) == 4  # one per cell: the settings differ
    run_json = json.loads((rundir / "run.json").read_text())
    assert run_json["git_commit"] == made["git_commit"]
    assert run_json["defaults"] == made["defaults"] and {"curate", "evaluate", "compress.gptq"} <= set(made["defaults"])
    assert json.loads((rundir / "dense" / "eval.json").read_text())["git_commit"] == made["git_commit"]

    # a second run redoes nothing that finished: compressing or curating again would fail here
    import colakit.compress as compress_mod
    import colakit.curate.pipeline as curate_mod

    def boom(*a, **k):
        raise AssertionError("finished work was redone")

    monkeypatch.setattr(compress_mod, "compress_to_dir", boom)
    monkeypatch.setattr(curate_mod, "curate", boom)
    before = (rundir / "results.csv").read_text()
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(rundir), "--cells", "*gptq-w4*"])
    assert result.exit_code == 0, result.output
    assert (rundir / "results.csv").read_text() == before

    # the snapshot kept in results/ resumes elsewhere: a copy of the evidence, no model, nothing redone
    from repo_tools import results_tool

    import colakit.grid.runner as runner_mod

    tool = results_tool()
    tool.snapshot(rundir, tmp_path / "results" / "tiny")
    tool.restore(tmp_path / "results" / "tiny", tmp_path / "again")
    monkeypatch.setattr(runner_mod, "evaluate_model", boom)
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "again"), "--cells", "*gptq-w4*"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "results.csv").read_text() == before
    assert (tmp_path / "again" / "head_to_head.csv").read_text() == (rundir / "head_to_head.csv").read_text()


@pytest.mark.integration
def test_a_killed_grid_resumes_where_it_stopped(tiny_grid):
    from colakit.grid import GridRunner

    tmp_path, config = tiny_grid
    grid = load_grid(config)
    grid.compression.pop("gptq-g48")
    rundir = tmp_path / "run"
    finished = []

    def stop_after_first(stage, cell, done, total):
        if stage == "grid" and done == 1:
            finished.append(cell)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        GridRunner(grid, rundir, stop_after_first).run()
    assert json.loads((rundir / "cells" / finished[0] / "cell.json").read_text())["status"] == "ok"
    done_before = (rundir / "cells" / finished[0] / "cell.json").stat().st_mtime_ns
    records = GridRunner(grid, rundir).run()
    assert [r["status"] for r in records] == ["ok"] * 4
    assert (rundir / "cells" / finished[0] / "cell.json").stat().st_mtime_ns == done_before


def test_cells_of_another_config_are_named_and_lock_files_are_not(tmp_path, caplog):
    from colakit.grid.runner import _check_same_grid

    (tmp_path / "cells" / "old-cell__s0").mkdir(parents=True)
    (tmp_path / "cells" / ".random-c4__gptq-w4__s0.lock").touch()
    (tmp_path / "run.json").write_text(json.dumps({"fingerprint": "another config"}))
    _check_same_grid(tmp_path, parse_grid(BASE))
    assert "holds 1 cells this config does not define (e.g. old-cell__s0)" in caplog.text


def test_file_lock_is_exclusive_and_released(tmp_path):
    from colakit.cache import file_lock

    with file_lock(tmp_path / ".x.lock") as held:
        assert held
        with file_lock(tmp_path / ".x.lock", blocking=False) as second:
            assert not second  # a second open of the file (as another process would) is refused
    with file_lock(tmp_path / ".x.lock", blocking=False) as again:
        assert again


# One `colakit run` process: curate and compress logged to a file (one line per call) before they run.
SHARED_RUN = """
import sys, time
import colakit.compress as compress_mod, colakit.curate.pipeline as curate_mod
from colakit.grid import GridRunner, load_grid

config, rundir, calls = sys.argv[1:]
for mod, name in ((compress_mod, "compress_to_dir"), (curate_mod, "curate")):
    def counted(*a, _real=getattr(mod, name), _name=name, **k):
        with open(calls, "a") as f:
            f.write(_name + "\\n")
        time.sleep(1)  # the other run reaches the shared stages meanwhile
        return _real(*a, **k)
    setattr(mod, name, counted)
grid = load_grid(config)
grid.curation.pop("cola")
grid.compression.pop("gptq-g48")
for record in GridRunner(grid, rundir).run():
    print("CELL", record["cell"], record["status"])
"""


@pytest.mark.integration
def test_two_runs_on_one_directory_share_the_cells_and_curate_once(tiny_grid):
    """Two processes on one RUNDIR at once: each cell runs once, the shared set is curated once."""
    import subprocess
    import sys

    tmp_path, config = tiny_grid
    rundir, calls = tmp_path / "run", tmp_path / "calls.txt"
    runs = [subprocess.Popen([sys.executable, "-c", SHARED_RUN, str(config), str(rundir), str(calls)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outputs]
    assert sorted(calls.read_text().split()) == ["compress_to_dir", "compress_to_dir", "curate"]
    statuses = {}
    for out, _ in outputs:
        for line in out.splitlines():
            if line.startswith("CELL "):
                _, cell, status = line.split()
                statuses.setdefault(cell, []).append(status)
    assert set(statuses) == {"random-c4__gptq-w4__s0", "random-c4__wanda-50__s0"}
    for cell, seen in statuses.items():
        assert sorted(seen) in (["elsewhere", "ok"], ["ok", "ok"])  # ok twice: the second found it finished
        assert json.loads((rundir / "cells" / cell / "cell.json").read_text())["status"] == "ok"


@pytest.mark.integration
def test_edited_parameters_redo_the_stages_they_touch(tiny_grid, monkeypatch, caplog):
    """Same cell ids, edited config: the stale stages run again, the rest is kept."""
    from colakit.evaluate import read_results
    from colakit.grid import GridRunner

    tmp_path, config = tiny_grid
    grid = load_grid(config)
    grid.curation.pop("cola")
    grid.compression.pop("gptq-g48")
    rundir = tmp_path / "run"
    GridRunner(grid, rundir).run()

    import colakit.compress as compress_mod
    import colakit.curate.pipeline as curate_mod

    calls = []
    for mod, name in ((compress_mod, "compress_to_dir"), (curate_mod, "curate")):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))

    edited = load_grid(config)
    edited.curation.pop("cola")
    edited.compression.pop("gptq-g48")
    edited.evaluate["tasks"] = "ppl_wiki:3"  # every cell and the dense model: evaluate again
    edited.compression["gptq-w4"].params["group_size"] = 16  # that cell: compress again
    records = GridRunner(edited, rundir).run()
    assert [r["status"] for r in records] == ["ok", "ok"]
    # the models are not kept, so both cells compress again (wanda to re-evaluate); nothing curates again
    assert sorted(calls) == ["compress_to_dir", "compress_to_dir"]
    assert "changed since it ran" in caplog.text
    dense = read_results(rundir / "dense" / "eval.json")
    assert set(dense["tasks"]) == {"ppl_wiki"} and dense["tasks"]["ppl_wiki"]["n"] == 3
    report = json.loads((rundir / "cells" / "random-c4__gptq-w4__s0" / "compression.json").read_text())
    assert report["config"]["group_size"] == 16


@pytest.mark.integration
def test_the_grid_on_ray_writes_the_local_table_and_retries_a_killed_cell(tiny_grid, monkeypatch):
    """Cells as units on a local Ray with 2 workers, one killed on its first cell: the same results.csv."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'colakit[ray]')")
    from colakit.executors import FAULT_ENV
    from colakit.executors.ray import RayExecutor, forwarded_env
    from colakit.grid import GridRunner
    from colakit.grid.rundir import TIMING_COLUMNS

    tmp_path, config = tiny_grid
    grid = load_grid(config)
    grid.compression.pop("wanda-50")  # 4 cells: a baseline, a paired curation, two that fail
    local = GridRunner(grid, tmp_path / "local").run()
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(FAULT_ENV, f"cells/cola__gptq-w4__s0:{marker}")  # its first attempt kills the worker
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": forwarded_env()})
    try:
        remote = GridRunner(grid, tmp_path / "ray", executor=RayExecutor(workers=2, stall_timeout_s=900)).run()
    finally:
        ray.shutdown()
    assert marker.exists()  # a worker did die on that cell, and a new one ran it
    assert [r["status"] for r in remote] == [r["status"] for r in local] == ["ok", "failed", "ok", "failed"]

    def rows(run):
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(open(run))]

    assert rows(tmp_path / "ray" / "results.csv") == rows(tmp_path / "local" / "results.csv")
    assert any(r["p_value"] for r in rows(tmp_path / "ray" / "results.csv"))  # cola paired against the baseline
