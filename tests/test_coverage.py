import numpy as np
import pytest

from colakit.curate.coverage import (coverage, diversity, greedy_coverage, parse_weights, proxy_scores, source_shares,
                              target_weights)
from colakit.errors import ColakitError


def test_weights():
    assert set(target_weights("general").values()) == {1.0}
    w = target_weights("math")
    assert w["math"] == 2.0 and w["code"] == 1.0
    assert target_weights("general", {"code": 0})["code"] == 0.0
    assert parse_weights("math=2, code=0.5") == {"math": 2.0, "code": 0.5}
    for bad in (lambda: target_weights("poetry"), lambda: target_weights("general", {"art": 1}),
                lambda: parse_weights("math:2"), lambda: target_weights("general", {c: 0 for c in w})):
        with pytest.raises(ColakitError):
            bad()


def test_coverage_and_diversity():
    e = np.eye(4, dtype=np.float32)
    assert coverage(e[:2], e[:2]) == pytest.approx(1.0)
    assert coverage(e[:1], e[:2]) == pytest.approx(0.5)  # one probe covered, one orthogonal
    assert diversity(e) == pytest.approx(1.0)
    assert diversity(np.ones((3, 4), dtype=np.float32)) == pytest.approx(0.0, abs=1e-6)
    s = proxy_scores(e[:1], {"a": e[:1], "b": e[1:2]}, {"a": 3.0, "b": 1.0})
    assert s.representativeness == pytest.approx(0.75) and s.per_capability == {"a": 1.0, "b": 0.0}


def test_greedy_follows_weights():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    pool = np.stack([a + 0.05 * rng.normal(size=8) for _ in range(10)] + [b + 0.05 * rng.normal(size=8)
                                                                       for _ in range(10)]).astype(np.float32)
    sources = ["A"] * 10 + ["B"] * 10
    probes = {"x": np.stack([a + 0.05 * rng.normal(size=8) for _ in range(4)]),
              "y": np.stack([b + 0.05 * rng.normal(size=8) for _ in range(4)])}
    balanced = source_shares(greedy_coverage(pool, probes, {"x": 1, "y": 1}, 2), sources)
    assert balanced == {"A": 1, "B": 1}
    only_x = greedy_coverage(pool, probes, {"x": 1, "y": 0}, 3)
    assert source_shares(only_x[:1], sources) == {"A": 1}
    assert only_x == greedy_coverage(pool, probes, {"x": 1, "y": 0}, 3)  # deterministic
    with pytest.raises(ColakitError):
        greedy_coverage(pool, probes, {"x": 1}, 21)


def test_cola_selector_respects_shares():
    from colakit.curate.select import get_selector

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(40, 6)).astype(np.float32)
    sources = ["A"] * 20 + ["B"] * 20
    sel = get_selector("cola")
    sel.plan(feats, sources, {"x": feats[:5], "y": feats[20:25]}, {"x": 1.0, "y": 1.0}, 6)
    out = sel.select(list(range(40)), feats, 6, seed=0)
    picked = [sources[i] for i in out.indices]
    assert len(set(out.indices)) == 6
    assert sorted(out.clusters) == list(range(6))
    assert out.info["shares"] == {s: picked.count(s) for s in set(picked)}


def _lopsided():
    """x's probes sit in two directions that the pool covers exactly; y's in one the pool covers weakly
    (cosine 0.2). Summed coverage spends both picks on x; max-min lifts y with the second."""
    e = np.eye(6, dtype=np.float32)
    weak_y = 0.2 * e[2] + np.sqrt(1 - 0.04) * e[3]
    pool = np.stack([e[0], e[0] * 0.99 + 0.01 * e[5], e[1], weak_y]).astype(np.float32)
    probes = {"x": np.stack([e[0], e[1]]), "y": e[2:3]}
    return pool, probes


def test_maxmin_lifts_the_weakest_capability_first():
    from colakit.curate.select.balanced import maxmin_coverage

    pool, probes = _lopsided()
    weights = {"x": 1.0, "y": 1.0}
    assert sorted(greedy_coverage(pool, probes, weights, 2)) == [0, 2]  # the sum leaves y uncovered
    picks, ratios = maxmin_coverage(pool, probes, weights, 2, centre=False)  # the geometry as drawn
    assert picks == [0, 3]  # x's first direction, then y: its weak best is all the pool can give it
    assert ratios == {"x": pytest.approx(0.5), "y": pytest.approx(1.0)}
    # a weight of 3 on x: its deficit (3 x 0.5) outweighs y's (1 x 1) after the first pick
    assert maxmin_coverage(pool, probes, {"x": 3.0, "y": 1.0}, 2, centre=False)[0] == [0, 2]
    assert maxmin_coverage(pool, probes, weights, 4)[0] == maxmin_coverage(pool, probes, weights, 4)[0]
    with pytest.raises(ColakitError, match="larger than the pool"):
        maxmin_coverage(pool, probes, weights, 5)


def test_maxmin_measures_coverage_around_the_pools_mean():
    """Activations share one large direction: raw cosines call every capability covered by any pick.
    Less the pool's mean, each capability is covered only by a candidate from its own cluster."""
    from colakit.curate.select.balanced import maxmin_coverage

    rng = np.random.default_rng(0)
    e = np.eye(8, dtype=np.float32)
    common = 20 * e[0]
    clusters = {"x": e[1], "y": e[2], "z": e[3]}
    pool = np.stack([common + clusters[c] + 0.05 * rng.standard_normal(8) for c in "xxxxyz"]).astype(np.float32)
    probes = {c: np.stack([common + d + 0.05 * rng.standard_normal(8) for _ in range(4)]).astype(np.float32)
              for c, d in clusters.items()}
    weights = dict.fromkeys(clusters, 1.0)
    _, raw = maxmin_coverage(pool, probes, weights, 1, centre=False)
    assert min(raw.values()) > 0.99  # one pick from x "covers" y and z
    picks, centred = maxmin_coverage(pool, probes, weights, 3)
    assert sorted(picks)[-2:] == [4, 5] and min(centred.values()) > 0.9  # y's and z's only candidates
    _, one = maxmin_coverage(pool, probes, weights, 1)
    assert sorted(one.values())[:2] == [0.0, 0.0]  # centred, one pick leaves two capabilities uncovered


def test_balanced_selector_plans_shares_and_clusters_inside_them():
    from colakit.curate.select import get_selector

    pool, probes = _lopsided()
    sources = ["A", "A", "A", "B"]
    sel = get_selector("balanced", probes_per_capability=8, centre=False)
    assert sel.params()["probes_per_capability"] == 8 and "source_selection" not in sel.params()
    sel.plan(pool, sources, probes, {"x": 1.0, "y": 1.0}, 2)
    out = sel.select(list(range(4)), pool, 2, seed=0)
    assert out.info["shares"] == {"A": 1, "B": 1} and 3 in out.indices
    assert out.info["coverage_ratio"]["y"] == pytest.approx(1.0)
    with pytest.raises(ColakitError, match="probes_per_capability"):
        get_selector("balanced", probes_per_capability=0)


def test_balanced_hessian_is_the_greedy_on_second_moment_transfer_risk():
    """Each pick lowers the neediest capability's tr(M_S^-1 Sigma_c) most, as a direct computation finds."""
    from colakit.curate.select.balanced_hessian import maxmin_transfer

    rng = np.random.default_rng(1)
    pool = rng.standard_normal((30, 6)).astype(np.float32)
    pool[:10, :2] *= 4  # the first ten spread widely where x's probes do
    probes = {"x": (rng.standard_normal((12, 6)) * [4, 4, 1, 1, 1, 1]).astype(np.float32),
              "y": (rng.standard_normal((12, 6)) * [1, 1, 1, 1, 3, 3]).astype(np.float32)}
    weights = {"x": 1.0, "y": 1.0}
    picks, ratios = maxmin_transfer(pool, probes, weights, 8, ridge=0.1)

    x = pool.astype(np.float64)
    mean = x.mean(0)
    cand = x - mean
    lam = 0.1 * np.trace(cand.T @ cand / len(cand)) / 6
    sigma = {c: (p - mean).T @ (p - mean) / len(p) for c, p in probes.items()}

    def risk(rows, c):
        m = (cand[rows].T @ cand[rows] / len(rows) if rows else 0) + lam * np.eye(6)
        return np.trace(np.linalg.solve(m, sigma[c]))

    full = {c: risk(list(range(30)), c) for c in probes}
    chosen = []
    for _ in range(8):
        neediest = max(probes, key=lambda c: (1 - full[c] / risk(chosen, c), c == "x"))
        rest = [i for i in range(30) if i not in chosen]
        chosen.append(min(rest, key=lambda i: risk(chosen + [i], neediest)))
    assert picks == chosen
    assert ratios == {c: pytest.approx(full[c] / risk(chosen, c)) for c in probes}
    assert sum(i < 10 for i in picks) >= 2  # x needs the mass only the wide ten put where its probes are
    assert maxmin_transfer(pool, probes, weights, 8, ridge=0.1) == (picks, ratios)  # deterministic


def test_balanced_hessian_selector_plans_shares_from_the_risk():
    from colakit.curate.select import get_selector

    pool, probes = _lopsided()
    sel = get_selector("balanced-hessian", probes_per_capability=8)
    assert sel.params()["ridge"] == 0.1 and "centre" not in sel.params() and sel.disjoint_probes
    sel.plan(pool, ["A", "A", "A", "B"], probes, {"x": 1.0, "y": 1.0}, 2)
    out = sel.select(list(range(4)), pool, 2, seed=0)
    assert sum(out.info["shares"].values()) == 2 and set(out.info["risk_ratio"]) == {"x", "y"}
    with pytest.raises(ColakitError, match="ridge"):
        get_selector("balanced-hessian", ridge=0)


def test_balanced_trial_search_reaches_the_max_min_split_by_brute_force():
    """Separable trial errors: each capability's error falls with its own source's windows only."""
    import itertools

    from colakit.curate.select.balanced_trial import search_shares

    sources, alpha, budget = ["A", "B", "C"], {"A": 0.2, "B": 1.0, "C": 5.0}, 12
    def errors_of(counts):
        return {("m", k.lower()): 1 / (1 + alpha[k] * counts[k]) for k in sources}

    def worst(counts, pool=dict.fromkeys(sources, budget)):  # the largest deficit 1 - e*_c / e_c(n)
        return max(1 - (1 + alpha[k] * counts[k]) / (1 + alpha[k] * pool[k]) for k in sources)

    weights = dict.fromkeys("abc", 1.0)
    counts, info = search_shares(sources, dict.fromkeys(sources, budget), errors_of, weights, budget, 4, 50)
    splits = [dict(zip(sources, n)) for n in itertools.product(range(budget + 1), repeat=3) if sum(n) == budget]
    assert sum(counts.values()) == budget
    assert worst(counts) == pytest.approx(min(worst(s) for s in splits))
    assert counts["A"] < counts["B"] <= counts["C"]  # A is near its best with few windows: it gives them up
    assert info["champion"] == {"m/a": "A", "m/b": "B", "m/c": "C"} and info["search"][0]["counts"] == {
        "A": 4, "B": 4, "C": 4}
    assert all(b["worst_deficit"] < a["worst_deficit"] for a, b in zip(info["search"], info["search"][1:]))
    pool = {"A": 12, "B": 12, "C": 3}  # C's pool is smaller than the share it would take
    capped, _ = search_shares(sources, pool, errors_of, weights, budget, 4, 50)
    assert capped["C"] <= 3 and sum(capped.values()) == budget
    assert worst(capped, pool) == pytest.approx(min(worst(s, pool) for s in splits if s["C"] <= 3))
    assert search_shares(sources, dict.fromkeys(sources, budget), errors_of, weights, budget, 4, 50)[0] == counts


def test_balanced_trial_moments_and_errors_on_a_tiny_model():
    """A set's moments summed from its windows' kept inputs equal one forward's; a capability's error
    is lowest when the layers are compressed on its own moments."""
    import torch
    from tiny_models import tiny_model

    from colakit.compress.methods.base import get_method
    from colakit.curate.select.balanced_trial import (DenseBlocks, SetMoments, input_moments, trial_block_indices,
                                                      trial_errors, window_inputs)
    from colakit.model.layers import find_decoder

    model = tiny_model("llama", layers=4)
    layout = find_decoder(model)
    blocks = trial_block_indices(4, 2)
    assert blocks == [1, 3] and trial_block_indices(30, 4) == [3, 11, 18, 26]
    rng = np.random.default_rng(0)
    low = [rng.integers(0, 128, size=n).tolist() for n in (24, 32, 17)]  # two token ranges: two "domains"
    high = [rng.integers(128, 256, size=32).tolist() for _ in range(3)]
    kept = window_inputs(model, layout, blocks, low, pad_id=0)
    assert [len(k[(1, "mlp_out")]) for k in kept] == [24, 32, 17]  # real tokens only
    whole = input_moments(model, layout, blocks, low, pad_id=0)
    first_two = input_moments(model, layout, blocks, low[:2], pad_id=0)
    sets = SetMoments({"low": kept})
    assert set(whole) == {(b, s) for b in blocks for s in ("attn_in", "attn_out", "mlp_in", "mlp_out")}
    for counts, expected in (({"low": 3}, whole), ({"low": 2}, first_two), ({"low": 3}, whole)):
        got = sets.of(counts)  # grown, shrunk and grown again: the same moments as one forward of those windows
        for key in whole:
            torch.testing.assert_close(got[key], expected[key], rtol=2e-2, atol=1e-3)
    probes = {"low": whole, "high": input_moments(model, layout, blocks, high, pad_id=0)}
    methods = [get_method("gptq")(bits=3, group_size=32), get_method("sparsegpt")()]
    dense = DenseBlocks(layout, blocks, probes)
    on_low = trial_errors(dense, methods, probes["low"])
    on_high = trial_errors(dense, methods, probes["high"])
    for m in ("gptq", "sparsegpt"):
        assert on_low[(m, "low")] < on_high[(m, "low")] and on_high[(m, "high")] < on_low[(m, "high")]
    assert trial_errors(dense, methods, probes["low"]) == on_low
