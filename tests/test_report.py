"""``colakit report`` on fabricated run directories: numbers checked against the CSV, the page
checked to be self-contained, bad input checked to fail with a useful message."""

import csv
import json
import re
import statistics

import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from colakit.cli import app
from colakit.errors import ColakitError
from colakit.report import data as d
from colakit.report import load_run, render_html, write_report
from report_rundir import COMPRESSIONS, CURATIONS, FAILED, SEEDS, TASKS, cell_id, fabricate_rundir, write_rundir


@pytest.fixture(scope="module")
def rundir(tmp_path_factory):
    return fabricate_rundir(tmp_path_factory.mktemp("run") / "general")


@pytest.fixture(scope="module")
def report(rundir, tmp_path_factory):
    return write_report(rundir, tmp_path_factory.mktemp("out") / "report.html")


def csv_rows(rundir):
    with open(rundir / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def capability_retention(rows, cell, capability, kinds=("likelihood", "perplexity")):
    """Mean retention of a cell's unflagged tasks of one capability, straight from the CSV."""
    values = [float(r["retention"]) for r in rows if r["cell"] == cell and r["capability"] == capability
              and r["metric_kind"] in kinds and r["flagged"] != "True"]
    return statistics.fmean(values)


def test_page_is_self_contained(report):
    page = report.html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    refs = re.findall(r"""\b(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?([^"'\s>]*)""", page, re.I)
    assert all(ref.startswith("#") for ref in refs), refs  # only in-page anchors
    for banned in ("http://", "https://", "<script", "@import", "url(", "<link", "<img", "<iframe", "<object",
                   "<embed", "@font-face"):
        assert banned not in page.lower(), banned
    assert "<svg" in page and "<style>" in page


def test_markdown_summary_beside_the_page(report, rundir):
    assert report.markdown == report.html.with_suffix(".md")
    md = report.markdown.read_text()
    table = [line for line in md.splitlines() if line.startswith("| sparsegpt-50") or line.startswith("| gptq-w4")]
    assert len(table) == len(COMPRESSIONS) * len(CURATIONS) * 2  # x 2 sequence lengths
    assert "retention = compressed/dense for accuracies, dense/compressed for perplexity and bits per byte" in md
    assert "Math (gold bpb)" in md and "LM (perplexity)" in md
    assert FAILED in md and "mmlu" in md


def test_markdown_retention_per_task_matches_the_csv(report, rundir):
    md = report.markdown.read_text().split("## Retention per task")[1].split("\n## ")[0]
    blocks = md.split("### ")[1:]
    assert len(blocks) == len(COMPRESSIONS) * 2  # x 2 sequence lengths
    block = next(b for b in blocks if b.startswith("sparsegpt-50, seq_len=128"))
    header, _, *lines = [line for line in block.splitlines() if line.startswith("|")]
    tasks = [h.split(" (")[0].strip() for h in header.strip("|").split("|")[1:]]
    assert set(tasks) == set(TASKS), tasks
    assert "mmlu (gold_bpb, flagged)" in header
    assert len(lines) == len(CURATIONS)
    rows = csv_rows(rundir)
    for line in lines:
        cur = line.strip("|").split("|")[0].strip().removesuffix(" (baseline)")
        cell = line.strip("|").split("|")[1 + tasks.index("ppl_wiki")].strip().strip("*")
        expected = statistics.fmean(float(r["retention"]) for r in rows if r["curation"] == cur and r["task"] == "ppl_wiki"
                                    and r["compression"] == "sparsegpt-50" and r["seq_len"] == "128"
                                    and r["metric_kind"] == "perplexity" and r["status"] == "ok")
        assert float(cell.split(" ± ")[0]) == pytest.approx(expected, abs=5e-4)
    column = [line.strip("|").split("|")[1 + tasks.index("gsm8k")].strip() for line in lines]
    assert sum(c.startswith("**") for c in column) == 1  # the best of the column in bold


def test_one_bar_per_curation_and_capability(report):
    page = report.html.read_text()
    # Knowledge has only mmlu, which is flagged: no column, no bar. The mean over capabilities is a group.
    capabilities = {cap for task, (cap, *_) in TASKS.items() if task != "mmlu"}
    assert page.count('<rect class="bar"') == len(COMPRESSIONS) * len(CURATIONS) * (len(capabilities) + 1)
    assert ">Knowledge<" not in page.split('id="charts"')[1].split('id="activation-map"')[0]


def test_headline_numbers_match_the_csv(report, rundir):
    rows = csv_rows(rundir)
    table = report.headline
    assert table.columns == ["LM", "Commonsense", "Math", "Multilingual", d.MEAN]
    assert table.kinds["Commonsense"] == ["likelihood"] and table.kinds["LM"] == ["perplexity"]
    row = next(r for r in table.rows if (r.compression, r.curation, r.settings) == ("sparsegpt-50", "cola",
                                                                                    (("seq_len", "128"),)))
    per_seed = [capability_retention(rows, cell_id("sparsegpt-50", "cola", 128, s), "Math") for s in SEEDS]
    assert row.entries["Math"].value.mean == pytest.approx(statistics.fmean(per_seed))
    assert row.entries["Math"].value.spread == pytest.approx(statistics.stdev(per_seed))
    assert row.entries["Math"].value.spread_kind == "std"
    # The mean column averages the capabilities (each a mean over its tasks), not the tasks.
    caps = ["LM", "Commonsense", "Math", "Multilingual"]
    means = [statistics.fmean(capability_retention(rows, cell_id("sparsegpt-50", "cola", 128, s), c) for c in caps)
             for s in SEEDS]
    assert row.entries[d.MEAN].value.mean == pytest.approx(statistics.fmean(means))
    # The failed cell leaves one seed: its spread is that cell's standard error.
    lone = next(r for r in table.rows if (r.compression, r.curation, r.settings) == ("gptq-w4", "zipcal",
                                                                                     (("seq_len", "256"),)))
    assert lone.cells == [cell_id("gptq-w4", "zipcal", 256, 0)]
    assert lone.entries["Math"].value.spread_kind == "stderr"


def test_best_per_block_is_marked(report, rundir):
    rows = csv_rows(rundir)
    expected = 0
    for comp in COMPRESSIONS:
        for seq_len in (128, 256):
            block = [r for r in report.headline.rows if r.compression == comp and r.settings == (("seq_len", str(seq_len)),)]
            for cap in ["LM", "Commonsense", "Math", "Multilingual"]:
                means = {}
                for cur in CURATIONS:
                    cells = [cell_id(comp, cur, seq_len, s) for s in SEEDS if cell_id(comp, cur, seq_len, s) != FAILED]
                    means[cur] = statistics.fmean(capability_retention(rows, c, cap) for c in cells)
                best = max(means, key=means.get)
                marked = [r.curation for r in block if r.entries[cap].best]
                assert marked == [best], (comp, seq_len, cap, means)
            expected += sum(e.best for r in block for e in r.entries.values())
    page = report.html.read_text()
    assert page.count('class="num best"') == expected > 0
    assert report.markdown.read_text().count(f"** {d.BEST_MARK}") == expected


def test_significance_marks_follow_the_tasks(report, rundir):
    rows = csv_rows(rundir)
    for r in report.headline.rows:
        for cap, entry in r.entries.items():
            if cap == d.MEAN:
                continue
            tasks = [x for x in rows if x["cell"] in r.cells and x["capability"] == cap and x["flagged"] != "True"
                     and x["metric_kind"] in ("likelihood", "perplexity") and x["significant"] == "True"]
            up = any(float(x["delta_vs_baseline"]) > 0 for x in tasks)
            down = any(float(x["delta_vs_baseline"]) < 0 for x in tasks)
            assert entry.marks == ("*" if up else "") + ("†" if down else ""), (r.curation, cap)
    assert any("*" in e.marks for r in report.headline.rows for e in r.entries.values())
    assert all(not e.marks for r in report.headline.rows if r.curation == "random-c4" for e in r.entries.values())


def test_accuracy_metric_kind_switches_the_rows(rundir, tmp_path):
    rep = write_report(rundir, tmp_path / "acc.html", metric_kind="accuracy")
    rows = csv_rows(rundir)
    assert rep.headline.kinds["Commonsense"] == ["accuracy"] and rep.headline.kinds["LM"] == ["perplexity"]
    row = next(r for r in rep.headline.rows if (r.compression, r.curation, r.settings) == ("gptq-w4", "random-c4",
                                                                                          (("seq_len", "128"),)))
    per_seed = [capability_retention(rows, cell_id("gptq-w4", "random-c4", 128, s), "Commonsense",
                                     kinds=("accuracy",)) for s in SEEDS]
    assert row.entries["Commonsense"].value.mean == pytest.approx(statistics.fmean(per_seed))
    page = rep.html.read_text()
    assert "capability metric</b> accuracy" in page and "Commonsense<small>accuracy</small>" in page


def test_failed_and_flagged_sections(report):
    page = report.html.read_text()
    failed = page.split('id="failed"')[1].split("</section>")[0]
    assert FAILED in failed and "not positive definite" in failed
    assert "cells failed</b> 1" in page and f"cells ok</b> {len(COMPRESSIONS) * len(CURATIONS) * 4 - 1}" in page
    flagged = page.split('id="flagged"')[1].split("</section>")[0]
    assert "mmlu" in flagged and "within 2 stderr of chance" in flagged


def test_spearman_matches_scipy(report, rundir):
    rows = csv_rows(rundir)
    caps = ["LM", "Commonsense", "Math", "Multilingual"]
    proxy, retention = [], []
    for cell in dict.fromkeys(r["cell"] for r in rows if r["status"] == "ok"):
        proxy.append(float(next(r["proxy"] for r in rows if r["cell"] == cell)))
        retention.append(statistics.fmean(capability_retention(rows, cell, c) for c in caps))
    expected = spearmanr(proxy, retention)
    corr = next(c for c in d.score_correlations(report.run, d.cell_scores(report.run)) if c.score == "proxy")
    assert corr.rho == pytest.approx(expected.statistic) and corr.p_value == pytest.approx(expected.pvalue)
    assert f"ρ = {expected.statistic:.3f} (p = {expected.pvalue:.3g}, n = {len(proxy)})" in report.html.read_text()
    # Within one compression, too.
    mine = [i for i, c in enumerate(dict.fromkeys(r["cell"] for r in rows if r["status"] == "ok"))
            if c.startswith("gptq-w4")]
    within = spearmanr([proxy[i] for i in mine], [retention[i] for i in mine])
    assert corr.by_compression["gptq-w4"][0] == pytest.approx(within.statistic)


def test_activation_map_defaults_to_cola_and_marks_selected(report, rundir, tmp_path):
    page = report.html.read_text()
    section = page.split('id="activation-map"')[1].split("</section>")[0]
    assert cell_id("sparsegpt-50", "cola", 256, 0) in section
    amap = json.loads((rundir / "cells" / cell_id("sparsegpt-50", "cola", 256, 0) / "activation_map.json").read_text())
    assert section.count('class="point selected"') == sum(p["selected"] for p in amap["points"]) == 16
    assert section.count('class="point"') == len(amap["points"]) - 16
    other = write_report(rundir, tmp_path / "r.html", cell=cell_id("sparsegpt-50", "zipcal", 128, 0))
    assert "sparsegpt-50__zipcal__seq_len128__s0: 16 selected" in other.html.read_text()


def test_sweep_curves_one_line_per_curation_for_the_mean_and_each_capability(report):
    section = report.html.read_text().split('id="sweeps"')[1].split("</section>")[0]
    capabilities = {cap for task, (cap, *_) in TASKS.items() if task != "mmlu"}  # mmlu is flagged: left out
    charts = len(COMPRESSIONS) * (1 + len(capabilities))  # seq_len swept; n has one value
    assert section.count("<svg") == charts
    assert section.count('class="line"') == charts * len(CURATIONS)
    assert "<b>seq_len</b>, sparsegpt-50: Math retention" in section
    assert "<b>seq_len</b>, sparsegpt-50: mean retention over capabilities" in section
    assert "n: 1 value(s); not plotted." in section


def test_sweep_curve_of_one_capability_follows_its_cells(tmp_path):
    rows = []
    for cur in ("random-c4", "cola"):
        for seq_len in (128, 256):
            for task, cap, r in (("ppl_wiki", "LM", 0.9), ("ppl_math", "Math", 0.5 + seq_len / 1000 + (cur == "cola") / 10)):
                rows.append({"cell": f"{cur}-{seq_len}", "status": "ok", "curation": cur, "compression": "gptq-w4",
                             "seed": 0, "seq_len": seq_len, "task": task, "capability": cap, "metric": "perplexity",
                             "metric_kind": "perplexity", "value": 20 / r, "dense_value": 20, "retention": r,
                             "flagged": "False"})
    run = load_run(write_rundir(tmp_path / "run", rows, {"sweeps": {"seq_len": [128, 256]}}))
    scores = d.cell_scores(run)
    math_curve = d.sweep_data(run, scores, "seq_len", "Math")["gptq-w4"]["cola"]
    assert {v: m.mean for v, m in math_curve.items()} == pytest.approx({"128": 0.728, "256": 0.856})
    lm_curve = d.sweep_data(run, scores, "seq_len", "LM")["gptq-w4"]["random-c4"]
    assert {v: m.mean for v, m in lm_curve.items()} == pytest.approx({"128": 0.9, "256": 0.9})


def test_a_task_flagged_on_accuracy_alone_still_counts_by_its_likelihood(tmp_path):
    # The real case: a small model gets no GSM8K item right (accuracy flagged), yet how likely it finds
    # the gold solutions is measured, and is the Math column under the likelihood kind.
    rows = []
    for cur, keep in (("random-c4", 0.88), ("cola", 0.95)):
        common = {"cell": cur, "status": "ok", "curation": cur, "compression": "gptq-w4", "seed": 0}
        rows += [{**common, "task": "ppl_wiki", "capability": "LM", "metric": "perplexity", "metric_kind": "perplexity",
                  "value": 22.0, "dense_value": 20.0, "retention": 20 / 22, "flagged": "False"},
                 {**common, "task": "gsm8k", "capability": "Math", "metric": "exact_match", "metric_kind": "accuracy",
                  "value": 0.0, "dense_value": 0.0, "retention": "", "flagged": "True",
                  "flag_reason": "no item right (n=20): accuracy retention is undefined"},
                 {**common, "task": "gsm8k", "capability": "Math", "metric": "gold_bpb", "metric_kind": "likelihood",
                  "value": 0.64 / keep, "dense_value": 0.64, "retention": keep, "flagged": "False"}]
    run = load_run(write_rundir(tmp_path / "run", rows, extra_columns=("flag_reason",)))
    likelihood = d.headline_table(run)
    assert likelihood.columns == ["LM", "Math", d.MEAN]
    math = {r.curation: r.entries["Math"].value.mean for r in likelihood.rows}
    assert math == pytest.approx({"random-c4": 0.88, "cola": 0.95})
    assert d.headline_table(run, "accuracy").columns == ["LM", d.MEAN]  # the flagged accuracy stays out
    (flag,) = d.flagged_tasks(run)
    assert flag.kinds == ("accuracy",) and "its accuracy numbers are excluded" in flag.reason


def test_minimal_run_degrades_gracefully(tmp_path):
    rows = [{"cell": f"c{cur}", "status": "ok", "curation": cur, "compression": "gptq-w4", "seed": 0,
             "task": "ppl_wiki", "capability": "LM", "metric": "perplexity", "metric_kind": "perplexity",
             "value": v, "dense_value": 20.0, "retention": 20.0 / v, "retention_stderr": 0.01, "flagged": "False"}
            for cur, v in (("random-c4", 25.0), ("cola", 22.0))]
    run = write_rundir(tmp_path / "run", rows)
    rep = write_report(run, tmp_path / "out" / "r.html")
    page = rep.html.read_text()
    for note in ("No cell of this run has an activation map", "No parameter was swept",
                 "No cell has activation-space scores", "Every cell finished", "No task was flagged"):
        assert note in page
    best = next(r for r in rep.headline.rows if r.curation == "cola").entries["LM"]
    assert best.best and best.value.mean == pytest.approx(20 / 22) and best.value.spread == pytest.approx(0.01)
    assert page.count('<rect class="bar"') == 2 * 2  # LM and the mean, two curations
    assert render_html(load_run(run)) == render_html(load_run(run))  # deterministic


def test_large_pool_is_subsampled_but_keeps_every_selected_point(tmp_path):
    from colakit.report.html import MAX_MAP_POINTS

    rows = [{"cell": "c", "status": "ok", "curation": "cola", "compression": "gptq-w4", "seed": 0, "task": "t",
             "capability": "LM", "metric": "perplexity", "metric_kind": "perplexity", "value": 21, "dense_value": 20,
             "retention": 20 / 21, "flagged": "False"}]
    points = [{"x": i % 97, "y": i % 89, "source": "c4" if i % 2 else "code", "selected": i % 500 == 0}
              for i in range(MAX_MAP_POINTS + 1500)]
    run = write_rundir(tmp_path / "run", rows, maps={"c": {"cell": "c", "curation": "cola", "projection": "pca",
                                                           "points": points}})
    page = render_html(load_run(run))
    assert page.count('class="point selected"') == sum(p["selected"] for p in points)
    assert page.count('class="point"') == MAX_MAP_POINTS


# --------------------------------------------------------------------------- bad input


def test_missing_run_directory_or_files(tmp_path):
    with pytest.raises(ColakitError, match="does not exist.*colakit run CONFIG --out RUNDIR"):
        load_run(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(ColakitError, match="run.json is missing.*colakit run CONFIG --out RUNDIR"):
        load_run(tmp_path / "half")
    (tmp_path / "half" / "run.json").write_text("{}")
    with pytest.raises(ColakitError, match="results.csv is missing"):
        load_run(tmp_path / "half")
    (tmp_path / "half" / "results.csv").write_text("cell,status\nx,ok\n")
    with pytest.raises(ColakitError, match="lacks the column"):
        load_run(tmp_path / "half")


def test_unknown_cell_lists_the_valid_ones(rundir, tmp_path):
    with pytest.raises(ColakitError, match="unknown cell 'nope'") as err:
        write_report(rundir, tmp_path / "r.html", cell="nope")
    assert cell_id("gptq-w4", "cola", 128, 0) in str(err.value)
    with pytest.raises(ColakitError, match="has no cells/.*cells with one: .*zipcal"):
        write_report(rundir, tmp_path / "r.html", cell=cell_id("gptq-w4", "cola", 128, 0))
    assert not (tmp_path / "r.html").exists()  # nothing half-written


def test_unwritable_out_and_bad_metric_kind(rundir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ColakitError, match="cannot write .*writable --out"):
        write_report(rundir, blocker / "report.html")
    with pytest.raises(ColakitError, match="is a directory"):
        write_report(rundir, tmp_path)
    with pytest.raises(ColakitError, match="unknown metric kind 'bpb'.*likelihood, accuracy"):
        write_report(rundir, tmp_path / "r.html", metric_kind="bpb")


def test_cli_writes_both_files_and_prints_the_table(rundir, tmp_path):
    out = tmp_path / "cli" / "report.html"
    result = CliRunner().invoke(app, ["report", str(rundir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and out.with_suffix(".md").exists()
    assert str(out) in result.output and "retention vs dense" in result.output
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code != 0 and isinstance(bad.exception, ColakitError)
    assert "colakit run CONFIG --out RUNDIR" in str(bad.exception)


def test_union_of_sweeps_holds_the_other_key_at_its_default(tmp_path):
    # sweeps: [{seq_len: [128, 256]}, {n: [16, 32]}] around the default seq_len 256, n 32.
    rows, retention = [], {}
    for cur in ("random-c4", "cola"):
        for seq_len, n in ((256, 32), (128, 32), (256, 16)):
            r = 0.9 + (0.02 if cur == "cola" else 0) + (seq_len - 128) / 1280 + (n - 16) / 160
            retention[(cur, seq_len, n)] = r
            rows.append({"cell": f"{cur}-{seq_len}-{n}", "status": "ok", "curation": cur, "compression": "gptq-w4",
                         "seed": 0, "n": n, "seq_len": seq_len, "task": "ppl_wiki", "capability": "LM",
                         "metric": "perplexity", "metric_kind": "perplexity", "value": 20 / r, "dense_value": 20,
                         "retention": r, "flagged": "False"})
    run = load_run(write_rundir(tmp_path / "run", rows, {"sweeps": {"seq_len": [128, 256], "n": [16, 32]}}))
    assert d.sweep_slice(run, "seq_len") == ({"n": "32"}, False)
    curves = d.sweep_data(run, d.cell_scores(run), "seq_len")["gptq-w4"]
    assert {v: m.mean for v, m in curves["cola"].items()} == pytest.approx(
        {"128": retention[("cola", 128, 32)], "256": retention[("cola", 256, 32)]})
    assert d.sweep_values(run, "n") == ["16", "32"]
    assert "n=32, over seeds" in render_html(run)


def test_verdicts_say_which_set_beats_the_baseline_and_by_how_much(tmp_path):
    from colakit.report.data import MEAN, headline_table, verdicts
    from colakit.report.markdown import render_markdown

    run = load_run(fabricate_rundir(tmp_path / "run"))
    table = headline_table(run)
    found = verdicts(run)
    assert len(found) == sum(r.curation != run.baseline and MEAN in r.entries for r in table.rows)
    for v in found:
        block = {r.curation: r.entries[MEAN].value.mean for r in table.rows
                 if (r.compression, r.settings) == (v.compression, v.settings)}
        assert (v.mean, v.baseline_mean) == (block[v.curation], block[run.baseline])
        assert v.best == (v.mean == max(block.values()))
        assert f"{v.delta:+.3f}" in v.line() and v.curation in v.line() and run.baseline in v.line()
        assert v.better + v.worse <= v.compared
    assert any(v.better or v.worse for v in found)  # the significance column reaches the counts
    summary = render_markdown(run)
    assert "## Against the baseline" in summary and all(v.line() in summary for v in found)
    run.meta["baseline"] = None
    assert verdicts(run) == []


def test_fraction_of_the_best_single_source_per_task(tmp_path):
    from colakit.report.markdown import render_markdown

    keep = {  # curation -> (method, sources, retention on ppl_wiki, on ppl_code); two seeds differ by 0.02
        "wiki": ("random", "wiki", 0.80, 0.50), "code": ("random", "code", 0.60, 0.70),
        "mix": ("mix-uniform", "wiki,code", 0.78, 0.66), "cola": ("cola", "wiki,code", 0.70, 0.68)}
    rows = []
    for cur, (method, sources, wiki, code) in keep.items():
        for seed in (0, 1):
            for task, r in (("ppl_wiki", wiki), ("ppl_code", code)):
                r += 0.02 * seed
                rows.append({"cell": f"{cur}__gptq__s{seed}", "status": "ok", "curation": cur, "curation_method": method,
                             "sources": sources, "compression": "gptq-w4", "seed": seed, "task": task,
                             "capability": "LM", "metric": "perplexity", "metric_kind": "perplexity",
                             "value": 20 / r, "dense_value": 20, "retention": r, "flagged": "False"})
    run = load_run(write_rundir(tmp_path / "run", rows, {"baseline": "wiki"}))
    (block,) = d.fraction_of_best(run)
    assert block.best == {"ppl_wiki": ("wiki", pytest.approx(0.81)), "ppl_code": ("code", pytest.approx(0.71))}
    assert block.fractions["mix"] == pytest.approx({"ppl_wiki": 0.79 / 0.81, "ppl_code": 0.67 / 0.71})
    assert block.worst["cola"] == pytest.approx(0.71 / 0.81) and block.fractions["code"]["ppl_code"] == 1.0
    summary = render_markdown(run)
    assert "## Fraction of the best single source" in summary and f"| {block.worst['cola']:.3f} |" in summary
    assert "Fraction of the best single source" in render_html(run)
    one_source = load_run(write_rundir(tmp_path / "one", [r for r in rows if r["curation"] != "code"]))
    assert d.fraction_of_best(one_source) == [] and "## Fraction" not in render_markdown(one_source)
    # a second compression with one single source so far gets no block of its own
    sparse = [{**r, "cell": r["cell"].replace("gptq", "sparse"), "compression": "sparsegpt-50"} for r in rows
              if r["curation"] != "code"]
    mixed = load_run(write_rundir(tmp_path / "mixed", rows + sparse, {"baseline": "wiki"}))
    assert [b.compression for b in d.fraction_of_best(mixed)] == ["gptq-w4"]


def test_the_worst_seed_shows_what_the_mean_over_seeds_hides(tmp_path):
    from colakit.report.html import render_html
    from colakit.report.markdown import render_markdown

    keep = {  # curation -> per seed (retention on ppl_wiki, on ppl_code): the mix's weak task moves
        "wiki": ("random", "wiki", ((0.80, 0.50), (0.80, 0.50))),
        "code": ("random", "code", ((0.60, 0.70), (0.60, 0.70))),
        "mix": ("mix-uniform", "wiki,code", ((0.74, 0.70), (0.80, 0.63)))}
    rows = [{"cell": f"{cur}__gptq__s{seed}", "status": "ok", "curation": cur, "curation_method": method,
             "sources": sources, "compression": "gptq-w4", "seed": seed, "task": task, "capability": "LM",
             "metric": "perplexity", "metric_kind": "perplexity", "value": 20 / r, "dense_value": 20,
             "retention": r, "flagged": "False"}
            for cur, (method, sources, by_seed) in keep.items() for seed, pair in enumerate(by_seed)
            for task, r in zip(("ppl_wiki", "ppl_code"), pair)]
    run = load_run(write_rundir(tmp_path / "run", rows, {"baseline": "wiki"}))
    (block,) = d.fraction_of_best(run)
    assert block.worst["mix"] == pytest.approx(min(0.77 / 0.80, 0.665 / 0.70))  # 0.95: on target, averaged
    assert block.worst_seed["mix"] == (pytest.approx(0.63 / 0.70), "1")  # 0.90: seed 1's own set is not
    assert block.worst_seed["wiki"] == (pytest.approx(0.50 / 0.70), "0")  # a tie goes to the first seed
    assert "| min | worst seed |" in render_markdown(run) and "0.900 (s1)" in render_markdown(run)
    assert "worst seed" in render_html(run) and "0.900 (s1)" in render_html(run)
    one_seed = load_run(write_rundir(tmp_path / "one", [r for r in rows if r["seed"] == 0], {"baseline": "wiki"}))
    assert d.fraction_of_best(one_seed)[0].worst_seed == {} and "| worst seed |" not in render_markdown(one_seed)


def test_head_to_head_rows_reach_the_summary_the_page_and_the_cli(tmp_path):
    from colakit.grid.rundir import HEAD_TO_HEAD_COLUMNS
    from colakit.report.markdown import render_markdown

    root = fabricate_rundir(tmp_path / "run")
    rows = [{"compression": "gptq-w4", "settings": "", "curation": "cola", "versus": "zipcal", "metric_kind": kind,
             "seeds": 2, "tasks": 6, "mean": 0.93, "versus_mean": 0.91 + i / 100, "delta": 0.02 - i / 100,
             "ci_low": 0.01 - i / 50, "ci_high": 0.03, "stderr": 0.005, "p_value": 1e-4,
             "p_adjusted": 2e-4 * (1 + 999 * i), "significant": not i} for i, kind in enumerate(("likelihood", "accuracy"))]
    with open(root / "head_to_head.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEAD_TO_HEAD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    run = load_run(root)
    (lik,), (acc,) = d.head_to_head(run), d.head_to_head(run, "accuracy")
    assert (lik.delta, lik.significant, lik.seeds) == (0.02, True, 2) and not acc.significant
    assert lik.line() == ("gptq-w4: cola vs zipcal: +0.020 mean retention (0.930 vs 0.910), 95% CI [+0.010, +0.030], "
                          "Holm-corrected p 0.0002 (2 seeds x 6 tasks): better, significant")
    assert acc.line().endswith("Holm-corrected p 0.2 (2 seeds x 6 tasks): within the noise")
    assert "## Head to head" in render_markdown(run) and lik.line() in render_markdown(run)
    assert acc.line() in render_markdown(run, "accuracy") and lik.line() not in render_markdown(run, "accuracy")
    page = render_html(run)
    assert 'id="head-to-head"' in page and "0.0002 *" in page
    result = CliRunner().invoke(app, ["report", str(root), "--json"])
    assert result.exit_code == 0, result.output
    assert [h["line"] for h in json.loads(result.stdout)["head_to_head"]] == [lik.line()]
    (root / "head_to_head.csv").unlink()  # a config without head_to_head
    assert d.head_to_head(load_run(root)) == [] and "## Head to head" not in render_markdown(load_run(root))
    assert "None asked for" in render_html(load_run(root))
