import numpy as np
import pytest

from colakit.errors import ColakitError
from colakit.select import get_selector
from colakit.select.cola import nearest_unique


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
