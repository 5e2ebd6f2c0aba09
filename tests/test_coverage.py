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
