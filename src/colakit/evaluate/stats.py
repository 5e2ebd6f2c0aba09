"""Error bars and paired comparisons for per-item results."""

from __future__ import annotations

import math

import numpy as np


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
    """Exact McNemar test on paired correct/incorrect outcomes (binomial test on discordant pairs)."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("mcnemar needs outcomes for the same items in the same order")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p, "n": int(a.size)}
