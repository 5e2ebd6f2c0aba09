"""``cola``: COLA stage 3, activation-space k-means with one medoid per cluster.

k = the sample budget. On the projected activation features, per seeded restart (``n_init``, the
lowest inertia kept): greedy k-means++ seeding, LocalSearch++ swaps of seeds for data points
(Lattanzi & Sohler 2019), then faiss's Lloyd iterations. Then every centroid takes its nearest
candidate that no other centroid has taken yet, centroids with the closest match choosing first. So the result always
has exactly ``budget`` distinct candidates, also when k-means leaves a cluster empty or two
centroids share their nearest point.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

from colakit.curate.coverage import greedy_coverage, proxy_scores, source_shares
from colakit.curate.select.base import Selection, Selector, register
from colakit.errors import ColakitError

CHUNK = 65536  # rows per faiss search when a pool is scanned in pieces
POINTS_PER_THREAD = 250  # faiss threads for small problems (bench/kmeans.py, 16 cores: 1000 points ran 4x faster on 4 threads than on 16)


def _faiss():
    """faiss on first use: the selector registry is also imported only for its defaults
    (``colakit.provenance``), where loading faiss's OpenMP runtime is wasted (and fails under a
    tight address-space cap)."""
    import faiss

    return faiss


@contextmanager
def faiss_threads(n_points: int):
    """Fewer threads for small pools: faiss's OpenMP and numpy's BLAS (the seeding and swap
    products) both start as many threads as cores, and below ~250 points each the start-up cost
    outweighs the work."""
    with threadpool_limits(limits=max(1, min(_faiss().omp_get_max_threads(), n_points // POINTS_PER_THREAD))):
        yield


def _sq_dists_from(x: np.ndarray, sq: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Squared distances [len(rows), n] from the points ``rows`` to every point (``sq``: squared norms)."""
    return np.maximum(sq[None, :] + sq[rows, None] - 2 * x[rows] @ x.T, 0)


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator, trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; ``2 + ln k`` trials per step, as scikit-learn)."""
    trials = trials or 2 + int(np.log(k))
    n = len(x)
    sq = (x * x).sum(1)
    centers = [int(rng.integers(n))]
    closest = np.maximum(sq + sq[centers[0]] - 2 * x @ x[centers[0]], 0)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: the rest are duplicates
            picks = rng.choice(n, size=trials)
        else:
            picks = np.searchsorted(np.cumsum(closest), rng.random(trials) * total).clip(max=n - 1)
        d = _sq_dists_from(x, sq, picks)  # [trials, n]
        new = np.minimum(closest[None, :], d)
        best = int(np.argmin(new.sum(1)))
        centers.append(int(picks[best]))
        closest = new[best]
    return x[centers].copy()


def _two_nearest(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a [n, k] distance matrix: (indices, distances) of its two smallest, nearest first."""
    idx = np.argpartition(d, 1, axis=1)[:, :2]
    dist = np.take_along_axis(d, idx, 1)
    order = np.argsort(dist, 1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def local_search(x: np.ndarray, centers: np.ndarray, rng: np.random.Generator, steps: int,
                 batch: int = 16) -> np.ndarray:
    """LocalSearch++ (Lattanzi & Sohler, ICML 2019) on k-means seeds: ``steps`` proposals, in place.

    Each step draws a point with probability proportional to its squared distance to the nearest
    seed (as k-means++ does) and swaps it for the seed whose removal then costs least, if that lowers
    the total cost. Lloyd only moves centroids within their basins; a swap moves a seed to another
    one, which is what separates the restarts' local optima (bench/kmeans.py's mixture of 5,000
    points, k = 256, 8 seeds: two restarts with 2k swaps each ended 0.1-0.5% below scikit-learn's
    best of ten restarts; three restarts without swaps had ended 0.3% above it).

    Proposals are drawn ``batch`` at a time, from the distances at the start of the batch, so that
    their distance rows come from one matrix product (one row at a time reads all of ``x`` per
    step); each is then judged on the exact current cost. Keeps a [n, k] distance matrix (the size
    of ``x`` when k is near the feature dimension) and each point's two nearest seeds.
    """
    n, k = len(x), len(centers)
    if steps <= 0 or k < 2:
        return centers
    sq = (x * x).sum(1)
    dist = np.maximum(sq[:, None] + (centers * centers).sum(1)[None, :] - 2 * x @ centers.T, 0)
    near, near_d = _two_nearest(dist)
    for start in range(0, steps, batch):
        cum = np.cumsum(near_d[:, 0], dtype=np.float64)
        if cum[-1] <= 0:  # every point sits on a seed
            break
        picks = np.searchsorted(cum, rng.random(min(batch, steps - start)) * cum[-1]).clip(max=n - 1)
        proposals = _sq_dists_from(x, sq, picks)  # [batch, n]
        cost = cum[-1]
        for p, d_new in zip(picks, proposals):
            kept = np.minimum(d_new, near_d[:, 0])  # cost with the new seed added
            # removing seed c sends its points to their second-nearest seed (or the new one)
            loss = np.bincount(near[:, 0], weights=np.minimum(d_new, near_d[:, 1]) - kept, minlength=k)
            c = int(np.argmin(loss))
            new_cost = kept.sum(dtype=np.float64) + loss[c]
            if new_cost < cost:
                centers[c] = x[p]
                _replace_seed(dist, near, near_d, c, d_new)
                cost = new_cost
    return centers


def _replace_seed(dist: np.ndarray, near: np.ndarray, near_d: np.ndarray, c: int, d_new: np.ndarray) -> None:
    """Column ``c`` of ``dist`` becomes ``d_new``; each row's two nearest updated in place, in O(n)."""
    dist[:, c] = d_new
    lost = (near[:, 0] == c) | (near[:, 1] == c)  # the old seed was among their two: search again
    near[lost], near_d[lost] = _two_nearest(dist[lost])
    keep = ~lost
    nk, dk, dn = near[keep], near_d[keep], d_new[keep]
    first, second = dn < dk[:, 0], (dn >= dk[:, 0]) & (dn < dk[:, 1])
    nk[first, 1], dk[first, 1] = nk[first, 0], dk[first, 0]
    nk[first, 0], dk[first, 0] = c, dn[first]
    nk[second, 1], dk[second, 1] = c, dn[second]
    near[keep], near_d[keep] = nk, dk


def kmeans(features: np.ndarray, k: int, seed: int, n_init: int = 2, niter: int = 50,
           max_train: int | None = None, chunk: int = CHUNK, swaps: int | None = None):
    """k-means: (centroids [k, d], inertia, assignment of each point); best of ``n_init`` restarts.

    Each restart seeds with greedy k-means++, improves the seeds with ``swaps`` LocalSearch++
    steps (default 2k), and runs faiss's Lloyd iterations (multi-threaded; at most ``niter``
    rounds, faiss stops earlier once converged); the lowest inertia wins. Deterministic given
    ``seed``.

    ``max_train``: for pools too big to cluster whole, seeding and Lloyd run on a seeded uniform
    sample of that many points, and then every point is assigned to its nearest centroid in
    chunks of ``chunk`` rows (inertia over all points). ``features`` may then be an
    ``np.memmap``: memory holds the sample (``max_train * d * 4`` bytes, and ``max_train * k * 4``
    for the swaps), one chunk and 12 bytes of assignment per point. faiss's guideline is 39-256
    training points per centroid.
    """
    n = len(features)
    rng = np.random.default_rng(seed)
    sampled = max_train is not None and n > max_train
    if sampled:
        if max_train < k:
            raise ColakitError(f"max_train {max_train} is smaller than k = {k}",
                               "train on at least k points (faiss suggests 39-256 per centroid)")
        rows = np.sort(rng.choice(n, size=max_train, replace=False))
        x = np.ascontiguousarray(features[rows], dtype=np.float32)
    else:
        x = np.ascontiguousarray(features, dtype=np.float32)
    best = None
    for _ in range(n_init):
        init = local_search(x, kmeans_plus_plus(x, k, rng), rng, 2 * k if swaps is None else swaps)
        km = _faiss().Kmeans(x.shape[1], k, niter=niter, seed=int(rng.integers(1 << 31)), verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 30)
        km.train(x, init_centroids=init)
        if sampled:
            dist, assign = assign_chunked(features, km.centroids, chunk)
        else:
            dist, assign = km.index.search(x, 1)
            dist, assign = dist[:, 0], assign[:, 0]
        inertia = float(dist.sum(dtype=np.float64)) if sampled else float(dist.sum())
        if best is None or inertia < best[1]:
            best = (km.centroids.copy(), inertia, assign.copy())
    return best


def assign_chunked(features, centroids: np.ndarray, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(squared distance, index) of every point's nearest centroid, ``chunk`` rows at a time."""
    index = _faiss().IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist = np.empty(len(features), dtype=np.float32)
    assign = np.empty(len(features), dtype=np.int64)
    for a in range(0, len(features), chunk):
        d, i = index.search(np.ascontiguousarray(features[a:a + chunk], dtype=np.float32), 1)
        dist[a:a + chunk], assign[a:a + chunk] = d[:, 0], i[:, 0]
    return dist, assign


def _neighbours(features, centroids: np.ndarray, m: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Each centroid's ``m`` nearest points: (distances, indices) [k, m], nearest first."""
    cents = np.ascontiguousarray(centroids, dtype=np.float32)
    n = len(features)
    if n <= chunk:  # the whole pool in one index (the exact path small pools always took)
        index = _faiss().IndexFlatL2(cents.shape[1])
        index.add(np.ascontiguousarray(features, dtype=np.float32))
        return index.search(cents, m)
    best_d = np.full((len(cents), 0), np.inf, dtype=np.float32)
    best_i = np.full((len(cents), 0), -1, dtype=np.int64)
    for a in range(0, n, chunk):
        part = np.ascontiguousarray(features[a:a + chunk], dtype=np.float32)
        index = _faiss().IndexFlatL2(part.shape[1])
        index.add(part)
        d, i = index.search(cents, min(m, len(part)))
        d_all, i_all = np.concatenate([best_d, d], 1), np.concatenate([best_i, np.where(i >= 0, i + a, -1)], 1)
        order = np.lexsort((i_all, d_all), axis=1)[:, :m]  # by distance, ties by index: deterministic
        best_d, best_i = np.take_along_axis(d_all, order, 1), np.take_along_axis(i_all, order, 1)
    return best_d, best_i


def nearest_unique(features: np.ndarray, centroids: np.ndarray, start_m: int = 16, chunk: int = CHUNK):
    """For each centroid a distinct nearest candidate: (indices, distances), in centroid order.

    Pools over ``chunk`` rows are scanned chunk by chunk (``features`` may be an ``np.memmap``).
    """
    k, n = len(centroids), len(features)
    m = min(n, start_m)
    while True:
        dist, nbr = _neighbours(features, centroids, m, chunk)
        taken: set[int] = set()
        chosen = [-1] * k
        chosen_d = [0.0] * k
        for c in np.argsort(dist[:, 0], kind="stable"):
            for d, j in zip(dist[c], nbr[c]):
                if j >= 0 and int(j) not in taken:
                    taken.add(int(j))
                    chosen[c], chosen_d[c] = int(j), float(np.sqrt(max(d, 0.0)))
                    break
        if all(j >= 0 for j in chosen) or m == n:
            break
        m = min(n, m * 4)  # some centroid's shortlist was used up: widen and redo
    return chosen, chosen_d


def medoids(features: np.ndarray, budget: int, seed: int, n_init: int, niter: int,
            max_train: int | None = None, swaps: int | None = None) -> Selection:
    """k-means with k = budget on ``features``; the distinct candidate nearest each centroid."""
    with faiss_threads(len(features)):
        centroids, inertia, assign = kmeans(features, budget, seed, n_init, niter, max_train=max_train,
                                            swaps=swaps)
        chosen, dists = nearest_unique(features, centroids)
    sizes = np.bincount(assign, minlength=budget)
    return Selection(indices=chosen, clusters=list(range(budget)), distances=dists,
                     scores=[float(sizes[c]) / len(features) for c in range(budget)],
                     info={"inertia": inertia, "empty_clusters": int((sizes == 0).sum()),
                           "cluster_sizes": sizes.tolist()})


@register
class ColaSelector(Selector):
    """COLA: stage 1 source shares by weighted probe coverage (``source_selection``), stage 3 medoids."""

    name = "cola"
    needs_features = True
    uses_coverage = True

    def __init__(self, n_init: int = 2, niter: int = 50, source_selection: bool = True,
                 max_train: int | None = None, swaps: int | None = None):
        self.n_init = n_init
        self.niter = niter
        self.swaps = swaps  # LocalSearch++ steps per restart (None: 2k)
        self.source_selection = source_selection
        self.max_train = max_train  # k-means on a sample of this many points (large pools), all assigned
        self._shares: dict[str, int] | None = None
        self._plan_info: dict = {}

    def plan(self, features, sources: list[str], probes: dict, weights: dict[str, float], budget: int) -> None:
        """Stage 1: each source's share of the budget from greedy weighted coverage of the probes."""
        if not self.source_selection:
            return
        chosen = greedy_coverage(features, probes, weights, budget)
        self._shares = source_shares(chosen, sources)
        self._plan_info = {"weights": weights, "shares": self._shares,
                           "greedy_coverage": proxy_scores(features[chosen], probes, weights).as_dict()}
        self._sources = sources

    def select(self, candidates, features, budget: int, seed: int) -> Selection:
        self.check_budget(candidates, budget)
        if features is None or len(features) != len(candidates):
            raise ColakitError("the cola method needs one feature vector per candidate", "this is a colakit bug")
        bad = np.where(~np.isfinite(features).all(1))[0]
        if len(bad):
            raise ColakitError(f"features of {len(bad)} candidates are not finite (first: {bad[:5].tolist()})",
                               "recompute features in float32")
        if not self._shares:
            return medoids(features, budget, seed, self.n_init, self.niter, self.max_train, self.swaps)
        # Stage 3 inside each selected source, k = its share; clusters numbered across sources.
        parts = []
        offset = 0
        for source, share in self._shares.items():
            members = np.array([i for i, s in enumerate(self._sources) if s == source])
            part = medoids(features[members], share, seed, self.n_init, self.niter, self.max_train,
                           self.swaps)
            parts.append((members, part, offset))
            offset += share
        return Selection(
            indices=[int(m[i]) for m, p, _ in parts for i in p.indices],
            clusters=[o + c for _, p, o in parts for c in p.clusters],
            distances=[d for _, p, _ in parts for d in p.distances],
            scores=[s for _, p, _ in parts for s in p.scores],
            info={**self._plan_info, "inertia": sum(p.info["inertia"] for _, p, _ in parts),
                  "empty_clusters": sum(p.info["empty_clusters"] for _, p, _ in parts)})
