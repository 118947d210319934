"""Two statistical helpers of ``minirtrl.testing``: the noise of two estimators side by side
(``compare_noise``) and a direct test of a ±1 sampler (``check_signs``)."""

import math

import numpy as np
import pytest

from minirtrl.testing import check_signs, compare_noise, relative_noise, z_threshold

EXACT = {"W": np.array([[3.0, 4.0]]), "b": np.array([0.0])}  # ‖g‖² = 25


def noisy(sigma, offset=0):
    """Estimates exact + sigma·e with e standard normal per entry: E‖ĝ − g‖² = 3 σ²."""

    def estimate(seed):
        e = np.random.default_rng(seed + offset).standard_normal(3)
        return {"W": EXACT["W"] + sigma * e[None, :2], "b": EXACT["b"] + sigma * e[2:]}

    return estimate


def test_relative_noise_by_hand():
    ests = [{"W": np.array([[4.0, 4.0]]), "b": np.array([0.0])},
            {"W": np.array([[3.0, 4.0]]), "b": np.array([2.0])}]
    np.testing.assert_allclose(relative_noise(ests, EXACT), [1 / 25, 4 / 25])
    np.testing.assert_allclose(relative_noise(ests, EXACT, keys=["W"]), [1 / 25, 0.0])
    with pytest.raises(ValueError, match="all zero"):
        relative_noise(ests, {"b": np.zeros(1)})


def test_equal_noise_is_not_flagged_and_its_figures_are_right():
    r = compare_noise(noisy(0.5), noisy(0.5, offset=10_000), EXACT, range(2000))
    expected = 3 * 0.25 / 25  # E‖ĝ − g‖² / ‖g‖²
    assert abs(r.yours - expected) < 4 * r.yours_se and abs(r.ours - expected) < 4 * r.ours_se
    # the mean of 3 σ² χ²_3 / 25 over N has SE (3 σ²/25)·sqrt(2/3)/√N
    assert r.yours_se == pytest.approx(expected * math.sqrt(2 / 3) / math.sqrt(2000), rel=0.15)
    assert abs(r.z) < z_threshold(1) and abs(r.ratio - 1) < 4 * r.ratio_se and r.seeds == 2000


def test_twice_the_spread_is_flagged_with_a_ratio_near_four():
    r = compare_noise(noisy(1.0), noisy(0.5, offset=10_000), EXACT, range(400))
    assert r.z > z_threshold(1)
    assert abs(r.ratio - 4.0) < 4 * r.ratio_se


def fair(seed=0, p_plus=0.5, shape=(2, 1, 2)):
    rng = np.random.default_rng(seed)
    return lambda: {"W1": np.where(rng.random(shape) < p_plus, 1.0, -1.0)}


def test_fair_signs_pass():
    result = check_signs(fair())
    assert result.ok and result.problem == "" and result.entries == 4 and result.draws == 2000
    assert result.mean_z < result.bound and result.pair_z < result.bound


def test_a_sixty_forty_sign_is_named():
    result = check_signs(fair(p_plus=0.6))
    assert not result.ok
    assert "is +1 in 6" in result.problem and "not a fair sign" in result.problem
    assert result.mean_z > 8  # 2 · 0.1 · √2000 = 8.9 on average


def test_dependent_signs_are_found_within_a_draw_and_across_draws():
    rng = np.random.default_rng(3)

    def copied():  # the second sign repeats the first
        c = np.where(rng.random() < 0.5, 1.0, -1.0)
        return {"c": np.array([c, c])}

    assert "not independent" in check_signs(copied).problem
    last = [1.0]

    def sticky():  # each sign repeats the previous one with probability 0.6 (correlation 0.2)
        last[0] = last[0] if rng.random() < 0.6 else -last[0]
        return {"c": np.array([last[0]])}

    assert "not independent" in check_signs(sticky).problem


def test_values_and_shapes_are_checked():
    assert "holds 0.0" in check_signs(lambda: {"c": np.zeros(2)}).problem
    calls = []

    def growing():
        calls.append(1)
        return {"c": np.ones(1 + (len(calls) > 5))}

    assert "draw 6 has shapes" in check_signs(growing).problem
    with pytest.raises(ValueError, match="more than the 4096"):
        check_signs(lambda: {"c": np.ones(5000)}, draws=3)
