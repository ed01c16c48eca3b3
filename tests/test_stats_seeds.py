"""Statistics over seeds and articles together, and the multiplicity correction, against
hand-computed examples."""

import math

import numpy as np
import pytest

from peftsum.analysis.stats import holm, seed_article_bootstrap, seed_interval


def test_holm_by_hand():
    # Sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04).
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # None is outside the family (m = 2); the cap is 1.
    assert holm([0.2, None, 0.01]) == [pytest.approx(0.2), None, pytest.approx(0.02)]
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_seed_interval_is_the_t_interval():
    mean, low, high = seed_interval([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)  # t(0.975, 2) x sample std / sqrt(n)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert seed_interval([5.0]) == (5.0, None, None)


def test_seed_article_bootstrap_by_hand():
    # One seed, two articles, a - b = (1, 0): the resampled difference is 0, 0.5 or 1 with
    # probabilities 1/4, 1/2, 1/4; |d* - 0.5| >= 0.5 for 0 and 1, so p = 1/2.
    result = seed_article_bootstrap([[1.0, 0.0]], [[0.0, 0.0]], n_resamples=20000, seed=1)
    assert result["diff"] == 0.5
    assert result["p"] == pytest.approx(0.5, abs=0.02)
    assert (result["low"], result["high"]) == (0.0, 1.0)


def test_a_constant_lead_over_every_seed_and_article_is_certain():
    b = np.random.default_rng(0).uniform(0, 50, size=(3, 40))
    result = seed_article_bootstrap(b[[0, 0, 0]] + 2.0, b[[0, 0, 0]], n_resamples=999)
    assert result["diff"] == pytest.approx(2.0)
    assert result["p"] == pytest.approx(1 / 1000)  # never as extreme: the smallest p
    assert seed_article_bootstrap(b[:1], b[:1], n_resamples=99)["p"] == 1.0  # identical


def test_a_difference_one_seed_produced_is_not_significant():
    rng = np.random.default_rng(0)
    base = rng.uniform(20, 40, size=200)
    b = np.stack([base + rng.normal(0, 1, 200) for _ in range(3)])
    # a's seeds disagree: one far ahead, two behind; their mean is a little ahead of b.
    a = np.stack([base + 6 + rng.normal(0, 1, 200), base - 2.5 + rng.normal(0, 1, 200),
                  base - 2.5 + rng.normal(0, 1, 200)])
    one_seed = seed_article_bootstrap(a[:1], b[:1], n_resamples=999)
    all_seeds = seed_article_bootstrap(a, b, n_resamples=999)
    assert one_seed["p"] < 0.01  # seed 0 alone looks like a clear win
    assert all_seeds["diff"] > 0 and all_seeds["p"] > 0.2  # the seeds together do not


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="same examples"):
        seed_article_bootstrap([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="seeds x examples"):
        seed_article_bootstrap([1.0, 2.0], [[1.0, 2.0]])
