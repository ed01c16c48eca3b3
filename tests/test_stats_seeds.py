"""Statistics over seeds and articles together, and the multiplicity correction, against
hand-computed examples."""

import math

import numpy as np
import pytest

from peftsum.analysis.stats import (
    chi2_quantile,
    holm,
    seed_article_t_test,
    seed_interval,
    t_quantile,
    t_two_sided_p,
)


def test_holm_by_hand():
    # Sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04).
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # None is outside the family (m = 2); the cap is 1.
    assert holm([0.2, None, 0.01]) == [pytest.approx(0.2), None, pytest.approx(0.02)]
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_seed_interval_is_the_t_interval():
    mean, low, high = seed_interval([1.0, 2.0, 3.0])
    half = 4.302653 * 1.0 / math.sqrt(3)  # t(0.975, 2) x sample std / sqrt(n)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert seed_interval([5.0]) == (5.0, None, None)


@pytest.mark.parametrize("df, quantile", [(1, 12.706205), (2, 4.302653), (4, 2.776445),
                                          (30, 2.042272), (31, 2.039513), (120, 1.979930),
                                          (1e6, 1.959966)])
def test_t_quantiles_are_exact_for_any_df(df, quantile):
    # Beyond 30 df too: the normal's 1.96 would be 4 % short at 31.
    assert t_quantile(0.975, df) == pytest.approx(quantile, abs=2e-6)
    assert t_quantile(0.025, df) == pytest.approx(-quantile, abs=2e-6)
    assert t_two_sided_p(quantile, df) == pytest.approx(0.05, abs=1e-6)


def test_chi2_quantiles():
    assert chi2_quantile(0.25, 2) == pytest.approx(-2 * math.log(0.75))  # exponential, mean 2
    assert chi2_quantile(0.95, 1) == pytest.approx(1.959964**2, rel=1e-6)


def test_seed_article_t_test_by_hand():
    # One run each, two articles, a - b = (1, 0): mean 0.5, standard error 0.5, t = 1 on 1 df:
    # p = 1 - 2 atan(1) / pi = 0.5, interval 0.5 -+ t(0.975, 1) x 0.5.
    result = seed_article_t_test([[1.0, 0.0]], [[0.0, 0.0]])
    assert (result["diff"], result["se"], result["df"]) == pytest.approx((0.5, 0.5, 1.0))
    assert result["p"] == pytest.approx(0.5)
    assert (result["low"], result["high"]) == pytest.approx((0.5 - 6.353102, 0.5 + 6.353102))


def test_seeds_against_a_baseline_are_a_t_test_on_seed_means():
    # No system-by-article spread: the test is the one-sample t on a's seed means less b's.
    b = np.linspace(10, 40, 20)
    a = np.stack([b + lead for lead in (1.0, 2.0, 6.0)])
    result = seed_article_t_test(a, [b])
    t = 3.0 / (math.sqrt(7.0) / math.sqrt(3))
    assert result["t"] == pytest.approx(t) and result["df"] == pytest.approx(2.0)


def test_a_constant_lead_over_every_seed_and_article_is_certain():
    b = np.random.default_rng(0).uniform(0, 50, size=(3, 40))
    result = seed_article_t_test(b[[0, 0, 0]] + 2.0, b[[0, 0, 0]])
    assert result["diff"] == pytest.approx(2.0)
    assert result["p"] == 0.0
    assert seed_article_t_test(b[:1], b[:1])["p"] == 1.0  # identical


def test_a_difference_one_seed_produced_is_not_significant():
    rng = np.random.default_rng(0)
    base = rng.uniform(20, 40, size=200)
    b = np.stack([base + rng.normal(0, 1, 200) for _ in range(3)])
    # a's seeds disagree: one far ahead, two behind; their mean is a little ahead of b.
    a = np.stack([base + 6 + rng.normal(0, 1, 200), base - 2.5 + rng.normal(0, 1, 200),
                  base - 2.5 + rng.normal(0, 1, 200)])
    one_seed = seed_article_t_test(a[:1], b[:1])
    all_seeds = seed_article_t_test(a, b)
    assert one_seed["p"] < 0.01  # seed 0 alone looks like a clear win
    assert all_seeds["diff"] > 0 and all_seeds["p"] > 0.2  # the seeds together do not


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="same examples"):
        seed_article_t_test([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="seeds x examples"):
        seed_article_t_test([1.0, 2.0], [[1.0, 2.0]])
