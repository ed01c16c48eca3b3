"""Statistics over per-example scores (numpy only, no torch/transformers): bootstrap
intervals of one run's mean, the t-test between systems for the seeds and articles the runs
have, Student's t distribution, Holm's correction and power.

All resampling is seeded, so a report rebuilt from the same files shows the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# The significance level: each family of tests keeps its family-wise error rate at it.
ALPHA = 0.05
# Bootstrap resamples per confidence interval, unless a caller asks for another number.
N_RESAMPLES = 1000
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
    scores: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
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


def t_two_sided_p(t, df):
    """Two-sided p-value of Student's t: P(|T| >= |t|) with `df` degrees of freedom (any real
    df > 0; arrays broadcast). Exact through the regularized incomplete beta function,
    P(|T| >= |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2), so p has no resampling floor."""
    t, df = np.broadcast_arrays(np.asarray(t, dtype=float), np.asarray(df, dtype=float))
    with np.errstate(over="ignore"):  # a huge t squares to inf: p = 0, as it should
        x = df / (df + t * t)
    return incomplete_beta(df / 2, np.full_like(df, 0.5), x)


def t_quantile(q: float, df):
    """The q quantile of Student's t with `df` degrees of freedom (0 < q < 1; df an array or a
    number, the result alike): Newton's method on t_two_sided_p, from the normal quantile
    corrected for df (Cornish-Fisher), to a relative 1e-12."""
    if not 0 < q < 1:
        raise ValueError(f"q must be between 0 and 1, got {q}")
    df = np.asarray(df, dtype=float)
    tail = 2 * min(q, 1 - q)  # the two-sided p of the quantile's magnitude
    z = _normal_upper_quantile(tail / 2)
    t = np.maximum(z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2),
                   1e-6)
    for _ in range(100):
        # p falls as t grows, by twice the density: step to where the tangent meets `tail`.
        step = (t_two_sided_p(t, df) - tail) / (2 * _t_density(t, df))
        t = np.maximum(t + step, t / 2)
        if np.all(np.abs(step) <= 1e-12 * np.maximum(1.0, t)):
            break
    result = t if q > 0.5 else -t
    return float(result) if result.ndim == 0 else result


def _normal_upper_quantile(p: float) -> float:
    """z with P(Z > z) = p for 0 < p < 1, to 4.5e-4 (Abramowitz and Stegun 26.2.23): a
    starting point for Newton's method."""
    if p > 0.5:
        return -_normal_upper_quantile(1 - p)
    w = math.sqrt(-2 * math.log(p))
    return w - (2.515517 + 0.802853 * w + 0.010328 * w**2) / (
        1 + 1.432788 * w + 0.189269 * w**2 + 0.001308 * w**3)


def _t_density(t, df):
    log_norm = np.asarray(_log_gamma((df + 1) / 2) - _log_gamma(df / 2), dtype=float)
    return np.exp(log_norm - 0.5 * np.log(df * math.pi) - (df + 1) / 2 * np.log1p(t * t / df))


_log_gamma = np.frompyfunc(math.lgamma, 1, 1)


def incomplete_beta(a, b, x):
    """Regularized incomplete beta I_x(a, b) for arrays of a, b > 0 and 0 <= x <= 1: the
    continued fraction (modified Lentz), on whichever side of the mean it converges fast."""
    a, b, x = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, x))
    out = np.where(x >= 1, 1.0, 0.0)
    inside = (x > 0) & (x < 1)
    a, b, x = a[inside], b[inside], x[inside]
    log_front = np.asarray(_log_gamma(a + b) - _log_gamma(a) - _log_gamma(b), dtype=float)
    front = np.exp(log_front + a * np.log(x) + b * np.log1p(-x))
    direct = x < (a + 1) / (a + b + 2)
    out[inside] = np.where(
        direct,
        front * _beta_fraction(a, b, np.where(direct, x, 0.5)) / a,
        1 - front * _beta_fraction(b, a, np.where(direct, 0.5, 1 - x)) / b,
    )
    return out


def _beta_fraction(a, b, x, max_terms: int = 1000):
    tiny = 1e-300

    def nonzero(v):
        return np.where(np.abs(v) < tiny, tiny, v)

    c = np.ones_like(x)
    d = 1 / nonzero(1 - (a + b) * x / (a + 1))
    fraction = d
    for m in range(1, max_terms + 1):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d, c = 1 / nonzero(1 + even * d), nonzero(1 + even / c)
        fraction = fraction * d * c
        d, c = 1 / nonzero(1 + odd * d), nonzero(1 + odd / c)
        fraction = fraction * d * c
        if np.all(np.abs(d * c - 1) < 1e-15):
            break
    return fraction


def seed_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean over seeds and its 95% t-interval, mean -+ t(0.975, n-1) x std / sqrt(n):
    (mean, low, high); one seed gives no interval (None, None)."""
    present = _as_scores(values, "seed scores")
    mean = float(present.mean())
    n = present.size
    if n < 2:
        return mean, None, None
    half = t_quantile(0.975, n - 1) * float(np.std(present, ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def _as_runs(scores, what: str) -> np.ndarray:
    values = np.asarray(scores, dtype=float)
    if values.ndim < 2 or 0 in values.shape:
        raise ValueError(f"{what} must be seeds x examples, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return values


def variance_components(a, b) -> dict:
    """The sources of variance of mean(a) - mean(b), for (seeds x examples) score arrays on the
    same examples in the same columns (leading axes broadcast: many simulated designs at once).

    The model: score = system mean + article effect + system-by-article effect + seed effect +
    noise. The article effect is shared and cancels (the articles are paired). Per system with
    k > 1 seeds: `seed_var_*`, the variance of its seed means (seed effects plus noise / n),
    and `noise_var_*`, its seed-by-article residual mean square. `article_var`: the variance
    over articles of the seed-averaged difference less what the noise puts there, the
    system-by-article effect. A system with one run is fixed (a baseline, or one checkpoint):
    no seed or noise term, so two single runs give the paired t-test over articles.
    """
    a, b = _as_runs(a, "a"), _as_runs(b, "b")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"paired scores need the same examples: {a.shape[-1]} vs {b.shape[-1]}")
    n = a.shape[-1]
    parts = {"diff": a.mean(axis=(-2, -1)) - b.mean(axis=(-2, -1)), "n": n}
    for side, x in (("a", a), ("b", b)):
        k = x.shape[-2]
        seed_means = x.mean(axis=-1)
        residual = (x - seed_means[..., None] - x.mean(axis=-2, keepdims=True)
                    + seed_means.mean(axis=-1)[..., None, None])
        fixed = k < 2 or n < 2
        parts[f"k_{side}"] = k
        parts[f"seed_var_{side}"] = (np.zeros(x.shape[:-2]) if fixed
                                     else seed_means.var(axis=-1, ddof=1))
        parts[f"noise_var_{side}"] = (np.zeros(x.shape[:-2]) if fixed
                                      else (residual**2).sum(axis=(-2, -1)) / ((k - 1) * (n - 1)))
    diffs = a.mean(axis=-2) - b.mean(axis=-2)
    spread = diffs.var(axis=-1, ddof=1) if n > 1 else np.zeros(diffs.shape[:-1])
    noise = [(parts[f"noise_var_{side}"] / parts[f"k_{side}"], (parts[f"k_{side}"] - 1) * (n - 1))
             for side in ("a", "b")]
    parts["article_var"] = np.maximum(0.0, spread - noise[0][0] - noise[1][0])
    # A difference of mean squares has fewer degrees of freedom than its first term
    # (Satterthwaite over every mean square in it, the subtracted ones too).
    spread_sq = spread**2 / max(n - 1, 1) + sum(v**2 / df for v, df in noise if df > 0)
    # At least 1: below it t has no finite variance, and the term is then small anyway.
    parts["article_df"] = np.maximum(1.0, np.where(
        spread_sq > 0, parts["article_var"]**2 / np.where(spread_sq > 0, spread_sq, 1.0), n - 1))
    return parts


# Quantile of a seed variance's sampling distribution at which the degrees of freedom are
# computed: with 2-4 degrees of freedom an estimate that came out small by chance would
# otherwise raise Satterthwaite's df just when it shrinks the standard error, and against a
# fixed baseline the test rejected 7 % of true nulls once seeds dominated (docs/statistics.md).
SEED_VARIANCE_QUANTILE = 0.25


def standard_error(parts: dict, seeds: int | None = None, articles: int | None = None):
    """Standard error of the difference and its Satterthwaite degrees of freedom for the
    design of `parts` (variance_components), or as projected for `seeds` trained runs per
    system with several and `articles` test articles: (se, df). A system with one run stays
    fixed: its seed variance was not measured. The degrees of freedom weigh each seed term as
    if its variance were at the SEED_VARIANCE_QUANTILE of its sampling distribution."""
    n = articles or parts["n"]
    terms, weights, dfs = [], [], []
    for side in ("a", "b"):
        k0 = parts[f"k_{side}"]
        if k0 < 2:
            continue
        k = seeds or k0
        noise = parts[f"noise_var_{side}"]
        per_seed = (parts[f"seed_var_{side}"] if articles is None else
                    np.maximum(0.0, parts[f"seed_var_{side}"] - noise / parts["n"]) + noise / n)
        terms.append(per_seed / k)
        weights.append((k - 1) / chi2_quantile(SEED_VARIANCE_QUANTILE, k - 1))
        dfs.append(k - 1)
    terms.append(parts["article_var"] / n)
    weights.append(1.0)
    dfs.append(parts["article_df"] if articles is None else n - 1)
    weighted = [term * weight for term, weight in zip(terms, weights)]
    spread = sum(np.where(np.asarray(df) > 0, term**2 / np.maximum(df, 1e-12), 0.0)
                 for term, df in zip(weighted, dfs))
    df = np.where(spread > 0, sum(weighted)**2 / np.where(spread > 0, spread, 1.0), 1.0)
    return np.sqrt(sum(terms)), df


def chi2_quantile(q: float, df: float) -> float:
    """The q quantile of the chi-squared distribution with `df` degrees of freedom, by
    bisection on its CDF (the regularized lower incomplete gamma function's series)."""
    low, high = 0.0, max(1.0, 4.0 * df)
    while _chi2_cdf(high, df) < q:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _chi2_cdf(middle, df) < q else (low, middle)
    return (low + high) / 2


def _chi2_cdf(x: float, df: float) -> float:
    a, y = df / 2, x / 2
    if y <= 0:
        return 0.0
    term = total = 1.0 / a
    n = 0
    while term > 1e-16 * total:
        n += 1
        term *= y / (a + n)
        total += term
    return min(1.0, total * math.exp(a * math.log(y) - y - math.lgamma(a)))


def seed_article_t_test(a, b, level: float = 0.95) -> dict:
    """Paired t-test of "systems a and b have the same mean score" for the design the runs have.

    `a` and `b` are (seeds x examples) score arrays on the same examples (leading axes
    broadcast). The standard error adds the two systems' seed terms and the system-by-article
    term (variance_components), with Welch-Satterthwaite degrees of freedom, so three seeds
    give about 2-4 degrees of freedom and not a normal quantile. With several seeds on both
    sides (or one side a fixed baseline) the verdict is about the methods over training seeds
    and test articles; with one run each it is the paired t-test over articles, a verdict about
    two trained checkpoints on these articles that says nothing about seed variance.
    Returns diff, se, df, t, p (two-sided, analytic: no resampling floor) and the `level`
    t-interval (low, high) of the difference.
    """
    parts = variance_components(a, b)
    se, df = standard_error(parts)
    diff = parts["diff"]
    t = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))
    half = t_quantile((1 + level) / 2, df) * se
    return {"diff": diff, "se": se, "df": df, "t": t, "p": t_two_sided_p(t, df),
            "low": diff - half, "high": diff + half}


def detectable_difference(se: float, df: float, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest true difference a two-sided t-test at `alpha` detects with `power`, to the
    usual approximation (t(1 - alpha / 2) + t(power)) x se."""
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se


def design_needed(parts: dict, diff: float, alpha: float = ALPHA, power: float = 0.8,
                  limit: int = 1_000_000) -> dict:
    """Roughly how many seeds per system (articles as now), or test articles (seeds as now),
    would detect `diff` with `power`: {"seeds": k or None, "articles": n or None}; None when
    no number up to `limit` does (the other source of variance alone is too large) or, for
    seeds, when no system has several (its seed variance was not measured).

    The variance at k seeds and n articles is A / k + C / n + B / (k n) (seed, system-by-
    article and noise terms); solved for the one unknown with normal quantiles, then raised
    until the projected design detects `diff` by the t-test's own quantiles.
    """
    n0 = parts["n"]
    several = [side for side in ("a", "b") if parts[f"k_{side}"] > 1]
    seed_effect = sum(np.maximum(0.0, parts[f"seed_var_{side}"] - parts[f"noise_var_{side}"] / n0)
                      for side in several)
    noise = sum(parts[f"noise_var_{side}"] for side in several)
    k0 = max(parts["k_a"], parts["k_b"])

    def detects(design: dict) -> bool:
        se, df = standard_error(parts, **design)
        return float(detectable_difference(float(se), float(df), alpha, power)) <= abs(diff)

    def smallest(key: str, estimate: float) -> int | None:
        value = max(2, math.ceil(estimate))
        for _ in range(64):  # a few steps past the estimate: the df it assumed were too many
            if value > limit:
                return None
            if detects({key: value}):
                return value
            value = max(value + 1, math.ceil(value * 1.1))
        return None

    # Normal quantiles: the least any design needs (t's are larger), so the search goes up.
    z = _normal_upper_quantile(alpha / 2) + _normal_upper_quantile(1 - power)
    target = (abs(diff) / z)**2
    by_articles = target - float(seed_effect) / k0
    by_seeds = target - float(parts["article_var"]) / n0
    return {
        "seeds": smallest("seeds", float(seed_effect + noise / n0) / by_seeds)
        if several and by_seeds > 0 else None,
        "articles": smallest("articles", (float(noise) / k0 + float(parts["article_var"]))
                             / by_articles) if by_articles > 0 else None,
    }


def seed_article_interval(scores, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of one system's (seeds x examples) scores and its t-interval over training seeds
    and test articles together: (mean, low, high); one seed gives the t-interval over
    articles. The same variance decomposition as the test, against a zero system."""
    values = _as_runs(scores, "scores")
    test = seed_article_t_test(values, np.zeros((1, values.shape[-1])), level)
    return float(test["diff"]), float(test["low"]), float(test["high"])


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
