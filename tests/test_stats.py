"""The statistical helpers of ``minirtrl.testing``: ``unbiasedness_z`` / ``assert_unbiased``
pass the unbiased estimators and flag deliberately biased ones; ``z_threshold`` is the
Bonferroni bound; ``expected_step`` is exact and refuses too many patterns."""

import functools
import math

import numpy as np
import pytest
from estimator_helpers import exact_step, make_cell

import minirtrl
from minirtrl import testing
from minirtrl.testing import assert_close, random_problem

N_SEEDS = 200


def problem():
    cell = minirtrl.VanillaRNN(3, 4, 5, alpha=0.6)
    params = cell.init(0, xp=np, init_scale=0.6)
    xs, ys, mask = random_problem(cell, 6, 2, seed=1)
    _, exact = minirtrl.sequence_gradient("rtrl", cell, params, xs, ys, mask)
    return cell, params, xs, ys, mask, exact


def seeded(method, rank=None):
    cell, params, xs, ys, mask, exact = problem()

    def estimate(seed):
        _, grads = minirtrl.sequence_gradient(method, cell, params, xs, ys, mask, seed=seed,
                                              rank=rank)
        return grads

    return functools.cache(estimate), exact  # cached: a test may ask twice for one seed


def with_sampler(method, prob_plus, rank=None):
    """Estimates through ``Online.step`` with signs that are +1 with probability ``prob_plus``."""
    cell, params, xs, ys, mask, exact = problem()
    algo = minirtrl.online(method, cell, rank)
    B = xs.shape[1]

    def estimate(seed):
        rng = np.random.default_rng(seed)
        state, total = algo.init(B), None
        for t in range(xs.shape[0]):
            signs = {k: np.where(rng.random(shape) < prob_plus, 1.0, -1.0)
                     for k, shape in algo.sign_shapes(B).items()}
            state, _, g = algo.step(params, state, xs[t], ys[t], mask[t], signs=signs)
            total = g if total is None else {k: total[k] + g[k] for k in g}
        return total

    return functools.cache(estimate), exact


# ---- unbiased estimators pass, biased ones are flagged ----------------------------------------
@pytest.mark.parametrize("method, rank", [("uoro", None), ("kf", None), ("kf-avg", 3), ("ok", 2)])
def test_unbiased_estimators_pass(method, rank):
    estimate, exact = seeded(method, rank)
    z = testing.assert_unbiased(estimate, exact, range(N_SEEDS))
    bound = testing.z_threshold(exact["W1"].size)  # V is exact: it does not vary
    assert 0.5 < z <= bound  # a real spread, and below the Bonferroni bound
    assert_close(z, testing.unbiasedness_z(estimate, exact, range(N_SEEDS)), rtol=0)


def test_a_five_percent_bias_of_a_low_noise_estimator_is_flagged():
    estimate, exact = seeded("ok", 2)

    @functools.cache
    def biased(seed):
        g = estimate(seed)
        return {**g, "W1": g["W1"] * 1.05}

    z = testing.unbiasedness_z(biased, exact, range(N_SEEDS))
    assert z > 3 * testing.z_threshold(exact["W1"].size)
    with pytest.raises(AssertionError, match="biased"):
        testing.assert_unbiased(biased, exact, range(N_SEEDS))


@pytest.mark.parametrize("method, prob_plus", [("uoro", 0.75), ("kf", 0.9)])
def test_signs_that_are_not_symmetric_are_flagged(method, prob_plus):
    fair, exact = with_sampler(method, 0.5)
    bound = testing.z_threshold(exact["W1"].size)
    # the same loop, fair signs
    assert testing.assert_unbiased(fair, exact, range(N_SEEDS)) <= bound
    skewed, _ = with_sampler(method, prob_plus)
    z = testing.unbiasedness_z(skewed, exact, range(N_SEEDS))
    assert z > 2 * bound
    with pytest.raises(AssertionError, match="standard errors"):
        testing.assert_unbiased(skewed, exact, range(N_SEEDS))


# ---- the figure itself ------------------------------------------------------------------------
def test_z_is_the_largest_standardised_deviation():
    rng = np.random.default_rng(0)
    draws = rng.standard_normal((50, 3)) + np.array([0.0, 0.0, 0.4])  # the last entry is biased
    exact = {"a": np.zeros(3), "c": np.full(2, 7.0)}

    def estimate(seed):
        return {"a": draws[seed], "c": np.full(2, 7.0), "ignored": np.ones(1)}

    z = testing.unbiasedness_z(estimate, exact, range(50))
    expected = np.abs(draws.mean(0) / (draws.std(0, ddof=1) / math.sqrt(50))).max()
    # pytest.approx's tolerance was max(rel·|expected|, 1e-12) (rel 1e-6 by default), here
    # rel·|expected| itself as |expected| > 1: atol=0 keeps it exactly
    assert_close(z, expected, rtol=1e-12, atol=0)
    assert_close(z, abs(draws[:, 2].mean()) / (draws[:, 2].std(ddof=1) / math.sqrt(50)),
                 rtol=1e-6, atol=0)


def test_entries_that_do_not_vary_must_equal_exact():
    exact = {"W": np.array([1.0, 2.0]), "V": np.array([3.0])}
    rng = np.random.default_rng(1)
    draws = rng.standard_normal((30, 2)) + [1.0, 2.0]

    def good(seed):
        return {"W": draws[seed], "V": np.array([3.0])}

    def off(seed):
        return {"W": draws[seed], "V": np.array([3.0 + 1e-6])}

    assert math.isfinite(testing.unbiasedness_z(good, exact, range(30)))
    assert_close(testing.unbiasedness_z(off, exact, range(30)), math.inf, rtol=0)
    with pytest.raises(AssertionError, match=r"V\[0\]"):
        testing.assert_unbiased(off, exact, range(30))


def test_z_threshold_is_the_bonferroni_bound():
    assert_close(testing.z_threshold(1), 3.2905267, rtol=0, atol=1e-6)  # two-sided p = 1e-3
    assert_close(testing.z_threshold(100), 4.4171734, rtol=0, atol=1e-6)
    assert_close(testing.z_threshold(100, p=0.05), 3.4807564, rtol=0, atol=1e-6)
    for N in (1, 10, 1000):
        z = testing.z_threshold(N)
        # max(1e-9·1e-3, 1e-12) = 1e-12, as pytest.approx(1e-3, rel=1e-9) had it
        assert_close(N * math.erfc(z / math.sqrt(2)), 1e-3, rtol=1e-9, atol=0)


def test_seeds_are_checked():
    with pytest.raises(ValueError, match="seeds"):
        testing.unbiasedness_z(lambda s: {"a": np.zeros(1)}, {"a": np.zeros(1)}, [0])


# ---- expected_step ----------------------------------------------------------------------------
@pytest.mark.parametrize("method, rank", [("kf", None), ("kf-avg", 2), ("ok", 1), ("uoro", None)])
def test_expected_step_is_exact_rtrl_on_a_depth_two_rhn(method, rank):
    cell, params = make_cell(2, n=3)
    xs, ys, _ = random_problem(cell, 4, 2, seed=3, masked=False)
    algo = minirtrl.online(method, cell, rank)
    state, rng = algo.init(2), np.random.default_rng(0)
    for t in range(3):
        state, _, _ = algo.step(params, state, xs[t], ys[t], signs=algo.draw_signs(rng, 2))
    e = testing.expected_step(algo, params, state, xs[3], ys[3])
    _, layers = cell.step(params, state.s, xs[3], xp=np)
    target = exact_step(cell, params, algo.influence(state), layers)  # the tests' own exact step
    for k in cell.blocks:
        scale = np.abs(target[k]).max()
        assert_close(e.influence[k], target[k], rtol=0, atol=1e-13 * scale)
        assert_close(e.exact[k], target[k], rtol=0, atol=1e-14 * scale)
        assert_close(e.grads[k], e.exact_grads[k], rtol=1e-12, atol=1e-15)
    assert_close(e.grads["V"], e.exact_grads["V"], rtol=1e-14)  # the mean of equal values


def test_expected_step_counts_and_refuses_patterns():
    cell = minirtrl.VanillaRNN(2, 16, 3)
    p = cell.init(0, init_scale=0.3)
    x, y = np.ones((1, 2)), np.zeros(1, dtype=np.int64)
    uoro = minirtrl.online("uoro", cell)
    patterns = testing.sign_patterns(uoro.sign_shapes(1))  # the most expected_step runs
    assert len(patterns) == 2**16 and patterns[0]["nu"].shape == (16,)
    assert len({tuple(q["nu"]) for q in patterns}) == 2**16  # all distinct, all ±1
    assert all(set(q["nu"]) <= {-1.0, 1.0} for q in patterns[:: 2**10])
    kf = minirtrl.online("kf-avg", cell, 3)
    assert testing.expected_step(kf, p, kf.init(1), x, y).patterns == 2**6
    exact = minirtrl.online("rtrl", cell)
    e = testing.expected_step(exact, p, exact.init(1), x, y)
    assert e.patterns == 1
    assert_close(e.influence["W1"], e.exact["W1"], rtol=0)
    wide = minirtrl.VanillaRNN(2, 17, 3)
    algo = minirtrl.online("uoro", wide)
    with pytest.raises(ValueError, match=r"2\^17"):
        testing.expected_step(algo, wide.init(0), algo.init(1), x, y)
    with pytest.raises(TypeError, match="online"):
        testing.expected_step("uoro", p, uoro.init(1), x, y)


def test_expected_step_on_every_backend(backend, to_xp):
    cell = minirtrl.VanillaRNN(3, 4, 5, alpha=0.5)
    p_np = cell.init(1, init_scale=0.6)
    xs, ys, _ = random_problem(cell, 3, 2, seed=2, masked=False)
    algo = minirtrl.online("kf", cell)
    ref_state = algo.init(2)
    state = algo.init(2, xp=backend.xp, device=backend.device)
    p = {k: to_xp(v) for k, v in p_np.items()}
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    for t in range(2):
        ref_state, _, _ = algo.step(p_np, ref_state, xs[t], ys[t], signs=algo.draw_signs(rng1, 2))
        state, _, _ = algo.step(p, state, to_xp(xs[t]), to_xp(ys[t]),
                                signs=algo.draw_signs(rng2, 2, xp=backend.xp,
                                                      dtype=backend.xp.float64,
                                                      device=backend.device))
    ref = testing.expected_step(algo, p_np, ref_state, xs[2], ys[2])
    got = testing.expected_step(algo, p, state, to_xp(xs[2]), to_xp(ys[2]))
    xp, device = backend.xp, backend.device
    assert_close(got.influence["W1"], ref.influence["W1"], xp=xp, device=device, rtol=1e-12,
                 atol=1e-15)
    assert_close(got.grads["W1"], ref.grads["W1"], xp=xp, device=device, rtol=1e-12, atol=1e-15)
