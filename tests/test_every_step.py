"""Every-step TBPTT (``bptt.every_step``) against its definition: at step t the gradient of
loss_t alone, by finite differences, through the last K steps from the state K steps back
(held fixed; every stream's sub-window starts at its last reset); with K >= t and fixed
parameters exact RTRL's step gradient; the window's state the one its definition gives when
the parameters change between steps; K = 1 one-step windows of ``window_gradient``."""

import functools

import numpy as np
import pytest

import minirtrl
from minirtrl import bptt, rtrl
from minirtrl._compat import get_device
from minirtrl.testing import assert_close, numerical_gradient, to_numpy

T, B, K = 7, 2, 3
#: where a stream restarts (keep 0 before that step): stream 0 at step 4, stream 1 never
KEEP = np.ones((T, B))
KEEP[4, 0] = 0.0


def cells():
    return {"rhn": minirtrl.RHN(n_in=3, n_hidden=4, n_out=5, depth=2),
            "vanilla": minirtrl.VanillaRNN(n_in=3, n_hidden=4, n_out=5, alpha=0.7)}


@functools.cache
def problem(name):
    cell = cells()[name]
    options = {"gate_bias": -0.5} if name == "rhn" else {}
    params = cell.init(1, xp=np, init_scale=0.6, **options)
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((T, B, cell.n_in))
    ys = rng.integers(0, cell.n_out, size=(T, B))
    mask = np.ones((T, B))
    mask[5, 1] = 0.0  # a step without loss in one stream
    return cell, params, xs, ys, mask


def forward(cell, params, s, xs, keep):
    """Host forward pass with resets: the state after every step, (len(xs), B, n)."""
    out = []
    for t in range(xs.shape[0]):
        s, _ = cell.step(params, s * keep[t][:, None], xs[t], xp=np)
        out.append(s)
    return out


def run(cell, params, xs, ys, mask, keep, truncation, xp, to_xp):
    """``every_step`` over the whole sequence on the backend: ``[(loss, grads, s, window)]``."""
    p = {k: to_xp(v) for k, v in params.items()}
    window = bptt.start_window(cell, B, truncation, xp=xp, dtype=p["V"].dtype,
                               device=get_device(p["V"]))
    out = []
    for t in range(xs.shape[0]):
        window, loss, grads, s = bptt.every_step(cell, p, window, to_xp(xs[t]), to_xp(ys[t]),
                                                 to_xp(mask[t]), xp=xp, keep=to_xp(keep[t]))
        out.append((loss, grads, s, window))
    return out


@functools.cache
def finite_differences(name, t):
    """The gradient of loss_t (step t, 0-based), stream by stream, by central differences
    over the steps since max(t - K + 1, the stream's last reset), from the state entering
    them (fixed parameters: the plain forward state)."""
    cell, params, xs, ys, mask = problem(name)
    states = forward(cell, params, np.zeros((B, cell.n_state)), xs, KEEP)
    total = None
    for b in range(B):
        start = max(t - K + 1, 0)
        resets = [i for i in range(start, t + 1) if KEEP[i, b] == 0]
        start = resets[-1] if resets else start
        s0 = np.zeros((1, cell.n_state)) if resets or start == 0 else states[start - 1][b:b + 1]
        only_t = np.zeros((t + 1 - start, 1))
        only_t[-1, 0] = mask[t, b]
        g = numerical_gradient(cell, params, xs[start:t + 1, b:b + 1], ys[start:t + 1, b:b + 1],
                               only_t, s0=s0)
        total = g if total is None else {k: total[k] + g[k] for k in g}
    return total


@pytest.mark.parametrize("name", ["rhn", "vanilla"])
def test_each_step_is_the_gradient_of_its_own_loss_through_the_last_K_steps(name, backend,
                                                                            to_xp):
    xp = backend.xp
    cell, params, xs, ys, mask = problem(name)
    steps = run(cell, params, xs, ys, mask, KEEP, K, xp, to_xp)
    states = forward(cell, params, np.zeros((B, cell.n_state)), xs, KEEP)
    for t in (0, 2, 4, 6):  # before the window is full, full, at a reset, after it
        loss, grads, s, _ = steps[t]
        fd = finite_differences(name, t)
        for k in params:
            assert_close(grads[k], fd[k], xp=xp, rtol=0, atol=1e-7 * np.max(np.abs(fd[k])),
                         err_msg=f"step {t} {k}")
        assert_close(s, states[t], xp=xp, rtol=1e-12, atol=1e-14)
        expected = -np.log(_softmax(cell, params, states[t])[np.arange(B), ys[t]]) * mask[t]
        assert_close(loss, expected, xp=xp, rtol=1e-12)


def _softmax(cell, params, s):
    z = np.concatenate([s[:, :cell.n_hidden], np.ones((s.shape[0], 1))], axis=1) @ params["V"].T
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("name", ["rhn", "vanilla"])
def test_a_window_as_long_as_the_run_is_exact_rtrl_step_by_step(name, backend, to_xp):
    """K >= t: every step's gradient is exact RTRL's c_t · G_t plus the readout's, step by
    step (``online("rtrl")``), resets included."""
    xp = backend.xp
    cell, params, xs, ys, mask = problem(name)
    steps = run(cell, params, xs, ys, mask, KEEP, T, xp, to_xp)
    algo = minirtrl.online("rtrl", cell)
    p = {k: to_xp(v) for k, v in params.items()}
    state = algo.init(B, xp=xp, dtype=p["V"].dtype, device=backend.device)
    for t in range(T):
        reset = {k: v * to_xp(KEEP[t])[:, None, None] for k, v in zip(cell.blocks, state.est.G)}
        state = algo.start(state.s * to_xp(KEEP[t])[:, None],
                           rtrl.State(tuple(reset[k] for k in cell.blocks)))
        state, loss, exact = algo.step(p, state, to_xp(xs[t]), to_xp(ys[t]), to_xp(mask[t]))
        got_loss, got, s, _ = steps[t]
        assert_close(got_loss, loss, rtol=1e-12, atol=1e-15)
        assert_close(s, state.s, rtol=1e-12, atol=1e-15)
        for k in params:
            scale = float(np.max(np.abs(to_numpy(exact[k])))) or 1.0
            assert_close(got[k], exact[k], rtol=0, atol=1e-12 * scale, err_msg=f"step {t} {k}")


def test_the_state_K_back_is_advanced_with_the_parameters_of_its_step(backend, to_xp):
    """Parameters that change at every step: the window's state is the one it held, run one
    step with the parameters of the step where its oldest step left the window, and each
    step's gradient is the finite-difference gradient of loss_t from the state the window
    held before it (K steps back, held fixed)."""
    xp = backend.xp
    cell, params, xs, ys, mask = problem("vanilla")
    thetas = [{k: v * (1.0 + 0.1 * t) for k, v in params.items()} for t in range(T)]
    window = bptt.start_window(cell, B, K, xp=xp, dtype=xp.float64, device=backend.device)
    base = np.zeros((B, cell.n_state))  # the state K - 1 steps back, computed here
    for t in range(T):
        p = {k: to_xp(v) for k, v in thetas[t].items()}
        start = max(t - K + 1, 0)  # the oldest step run at step t
        if t >= 1:
            assert_close(window.s, base, xp=xp, rtol=1e-12, atol=1e-15, err_msg=f"step {t}")
        only_t = np.zeros((t + 1 - start, B))
        only_t[-1] = mask[t]
        fd = numerical_gradient(cell, thetas[t], xs[start:t + 1], ys[start:t + 1], only_t,
                                s0=base) if t in (3, 6) else None
        window, _, grads, _ = bptt.every_step(cell, p, window, to_xp(xs[t]), to_xp(ys[t]),
                                              to_xp(mask[t]), xp=xp)
        if fd is not None:
            for k in params:
                assert_close(grads[k], fd[k], rtol=0, atol=1e-7 * np.max(np.abs(fd[k])),
                             err_msg=f"step {t} {k}")
        if t >= K - 1:  # K steps were run: the oldest leaves, the state moves past it
            base, _ = cell.step(thetas[t], base, xs[start], xp=np)
        assert window.filled == min(t + 1, K - 1)


@pytest.mark.parametrize("name", ["rhn", "vanilla"])
def test_a_window_of_one_is_tbptt_with_windows_of_one(name, backend, to_xp):
    xp = backend.xp
    cell, params, xs, ys, mask = problem(name)
    steps = run(cell, params, xs, ys, mask, np.ones((T, B)), 1, xp, to_xp)
    p = {k: to_xp(v) for k, v in params.items()}
    s = xp.zeros((B, cell.n_state), dtype=p["V"].dtype, device=backend.device)
    for t in range(T):
        loss, grads, s = bptt.window_gradient(cell, p, s, to_xp(xs[t:t + 1]), to_xp(ys[t:t + 1]),
                                              to_xp(mask[t:t + 1]), xp=xp)
        got_loss, got, got_s, window = steps[t]
        assert window.xs.shape == (0, B, cell.n_in) and window.filled == 0
        assert_close(got_s, s, rtol=0)
        assert_close(got_loss, loss, rtol=0)
        for k in params:
            assert_close(got[k], grads[k], rtol=1e-13, atol=1e-16, err_msg=f"step {t} {k}")


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "3", None])
def test_a_truncation_that_is_not_a_positive_integer_is_one_line(bad):
    with pytest.raises(ValueError, match=r"^truncation must be an integer >= 1, not") as info:
        bptt.start_window(cells()["vanilla"], 2, bad, xp=np, dtype=np.float64)
    assert "\n" not in str(info.value)


def test_start_window_shapes_and_a_given_start():
    cell = cells()["rhn"]
    s0 = np.full((2, cell.n_state), 0.25)
    window = bptt.start_window(cell, 2, 5, xp=np, dtype=np.float32, s0=s0)
    assert window.xs.shape == (4, 2, 3) and window.keep.shape == (4, 2) and window.filled == 0
    assert window.xs.dtype == np.float32 and np.all(window.keep == 1)
    assert window.s is s0
