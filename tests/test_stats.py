"""Tests for the statistics behind the report's intervals and significance tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from peftsum.analysis import stats


def noisy_scores(n: int, mean: float = 25.0, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 8.0, size=n)


def test_ci_contains_the_mean_and_narrows_with_more_data():
    widths = []
    for n in (20, 2000):
        scores = noisy_scores(n)
        mean, low, high = stats.bootstrap_ci(scores)
        assert mean == pytest.approx(scores.mean())
        assert low < mean < high
        widths.append(high - low)
    # The width shrinks like 1/sqrt(n): 10x for 100x the data; allow generous slack.
    assert widths[1] < widths[0] / 5


def test_ci_width_matches_the_normal_approximation():
    scores = noisy_scores(400)
    _, low, high = stats.bootstrap_ci(scores, n_resamples=4000)
    expected = 2 * 1.96 * scores.std(ddof=1) / math.sqrt(scores.size)
    assert high - low == pytest.approx(expected, rel=0.1)


def test_ci_lower_level_is_narrower():
    scores = noisy_scores(50)
    _, low95, high95 = stats.bootstrap_ci(scores, level=0.95)
    _, low50, high50 = stats.bootstrap_ci(scores, level=0.5)
    assert low95 < low50 < high50 < high95


def test_ci_hand_checkable_cases():
    # Constant scores: every resample has the same mean.
    assert stats.bootstrap_ci([7.5] * 5) == (7.5, 7.5, 7.5)
    # Two values 0 and 1: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the
    # 2.5 % and 97.5 % quantiles are 0 and 1.
    assert stats.bootstrap_ci([0.0, 1.0], n_resamples=5000) == (0.5, 0.0, 1.0)


def test_identical_systems_give_p_one():
    a = noisy_scores(30)
    assert paired_p(a, a.copy()) == 1.0


def test_better_on_every_example_is_significant():
    b = noisy_scores(40)
    a = b + np.random.default_rng(2).uniform(0.5, 3.0, size=b.size)
    assert paired_p(a, b) < 1e-6  # analytic: no resampling floor


def test_pvalue_hand_checkable_cases():
    # A constant difference has no spread: certain.
    assert paired_p([3, 4, 5], [2, 3, 4]) == 0.0
    # Differences 1 and 3: mean 2, standard error 1, t = 2 on 1 df, where Student's t is
    # Cauchy: p = 1 - 2 atan(2) / pi.
    assert paired_p([1.0, 3.0], [0.0, 0.0]) == pytest.approx(1 - 2 * math.atan(2) / math.pi)
    # Differences 1, 2, 6: mean 3, sd sqrt(7), t = 3 / sqrt(7 / 3) on 2 df: p = 1 - t / sqrt(2 + t^2).
    t = 3 / math.sqrt(7 / 3)
    assert paired_p([1.0, 2.0, 6.0], [0.0] * 3) == pytest.approx(1 - t / math.sqrt(2 + t * t))


def test_small_noisy_difference_is_not_significant():
    b = noisy_scores(30)
    a = b + np.random.default_rng(3).normal(0.0, 5.0, size=b.size)
    a += 0.1 - (a - b).mean()  # a tiny observed lead buried in noise
    assert paired_p(a, b) > 0.5


def test_pvalue_is_symmetric_and_in_range():
    a, b = noisy_scores(25, seed=4), noisy_scores(25, 27.0, seed=5)
    p = paired_p(a, b)
    assert 0 < p <= 1
    assert paired_p(b, a) == pytest.approx(p)


def test_seeded_results_are_reproducible():
    a = noisy_scores(60, seed=6)
    assert stats.bootstrap_ci(a, seed=11) == stats.bootstrap_ci(a, seed=11)
    assert stats.bootstrap_ci(a, seed=11) != stats.bootstrap_ci(a, seed=12)


def test_chunked_resampling_stays_valid(monkeypatch):
    # Large test sets are resampled in chunks; force many small chunks.
    monkeypatch.setattr(stats, "_MAX_INDICES_PER_CHUNK", 1000)
    scores = noisy_scores(300)
    means = stats.resampled_means(scores, 50, seed=0)
    assert means.shape == (50,) and len(set(means)) > 40
    assert np.array_equal(means, stats.resampled_means(scores, 50, seed=0))
    mean, low, high = stats.bootstrap_ci(scores)
    assert low < mean < high


@pytest.mark.parametrize(
    "call",
    [
        lambda: stats.bootstrap_ci([]),
        lambda: stats.bootstrap_ci([1.0, math.nan]),
        lambda: stats.bootstrap_ci([1.0, 2.0], level=1.5),
        lambda: stats.bootstrap_ci([1.0, 2.0], n_resamples=0),
        lambda: paired_p([1.0, 2.0], [1.0]),
    ],
)
def test_bad_input_is_rejected(call):
    with pytest.raises(ValueError):
        call()


def test_seed_summary():
    assert stats.seed_summary([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std, ddof=1
    assert stats.seed_summary([5.0]) == (5.0, None)
    assert stats.seed_summary([]) == (None, None)
    mean, std = stats.seed_summary([None, 2.0, 4.0])  # missing values are skipped
    assert mean == 3.0 and std == pytest.approx(math.sqrt(2))


def paired_p(a, b) -> float:
    """The paired t-test over articles: one run per system."""
    return float(stats.seed_article_t_test([a], [b])["p"])
