"""Every hand-written Jacobian of the RHN cell against central finite differences (float64)."""

import numpy as np
import pytest
from estimator_helpers import jvp_state

from minirtrl import RHN, readout
from minirtrl.cells import rhn
from minirtrl.testing import assert_close, numerical_jacobian

B = 2
TOL = 1e-7  # relative; central differences with eps 1e-6 are good to ~1e-9 here


def setup(depth, seed=0):
    cell = RHN(n_in=3, n_hidden=4, n_out=5, depth=depth)
    params = cell.init(seed, xp=np, init_scale=0.6, gate_bias=-0.5)
    rng = np.random.default_rng(seed + 1)
    s_prev = rng.standard_normal((B, cell.n_hidden)) * 0.5
    x = rng.standard_normal((B, cell.n_in))
    return cell, params, s_prev, x


def per_sample(jac):
    """(B, n, B, m) Jacobian of a batched map (B, m) -> (B, n) -> per-sample blocks (B, n, m)."""
    return np.stack([jac[b, :, b, :] for b in range(jac.shape[0])])


def assert_fd_close(a, fd):
    """``a`` equals the finite-difference value ``fd`` to TOL relative to max|fd|."""
    assert_close(a, fd, rtol=0, atol=TOL * np.max(np.abs(fd)))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_D_is_ds_dz(depth):
    cell, params, s_prev, x = setup(depth)
    _, layers = cell.step(params, s_prev, x, xp=np)
    n = cell.n_hidden
    for layer in layers:
        z = np.concatenate([np.arctanh(layer.h), np.log(layer.tau / (1 - layer.tau))], axis=1)

        def s_of_z(z, sp=layer.s_prev):
            tau = 1 / (1 + np.exp(-z[:, n:]))
            return np.tanh(z[:, :n]) * tau + sp * (1 - tau)

        fd = per_sample(numerical_jacobian(s_of_z, z))  # (B, n, 2n)
        dh, dg = rhn.d_diagonals(layer)
        D = np.concatenate([np.stack([np.diag(v) for v in dh]), np.stack([np.diag(v) for v in dg])],
                           axis=2)
        assert_fd_close(D, fd)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_K_is_layer_state_jacobian(depth):
    cell, params, s_prev, x = setup(depth)
    _, layers = cell.step(params, s_prev, x, xp=np)
    for l, layer in enumerate(layers, start=1):
        W = params[f"W{l}"]
        n_x = cell.n_in if l == 1 else 0

        def layer_out(s, l=l, W=W, a=layer.a, n_x=n_x):
            ones = np.ones((s.shape[0], 1))
            a = np.concatenate([a[:, :n_x], s, ones], axis=1)
            z = a @ W.T
            tau = 1 / (1 + np.exp(-z[:, cell.n_hidden :]))
            return np.tanh(z[:, : cell.n_hidden]) * tau + s * (1 - tau)

        fd = per_sample(numerical_jacobian(layer_out, layer.s_prev))
        K = rhn.layer_jacobian(cell, params, l, layer, xp=np)
        assert_fd_close(K, fd)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_H_and_P_D(depth):
    cell, params, s_prev, x = setup(depth)
    _, layers = cell.step(params, s_prev, x, xp=np)
    H, pds = cell.influence_pieces(params, layers, xp=np)
    fd_H = per_sample(numerical_jacobian(lambda s: cell.step(params, s, x, xp=np)[0], s_prev))
    assert_fd_close(H, fd_H)
    # F_t^l = a_l ⊗ (P_l D_l): ds_t/dW_l[i, j] = PD[:, i] a[j], with s_{t-1} held fixed
    for l, (PD, layer) in enumerate(zip(pds, layers), start=1):
        name = f"W{l}"

        def s_of_W(W, name=name):
            return cell.step({**params, name: W}, s_prev, x, xp=np)[0]

        fd_F = numerical_jacobian(s_of_W, params[name])  # (B, n, 2n, k_l)
        F = PD[:, :, :, None] * layer.a[:, None, None, :]
        assert_fd_close(F, fd_F)


@pytest.mark.parametrize("depth", [1, 3])
def test_jvp_and_vjp_match_H(depth):
    cell, params, s_prev, x = setup(depth)
    _, layers = cell.step(params, s_prev, x, xp=np)
    H, pds = cell.influence_pieces(params, layers, xp=np)
    rng = np.random.default_rng(5)
    v, g = rng.standard_normal((2, B, cell.n_hidden))
    assert_close(jvp_state(cell, params, layers, v), (H @ v[:, :, None])[:, :, 0], rtol=1e-12,
                 atol=1e-14)
    g_prev, dzs = cell.vjp(params, layers, g, xp=np)
    assert_close(g_prev, (g[:, None, :] @ H)[:, 0, :], rtol=1e-12, atol=1e-14)
    for dz, PD in zip(dzs, pds):  # dz_l = g^T P_l D_l
        assert_close(dz, (g[:, None, :] @ PD)[:, 0, :], rtol=1e-12, atol=1e-14)


def test_readout_gradients():
    cell, params, s, _ = setup(1)
    rng = np.random.default_rng(3)
    y = rng.integers(0, cell.n_out, size=B)
    mask = np.array([1.0, 0.0])
    V = params["V"]
    loss, dV, c = readout.loss_and_grad(V, s, y, mask, xp=np)
    # the loss itself, from its definition
    z = np.concatenate([s, np.ones((B, 1))], axis=1) @ V.T
    expected = (np.log(np.sum(np.exp(z), axis=1)) - z[np.arange(B), y]) * mask
    assert_close(loss, expected, rtol=1e-13)
    total = lambda V_, s_: np.sum(readout.loss_and_grad(V_, s_, y, mask, xp=np)[0])  # noqa: E731
    assert_fd_close(dV, numerical_jacobian(lambda w: total(w, s), V))
    assert_fd_close(c, numerical_jacobian(lambda s_: total(V, s_), s))


def test_init_layout_and_gate_bias():
    cell = RHN(n_in=3, n_hidden=4, n_out=5, depth=2)
    p = cell.init(7, xp=np, init_scale=0.01, gate_bias=-2.0)
    assert {k: v.shape for k, v in p.items()} == {"W1": (8, 8), "W2": (8, 5), "V": (5, 5)}
    for name in ("W1", "W2"):
        assert_close(p[name][4:, -1], -2.0, rtol=0)  # gate rows, bias column
        assert np.all(np.abs(p[name][:4, -1]) < 0.06)  # candidate biases stay random
    q = cell.init(7, xp=np)
    assert_close(p["V"], q["V"], rtol=0)
    assert 0.005 < np.std(np.concatenate([v.ravel() for v in q.values()])) < 0.015
