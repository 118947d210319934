"""Exact methods: rtrl == bptt == central finite differences, on every backend (float64)."""

import numpy as np
import pytest

import minirtrl
from minirtrl.testing import (
    assert_close,
    numerical_gradient,
    numerical_jacobian,
    random_problem,
    relative_error,
    sequence_loss,
    to_numpy,
)

T, B = 6, 2


def problem(depth, seed=0):
    cell = minirtrl.RHN(n_in=3, n_hidden=4, n_out=5, depth=depth)
    params = cell.init(seed, xp=np, init_scale=0.6, gate_bias=-0.5)
    xs, ys, mask = random_problem(cell, T, B, seed=seed + 1)
    assert 0 < mask.sum() < mask.size  # some steps are masked out, some are not
    return cell, params, xs, ys, mask


def on(to_xp, params, *arrays):
    return {k: to_xp(v) for k, v in params.items()}, [to_xp(a) for a in arrays]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_rtrl_equals_bptt_equals_finite_differences(backend, to_xp, depth):
    xp, device = backend.xp, backend.device
    cell, params_np, xs, ys, mask = problem(depth)
    fd = numerical_gradient(cell, params_np, xs, ys, mask)
    expected_loss = sequence_loss(cell, params_np, xs, ys, mask)
    params, (xs_, ys_, mask_) = on(to_xp, params_np, xs, ys, mask)
    results = {m: minirtrl.sequence_gradient(m, cell, params, xs_, ys_, mask_)
               for m in ("rtrl", "bptt")}
    for method, (loss, grads) in results.items():
        assert_close(loss, expected_loss, xp=xp, device=device, rtol=1e-12, atol=0)
        for k in params:
            assert_close(grads[k], fd[k], xp=xp, device=device, rtol=0,
                         atol=1e-7 * np.max(np.abs(fd[k])), err_msg=f"{method} {k}")
    for k in params:  # the two exact methods agree to rounding
        bptt = results["bptt"][1][k]
        assert_close(results["rtrl"][1][k], bptt, xp=xp, device=device, rtol=0,
                     atol=1e-12 * np.max(np.abs(to_numpy(bptt))))


@pytest.mark.parametrize("depth", [1, 2])
def test_exact_influence_is_ds_T_dW(backend, to_xp, depth):
    xp, device = backend.xp, backend.device
    cell, params_np, xs, _, _ = problem(depth)
    params, (xs_,) = on(to_xp, params_np, xs)
    G = minirtrl.exact_influence(cell, params, xs_)
    assert set(G) == set(cell.blocks)
    for name in cell.blocks:

        def s_T(W, name=name):
            s = np.zeros((B, cell.n_hidden))
            for t in range(T):
                s, _ = cell.step({**params_np, name: W}, s, xs[t], xp=np)
            return s

        fd = numerical_jacobian(s_T, params_np[name])  # (B, n, 2n, k_l)
        assert G[name].shape == fd.shape
        assert_close(G[name], fd, xp=xp, device=device, rtol=0, atol=1e-7 * np.max(np.abs(fd)))


def tbptt_oracle(cell, params, xs, ys, mask, K):
    """Truncated BPTT from its definition: per window, finite differences of the window's
    loss with the state entering the window held fixed (computed at the same parameters)."""
    total = {k: np.zeros_like(v) for k, v in params.items()}
    s = np.zeros((xs.shape[1], cell.n_hidden))
    for start in range(0, xs.shape[0], K):
        w = slice(start, start + K)
        g = numerical_gradient_from(cell, params, xs[w], ys[w], mask[w], s)
        total = {k: total[k] + g[k] for k in total}
        for t in range(start, min(start + K, xs.shape[0])):
            s, _ = cell.step(params, s, xs[t], xp=np)
    return total


def numerical_gradient_from(cell, params, xs, ys, mask, s0):
    out = {}
    for key in params:
        def loss(w, key=key):
            return np.asarray(sequence_loss(cell, {**params, key: w}, xs, ys, mask, s0=s0))

        out[key] = numerical_jacobian(loss, params[key])
    return out


@pytest.mark.parametrize("depth", [1, 2])
def test_truncated_bptt(backend, to_xp, depth):
    xp, device = backend.xp, backend.device
    cell, params_np, xs, ys, mask = problem(depth)
    params, (xs_, ys_, mask_) = on(to_xp, params_np, xs, ys, mask)
    _, full = minirtrl.sequence_gradient("bptt", cell, params, xs_, ys_, mask_)
    for K in (T, T + 3):  # a window at least as long as the sequence is no truncation
        _, g = minirtrl.sequence_gradient("bptt", cell, params, xs_, ys_, mask_, truncation=K)
        for k in params:
            assert_close(g[k], full[k], xp=xp, device=device, rtol=0,
                         atol=1e-14 * np.max(np.abs(to_numpy(full[k]))))
    # shorter windows: equal to the windowed oracle, measurably off the full gradient
    for K in (1, 2, 4):
        _, g = minirtrl.sequence_gradient("bptt", cell, params, xs_, ys_, mask_, truncation=K)
        oracle = tbptt_oracle(cell, params_np, xs, ys, mask, K)
        for k in params:
            assert_close(g[k], oracle[k], xp=xp, device=device, rtol=0,
                         atol=1e-7 * np.max(np.abs(oracle[k])))
        assert max(relative_error(g[k], full[k]) for k in cell.blocks) > 1e-3
        assert_close(g["V"], full["V"], xp=xp, device=device, rtol=1e-12)
