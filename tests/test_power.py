"""The statistics helpers for estimators minirtrl does not have: the exact mean of a caller's
step over its sign patterns, and how much bias a z-test with N seeds can see."""

import math

import numpy as np
import pytest

from minirtrl import VanillaRNN
from minirtrl.testing import detectable_bias, exact_step, expected_of, seeds_needed, z_threshold


def a_callers_step(skew):
    """An estimator written here: exact RTRL's step plus Σ_k (e_k + skew) D_k, e_k = ±1."""
    cell = VanillaRNN(2, 3, 2, alpha=0.7)
    params = cell.init(0, xp=np, dtype=np.float64)
    rng = np.random.default_rng(4)
    s, x = rng.uniform(-1, 1, (2, 3)), rng.standard_normal((2, 2))
    G = {"W1": rng.standard_normal((2, 3, 3, 6))}
    exact, _ = exact_step(cell, params, s, G, x)
    D = rng.standard_normal((3, 2, 3, 3, 6))  # one direction per sign

    def step(signs):
        e = signs["e"] + skew  # (B, 3)
        return {"W1": exact["W1"] + np.einsum("bk,kbnmj->bnmj", e, D)}

    return step, exact, D


def test_expected_of_is_the_exact_mean_over_the_patterns():
    step, exact, _ = a_callers_step(skew=0.0)
    mean, patterns = expected_of(step, {"e": (2, 3)}, 2)
    assert patterns == 8
    assert np.abs(mean["W1"] - exact["W1"]).max() < 1e-14 * np.abs(exact["W1"]).max()


def test_expected_of_sees_a_skewed_sign_exactly():
    step, exact, D = a_callers_step(skew=0.1)
    mean, _ = expected_of(step, {"e": (2, 3)}, 2)
    bias = mean["W1"] - exact["W1"]
    np.testing.assert_allclose(bias, 0.1 * D.sum(axis=0), rtol=1e-12, atol=1e-14)


def test_detectable_bias_by_its_formula():
    # z_threshold(1, 1e-3) = 3.2905, the 0.9 quantile of a standard normal 1.2816
    assert detectable_bias(100, 1.0) == pytest.approx((3.29053 + 1.28155) / 10, rel=1e-5)
    assert detectable_bias(400, 2.0, entries=100) == pytest.approx(
        (z_threshold(100) + 1.28155) * 2.0 / 20, rel=1e-5)
    for n in (10, 123, 4000):
        assert seeds_needed(detectable_bias(n, 0.7), 0.7) in (n, n + 1)


def test_detectable_bias_is_found_with_the_stated_power():
    N, trials, power = 50, 4000, 0.9
    bias = detectable_bias(N, 1.0, power=power)
    rng = np.random.default_rng(0)
    x = bias + rng.standard_normal((trials, N))  # N estimates with spread 1, this bias
    z = x.mean(axis=1) / (x.std(axis=1, ddof=1) / math.sqrt(N))
    found = np.mean(np.abs(z) > z_threshold(1))
    # binomial standard error sqrt(0.9 * 0.1 / 4000) = 0.0047; the t (not normal) statistic
    # at N = 50 costs about 0.01 of power
    assert abs(found - power) < 0.03


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="bias must be > 0"):
        seeds_needed(0.0, 1.0)
    with pytest.raises((TypeError, ValueError), match="seeds"):
        detectable_bias(1, 1.0)
