"""tools/results.py: README/docs figures generated from results snapshots, and the check CI runs."""

import json
import shutil

import pytest
from report_rundir import fabricate_rundir, write_rundir
from repo_tools import ROOT, results_tool

from colakit.provenance import defaults_digests


def test_the_repository_figures_match_their_results_files():
    problems, _ = results_tool().process(ROOT)
    assert problems == []


@pytest.fixture
def site(tmp_path):
    """A checkout in small: a results snapshot and a README citing it."""
    run = fabricate_rundir(tmp_path / "results" / "grid")
    meta = json.loads((run / "run.json").read_text())
    meta.update(defaults=defaults_digests(), git_commit="a" * 40, git_dirty=False,
                config={"curation": {"cola": {"method": "cola"}}, "compression": {"g": {"method": "gptq"}}})
    (run / "run.json").write_text(json.dumps(meta))
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# x\n\n<!-- results results/grid headline -->\n<!-- /results -->\n\n"
        "COLA: <!-- results results/grid mean gptq-w4 cola seq_len=128 --><!-- /results --> "
        "(<!-- results results/grid delta gptq-w4 cola seq_len=128 --><!-- /results -->).\n")
    (tmp_path / "docs" / "page.md").write_text(
        "<!-- results results/grid verdicts -->\n<!-- /results -->\n"
        "code: <!-- results results/grid task sparsegpt-50 cola ppl_wiki seq_len=256 --><!-- /results -->\n")
    return tmp_path


def test_write_fills_every_figure_and_check_then_passes(site):
    tool = results_tool()
    problems, notes = tool.process(site)
    assert len(problems) == 5 and all("make results" in p for p in problems)  # empty figures
    problems, notes = tool.process(site, write=True)
    assert problems == [] and "wrote README.md" in notes
    readme = (site / "README.md").read_text()
    assert "| compression | curation |" in readme and "gptq-w4" in (site / "docs" / "page.md").read_text()
    from colakit.report.data import load_run, verdicts

    v = next(v for v in verdicts(load_run(site / "results" / "grid"))
             if (v.compression, v.curation, dict(v.settings).get("seq_len")) == ("gptq-w4", "cola", "128"))
    assert f"seq_len=128 -->{v.mean:.3f} ± " in readme and f"seq_len=128 -->{v.delta:+.3f}<!--" in readme
    from colakit.report.data import task_details

    code = next(t for t in task_details(load_run(site / "results" / "grid")) if t.task == "ppl_wiki"
                and (t.compression, t.curation, dict(t.settings)["seq_len"]) == ("sparsegpt-50", "cola", "256"))
    assert f"ppl_wiki seq_len=256 -->{code.retention.mean:.3f}" in (site / "docs" / "page.md").read_text()
    assert tool.process(site) == ([], [])


def test_check_names_an_edited_figure(site):
    tool = results_tool()
    tool.process(site, write=True)
    readme = site / "README.md"
    text = readme.read_text()
    mean = text.split("seq_len=128 -->")[1].split("<!--")[0]
    readme.write_text(text.replace(f"seq_len=128 -->{mean}", "seq_len=128 -->0.999 ± 0.001", 1))
    problems, _ = tool.process(site)
    assert len(problems) == 1 and "README.md:" in problems[0]
    assert f"reads '0.999 ± 0.001' where the file gives '{mean}'" in problems[0]


def test_check_calls_a_file_made_with_other_defaults_stale(site):
    tool = results_tool()
    tool.process(site, write=True)
    run_json = site / "results" / "grid" / "run.json"
    meta = json.loads(run_json.read_text())
    meta["defaults"]["compress.gptq"] = "0" * 12
    meta["defaults"]["compress.awq"] = "0" * 12  # a part the run did not use: no matter
    run_json.write_text(json.dumps(meta))
    problems, _ = tool.process(site)
    assert len(problems) == 1 and "stale" in problems[0] and "compress.gptq" in problems[0]
    assert "compress.awq" not in problems[0]
    del meta["defaults"]  # made before colakit recorded its defaults: stale in every part it used
    run_json.write_text(json.dumps(meta))
    assert "curate, evaluate, compress.gptq, select.cola" in tool.process(site)[0][0]


def test_dirty_results_are_noted_and_bad_markers_named(site):
    tool = results_tool()
    tool.process(site, write=True)
    run_json = site / "results" / "grid" / "run.json"
    meta = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({**meta, "git_dirty": True}))
    problems, notes = tool.process(site)
    assert problems == [] and any("uncommitted changes" in n for n in notes)
    (site / "docs" / "bad.md").write_text("<!-- results results/grid mean gptq-w4 nosuch --><!-- /results -->\n"
                                          "<!-- results results/none headline --><!-- /results -->\n")
    problems, _ = tool.process(site)
    assert len(problems) == 2 and "0 headline rows for gptq-w4 x nosuch" in problems[0]
    assert "results/none is not a results snapshot" in problems[1]


def test_snapshot_keeps_the_evidence_and_not_the_models(site, tmp_path):
    tool = results_tool()
    run = site / "results" / "grid"
    from colakit.grid.rundir import HEAD_TO_HEAD_COLUMNS
    from colakit.report.data import head_to_head, load_run

    row = "gptq-w4,,cola,zipcal,likelihood,3,7,0.93,0.92,0.01,-0.002,0.02,0.005,0.04,0.08,False"
    (run / "head_to_head.csv").write_text(",".join(HEAD_TO_HEAD_COLUMNS) + "\n" + row + "\n")
    (duel,) = head_to_head(load_run(run))  # written when a config asks
    assert tool.render(site, "results/grid", "head-to-head", []) == f"\n- {duel.line()}\n"
    cell = next(p.name for p in (run / "cells").iterdir())
    (run / "cells" / cell / "eval.json").write_text("{}")
    (run / "cells" / cell / "eval.json.parts").mkdir()
    (run / "cells" / cell / "eval.json.parts" / "arc_easy.json").write_text("{}")
    (run / "cells" / cell / "model").mkdir()
    (run / "cells" / cell / "model" / "model.safetensors").write_bytes(b"weights")
    (run / "cells" / f".{cell}.lock").touch()
    (run / "results.parquet").write_bytes(b"parquet")
    tool.snapshot(run, tmp_path / "copy")
    kept = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert {"run.json", "results.csv", "head_to_head.csv", f"cells/{cell}/eval.json",
            f"cells/{cell}/activation_map.json"} <= set(kept)
    assert not [k for k in kept if "model" in k.split("/") or ".parts" in k or ".lock" in k or "parquet" in k]
    (run / "cells" / cell / "activation_map.json").unlink()
    tool.snapshot(run, tmp_path / "copy")  # a snapshot is replaced whole
    assert not (tmp_path / "copy" / "cells" / cell / "activation_map.json").exists()
    with pytest.raises(SystemExit, match="lacks run.json, results.csv"):
        tool.snapshot(tmp_path / "nothing", tmp_path / "copy")


def test_a_snapshots_cell_records_must_agree_with_its_table(site):
    import csv

    tool = results_tool()
    run = site / "results" / "grid"
    tool.process(site, write=True)
    assert tool.process(site)[0] == []
    rows = {r["cell"]: r for r in csv.DictReader(open(run / "results.csv"))}
    for cell, r in rows.items():  # the records a real run writes beside its table
        (run / "cells" / cell).mkdir(parents=True, exist_ok=True)
        (run / "cells" / cell / "cell.json").write_text(json.dumps(
            {"cell": cell, "status": r["status"], "config_hash": r.get("config_hash", "")}))
    assert tool.process(site)[0] == []
    cell = sorted(rows)[0]
    record = json.loads((run / "cells" / cell / "cell.json").read_text())
    (run / "cells" / cell / "cell.json").write_text(json.dumps({**record, "status": "failed"}))
    (problem,) = tool.process(site)[0]
    assert f"cell {cell}'s status is 'failed' in cell.json" in problem and "snapshot the run directory again" in problem


def test_restore_gives_a_run_directory_and_never_overwrites(site, tmp_path):
    tool = results_tool()
    run = site / "results" / "grid"
    with pytest.raises(SystemExit, match="holds no cells"):
        tool.restore(run, tmp_path / "again")
    cell = next(p.name for p in (run / "cells").iterdir())
    (run / "cells" / cell / "cell.json").write_text('{"status": "ok"}')
    tool.restore(run, tmp_path / "again")
    assert (tmp_path / "again" / "cells" / cell / "cell.json").read_text() == '{"status": "ok"}'
    assert (tmp_path / "again" / "results.csv").read_bytes() == (run / "results.csv").read_bytes()
    tool.restore(run, tmp_path / "again")  # the same files again: nothing to do
    (tmp_path / "again" / "cells" / cell / "cell.json").write_text('{"status": "failed"}')
    (tmp_path / "again" / "results.csv").unlink()
    with pytest.raises(SystemExit, match=f"other contents \\(e.g. cells/{cell}/cell.json\\)"):
        tool.restore(run, tmp_path / "again")
    assert not (tmp_path / "again" / "results.csv").exists()  # nothing copied before the refusal
    assert (tmp_path / "again" / "cells" / cell / "cell.json").read_text() == '{"status": "failed"}'


def test_keep_adds_finished_cells_and_leaves_the_tables(site, tmp_path):
    tool = results_tool()
    snap = site / "results" / "grid"
    tool.process(site, write=True)
    import csv

    for r in csv.DictReader(open(snap / "results.csv")):  # the records a real run writes beside its table
        (snap / "cells" / r["cell"]).mkdir(parents=True, exist_ok=True)
        (snap / "cells" / r["cell"] / "cell.json").write_text(json.dumps({"status": r["status"]}))
    cell = r["cell"]
    tool.restore(snap, tmp_path / "run")
    run = tmp_path / "run"
    for name, status in (("new__g__s1", "ok"), ("half__g__s1", "failed")):  # a later session's cells
        (run / "cells" / name).mkdir(parents=True)
        (run / "cells" / name / "cell.json").write_text(json.dumps({"status": status}))
        (run / "cells" / name / "eval.json").write_text("{}")
    (run / "cells" / "busy__g__s1").mkdir()  # started, no record yet
    (run / "cells" / "busy__g__s1" / "eval.json").write_text("{}")
    (run / "calib" / "new__s1").mkdir(parents=True)
    (run / "calib" / "new__s1" / "samples.jsonl").write_text('{"text": "x"}\n')
    (run / "results.csv").write_text("cell\nnew__g__s1\n")  # the run's tables moved on
    (run / "run.json").write_text("{}")
    tables = {n: (snap / n).read_bytes() for n in ("run.json", "results.csv")}
    tool.keep(run, snap)
    assert (snap / "cells" / "new__g__s1" / "eval.json").read_text() == "{}"
    assert (snap / "calib" / "new__s1" / "samples.jsonl").is_file()
    assert not (snap / "cells" / "half__g__s1").exists() and not (snap / "cells" / "busy__g__s1").exists()
    assert {n: (snap / n).read_bytes() for n in tables} == tables
    assert tool.process(site) == ([], [])  # every figure as it was
    tool.keep(run, snap)  # again: nothing new
    (run / "cells" / cell / "cell.json").write_text('{"status": "ok", "redone": true}')  # differs: refused
    with pytest.raises(SystemExit, match=f"other contents \\(e.g. cells/{cell}/cell.json\\)"):
        tool.keep(run, snap)
    with pytest.raises(SystemExit, match="not a results snapshot"):
        tool.keep(run, tmp_path / "nothing")


def test_a_fraction_of_the_best_single_source_is_a_figure(tmp_path):
    rows = [{"cell": f"{cur}__g__s0", "status": "ok", "curation": cur, "curation_method": method, "sources": src,
             "compression": "gptq-w4", "seed": 0, "task": task, "capability": "LM", "metric": "perplexity",
             "metric_kind": "perplexity", "value": 20 / r, "dense_value": 20, "retention": r, "flagged": "False"}
            for cur, method, src, wiki, code in (("wiki", "random", "wiki", 0.8, 0.5),
                                                 ("code", "random", "code", 0.6, 0.7),
                                                 ("mix", "mix-uniform", "wiki,code", 0.76, 0.63))
            for task, r in (("ppl_wiki", wiki), ("ppl_code", code))]
    write_rundir(tmp_path / "results" / "r", rows, {"baseline": "wiki"})
    tool = results_tool()
    assert tool.render(tmp_path, "results/r", "fraction", ["gptq-w4", "mix"]) == "0.900 (ppl_code)"
    assert tool.render(tmp_path, "results/r", "fraction", ["gptq-w4", "mix", "ppl_wiki"]) == "0.950"
    with pytest.raises(ValueError, match="no fractions for 'nope'"):
        tool.render(tmp_path, "results/r", "fraction", ["gptq-w4", "nope"])
    with pytest.raises(ValueError, match="0 fraction blocks for sparsegpt"):
        tool.render(tmp_path, "results/r", "fraction", ["sparsegpt", "mix"])


def test_a_proxy_scores_rho_within_a_compression_is_a_figure(site):
    from colakit.report.data import cell_scores, load_run, score_correlations
    from colakit.report.markdown import rho_text

    tool = results_tool()
    run = load_run(site / "results" / "grid")
    (proxy,) = [c for c in score_correlations(run, cell_scores(run)) if c.score == "proxy"]
    assert tool.render(site, "results/grid", "rho", ["proxy", "gptq-w4"]) == rho_text(*proxy.by_compression["gptq-w4"])
    with pytest.raises(ValueError, match="no rho of 'nope' within 'gptq-w4'"):
        tool.render(site, "results/grid", "rho", ["nope", "gptq-w4"])


def test_a_rho_over_some_curations_uses_only_their_cells(site):
    from colakit.report.data import cell_scores, load_run, score_correlations, spearman
    from colakit.report.markdown import rho_text

    tool = results_tool()
    run = load_run(site / "results" / "grid")
    (proxy,) = [c for c in score_correlations(run, cell_scores(run)) if c.score == "proxy"]
    some = run.curations[:2]
    mine = [(x, y) for cell, x, y in proxy.points
            if run.cells[cell].compression == "gptq-w4" and run.cells[cell].curation in some]
    assert 0 < len(mine) < len(proxy.points)
    got = tool.render(site, "results/grid", "rho", ["proxy", "gptq-w4", *some])
    assert got == rho_text(*spearman([x for x, _ in mine], [y for _, y in mine]), len(mine))
    assert got.endswith(f"n {len(mine)})")
    with pytest.raises(ValueError, match="no curation 'nope'"):
        tool.render(site, "results/grid", "rho", ["proxy", "gptq-w4", "nope"])


def test_a_figure_can_name_one_seed_of_a_multi_seed_run(tmp_path):
    rows = [{"cell": f"{cur}__g__s{seed}", "status": "ok", "curation": cur, "curation_method": "random",
             "sources": cur, "compression": "gptq-w4", "seed": seed, "task": "ppl_wiki", "capability": "LM",
             "metric": "perplexity", "metric_kind": "perplexity", "value": 20 / r, "dense_value": 20, "retention": r,
             "flagged": "False"}
            for cur, by_seed in (("wiki", (0.8, 0.6)), ("code", (0.5, 0.7))) for seed, r in enumerate(by_seed)]
    write_rundir(tmp_path / "results" / "r", rows, {"baseline": "wiki"})
    tool = results_tool()
    assert tool.render(tmp_path, "results/r", "task", ["gptq-w4", "wiki", "ppl_wiki"]).startswith("0.700 ± ")
    assert tool.render(tmp_path, "results/r", "task", ["gptq-w4", "wiki", "ppl_wiki", "seed=1"]).startswith("0.600")
    assert tool.render(tmp_path, "results/r", "mean", ["gptq-w4", "code", "seed=0"]).startswith("0.500")
    # seed 1: code is the best single source on ppl_wiki, so wiki keeps 0.6 / 0.7 of it
    assert tool.render(tmp_path, "results/r", "fraction", ["gptq-w4", "wiki", "ppl_wiki", "seed=1"]) == "0.857"
    with pytest.raises(ValueError, match="no cell of seed 2.*its seeds: 0, 1"):
        tool.render(tmp_path, "results/r", "mean", ["gptq-w4", "code", "seed=2"])
    with pytest.raises(ValueError, match="pools its seeds"):
        tool.render(tmp_path, "results/r", "head-to-head", ["seed=0"])
