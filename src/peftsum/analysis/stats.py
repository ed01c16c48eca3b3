"""Bootstrap statistics over per-example scores (numpy only, no torch/transformers).

All resampling is seeded, so a report rebuilt from the same files shows the same
intervals and p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Resample in chunks so memory stays bounded (chunk rows x n indices) on large test sets.
_MAX_INDICES_PER_CHUNK = 4_000_000


def _as_scores(scores: Sequence[float], what: str = "scores") -> np.ndarray:
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D sequence, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return values


def resampled_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of `n_resamples` resamples (with replacement, same size) of `values`.

    The same seed and sample size draw the same indices, so two calls on paired data
    use common random numbers.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    n = values.size
    chunk = max(1, _MAX_INDICES_PER_CHUNK // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[indices].mean(axis=1)
    return means


def bootstrap_ci(
    scores: Sequence[float], n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of `scores` and its percentile-bootstrap confidence interval: (mean, low, high).

    The interval holds the (1 - level) / 2 and (1 + level) / 2 quantiles of the means of
    `n_resamples` seeded resamples with replacement (numpy's default linear interpolation
    between order statistics). One example, or identical scores, give low == mean == high.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    values = _as_scores(scores)
    mean = float(values.mean())
    means = resampled_means(values, n_resamples, seed)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(low), float(high)


def seed_summary(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) across seeds; None values are skipped.

    One value gives (value, None); no value gives (None, None).
    """
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None, None
    mean = float(np.mean(present))
    std = float(np.std(present, ddof=1)) if len(present) > 1 else None
    return mean, std


# Two-sided 95% quantiles of Student's t, t(0.975, df) for df = 1..30 (beyond 30 the normal's
# 1.96 is within 2%): the interval over a handful of seeds without a scipy dependency.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def seed_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean over seeds and its 95% t-interval, mean -+ t(0.975, n-1) x std / sqrt(n):
    (mean, low, high); one seed gives no interval (None, None)."""
    present = _as_scores(values, "seed scores")
    mean = float(present.mean())
    n = present.size
    if n < 2:
        return mean, None, None
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    half = t * float(np.std(present, ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def _as_runs(scores, what: str) -> np.ndarray:
    values = np.asarray(scores, dtype=float)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"{what} must be seeds x examples, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return values


def seed_article_bootstrap(a, b, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Paired test of "systems a and b have the same mean score", resampling seeds and
    articles together.

    `a` and `b` are (seeds x examples) score arrays on the same examples in the same columns;
    their seeds are independent training runs (a's seed 0 has nothing to do with b's), so each
    resample draws the examples once for both systems (paired) and each system's seeds with
    replacement on their own. The statistic is mean(a*) - mean(b*) over the drawn seeds and
    examples; p is two-sided with the null imposed by centring the resampled differences on
    the observed one, p = (#{|d* - d| >= |d|} + 1) / (n_resamples + 1), and (low, high) its
    95% percentile interval. With one seed per system this is the paired article bootstrap;
    a difference that one seed produced is not significant once the seeds disagree.
    """
    a, b = _as_runs(a, "a"), _as_runs(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired scores need the same examples: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    observed = float(a.mean() - b.mean())
    diffs = np.empty(n_resamples)
    for r in range(n_resamples):
        examples = rng.integers(0, n, size=n)
        seeds_a = rng.integers(0, a.shape[0], size=a.shape[0])
        seeds_b = rng.integers(0, b.shape[0], size=b.shape[0])
        diffs[r] = (a[np.ix_(seeds_a, examples)].mean() - b[np.ix_(seeds_b, examples)].mean())
    tolerance = 1e-9 * max(1.0, abs(observed))
    extreme = int(np.count_nonzero(np.abs(diffs - observed) >= abs(observed) - tolerance))
    low, high = np.quantile(diffs, [0.025, 0.975])
    return {"diff": observed, "low": float(low), "high": float(high),
            "p": (extreme + 1) / (n_resamples + 1)}


def seed_article_interval(scores, n_resamples: int = 1000, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float, float]:
    """Mean of a (seeds x examples) score array and its percentile interval from resampling
    seeds and examples together, so that the spread of training seeds widens it: (mean, low,
    high). With one seed it is the article bootstrap's interval."""
    values = _as_runs(scores, "scores")
    rng = np.random.default_rng(seed)
    n_seeds, n = values.shape
    means = np.empty(n_resamples)
    for r in range(n_resamples):
        seeds = rng.integers(0, n_seeds, size=n_seeds)
        means[r] = values[np.ix_(seeds, rng.integers(0, n, size=n))].mean()
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(values.mean()), float(low), float(high)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None entries are not in the
    family and stay None): the k-th smallest of m becomes max over j <= k of
    min(1, (m - j + 1) p_(j)), which controls the family-wise error rate."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
