"""Error bars and paired comparisons for per-item results."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom, binomtest

from colakit.errors import ColakitError


def mean_stderr(values) -> float:
    """Standard error of the mean: sample std (ddof=1) / sqrt(n), lm-eval's ``mean_stderr``."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return float("nan")
    return float(x.std(ddof=1) / math.sqrt(x.size))


def ratio_stderr(num: float, num_se: float, den: float, den_se: float) -> float:
    """Delta-method standard error of num/den for independent estimates (an approximation)."""
    if den == 0 or num == 0 or any(map(math.isnan, (num_se, den_se))):
        return float("nan")
    r = num / den
    return abs(r) * math.sqrt((num_se / num) ** 2 + (den_se / den) ** 2)


def paired_bootstrap(a, b, *, n_resamples: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Mean difference b - a over the same items, with a percentile bootstrap interval and a
    two-sided p-value (share of resampled differences on the other side of zero, doubled)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty arrays (same items, same order)")
    diff = b - a
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(n_resamples, diff.size))
    means = diff[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
    return {"mean_diff": float(diff.mean()), "ci_low": float(lo), "ci_high": float(hi), "p_value": float(p),
            "n": int(diff.size)}


def mcnemar(a, b) -> dict:
    """Exact McNemar test on paired correct/incorrect outcomes (binomial test on discordant pairs),
    with its mid-p version beside it."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("mcnemar needs outcomes for the same items in the same order")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p, "mid_p_value": mcnemar_mid_p(only_a, only_b),
            "n": int(a.size)}


def mcnemar_mid_p(only_a: int, only_b: int) -> float:
    """Two-sided mid-p McNemar test on the discordant counts: the exact p minus the probability of
    the observed split. Less conservative than the exact test at the same size (Fagerland, Lydersen
    & Laake 2013, "The McNemar test for binary matched-pairs data: mid-p and asymptotic are better
    than exact conditional")."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    return float(min(1.0, 2 * binom.cdf(k, n, 0.5) - binom.pmf(k, n, 0.5)))


def adjust_pvalues(pvalues, method: str = "holm") -> list[float]:
    """Multiple-comparison adjusted p-values, in the input order.

    ``holm``: Holm's step-down (controls the family-wise error rate under any dependence);
    ``bh``: Benjamini-Hochberg step-up (controls the false discovery rate for independent or
    positively dependent tests). NaN entries pass through and do not count as tests.
    """
    if method not in ("holm", "bh"):
        raise ColakitError(f"unknown p-value adjustment {method!r}", "use 'holm' or 'bh'")
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out.tolist()
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ColakitError("p-values must lie in [0, 1]", "pass p-values, not test statistics")
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    out[order] = adj
    return out.tolist()


def resample_sums(columns: dict[str, np.ndarray], n_resamples: int, seed: int, chunk_cells: int = 1 << 22):
    """Column sums over ``n_resamples`` bootstrap resamples of the rows: every column is resampled
    with the *same* row indices, which is what makes the comparison paired."""
    n = len(next(iter(columns.values())))
    rng = np.random.default_rng(seed)
    rows = max(1, chunk_cells // max(n, 1))
    sums = {k: np.empty(n_resamples) for k in columns}
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        for k, col in columns.items():
            sums[k][start:stop] = col[idx].sum(axis=1)
    return sums


def paired_bootstrap_stat(columns: dict, statistic, *, null: float = 0.0, n_resamples: int = 2000, seed: int = 0,
                          confidence: float = 0.95) -> dict:
    """Paired bootstrap of any statistic of column sums (means, ratios of sums, differences of them).

    ``columns`` maps names to per-item arrays of the same length (one row per item, document or
    window, for every model compared); ``statistic(sums)`` gets a dict of column sums (arrays, one
    entry per resample) and returns the statistic. Returns the estimate on the full sample, a
    percentile interval, the bootstrap standard error, and a two-sided p-value against ``null``
    from the normal approximation with the bootstrap standard error (1 when every resample equals
    ``null``). A percentile p-value cannot go below 2 / (R + 1), which a multiple-comparison
    correction over a grid of cells would need; the normal one has no such floor.
    """
    cols = {k: np.asarray(v, dtype=float) for k, v in columns.items()}
    lengths = {len(v) for v in cols.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("paired_bootstrap_stat needs equally long, non-empty columns (same items, same order)")
    n = lengths.pop()
    estimate = float(statistic({k: np.array([v.sum()]) for k, v in cols.items()})[0])
    values = np.asarray(statistic(resample_sums(cols, n_resamples, seed)), dtype=float)
    values = values[np.isfinite(values)]  # e.g. a resample whose dense accuracy is 0
    if values.size == 0:
        return {"estimate": estimate, "ci_low": float("nan"), "ci_high": float("nan"), "stderr": float("nan"),
                "p_value": float("nan"), "n": n, "n_resamples": 0}
    lo, hi = np.quantile(values, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    se = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return {"estimate": estimate, "ci_low": float(lo), "ci_high": float(hi), "stderr": se,
            "p_value": normal_p_value(estimate - null, se), "n": n, "n_resamples": int(values.size)}


def normal_p_value(diff: float, se: float) -> float:
    """Two-sided p of ``diff`` under N(0, se^2); 1 for no difference at zero spread, 0 for a
    difference at zero spread."""
    if math.isnan(diff) or math.isnan(se):
        return float("nan")
    if se == 0:
        return 1.0 if diff == 0 else 0.0
    return float(math.erfc(abs(diff) / se / math.sqrt(2)))


def jackknife_stderr(columns: dict, statistic) -> float:
    """Leave-one-out jackknife standard error of a statistic of column sums (same API as
    ``paired_bootstrap_stat``). Deterministic; sqrt(n) times it is the per-item SD of the
    statistic's linearisation, which is what a power calculation needs."""
    cols = {k: np.asarray(v, dtype=float) for k, v in columns.items()}
    n = len(next(iter(cols.values())))
    if n < 2:
        return float("nan")
    loo = np.asarray(statistic({k: v.sum() - v for k, v in cols.items()}), dtype=float)
    return float(math.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum()))
