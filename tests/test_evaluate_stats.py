"""Paired comparisons, multiple-comparison corrections, chance flags, tidy rows and power formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from colakit.errors import ColakitError
from colakit.evaluate.comparison import (
    chance_flag, compare, compare_mean_retention, compare_models, paired_rows, retention_rows,
)
from colakit.evaluate.power import (
    QUICK_BUDGET_S, QUICK_ESTIMATES, QUICK_OVERHEAD_S, TaskEstimate, capability_mdd, items_for,
    min_detectable_difference,
    per_item_sd, plan_sizes, power_table, quick_sizes,
)
from colakit.evaluate.stats import (
    adjust_pvalues, jackknife_stderr, mcnemar, mcnemar_mid_p, paired_bootstrap_stat,
)
from colakit.evaluate.suites import SUITES

# --------------------------------------------------------------------------- p-values


def test_holm_and_bh_match_hand_computed_values():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: times 4/1, 4/2, 4/3, 4/4 -> 0.02, 0.02, 0.04, 0.04 -> running min from the largest
    assert adjust_pvalues(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_pvalues([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    out = adjust_pvalues([0.01, float("nan"), 0.04])  # NaN passes through and is not a test
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert adjust_pvalues([]) == []
    with pytest.raises(ColakitError, match="holm"):
        adjust_pvalues([0.1], "bonferroni-ish")
    with pytest.raises(ColakitError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5])


def test_mcnemar_mid_p():
    # 5 discordant pairs all one way: exact two-sided p = 2 / 32, mid-p subtracts P(X = 0) = 1 / 32
    assert mcnemar_mid_p(0, 5) == pytest.approx(1 / 32)
    assert mcnemar([False] * 5 + [True] * 5, [True] * 10)["p_value"] == pytest.approx(2 / 32)
    assert mcnemar_mid_p(3, 3) == 1.0 and mcnemar_mid_p(0, 0) == 1.0
    assert mcnemar_mid_p(2, 9) < mcnemar([1] * 2 + [0] * 9, [0] * 2 + [1] * 9)["p_value"]


def test_paired_bootstrap_stat_and_jackknife():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)

    def diff(s):
        return (s["b"] - s["a"]) / s["one"]

    same = paired_bootstrap_stat({"a": x, "b": x, "one": np.ones(200)}, diff, seed=3)
    assert same["estimate"] == 0 and same["p_value"] == 1.0 and same["stderr"] == 0
    shifted = paired_bootstrap_stat({"a": x, "b": x + 0.3 + 0.1 * rng.normal(size=200), "one": np.ones(200)}, diff)
    assert shifted["p_value"] < 1e-6 and shifted["ci_low"] > 0.25 and shifted["ci_high"] < 0.35
    again = paired_bootstrap_stat({"a": x, "b": x + 1, "one": np.ones(200)}, diff, seed=5)
    assert again == paired_bootstrap_stat({"a": x, "b": x + 1, "one": np.ones(200)}, diff, seed=5)
    # the jackknife SE of a mean is exactly the textbook standard error
    se = jackknife_stderr({"x": x, "one": np.ones(200)}, lambda s: s["x"] / s["one"])
    assert se == pytest.approx(x.std(ddof=1) / math.sqrt(200), rel=1e-9)
    with pytest.raises(ValueError):
        paired_bootstrap_stat({"a": x, "b": x[:10]}, diff)


# --------------------------------------------------------------------------- fabricated results


def _mc_task(correct, bpb, pred=None, n_choices=4, primary="acc_norm"):
    items = [{"id": str(i), "acc_norm": bool(c), "acc": bool(c), "gold_bpb": float(b),
              "pred_norm": int(pred[i] if pred is not None else (0 if c else 1)), "pred": 0,
              "logprobs": [0.0] * n_choices}
             for i, (c, b) in enumerate(zip(correct, bpb))]
    return {"capability": "Commonsense", "kind": "multiple_choice", "primary": primary, "higher_is_better": True,
            "n": len(items), "item_ids": [r["id"] for r in items], "items": items, "wall_time_s": 1.0,
            "metrics": {primary: float(np.mean(correct)), f"{primary}_stderr": 0.03}}


def _ppl_task(nll, tokens):
    items = [{"id": f"d{i}", "nll": float(a), "tokens": int(t), "bytes": int(4 * t),
              "bits_per_byte": float(a / (4 * t) / math.log(2))} for i, (a, t) in enumerate(zip(nll, tokens))]
    ppl = math.exp(sum(nll) / sum(tokens))
    return {"capability": "LM", "kind": "perplexity", "primary": "token_perplexity", "higher_is_better": False,
            "n": len(items), "item_ids": [r["id"] for r in items], "items": items, "wall_time_s": 1.0,
            "metrics": {"token_perplexity": ppl, "token_perplexity_stderr": 0.5}}


def _results(**tasks):
    return {"model": {"name": "fake"}, "tasks": tasks}


@pytest.fixture(scope="module")
def fabricated():
    """Dense and two compressed models on the same 300 items and 40 documents: a keeps more
    likelihood and perplexity than b (by a small, consistent amount); accuracies barely differ."""
    rng = np.random.default_rng(1)
    n = 300
    correct_d = rng.random(n) < 0.6
    flip_a, flip_b = rng.random(n) < 0.08, rng.random(n) < 0.10
    bpb_d = rng.gamma(4, 0.3, n)
    bpb_a = bpb_d * (1.04 + 0.02 * rng.normal(size=n))
    bpb_b = bpb_d * (1.07 + 0.02 * rng.normal(size=n))
    tokens = rng.integers(200, 900, 40)
    nll_d = tokens * (2.5 + 0.3 * rng.normal(size=40))
    nll_a, nll_b = nll_d + tokens * 0.10, nll_d + tokens * 0.16 + tokens * 0.01 * rng.normal(size=40)
    dense = _results(piqa=_mc_task(correct_d, bpb_d), ppl_c4=_ppl_task(nll_d, tokens))
    a = _results(piqa=_mc_task(correct_d ^ flip_a, bpb_a), ppl_c4=_ppl_task(nll_a, tokens))
    b = _results(piqa=_mc_task(correct_d ^ flip_b, bpb_b), ppl_c4=_ppl_task(nll_b, tokens))
    return dense, a, b


def test_compare_models_finds_a_real_difference(fabricated):
    dense, a, b = fabricated
    pair = compare_models(a, b, dense, n_resamples=1000, seed=0)
    lik = pair["tasks"]["piqa"]["kinds"]["likelihood"]
    ppl = pair["tasks"]["ppl_c4"]["kinds"]["perplexity"]
    # a's gold bpb is ~3% lower than b's: its likelihood retention is higher, and decisively so
    expected = np.mean([r["gold_bpb"] for r in dense["tasks"]["piqa"]["items"]]) * (
        1 / np.mean([r["gold_bpb"] for r in a["tasks"]["piqa"]["items"]]) -
        1 / np.mean([r["gold_bpb"] for r in b["tasks"]["piqa"]["items"]]))
    assert lik["delta"] == pytest.approx(expected) and lik["delta"] > 0
    assert lik["ci_low"] > 0 and lik["p_value"] < 1e-4 and lik["significant"]
    assert ppl["delta"] > 0 and ppl["ci_low"] > 0 and ppl["significant"]
    expected_ppl = math.exp(-0.10) - math.exp(-0.16 - 0.01 * 0)  # retention = exp(-(extra nll per token))
    assert ppl["delta"] == pytest.approx(expected_ppl, abs=0.01)
    acc = pair["tasks"]["piqa"]["kinds"]["accuracy"]
    assert acc["test"] == "mcnemar_mid_p" and acc["mcnemar"]["only_a"] + acc["mcnemar"]["only_b"] > 0
    assert acc["ci_low"] < acc["delta"] < acc["ci_high"]
    rows = paired_rows(pair)
    assert [(r["task"], r["metric_kind"]) for r in rows] == [("piqa", "accuracy"), ("piqa", "likelihood"),
                                                             ("ppl_c4", "perplexity")]
    assert all(set(r) == {"task", "metric_kind", "delta", "ci_low", "ci_high", "p_value"} for r in rows)
    # without a dense model, b is the reference
    no_dense = compare_models(a, b, n_resamples=500)
    assert no_dense["reference"] == "b" and no_dense["tasks"]["piqa"]["kinds"]["likelihood"]["delta"] > 0


def test_identical_models_are_not_different(fabricated):
    dense, a, _ = fabricated
    pair = compare_models(a, a, dense, n_resamples=500)
    for row in paired_rows(pair):
        assert row["delta"] == 0 and row["p_value"] == pytest.approx(1.0)
    assert not any(c["significant"] for t in pair["tasks"].values() for c in t["kinds"].values())


def test_compare_models_refuses_different_items(fabricated):
    dense, a, b = fabricated
    other = _results(piqa=dict(b["tasks"]["piqa"], item_ids=[f"x{i}" for i in range(300)]))
    with pytest.raises(ColakitError, match="different items"):
        compare_models(a, other)
    with pytest.raises(ColakitError, match="share no task"):
        compare_models(a, _results())


def test_mean_retention_test_matches_the_headline_mean_and_pools_seeds(fabricated):
    dense, a, b = fabricated
    caps = {}
    for side, res in (("a", a), ("b", b)):
        c = compare(res, dense, n_resamples=200)["capabilities"]
        caps[side] = np.mean([c["Commonsense"]["likelihood"], c["LM"]["perplexity"]])  # the report's mean
    t = compare_mean_retention([(a, b)], dense, n_resamples=1000)
    assert t["mean_a"] == pytest.approx(caps["a"]) and t["mean_b"] == pytest.approx(caps["b"])
    assert t["delta"] == pytest.approx(caps["a"] - caps["b"]) and t["delta"] > 0
    assert t["ci_low"] > 0 and t["p_value"] < 1e-3 and t["tasks"] == ["piqa", "ppl_c4"]
    # one test of the mean: its interval is narrower than the per-task ones it averages
    per_task = compare_models(a, b, dense, n_resamples=1000)["tasks"]
    widths = [per_task["piqa"]["kinds"]["likelihood"], per_task["ppl_c4"]["kinds"]["perplexity"]]
    assert t["ci_high"] - t["ci_low"] < max(w["ci_high"] - w["ci_low"] for w in widths)
    # seeds average; a seed where they swap roles cancels the first
    swapped = compare_mean_retention([(a, b), (b, a)], dense, n_resamples=500)
    assert swapped["seeds"] == 2 and swapped["delta"] == pytest.approx(0, abs=1e-12)
    assert swapped["mean_a"] == pytest.approx(swapped["mean_b"]) and swapped["p_value"] > 0.5
    same = compare_mean_retention([(a, a)], dense, n_resamples=300)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    # the accuracy kind takes the accuracy of piqa instead of its gold bpb
    acc = compare_mean_retention([(a, b)], dense, metric_kind="accuracy", n_resamples=300)
    assert acc["mean_a"] == pytest.approx(np.mean([compare(a, dense, n_resamples=200)["capabilities"][k][m]
                                                   for k, m in (("Commonsense", "accuracy"), ("LM", "perplexity"))]))
    assert compare_mean_retention([(a, b)], dense, n_resamples=1000) == t  # seeded: the same every time
    assert compare_mean_retention([(a, b)], dense, n_resamples=1000, seed=3)["ci_low"] != t["ci_low"]
    with pytest.raises(ColakitError, match="metric kind"):
        compare_mean_retention([(a, b)], dense, metric_kind="bpb")
    other = _results(piqa=dict(b["tasks"]["piqa"], item_ids=[f"x{i}" for i in range(300)]), ppl_c4=b["tasks"]["ppl_c4"])
    with pytest.raises(ColakitError, match="different items"):
        compare_mean_retention([(a, other)], dense)


def test_compare_gives_both_metric_kinds_and_retention_rows(fabricated):
    dense, a, _ = fabricated
    c = compare(a, dense, n_resamples=500)
    piqa = c["tasks"]["piqa"]
    assert piqa["metric_kind"] == "accuracy" and piqa["stderr_method"] == "paired_bootstrap"
    assert piqa["likelihood"]["metric"] == "gold_bpb" and 0.9 < piqa["likelihood"]["retention"] < 1
    assert piqa["likelihood"]["significant"]  # a loses ~4% of gold bpb against dense: clear
    cap = c["capabilities"]["Commonsense"]
    assert cap["accuracy"] == pytest.approx(piqa["retention"]) and cap["likelihood"] == piqa["likelihood"]["retention"]
    assert c["capabilities"]["LM"]["perplexity"] == pytest.approx(math.exp(-0.10), rel=1e-6)
    rows = retention_rows(c, a)
    keys = {"task", "capability", "metric", "metric_kind", "value", "dense_value", "retention", "retention_stderr",
            "flagged", "flag_reason"}
    assert all(set(r) == keys for r in rows)
    assert [(r["task"], r["metric"], r["metric_kind"]) for r in rows] == [
        ("piqa", "acc_norm", "accuracy"), ("piqa", "gold_bpb", "likelihood"),
        ("ppl_c4", "token_perplexity", "perplexity")]


def test_constant_answer_is_flagged_and_left_out_of_averages():
    rng = np.random.default_rng(2)
    n = 100
    gold_yes = rng.random(n) < 0.6
    # a BoolQ-like task: the dense model answers choice 0 ("no") on 95% of items
    pred = np.where(rng.random(n) < 0.95, 0, 1)
    boolq = _mc_task(pred == gold_yes.astype(int), rng.gamma(4, 0.3, n), pred=pred, n_choices=2, primary="acc_norm")
    good = _mc_task(rng.random(n) < 0.7, rng.gamma(4, 0.3, n))
    flag = chance_flag(boolq)
    assert flag["chance"] and flag["rule"] == "constant_answer" and "choice 0" in flag["reason"]
    assert not chance_flag(good)["chance"]
    at_chance = _mc_task(np.arange(n) % 4 == 0, np.ones(n), pred=np.arange(n) % 4)  # 25% with 4 choices
    assert chance_flag(at_chance)["rule"] == "at_chance"

    dense = _results(boolq=boolq, piqa=good)
    comp = _results(boolq=_mc_task(~(pred == gold_yes), rng.gamma(4, 0.3, n), pred=1 - pred, n_choices=2),
                    piqa=_mc_task(rng.random(n) < 0.6, rng.gamma(4, 0.3, n)))
    c = compare(comp, dense, n_resamples=200)
    cap = c["capabilities"]["Commonsense"]
    # a constant answer: the gold label's likelihood is the same label prior, so both kinds are left out
    assert cap["flagged"] == ["boolq"] and cap["accuracy"] == pytest.approx(c["tasks"]["piqa"]["retention"])
    assert cap["likelihood"] == pytest.approx(c["tasks"]["piqa"]["likelihood"]["retention"])
    both = compare(comp, dense, include_flagged=True, n_resamples=200)["capabilities"]["Commonsense"]
    assert both["accuracy"] == pytest.approx(np.mean([c["tasks"][t]["retention"] for t in ("boolq", "piqa")]))
    assert both["likelihood"] == pytest.approx(np.mean([c["tasks"][t]["likelihood"]["retention"]
                                                        for t in ("boolq", "piqa")]))
    flagged_rows = [r for r in retention_rows(c, comp) if r["flagged"]]
    assert [(r["task"], r["metric_kind"]) for r in flagged_rows] == [("boolq", "accuracy"), ("boolq", "likelihood")]
    assert all("choice 0" in r["flag_reason"] for r in flagged_rows)


def test_nothing_right_flags_accuracy_but_keeps_likelihood():
    rng = np.random.default_rng(3)

    def gen(bpb):
        items = [{"id": str(i), "prediction": "x", "correct": False, "exact_match_strict": False,
                  "gold_bpb": float(b)} for i, b in enumerate(bpb)]
        return {"capability": "Math", "kind": "generate", "primary": "exact_match_strict", "higher_is_better": True,
                "n": len(items), "item_ids": [r["id"] for r in items], "items": items,
                "metrics": {"exact_match_strict": 0.0, "exact_match_strict_stderr": 0.0}}

    bpb = rng.gamma(5, 0.1, 30)
    dense, comp = _results(gsm8k=gen(bpb)), _results(gsm8k=gen(bpb * 1.1))
    flag = chance_flag(dense["tasks"]["gsm8k"])
    assert flag["rule"] == "at_chance" and "no item right" in flag["reason"]
    c = compare(comp, dense, n_resamples=200)
    assert c["capabilities"]["Math"]["accuracy"] is None
    assert c["capabilities"]["Math"]["likelihood"] == pytest.approx(1 / 1.1)
    assert [r["flagged"] for r in retention_rows(c, comp)] == [True, False]


# --------------------------------------------------------------------------- power


def test_power_formulas_against_the_normal_approximation():
    z = 1.959963984540054 + 0.8416212335729143
    assert min_detectable_difference(1.0, 100) == pytest.approx(z / 10)
    assert min_detectable_difference(0.5, 400, alpha=0.05, power=0.5) == pytest.approx(1.959963984540054 * 0.025)
    mdds = [min_detectable_difference(0.3, n) for n in (10, 50, 200, 1000)]
    assert mdds == sorted(mdds, reverse=True)  # more items, smaller detectable difference
    assert items_for(1.0, z / 10) in (100, 101)  # the inverse, up to floating point
    assert items_for(1.0, 0.1) > items_for(1.0, 0.2) > items_for(0.5, 0.2)
    n = items_for(0.2, 0.03)
    assert min_detectable_difference(0.2, n) <= 0.03 < min_detectable_difference(0.2, n - 1)
    with pytest.raises(ColakitError):
        items_for(1.0, 0.0)
    with pytest.raises(ColakitError):
        min_detectable_difference(1.0, 10, power=1.0)


def test_per_item_sd_for_accuracy_is_the_paired_difference_sd(fabricated):
    dense, a, b = fabricated
    ta, tb, td = (r["tasks"]["piqa"] for r in (a, b, dense))
    ca, cb, cd = (np.array([x["acc_norm"] for x in t["items"]], float) for t in (ta, tb, td))
    sd = per_item_sd(ta, tb, td, "accuracy")
    # linearisation: (c_a - c_b - delta * c_d) / mean(c_d); delta is small here
    delta = (ca.sum() - cb.sum()) / cd.sum()
    assert sd == pytest.approx(np.std(ca - cb - delta * cd, ddof=1) / cd.mean(), rel=0.02)


def test_plan_sizes_is_neyman_allocation_within_budget():
    est = {"cheap": TaskEstimate("A", "likelihood", 0.10, 0.9, 0.25, 1000),
           "noisy": TaskEstimate("B", "likelihood", 0.30, 0.9, 0.25, 1000),
           "dear": TaskEstimate("B", "likelihood", 0.10, 0.9, 1.0, 1000),
           "small": TaskEstimate("D", "perplexity", 0.50, None, 0.25, 20),
           "slow": TaskEstimate("E", "likelihood", 0.01, 0.9, 20.0, 500)}
    sizes = plan_sizes(est, 300, min_items=4)
    assert sum(n * est[t].seconds_per_item for t, n in sizes.items()) <= 300
    # n proportional to sd / sqrt(cost): three times the SD, three times the items; four times the cost, half
    assert sizes["noisy"] / sizes["cheap"] == pytest.approx(3, rel=0.02)
    assert sizes["cheap"] / sizes["dear"] == pytest.approx(2, rel=0.02)
    assert sizes["small"] == 20 and sizes["slow"] == 4  # clamped to what exists / to the minimum
    # no other split of the same time gives a smaller summed variance
    def total_var(n):
        return sum(est[t].sd ** 2 / n[t] for t in n)
    moved = dict(sizes, cheap=sizes["cheap"] + 4, dear=sizes["dear"] - 1)  # same seconds
    assert total_var(moved) > total_var(sizes)
    caps = capability_mdd(sizes, est)
    assert caps["A"] == pytest.approx(min_detectable_difference(0.10, sizes["cheap"]))
    assert caps["B"] == pytest.approx(2.8015852 * math.sqrt(0.09 / sizes["noisy"] + 0.01 / sizes["dear"]) / 2)
    with pytest.raises(ColakitError, match="budget"):
        plan_sizes(est, 50, min_items=4)


def test_quick_suite_sizes_come_from_the_power_plan():
    sizes = quick_sizes()
    assert {t: SUITES["quick"][t] for t in sizes} == sizes
    assert {"ppl_wiki", "ppl_c4", "ppl_code", "ppl_math", "ppl_multilingual"} <= set(sizes)
    seconds = sum(r["seconds"] for r in power_table(sizes, QUICK_ESTIMATES))
    assert seconds <= QUICK_BUDGET_S - QUICK_OVERHEAD_S + 1


def test_cli_prints_the_power_table():
    from typer.testing import CliRunner

    from colakit.cli import app

    run = CliRunner().invoke(app, ["evaluate", "--power"])
    assert run.exit_code == 0, run.output
    text = run.output
    assert "ppl_math" in text and "MDD" in text and "80% power" in text
