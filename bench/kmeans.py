"""colakit's clustering vs scikit-learn KMeans(n_init=10) as the public COLA code runs it.

    python bench/kmeans.py [--n 1000 --k 128 --dim 332] [--features FILE.npy]

Same features for both (real projected activation features from a .npy file, or a seeded
Gaussian mixture of the given size). Prints wall time of each, the ratio sklearn / colakit
(target >= 5x), and the inertia of each measured the same way (sum of squared distances of every
point to its nearest centroid); colakit should be equal or lower.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    d, _ = index.search(x, 1)
    return float(d.sum())


def mixture(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, size=n)
    return (centers[labels] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", help=".npy of projected features (else a synthetic mixture)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=332)
    ap.add_argument("--k", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from sklearn.cluster import KMeans

    from colakit.curate.select.cola import faiss_threads, kmeans, nearest_unique

    x = np.load(args.features).astype(np.float32) if args.features else mixture(args.n, args.dim, args.k * 2, args.seed)
    x = np.ascontiguousarray(x)
    t0 = time.perf_counter()
    with faiss_threads(len(x)):  # as colakit's selection runs it
        ours, _, _ = kmeans(x, args.k, seed=args.seed)
        nearest_unique(x, ours)  # the medoid step is part of colakit's selection
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk = KMeans(n_clusters=args.k, n_init=10, random_state=args.seed).fit(x)
    t_sk = time.perf_counter() - t0
    i_ours, i_sk = inertia(x, ours), inertia(x, sk.cluster_centers_)
    print(f"points={len(x)} dim={x.shape[1]} k={args.k} ({'file ' + args.features if args.features else 'synthetic mixture'})")
    print(f"  colakit (2 restarts + swaps + medoids):{t_ours:7.2f} s  inertia {i_ours:.4g}")
    print(f"  sklearn KMeans(n_init=10):              {t_sk:7.2f} s  inertia {i_sk:.4g}")
    print(f"speed ratio sklearn / colakit: {t_sk / t_ours:.1f}x   inertia ratio colakit / sklearn: {i_ours / i_sk:.4f}")


if __name__ == "__main__":
    main()
