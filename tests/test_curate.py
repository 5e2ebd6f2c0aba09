"""The curate pipeline end to end on the real default model and real sources."""

import subprocess
import sys

import pytest

from colakit.calibset import CalibrationSet
from colakit.curate.pipeline import CurateConfig, curate
from colakit.errors import ColakitError
from colakit.curate.features import FeatureConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tok():
    from colakit.model.load import load_tokenizer

    return load_tokenizer("smollm2-135m")


def test_random_is_deterministic_and_round_trips(tmp_path, tok):
    cfg = dict(sources=["c4", "wiki"], method="random", n=8, seq_len=128, pool_per_source=64)
    a = curate(CurateConfig(seed=0, **cfg), out=tmp_path / "a", tokenizer=tok)
    b = curate(CurateConfig(seed=0, **cfg), tokenizer=tok)
    c = curate(CurateConfig(seed=1, **cfg), tokenizer=tok)
    assert a.content_hash == b.content_hash != c.content_hash
    assert (tmp_path / "a" / "samples.jsonl").read_bytes() == b"".join(
        (s.to_json() + "\n").encode() for s in b.samples)
    back = CalibrationSet.load(tmp_path / "a")
    assert back.content_hash == a.content_hash and len(back) == 8
    assert all(len(s.input_ids) == 128 for s in back.samples)
    assert {s.source for s in back.samples} <= {"c4", "wiki"}
    m = back.manifest
    assert m["method"] == "random" and m["seed"] == 0 and m["tokenizer_hash"]
    assert [s["spec"] for s in m["sources"]] == ["c4", "wiki"] and m["sources"][0]["split"]
    back.check_tokenizer(tok)
    # decoded text is the text of the tokens
    assert tok(back.samples[0].text, add_special_tokens=False)["input_ids"][:100] == back.samples[0].input_ids[:100]


def test_cola_selects_distinct_medoids(tok):
    cfg = CurateConfig(sources=["c4", "code"], method="cola", n=6, seq_len=64, pool_per_source=12, seed=0,
                       probes_per_capability=2, features=FeatureConfig(layers="every:10", batch_size=16))
    calib = curate(cfg, tokenizer=tok)
    assert len(calib) == 6 and len({tuple(s.input_ids) for s in calib.samples}) == 6
    info = calib.manifest["selection_info"]
    assert sum(info["shares"].values()) == 6 and set(info["shares"]) <= {"c4", "code"}
    assert set(info["greedy_coverage"]["coverage"]) == {"language", "commonsense", "math", "code", "multilingual"}
    assert sorted(s.cluster for s in calib.samples) == list(range(6))
    assert all(s.distance is not None and s.distance >= 0 for s in calib.samples)
    again = curate(cfg, tokenizer=tok)  # features come from the store; same selection
    assert again.content_hash == calib.content_hash


def test_bad_inputs_fail_before_work(tmp_path, tok):
    with pytest.raises(ColakitError, match="larger than the pool"):
        curate(CurateConfig(sources=["c4"], method="cola", n=10_000, seq_len=512), tokenizer=tok)
    with pytest.raises(ColakitError, match="context"):
        curate(CurateConfig(sources=["c4"], seq_len=100_000), tokenizer=tok)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ColakitError):
        curate(CurateConfig(sources=[f"text:{empty}"], n=2, seq_len=64), tokenizer=tok)


def test_cli_one_line_errors(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "colakit", *a],  # noqa: E731
                                    capture_output=True, text=True)
    bad = run("curate", "--sources", "nope", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown source 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_score_ranks_a_set_in_activation_space(tok, tmp_path):
    from colakit.curate.score import score_set

    calib = curate(CurateConfig(method="random", sources=["code"], n=3, seq_len=64, pool_per_source=8, seed=0), tokenizer=tok)
    kw = dict(target="code", probes_per_capability=2, features=FeatureConfig(layers="every:10"), tokenizer=tok)
    result = score_set(calib, **kw)
    assert set(result["coverage"]) == {"language", "commonsense", "math", "code", "multilingual"}
    assert result["weights"]["code"] == 2.0 and 0 < result["diversity"] < 1
    assert -1 <= result["representativeness"] <= 1 and result["proxy"] == pytest.approx(
        (result["representativeness"] + result["diversity"]) / 2)
    # around the probes' mean: a code-only set covers code better than it covers language, there
    assert set(result["coverage_centred"]) == set(result["coverage"]) and -1 <= result["representativeness_centred"] <= 1
    assert result["coverage_centred"]["code"] > result["coverage_centred"]["language"]
    assert score_set(calib, **kw) == result  # deterministic
    assert result["probes"] == {"split": "heldout", "per_capability": {c: 2 for c in result["coverage"]}}
    seen = score_set(calib, probes_from="calibration", **kw)  # the probes curation uses: another look
    assert seen["probes"]["split"] == "calibration" and seen["coverage"] != result["coverage"]
    with pytest.raises(ColakitError, match="not a split"):
        score_set(calib, probes_from="test", **kw)


def test_probes_come_from_the_part_asked_and_avoid_excluded_documents(tok):
    from colakit.curate.pipeline import build_probes
    from colakit.data.sources import get_source

    cfg = CurateConfig(seq_len=64, probes_per_capability=4)
    held = build_probes(cfg, tok, ["code"], split="heldout")["code"]
    code = get_source("code")
    assert len(held) == 4 and all(code.is_heldout(p.doc_id) for p in held)
    calib = build_probes(cfg, tok, ["code"])["code"]
    assert not any(code.is_heldout(p.doc_id) for p in calib)
    avoided = build_probes(cfg, tok, ["code"], exclude={p.doc_id for p in calib})["code"]
    assert len(avoided) == 4 and not {p.doc_id for p in avoided} & {p.doc_id for p in calib}
    assert len(build_probes(cfg, tok, ["code"], per_capability=6)["code"]) == 6


def test_balanced_draws_its_own_probes_disjoint_from_the_pool(tok):
    cfg = CurateConfig(sources=["c4", "code"], method="balanced", n=6, seq_len=64, pool_per_source=12, seed=0,
                       method_params={"probes_per_capability": 3},
                       features=FeatureConfig(layers="every:10", batch_size=16))
    calib = curate(cfg, tokenizer=tok)
    info = calib.manifest["selection_info"]
    assert len(calib) == 6 and sum(info["shares"].values()) == 6
    assert set(info["probes_per_capability"].values()) == {3}  # its own count, not the config's 16
    assert set(info["coverage_ratio"]) == set(info["greedy_coverage"]["coverage"])
    assert all(0 < r <= 1 + 1e-6 for r in info["coverage_ratio"].values())
    assert curate(cfg, tokenizer=tok).content_hash == calib.content_hash


def test_balanced_trial_sets_shares_by_a_trial_compression(tok):
    from dataclasses import replace

    cfg = CurateConfig(sources=["c4", "code"], method="balanced-trial", n=6, seq_len=64, pool_per_source=12, seed=0,
                       method_params={"probes_per_capability": 3, "trial_blocks": 1},
                       features=FeatureConfig(layers="every:10", batch_size=16))
    calib = curate(cfg, tokenizer=tok)
    info = calib.manifest["selection_info"]
    assert len(calib) == 6 and sum(info["shares"].values()) == 6
    assert info["trial_methods"] == ["gptq", "sparsegpt"] and info["trial_blocks"] == [15]
    assert set(info["champion"]) == {f"{m}/{c}" for m in ("gptq", "sparsegpt") for c in info["probes_per_capability"]}
    assert set(info["champion"].values()) <= {"c4", "code"} and info["trials"] >= 3  # two alone, one mixed at least
    deficits = [step["worst_deficit"] for step in info["search"]]
    assert deficits == sorted(deficits, reverse=True) and len(set(deficits)) == len(deficits)
    assert curate(cfg, tokenizer=tok).content_hash == calib.content_hash
    only_gptq = curate(replace(cfg, compression="gptq"), tokenizer=tok).manifest["selection_info"]
    assert only_gptq["trial_methods"] == ["gptq"]  # a set made for one method is judged by it alone
    with pytest.raises(ColakitError, match="max_inputs_gib"):
        curate(replace(cfg, method_params={"trial_blocks": 1, "max_inputs_gib": 1e-6}), tokenizer=tok)


def test_cli_defaults_to_cola_over_the_general_sources(tmp_path, monkeypatch):
    # configs/general.yaml measured it (docs/results/general.md): COLA over these sources beat random C4 for SparseGPT and GPTQ
    import colakit.curate.pipeline as curate_mod
    from typer.testing import CliRunner

    from colakit.cli import app

    seen = {}

    def capture(config, **_kw):
        seen["config"] = config
        raise ColakitError("stopped by the test")

    monkeypatch.setattr(curate_mod, "curate", capture)
    result = CliRunner().invoke(app, ["curate", "--out", str(tmp_path / "x")])
    assert "stopped by the test" in str(result.exception)
    assert seen["config"].method == "cola"
    assert list(seen["config"].sources) == ["c4", "wiki", "code", "math", "commonsense", "multilingual"]


def test_cli_your_own_data_fields_heldout_and_quoted_paths(tmp_path):
    import json

    odd = tmp_path / "my,qa:[1].jsonl"
    odd.write_text("".join(json.dumps({"prompt": f"What is {i} plus two?", "response": f"It is {i + 2}."}) + "\n"
                           for i in range(40)))
    run = lambda *a: subprocess.run([sys.executable, "-m", "colakit", *a],  # noqa: E731
                                    capture_output=True, text=True)
    ok = run("curate", "--sources", f'c4,"{odd}"', "--out", str(tmp_path / "set"), "--method", "random", "--n", "4",
             "--seq-len", "32", "--format", "qa", "--field", "question=prompt", "--field", "answer=response",
             "--heldout-fraction", "0")
    assert ok.returncode == 0, ok.stderr
    assert "?question=prompt&answer=response: 40 documents for calibration, 0 held out" in ok.stderr
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    mine = manifest["sources"][1]
    assert mine["format"] == {"format": "qa", "documents": mine["format"]["documents"],
                              "fields": {"question": "prompt", "answer": "response"}}
    assert mine["format"]["documents"]["unchanged"] == 0 and manifest["sources"][0]["format"]["documents"][
        "formatted"] == 0  # c4 has no Q&A fields: left as it was, and the manifest says so
    bad = run("curate", "--sources", f'"{odd}"', "--out", str(tmp_path / "x"), "--format", "qa")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "no question/answer fields for --format qa" in bad.stderr and "--field question=COL" in bad.stderr
    unquoted = run("curate", "--sources", str(odd), "--out", str(tmp_path / "x"))
    assert unquoted.returncode == 2 and "at its comma -- put it in double quotes" in unquoted.stderr


def test_the_spec_grammar_is_in_the_help():
    from typer.testing import CliRunner

    from colakit.cli import app

    for args in (["curate", "--help"], ["sources", "--help"]):
        text = CliRunner().invoke(app, args, env={"COLUMNS": "100"}).output
        for needle in ("save_to_disk", "validation[:1000]", "split=train[:10%]", "double-quote", "limit=N", "template=T", ".gz/.zst", "[[]"):
            assert needle in text, (args, needle)
    assert "--heldout-fraction" in CliRunner().invoke(app, ["curate", "--help"], env={"COLUMNS": "100"}).output
