import numpy as np
import pytest

from colakit.errors import ColakitError
from colakit.curate.select import get_selector
from colakit.curate.select.cola import _replace_seed, _two_nearest, kmeans, local_search, nearest_unique


def blobs(n_per=30, k=6, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10, size=(k, d))
    x = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


def test_cola_picks_one_medoid_per_blob():
    x, label = blobs()
    sel = get_selector("cola").select(list(range(len(x))), x, 6, seed=0)
    assert sorted(label[sel.indices].tolist()) == list(range(6))
    assert len(set(sel.indices)) == 6 and sel.info["empty_clusters"] == 0


def test_cola_deterministic_and_seeded():
    x, _ = blobs(k=10)
    a = get_selector("cola").select(list(range(len(x))), x, 40, seed=0)
    b = get_selector("cola").select(list(range(len(x))), x, 40, seed=0)
    assert a.indices == b.indices and a.distances == b.distances


def test_never_fewer_than_budget_with_duplicate_points():
    x = np.zeros((30, 4), dtype=np.float32)
    x[15:] = 1.0  # only two distinct points; 10 clusters requested
    sel = get_selector("cola").select(list(range(30)), x, 10, seed=0)
    assert len(set(sel.indices)) == 10


def test_nearest_unique_widens_shortlist():
    x = np.zeros((50, 2), dtype=np.float32)
    chosen, _ = nearest_unique(x, np.zeros((40, 2), dtype=np.float32), start_m=2)
    assert len(set(chosen)) == 40


def test_swapping_a_seed_keeps_each_points_two_nearest_exact():
    rng = np.random.default_rng(0)
    dist = rng.random((200, 9)).astype(np.float32)
    near, near_d = _two_nearest(dist)
    for c in [0, 4, 8, 4]:
        _replace_seed(dist, near, near_d, c, rng.random(200).astype(np.float32))
        want, want_d = _two_nearest(dist)
        assert (near == want).all() and (near_d == want_d).all()


def test_local_search_moves_a_doubled_seed_to_the_empty_blob():
    x, label = blobs(k=3)
    seeds = np.stack([x[0], x[1], x[30]])  # two seeds in blob 0, one in blob 1, none in blob 2
    cost = lambda c: ((x[:, None] - c[None]) ** 2).sum(-1).min(1).sum()  # noqa: E731
    before = cost(seeds)
    after = local_search(x, seeds.copy(), np.random.default_rng(0), steps=20)
    assert cost(after) < 0.1 * before
    assert sorted(set(label[[int(np.argmin(((x - c) ** 2).sum(1))) for c in after]])) == [0, 1, 2]
    assert (local_search(x, seeds.copy(), np.random.default_rng(0), 20) == after).all()  # seeded


def test_kmeans_with_swaps_is_no_worse_than_scikit_learns_ten_restarts():
    sklearn = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 24))[rng.integers(0, 64, 600)] + 0.6 * rng.normal(size=(600, 24))).astype(np.float32)
    ours = kmeans(x, 32, seed=0)[1]
    theirs = sklearn.KMeans(32, n_init=10, random_state=0).fit(x).inertia_
    assert ours <= theirs * 1.0001
    assert kmeans(x, 32, seed=0, swaps=0)[1] >= ours  # the swaps are what close the gap here


def test_budget_and_nan_errors():
    x, _ = blobs()
    with pytest.raises(ColakitError, match="larger than the pool"):
        get_selector("cola").select(list(range(10)), x[:10], 11, seed=0)
    x[3, 0] = np.nan
    with pytest.raises(ColakitError, match="not finite"):
        get_selector("cola").select(list(range(len(x))), x, 5, seed=0)
    with pytest.raises(ColakitError, match="unknown curation method"):
        get_selector("nope")


def test_random_is_seeded_and_distinct():
    pool = list(range(100))
    a = get_selector("random").select(pool, None, 20, seed=1)
    assert a.indices == get_selector("random").select(pool, None, 20, seed=1).indices
    assert len(set(a.indices)) == 20
