"""``cola``: COLA stage 3, activation-space k-means with one medoid per cluster.

k = the sample budget. k-means++ seeding and faiss Lloyd iterations (``n_init`` seeded restarts,
the lowest inertia kept) on the
projected activation features; then every centroid takes its nearest candidate that no other
centroid has taken yet, centroids with the closest match choosing first. So the result always
has exactly ``budget`` distinct candidates, also when k-means leaves a cluster empty or two
centroids share their nearest point.
"""

from __future__ import annotations

import numpy as np

from colakit.errors import ColakitError
from colakit.select.base import Selection, Selector, register


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
        d = np.maximum(sq[None, :] + sq[picks, None] - 2 * x[picks] @ x.T, 0)  # [trials, n]
        new = np.minimum(closest[None, :], d)
        best = int(np.argmin(new.sum(1)))
        centers.append(int(picks[best]))
        closest = new[best]
    return x[centers].copy()


def kmeans(features: np.ndarray, k: int, seed: int, n_init: int = 3, niter: int = 50):
    """k-means: (centroids [k, d], inertia, assignment of each point); best of ``n_init`` restarts.

    Each restart seeds with k-means++ and runs faiss's Lloyd iterations (multi-threaded, no
    convergence test: ``niter`` rounds); the lowest inertia wins. Deterministic given ``seed``.
    """
    import faiss

    x = np.ascontiguousarray(features, dtype=np.float32)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        init = kmeans_plus_plus(x, k, rng)
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=int(rng.integers(1 << 31)), verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 30)
        km.train(x, init_centroids=init)
        dist, assign = km.index.search(x, 1)
        inertia = float(dist.sum())
        if best is None or inertia < best[1]:
            best = (km.centroids.copy(), inertia, assign[:, 0].copy())
    return best


def nearest_unique(features: np.ndarray, centroids: np.ndarray, start_m: int = 16):
    """For each centroid a distinct nearest candidate: (indices, distances), in centroid order."""
    import faiss

    x = np.ascontiguousarray(features, dtype=np.float32)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    k, n = len(centroids), len(x)
    m = min(n, start_m)
    while True:
        dist, nbr = index.search(np.ascontiguousarray(centroids, dtype=np.float32), m)
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


def medoids(features: np.ndarray, budget: int, seed: int, n_init: int, niter: int) -> Selection:
    """k-means with k = budget on ``features``; the distinct candidate nearest each centroid."""
    centroids, inertia, assign = kmeans(features, budget, seed, n_init, niter)
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

    def __init__(self, n_init: int = 3, niter: int = 50, source_selection: bool = True):
        self.n_init = n_init
        self.niter = niter
        self.source_selection = source_selection
        self._shares: dict[str, int] | None = None
        self._plan_info: dict = {}

    def plan(self, features, sources: list[str], probes: dict, weights: dict[str, float], budget: int) -> None:
        """Stage 1: each source's share of the budget from greedy weighted coverage of the probes."""
        from colakit.coverage import greedy_coverage, proxy_scores, source_shares

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
            return medoids(features, budget, seed, self.n_init, self.niter)
        # Stage 3 inside each selected source, k = its share; clusters numbered across sources.
        parts = []
        offset = 0
        for source, share in self._shares.items():
            members = np.array([i for i, s in enumerate(self._sources) if s == source])
            part = medoids(features[members], share, seed, self.n_init, self.niter)
            parts.append((members, part, offset))
            offset += share
        return Selection(
            indices=[int(m[i]) for m, p, _ in parts for i in p.indices],
            clusters=[o + c for _, p, o in parts for c in p.clusters],
            distances=[d for _, p, _ in parts for d in p.distances],
            scores=[s for _, p, _ in parts for s in p.scores],
            info={**self._plan_info, "inertia": sum(p.info["inertia"] for _, p, _ in parts),
                  "empty_clusters": sum(p.info["empty_clusters"] for _, p, _ in parts)})
