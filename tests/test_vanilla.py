"""The vanilla (leaky tanh) RNN cell: its hand-written Jacobians against central finite
differences, rtrl == bptt == finite differences (and PyTorch autograd where installed),
every estimator's one-step mean by sign enumeration against exact RTRL written here in
plain NumPy, and equality with the RHN whose gate rows are zero, on every backend."""

import math

import numpy as np
import pytest

import minirtrl
from minirtrl import testing
from minirtrl.cells import rhn, vanilla
from minirtrl.methods import RANKED
from minirtrl.testing import (
    assert_close,
    numerical_gradient,
    numerical_jacobian,
    random_problem,
    sequence_loss,
    to_numpy,
)

B, T = 2, 6
TOL = 1e-7  # relative; central differences with eps 1e-6 are good to ~1e-9 here
ALPHAS = [1.0, 0.3]
ESTIMATORS = ["uoro", "kf", pytest.param("ok", marks=pytest.mark.linalg), "kf-avg"]


def setup(alpha, seed=0, n_in=3, n=4, n_out=5):
    cell = minirtrl.VanillaRNN(n_in, n, n_out, alpha=alpha)
    params = cell.init(seed, xp=np, init_scale=0.6)
    rng = np.random.default_rng(seed + 1)
    return cell, params, rng.standard_normal((B, n)) * 0.5, rng.standard_normal((B, n_in))


def per_sample(jac):
    """(B, n, B, m) Jacobian of a batched map (B, m) -> (B, n) -> per-sample blocks (B, n, m)."""
    return np.stack([jac[b, :, b, :] for b in range(jac.shape[0])])


def assert_fd_close(a, fd):
    assert_close(a, fd, rtol=0, atol=TOL * np.max(np.abs(fd)))


def rank_of(method):
    return 2 if method in RANKED else None


# ---- the step and its Jacobians ---------------------------------------------------------
@pytest.mark.parametrize("alpha", ALPHAS)
def test_step_is_the_leaky_tanh_equation(alpha):
    cell, p, s_prev, x = setup(alpha)
    s, cache = cell.step(p, s_prev, x, xp=np)
    W = p["W1"]  # columns: input (3), state (4), bias (1)
    z = x @ W[:, :3].T + s_prev @ W[:, 3:7].T + W[:, 7]
    expected = (1 - alpha) * s_prev + alpha * np.tanh(z)
    assert_close(s, expected, rtol=1e-14)
    assert len(cache) == 1
    assert_close(cache[0].a, np.concatenate([x, s_prev, np.ones((B, 1))], axis=1), rtol=0)
    assert_close(cache[0].s_prev, s_prev, rtol=0)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_D_H_and_immediate_factor_against_finite_differences(alpha):
    cell, p, s_prev, x = setup(alpha)
    _, cache = cell.step(p, s_prev, x, xp=np)
    H, (M,) = cell.influence_pieces(p, cache, xp=np)
    assert H.shape == (B, 4, 4) and M.shape == (B, 4, 4)
    # D = ds_t/dz with s_{t-1} fixed
    z = np.arctanh(cache[0].h)
    fd_D = per_sample(numerical_jacobian(lambda z_: (1 - alpha) * s_prev + alpha * np.tanh(z_), z))
    assert_fd_close(M, fd_D)  # M_t is D
    assert_fd_close(np.stack([np.diag(d) for d in vanilla.diagonal(cell, cache[0])]), fd_D)
    # H_t = ds_t/ds_{t-1}
    fd_H = per_sample(numerical_jacobian(lambda s: cell.step(p, s, x, xp=np)[0], s_prev))
    assert_fd_close(H, fd_H)
    # F_t = a ⊗ M_t: ds_t/dW1[i, j] = M[:, i] a[j], s_{t-1} fixed
    fd_F = numerical_jacobian(lambda W: cell.step({**p, "W1": W}, s_prev, x, xp=np)[0], p["W1"])
    assert_fd_close(M[:, :, :, None] * cache[0].a[:, None, None, :], fd_F)  # (B, n, n, k)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_jvp_and_vjp_match_H_and_M(alpha):
    cell, p, s_prev, x = setup(alpha)
    _, cache = cell.step(p, s_prev, x, xp=np)
    H, (M,) = cell.influence_pieces(p, cache, xp=np)
    v, g = np.random.default_rng(5).standard_normal((2, B, 4))
    Hv, (gM,) = cell.jvp_vjp(p, cache, v, g, xp=np)
    assert_close(Hv, np.einsum("bij,bj->bi", H, v), rtol=1e-12, atol=1e-14)
    assert_close(gM, np.einsum("bi,bij->bj", g, M), rtol=1e-12, atol=1e-14)
    gH, (dz,) = cell.vjp(p, cache, g, xp=np)
    assert_close(gH, np.einsum("bi,bij->bj", g, H), rtol=1e-12, atol=1e-14)
    assert_close(dz, gM, rtol=1e-12, atol=1e-14)


# ---- exact gradients ----------------------------------------------------------------------
@pytest.mark.parametrize("alpha", ALPHAS)
def test_rtrl_equals_bptt_equals_finite_differences(backend, to_xp, alpha):
    xp, device = backend.xp, backend.device
    cell, p_np, _, _ = setup(alpha)
    xs, ys, mask = random_problem(cell, T, B, seed=3)
    fd = numerical_gradient(cell, p_np, xs, ys, mask)
    expected_loss = sequence_loss(cell, p_np, xs, ys, mask)
    p = {k: to_xp(v) for k, v in p_np.items()}
    results = {m: minirtrl.sequence_gradient(m, cell, p, to_xp(xs), to_xp(ys), to_xp(mask))
               for m in ("rtrl", "bptt")}
    for method, (loss, grads) in results.items():
        assert_close(loss, expected_loss, xp=xp, device=device, rtol=1e-12, atol=0)
        for k in p:
            assert_close(grads[k], fd[k], xp=xp, device=device, rtol=0,
                         atol=1e-7 * np.max(np.abs(fd[k])), err_msg=f"{method} {k}")
    for k in p:
        bptt = results["bptt"][1][k]
        assert_close(results["rtrl"][1][k], bptt, xp=xp, device=device, rtol=0,
                     atol=1e-12 * np.max(np.abs(to_numpy(bptt))))


def test_exact_influence_is_ds_T_dW(backend, to_xp):
    xp, device = backend.xp, backend.device
    cell, p_np, _, _ = setup(0.6)
    xs, _, _ = random_problem(cell, T, B, seed=4)
    G = minirtrl.exact_influence(cell, {k: to_xp(v) for k, v in p_np.items()}, to_xp(xs))

    def s_T(W):
        s = np.zeros((B, cell.n_hidden))
        for t in range(T):
            s, _ = cell.step({**p_np, "W1": W}, s, xs[t], xp=np)
        return s

    fd = numerical_jacobian(s_T, p_np["W1"])  # (B, n, n, k)
    assert set(G) == {"W1"} and G["W1"].shape == fd.shape
    assert_close(G["W1"], fd, xp=xp, device=device, rtol=0, atol=1e-7 * np.max(np.abs(fd)))


def test_gradients_match_torch_autograd():
    torch = pytest.importorskip("torch", reason="PyTorch not installed (optional oracle)")
    cell = minirtrl.VanillaRNN(3, 6, 4, alpha=0.4)
    p = cell.init(3, xp=np, init_scale=0.5)
    xs, ys, mask = random_problem(cell, 8, 3, seed=9)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    s = torch.zeros(3, 6, dtype=torch.float64)
    one = torch.ones(3, 1, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for t in range(8):  # the cell written again from its equation, in torch
        x = torch.tensor(xs[t])
        s = 0.6 * s + 0.4 * torch.tanh(torch.cat([x, s, one], 1) @ tp["W1"].T)
        ce = torch.nn.functional.cross_entropy(torch.cat([s, one], 1) @ tp["V"].T,
                                               torch.tensor(ys[t]), reduction="none")
        total = total + (ce * torch.tensor(mask[t])).sum()
    total.backward()
    for method in ("rtrl", "bptt"):
        loss, grads = minirtrl.sequence_gradient(method, cell, p, xs, ys, mask)
        assert_close(loss, total.item(), rtol=1e-13, atol=1e-8)  # np.isclose's tolerances
        for k in p:
            ref = tp[k].grad.numpy()
            assert_close(grads[k], ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)),
                         err_msg=f"{method} {k}")


# ---- the estimators: one step by enumerating its signs --------------------------------------
def numpy_rtrl_step(cell, p, s_prev, x, G_prev):
    """Exact RTRL one step for the vanilla RNN from its equations: H G + a ⊗ D (B, n, n, k)."""
    n, n_in, alpha = cell.n_hidden, cell.n_in, cell.alpha
    a = np.concatenate([x, s_prev, np.ones((x.shape[0], 1))], axis=1)
    d = alpha * (1 - np.tanh(a @ p["W1"].T) ** 2)  # (B, n)
    H = (1 - alpha) * np.eye(n) + d[:, :, None] * p["W1"][None, :, n_in:n_in + n]
    F = np.einsum("bi,ij,bk->bijk", d, np.eye(n), a)  # F[b, i, i, k] = d_i a_k
    return np.einsum("bij,bjmk->bimk", H, G_prev) + F


@pytest.mark.parametrize("method", ["uoro", "kf", "ok", "kf-avg"])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_one_step_mean_by_sign_enumeration_is_exact_rtrl(method, alpha):
    cell, p, _, _ = setup(alpha)
    xs, ys, _mask = random_problem(cell, 5, B, seed=6, masked=False)
    algo = minirtrl.online(method, cell, rank_of(method))
    state, rng = algo.init(B), np.random.default_rng(2)
    for t in range(4):  # a random, nonzero past
        state, _, _ = algo.step(p, state, xs[t], ys[t], signs=algo.draw_signs(rng, B))
    G_prev = algo.influence(state)["W1"]
    assert np.abs(G_prev).max() > 1e-3
    target = numpy_rtrl_step(cell, p, state.s, xs[4], G_prev)
    e = testing.expected_step(algo, p, state, xs[4], ys[4])
    assert e.patterns == 2 ** sum(math.prod(s[1:]) for s in algo.sign_shapes(B).values())
    scale = np.abs(target).max()
    assert_close(e.influence["W1"], target, rtol=0, atol=1e-13 * scale)
    assert_close(e.exact["W1"], target, rtol=0, atol=1e-13 * scale)
    assert_close(e.grads["W1"], e.exact_grads["W1"], rtol=1e-12, atol=1e-14)
    # and one pattern is not exact: the step is genuinely random
    one, _, _ = algo.step(p, state, xs[4], ys[4], signs=algo.draw_signs(rng, B))
    assert np.abs(algo.influence(one)["W1"] - target).max() > 1e-3 * scale


# ---- the RHN with zero gate rows is the vanilla RNN -------------------------------------------
def rhn_twin(cell, p, bias):
    """The depth-1 RHN whose candidate rows are the vanilla W1, gate rows 0, gate bias ``bias``."""
    n, k = cell.n_hidden, p["W1"].shape[1]
    gate = np.zeros((n, k))
    gate[:, -1] = bias
    twin = {"W1": np.concatenate([p["W1"], gate]), "V": p["V"]}
    return minirtrl.RHN(cell.n_in, n, cell.n_out), twin


def test_sigmoid_of_40_is_one_in_float64():
    assert_close(rhn.sigmoid(np.float64(40.0), np), 1.0, rtol=0)
    assert_close(1.0 / (1.0 + math.exp(-40.0)), 1.0, rtol=0)  # the textbook formula agrees
    assert rhn.sigmoid(np.float64(30.0), np) < 1.0  # and 40 is not needlessly large by much


def twin_problem(alpha):
    cell, p, _, _ = setup(alpha, seed=2)
    bias = 40.0 if alpha == 1.0 else math.log(alpha / (1 - alpha))
    rcell, rp = rhn_twin(cell, p, bias)
    xs, ys, mask = random_problem(cell, T, B, seed=8)
    return cell, p, rcell, rp, xs, ys, mask


@pytest.mark.parametrize("alpha", [0.3, 0.7, 1.0])
def test_equals_rhn_with_zero_gate_rows_exact_methods(backend, to_xp, alpha):
    xp, device = backend.xp, backend.device
    cell, p, rcell, rp, xs, ys, mask = twin_problem(alpha)
    n = cell.n_hidden
    on = lambda d: {k: to_xp(v) for k, v in d.items()}  # noqa: E731
    data = [to_xp(a) for a in (xs, ys, mask)]
    for method in ("rtrl", "bptt"):
        loss, g = minirtrl.sequence_gradient(method, cell, on(p), *data)
        rloss, rg = minirtrl.sequence_gradient(method, rcell, on(rp), *data)
        assert_close(loss, rloss, xp=xp, device=device, rtol=1e-12)
        assert_close(g["W1"], rg["W1"][:n, :], xp=xp, device=device, rtol=0,
                     atol=1e-12 * float(np.abs(to_numpy(rg["W1"])).max()))
        assert_close(g["V"], rg["V"], xp=xp, device=device, rtol=0, atol=1e-12)
        if alpha == 1.0:  # τ(1 - τ) = 0 exactly: the gate rows get no gradient at all
            assert_close(rg["W1"][n:, :], 0.0, xp=xp, device=device, rtol=0)
    G = minirtrl.exact_influence(cell, on(p), data[0])["W1"]
    rG = minirtrl.exact_influence(rcell, on(rp), data[0])["W1"]
    assert_close(G, rG[:, :, :n, :], xp=xp, device=device, rtol=0,
                 atol=1e-12 * float(np.abs(to_numpy(rG)).max()))


@pytest.mark.parametrize("method", ESTIMATORS)
def test_estimators_equal_rhn_at_alpha_one_with_the_same_seed(backend, to_xp, method):
    """At α = 1 (gate bias 40) the RHN's extra gate rows carry exact zeros, so the random
    estimates coincide too: the sign shapes are the same, and so are all the norms."""
    cell, p, rcell, rp, xs, ys, mask = twin_problem(1.0)
    n, rank = cell.n_hidden, rank_of(method)
    xp, device = backend.xp, backend.device
    shapes = minirtrl.online(method, rcell, rank).sign_shapes(B)
    assert minirtrl.online(method, cell, rank).sign_shapes(B) == shapes
    on = lambda d: {k: to_xp(v) for k, v in d.items()}  # noqa: E731
    data = [to_xp(a) for a in (xs, ys, mask)]
    loss, g = minirtrl.sequence_gradient(method, cell, on(p), *data, seed=5, rank=rank)
    rloss, rg = minirtrl.sequence_gradient(method, rcell, on(rp), *data, seed=5, rank=rank)
    assert_close(loss, rloss, xp=xp, device=device, rtol=1e-12)
    scale = float(np.abs(to_numpy(rg["W1"])).max())
    assert_close(g["W1"], rg["W1"][:n, :], xp=xp, device=device, rtol=0, atol=1e-12 * scale)
    assert_close(g["V"], rg["V"], xp=xp, device=device, rtol=0, atol=1e-12)


# ---- every backend, the same numbers ----------------------------------------------------------
@pytest.mark.parametrize("method", ["bptt", "rtrl", *ESTIMATORS])
def test_same_numbers_on_every_backend(backend, to_xp, method):
    xp, device = backend.xp, backend.device
    cell = minirtrl.VanillaRNN(3, 4, 5, alpha=0.8)
    p_np = cell.init(4, xp=np, init_scale=0.5)
    p = cell.init(4, xp=backend.xp, init_scale=0.5, device=backend.device)
    for k in p:  # host draws: the same parameters everywhere
        assert_close(p[k], p_np[k], xp=xp, device=device, rtol=0)
    xs, ys, mask = random_problem(cell, 5, 3, seed=2)
    rank = rank_of(method)
    loss_np, g_np = minirtrl.sequence_gradient(method, cell, p_np, xs, ys, mask, seed=3, rank=rank)
    loss, g = minirtrl.sequence_gradient(method, cell, p, to_xp(xs), to_xp(ys), to_xp(mask),
                                         seed=3, rank=rank)
    assert_close(loss, loss_np, xp=xp, device=device, rtol=1e-12)
    for k in p:
        assert_close(g[k], g_np[k], xp=xp, device=device, rtol=1e-10, atol=1e-14)


# ---- construction -----------------------------------------------------------------------------
def test_init_layout_and_draws():
    cell = minirtrl.VanillaRNN(3, 4, 5, alpha=0.5)
    p = cell.init(7, xp=np, init_scale=0.1)
    assert {k: v.shape for k, v in p.items()} == {"W1": (4, 8), "V": (5, 5)} == cell.shapes()
    rng = np.random.default_rng(7)  # N(0, init_scale²), in the order W1, V
    assert_close(p["W1"], rng.standard_normal((4, 8)) * 0.1, rtol=0)
    assert_close(p["V"], rng.standard_normal((5, 5)) * 0.1, rtol=0)
    assert cell.blocks == ("W1",) and isinstance(cell, minirtrl.cells.Cell)
    assert minirtrl.VanillaRNN(1, 2, 3).alpha == 1.0


@pytest.mark.parametrize("alpha, error", [
    (0.0, ValueError), (-0.5, ValueError), (1.5, ValueError), (float("nan"), ValueError),
    (float("inf"), ValueError), (True, TypeError), ("0.5", TypeError), (None, TypeError),
    (1j, TypeError),
])
def test_bad_alpha_is_refused(alpha, error):
    with pytest.raises(error, match="alpha"):
        minirtrl.VanillaRNN(3, 4, 5, alpha=alpha)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="n_hidden"):
        minirtrl.VanillaRNN(3, 0, 5)
    with pytest.raises(ValueError, match="n_in"):
        minirtrl.VanillaRNN(True, 4, 5)
    with pytest.raises(ValueError, match="params"):
        cell = minirtrl.VanillaRNN(3, 4, 5)
        rp = minirtrl.RHN(3, 4, 5).init(0)  # RHN parameters do not fit
        ys = np.zeros((2, 1), dtype=np.int64)
        minirtrl.sequence_gradient("rtrl", cell, rp, np.zeros((2, 1, 3)), ys)
