"""Any loss and any start: the mse readout and mean reduction against finite differences,
a caller's c_t, and starts from given or seeded random states against independent oracles."""

import numpy as np
import pytest

import minirtrl
from minirtrl import RHN, OnlineState, VanillaRNN, rtrl, sequence_gradient
from minirtrl.methods import leaves
from minirtrl.testing import assert_close, numerical_gradient, relative_error, to_numpy

CELLS = {"rhn2": lambda: RHN(3, 4, 2, depth=2),
         "vanilla": lambda: VanillaRNN(3, 4, 2, alpha=0.3)}
ESTIMATORS = ("uoro", "kf", "ok", "kf-avg")


def problem(cell, loss, T=5, B=2, seed=1):
    rng = np.random.default_rng(seed)
    params = {k: 10 * v for k, v in cell.init(0, xp=np, dtype=np.float64).items()}
    xs = rng.standard_normal((T, B, cell.n_in))
    ys = (rng.standard_normal((T, B, cell.n_out)) if loss == "mse"
          else rng.integers(0, cell.n_out, (T, B)))
    mask = (rng.random((T, B)) < 0.8).astype(np.float64)
    return params, xs, ys, mask


@pytest.mark.parametrize("cell_name", CELLS)
@pytest.mark.parametrize("loss", ["softmax", "mse"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("method", ["rtrl", "bptt"])
def test_every_loss_and_reduction_against_finite_differences(cell_name, loss, reduction,
                                                               method):
    cell = CELLS[cell_name]()
    params, xs, ys, mask = problem(cell, loss)
    s0 = np.random.default_rng(7).uniform(-1, 1, (2, cell.n_hidden))
    start = OnlineState(s0, None if method == "bptt" else
                        minirtrl.online("rtrl", cell).init(2).est)
    _, grads = sequence_gradient(method, cell, params, xs, ys, mask, loss=loss,
                                 reduction=reduction, start=start)
    fd = numerical_gradient(cell, params, xs, ys, mask, s0=s0, loss=loss, reduction=reduction)
    for k in params:
        assert relative_error(grads[k], fd[k]) < 1e-6, k


def test_mean_is_the_sum_over_the_batch():
    cell = CELLS["vanilla"]()
    params, xs, ys, mask = problem(cell, "mse", B=3)
    l_sum, g_sum = sequence_gradient("rtrl", cell, params, xs, ys, mask, loss="mse")
    l_mean, g_mean = sequence_gradient("rtrl", cell, params, xs, ys, mask, loss="mse",
                                       reduction="mean")
    assert_close(l_mean, l_sum / 3, rtol=1e-14)
    for k in g_sum:
        assert_close(g_mean[k], g_sum[k] / 3, rtol=1e-13)


@pytest.mark.parametrize("method", ["rtrl", *ESTIMATORS])
def test_a_callers_c_gives_the_steps_own_recurrent_gradient(method):
    cell = CELLS["rhn2"]()
    params, xs, ys, _ = problem(cell, "mse")
    algo = minirtrl.online(method, cell, loss="mse")
    state, rng = algo.random_start(2, 5, scale=0.3), np.random.default_rng(3)
    for t in range(xs.shape[0]):
        signs = algo.draw_signs(rng, 2)
        influence_only, _, _ = algo.step(params, state, xs[t], signs=signs)
        state, _, grads = algo.step(params, state, xs[t], ys[t], signs=signs)
        # c_t of ½‖o − y‖² computed here, by hand: (o − y) V[:, :n]
        o = np.concatenate([state.s, np.ones((2, 1))], axis=1) @ params["V"].T
        c = (o - ys[t]) @ params["V"][:, :cell.n_hidden]
        mine = algo.grads(influence_only, c)
        for k in cell.blocks:
            assert_close(mine[k], grads[k], rtol=1e-12)


def test_exact_rtrl_from_a_carried_influence_is_bptt_over_the_whole_sequence():
    cell = CELLS["rhn2"]()
    params, xs, ys, mask = problem(cell, "softmax", T=8)
    algo = minirtrl.online("rtrl", cell)
    state = algo.init(2)
    for t in range(3):  # the prefix: its state and exact influence carried over
        state, _, _ = algo.step(params, state, xs[t])
    G0 = algo.influence(state)
    start = algo.start(state.s, rtrl.from_influence(cell, G0))
    _, grads = sequence_gradient("rtrl", cell, params, xs[3:], ys[3:], mask[3:], start=start)
    prefix_off = mask.copy()
    prefix_off[:3] = 0.0  # the same losses, back-propagated through the prefix too
    _, oracle = sequence_gradient("bptt", cell, params, xs, ys, prefix_off)
    for k in cell.blocks:
        assert_close(grads[k], oracle[k], rtol=1e-12, atol=1e-15)
    G = minirtrl.exact_influence(cell, params, xs[3:], start=start)
    whole = minirtrl.exact_influence(cell, params, xs)
    for k in cell.blocks:
        assert_close(G[k], whole[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("method", ["rtrl", *ESTIMATORS])
def test_random_starts_are_seeded_and_every_array_is_drawn(method, driver_backend):
    cell = CELLS["rhn2"]()
    algo = minirtrl.online(method, cell)
    a = algo.random_start(3, 11, xp=driver_backend.xp, device=driver_backend.device)
    b, c = algo.random_start(3, 11), algo.random_start(3, 12)
    for x, y, z in zip(leaves(a), leaves(b), leaves(c), strict=True):
        np.testing.assert_array_equal(to_numpy(x), y)  # the same start on every backend
        assert np.all(y != 0) and not np.array_equal(y, z)
    assert np.all(np.abs(b.s) < 1)


def test_bad_loss_reduction_targets_and_starts_are_named():
    cell = CELLS["vanilla"]()
    params, xs, ys, _ = problem(cell, "mse")
    with pytest.raises(ValueError, match="loss must be one of 'softmax', 'mse', not 'hinge'"):
        minirtrl.online("kf", cell, loss="hinge")
    with pytest.raises(ValueError, match="reduction must be one of"):
        sequence_gradient("rtrl", cell, params, xs, ys, loss="mse", reduction="avg")
    with pytest.raises(ValueError, match=r"ys must have shape \(5, 2, 2\)"):
        sequence_gradient("rtrl", cell, params, xs, ys[..., 0], loss="mse")
    with pytest.raises(ValueError, match=r"ys must have shape \(5, 2\), not \(5, 2, 2\)"):
        sequence_gradient("rtrl", cell, params, xs, ys)  # real targets, softmax loss
    algo = minirtrl.online("rtrl", cell)
    start = algo.random_start(2, 0)
    with pytest.raises(ValueError, match="bptt"):
        sequence_gradient("bptt", cell, params, xs, ys, loss="mse", start=start)
    with pytest.raises((ValueError, TypeError)):
        algo.start(start.s[:1], start.est)  # one stream's state, two streams' influence
    with pytest.raises(ValueError, match="c must have shape"):
        algo.grads(start, np.zeros((2, 3)))
