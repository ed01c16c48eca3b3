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


def paired_bootstrap_pvalue(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 1000, seed: int = 0
) -> float:
    """Two-sided paired bootstrap p-value for "systems a and b have the same mean score".

    `a` and `b` are per-example scores on the same examples in the same order. Method
    (shift to the null, Efron & Tibshirani 1993, ch. 16): d = a - b; the differences are
    centred on zero (d - mean(d)) so they obey the null hypothesis, resampled
    `n_resamples` times with replacement, and p is the share of resampled means at least
    as far from zero as the observed mean difference, |mean(d*)| >= |mean(d)|, with the
    usual +1 correction so it is never zero: p = (count + 1) / (n_resamples + 1).
    Identical systems give p = 1; the smallest possible p is 1 / (n_resamples + 1).
    """
    a_values, b_values = _as_scores(a, "a"), _as_scores(b, "b")
    if a_values.shape != b_values.shape:
        raise ValueError(
            f"paired scores need the same examples: {a_values.size} vs {b_values.size} values"
        )
    diffs = a_values - b_values
    observed = float(diffs.mean())
    means = resampled_means(diffs - observed, n_resamples, seed)
    # A tolerance for float noise, so equal-magnitude means count as "at least as extreme".
    tolerance = 1e-9 * max(1.0, abs(observed))
    extreme = int(np.count_nonzero(np.abs(means) >= abs(observed) - tolerance))
    return (extreme + 1) / (n_resamples + 1)


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
