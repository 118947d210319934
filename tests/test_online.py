"""The online step API (``minirtrl.online``): its loop is ``sequence_gradient`` bit for bit;
each sign multiplies what the documentation says (checked against the papers' updates
written here in plain NumPy); a dense Williams–Zipser RTRL written in this file agrees
step by step; bad arguments are refused, naming them; the core copied alone runs it."""

import shutil

import numpy as np
import pytest
from test_packaging import COMMANDS, PKG, run

import minirtrl
from minirtrl.methods import RANKED
from minirtrl.testing import assert_close, random_problem

B, T = 3, 5
INFLUENCE = ["rtrl", "uoro", "kf", pytest.param("ok", marks=pytest.mark.linalg), "kf-avg"]
CELLS = {
    "rhn1": lambda: minirtrl.RHN(3, 4, 5, depth=1),
    "rhn2": lambda: minirtrl.RHN(3, 4, 5, depth=2),
    "vanilla": lambda: minirtrl.VanillaRNN(3, 4, 5, alpha=0.7),
}


def rank_of(method):
    return 2 if method in RANKED else None


def problem(cell_name, seed=0):
    cell = CELLS[cell_name]()
    params = cell.init(seed, xp=np, init_scale=0.5)
    xs, ys, mask = random_problem(cell, T, B, seed=seed + 1)
    return cell, params, xs, ys, mask


# ---- the loop is sequence_gradient ----------------------------------------------------------
@pytest.mark.parametrize("cell_name", sorted(CELLS))
@pytest.mark.parametrize("method", INFLUENCE)
def test_step_loop_is_sequence_gradient_bitwise(backend, to_xp, method, cell_name):
    cell, p_np, xs, ys, mask = problem(cell_name)
    p = {k: to_xp(v) for k, v in p_np.items()}
    xs_, ys_, mask_ = to_xp(xs), to_xp(ys), to_xp(mask)
    seed, rank = 7, rank_of(method)
    loss, grads = minirtrl.sequence_gradient(method, cell, p, xs_, ys_, mask_, seed=seed, rank=rank)

    xp, device, dtype = backend.xp, backend.device, p["V"].dtype
    algo = minirtrl.online(method, cell, rank)
    rng = np.random.default_rng(seed)
    state = algo.init(B, xp=xp, dtype=dtype, device=backend.device)
    total, summed = None, None
    for t in range(T):
        signs = algo.draw_signs(rng, B, xp=xp, dtype=dtype, device=backend.device)
        state, l_t, g_t = algo.step(p, state, xs_[t, ...], ys_[t, ...], mask_[t, ...], signs=signs)
        total = l_t if total is None else total + l_t
        summed = g_t if summed is None else {k: summed[k] + g_t[k] for k in summed}
    assert_close(xp.sum(total), loss, xp=xp, device=device, rtol=0, atol=0)
    assert sorted(summed) == sorted(grads)
    for k in grads:
        assert_close(summed[k], grads[k], xp=xp, device=device, rtol=0, atol=0)
    if method == "rtrl":
        G = minirtrl.exact_influence(cell, p, xs_)
        for k, v in algo.influence(state).items():
            assert_close(v, G[k], xp=xp, device=device, rtol=0, atol=0)


def test_influence_alone_without_targets():
    cell, p, xs, ys, _mask = problem("rhn2")
    algo = minirtrl.online("kf", cell)
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    with_y, without = algo.init(B), algo.init(B)
    for t in range(T):
        with_y, _, _ = algo.step(p, with_y, xs[t], ys[t], signs=algo.draw_signs(rng1, B))
        without, loss, grads = algo.step(p, without, xs[t], None, signs=algo.draw_signs(rng2, B))
        assert loss is None and grads is None
    for k, v in algo.influence(without).items():
        assert_close(v, algo.influence(with_y)[k], rtol=0)


# ---- what each sign multiplies ----------------------------------------------------------------
def vanilla_pieces(cell, p, s_prev, x):
    """a, H_t, M_t (= D) of the vanilla RNN from its equations, plain NumPy."""
    n, n_in, alpha = cell.n_hidden, cell.n_in, cell.alpha
    a = np.concatenate([x, s_prev, np.ones((x.shape[0], 1))], axis=1)
    d = alpha * (1 - np.tanh(a @ p["W1"].T) ** 2)
    H = (1 - alpha) * np.eye(n) + d[:, :, None] * p["W1"][None, :, n_in:n_in + n]
    return a, H, d[:, :, None] * np.eye(n)


def warm(algo, p, xs, ys, steps=3, seed=4):
    state, rng = algo.init(B), np.random.default_rng(seed)
    for t in range(steps):
        state, _, _ = algo.step(p, state, xs[t], ys[t], signs=algo.draw_signs(rng, B))
    return state


def test_sign_shapes():
    cell = minirtrl.RHN(3, 4, 5, depth=2)
    assert minirtrl.online("rtrl", cell).sign_shapes(B) == {}
    assert minirtrl.online("uoro", cell).sign_shapes(B) == {"nu": (B, 4)}
    assert minirtrl.online("kf", cell).sign_shapes(B) == {"W1": (B, 1, 2), "W2": (B, 1, 2)}
    assert minirtrl.online("kf-avg", cell, 3).sign_shapes(B) == {"W1": (B, 3, 2), "W2": (B, 3, 2)}
    assert minirtrl.online("ok", cell, 3).sign_shapes(B) == {"W1": (B, 4), "W2": (B, 4)}


def test_kf_signs_are_c1_on_the_carried_term_and_c2_on_the_new_one():
    cell, p, xs, ys, _ = problem("vanilla")
    algo = minirtrl.online("kf-avg", cell, 2)
    state = warm(algo, p, xs, ys)
    u, A = state.est.u[0], state.est.A[0]  # (B, r, k), (B, r, n, n)
    a, H, M = vanilla_pieces(cell, p, state.s, xs[3])
    signs = np.array([[[1, -1], [-1, -1]], [[-1, 1], [1, 1]], [[1, 1], [-1, 1]]], dtype=float)
    new, _, _ = algo.step(p, state, xs[3], ys[3], signs={"W1": signs})
    HA = np.einsum("bij,brjm->brim", H, A)
    p1 = (np.sqrt((HA**2).sum((2, 3))) / np.sqrt((u**2).sum(2))) ** 0.5  # (B, r)
    p2 = (np.sqrt((M**2).sum((1, 2))) / np.sqrt((a**2).sum(1))) ** 0.5  # (B,)
    c1, c2 = signs[..., 0], signs[..., 1]
    u_new = (c1 * p1)[..., None] * u + (c2 * p2[:, None])[..., None] * a[:, None, :]
    A_new = (c1 / p1)[..., None, None] * HA + (c2 / p2[:, None])[..., None, None] * M[:, None]
    assert_close(new.est.u[0], u_new, rtol=1e-12)
    assert_close(new.est.A[0], A_new, rtol=1e-12)


def test_uoro_signs_are_nu():
    cell, p, xs, ys, _ = problem("vanilla")
    algo = minirtrl.online("uoro", cell)
    state = warm(algo, p, xs, ys)
    s_t, (theta,) = state.est.s, state.est.theta  # (B, n), (B, n, k)
    a, H, M = vanilla_pieces(cell, p, state.s, xs[3])
    nu = np.array([[1, -1, 1, 1], [-1, -1, 1, -1], [1, 1, -1, 1]], dtype=float)
    new, _, _ = algo.step(p, state, xs[3], ys[3], signs={"nu": nu})
    s_f = np.einsum("bij,bj->bi", H, s_t)
    dtheta = np.einsum("bi,bim,bk->bmk", nu, M, a)  # ν^T F
    rho0 = (np.sqrt((theta**2).sum((1, 2))) / np.sqrt((s_f**2).sum(1))) ** 0.5
    rho1 = (np.sqrt((dtheta**2).sum((1, 2))) / np.sqrt((nu**2).sum(1))) ** 0.5
    assert_close(new.est.s, rho0[:, None] * s_f + rho1[:, None] * nu, rtol=1e-12)
    expected = theta / rho0[:, None, None] + dtheta / rho1[:, None, None]
    assert_close(new.est.theta[0], expected, rtol=1e-12)


def ok_step_oracle(U, V, eps):
    """One r-OK reduction from the dense (r+1)-term target, per the documented sign convention.

    ``U`` (m, k), ``V`` (m, N): the stacked factors (target U^T V); ``eps`` (m,): sign j on
    the j-th singular direction, ascending, canonical pair (left vector · ΣU_a >= 0).
    With S, k, v0 of Opt:
    new = Σ_i s_i x_i ⊗ y_i − (S/(k−1)) Σ_{i≠j mixed} ε_i ε_j v0_i v0_j x_i ⊗ y_j.
    """
    m = U.shape[0]
    X, s, Yh = np.linalg.svd(U.T @ V, full_matrices=False)
    X, s, Y = X[:, :m][:, ::-1], s[:m][::-1], Yh[:m][::-1].T  # ascending
    flip = np.where(U.sum(0) @ X < 0, -1.0, 1.0)
    X, Y = X * flip, Y * flip
    k = max(j for j in range(2, m + 1) if (j - 1) * s[j - 1] <= s[:j].sum())
    S = s[:k].sum()
    v0 = np.zeros(m)
    v0[:k] = np.sqrt(1 - (k - 1) * s[:k] / S)
    C = np.diag(s) - (S / (k - 1)) * np.outer(eps * v0, eps * v0) * (1 - np.eye(m))
    return X @ C @ Y.T  # (k, N)


def test_ok_signs_are_per_ascending_singular_direction_with_canonical_pairs():
    cell, p, xs, ys, _ = problem("vanilla")
    r = 2
    algo = minirtrl.online("ok", cell, r)
    state = warm(algo, p, xs, ys, steps=2)
    u, A = state.est.u[0], state.est.A[0]  # (B, r, k), (B, r, n, n)
    a, H, M = vanilla_pieces(cell, p, state.s, xs[2])
    eps = np.array([[1, 1, -1], [-1, 1, 1], [1, -1, -1]], dtype=float)
    new, _, _ = algo.step(p, state, xs[2], ys[2], signs={"W1": eps})
    dense = algo.influence(new)["W1"]  # (B, n, n, k)
    n = cell.n_hidden
    for b in range(B):
        U = np.concatenate([u[b], a[b][None]])  # (r+1, k)
        V = np.concatenate([np.reshape(H[b] @ A[b], (r, n * n)), np.reshape(M[b], (1, n * n))])
        want = ok_step_oracle(U, V, eps[b])  # (k, n n)
        got = np.transpose(np.reshape(dense[b], (n * n, -1)))  # (k, n n)
        assert_close(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
        # the signs in descending order would give another estimate (none of eps is a palindrome),
        # and so would the other orientation of the smallest singular pair
        assert np.abs(ok_step_oracle(U, V, eps[b][::-1]) - want).max() > 1e-3 * np.abs(want).max()
        flipped = ok_step_oracle(U, V, eps[b] * [-1, 1, 1])
        assert np.abs(flipped - want).max() > 1e-3 * np.abs(want).max()


# ---- an independent dense RTRL, step by step ---------------------------------------------------
def williams_zipser(W1, V, alpha, xs, ys, mask):
    """Dense RTRL for the leaky tanh RNN, loops over units as in Williams & Zipser (1989).

    p[k, i, j] = ds_k/dW1[i, j]; per step and sample:
    p_k ← (1−α) p_k + α (1 − h_k²) (Σ_l W1[k, n_in + l] p_l + δ_ik a_j). Returns per step
    (loss_t (B,), dW1_t, dV_t, p (B, n, n, k)).
    """
    T, Bn, n_in = xs.shape
    n = W1.shape[0]
    s = np.zeros((Bn, n))
    p = np.zeros((Bn, n, n, W1.shape[1]))
    out = []
    for t in range(T):
        loss, dW1, dV = np.zeros(Bn), np.zeros_like(W1), np.zeros_like(V)
        for b in range(Bn):
            a = np.concatenate([xs[t, b], s[b], [1.0]])
            h = np.tanh(W1 @ a)
            new_p = np.zeros_like(p[b])
            for k in range(n):
                rec = sum(W1[k, n_in + l] * p[b, l] for l in range(n))
                rec[k, :] += a
                new_p[k] = (1 - alpha) * p[b, k] + alpha * (1 - h[k] ** 2) * rec
            p[b], s[b] = new_p, (1 - alpha) * s[b] + alpha * h
            logits = V @ np.concatenate([s[b], [1.0]])
            q = np.exp(logits - logits.max())
            q /= q.sum()
            loss[b] = -np.log(q[ys[t, b]]) * mask[t, b]
            e = (q - np.eye(V.shape[0])[ys[t, b]]) * mask[t, b]  # dloss/dlogits
            dV += np.outer(e, np.concatenate([s[b], [1.0]]))
            c = e @ V[:, :n]  # dloss/ds
            dW1 += np.einsum("k,kij->ij", c, p[b])
        out.append((loss, dW1, dV, p.copy()))
    return out


@pytest.mark.parametrize("alpha", [1.0, 0.45])
def test_dense_williams_zipser_rtrl_agrees_step_by_step(alpha):
    cell = minirtrl.VanillaRNN(3, 5, 4, alpha=alpha)
    p = cell.init(11, xp=np, init_scale=0.7)
    xs, ys, mask = random_problem(cell, 7, 2, seed=12)
    oracle = williams_zipser(p["W1"], p["V"], alpha, xs, ys, mask)
    algo = minirtrl.online("rtrl", cell)
    state = algo.init(2)
    for t, (loss_o, dW1_o, dV_o, p_o) in enumerate(oracle):
        state, loss, grads = algo.step(p, state, xs[t], ys[t], mask=mask[t])
        assert_close(loss, loss_o, rtol=0, atol=1e-12)
        assert_close(grads["W1"], dW1_o, rtol=0, atol=1e-12)
        assert_close(grads["V"], dV_o, rtol=0, atol=1e-12)
        assert_close(algo.influence(state)["W1"], p_o, rtol=0, atol=1e-12)
    assert np.abs(oracle[-1][3]).max() > 0.1  # a nontrivial influence was compared


# ---- bad arguments ----------------------------------------------------------------------------
def test_online_refuses_bptt_unknown_methods_ranks_and_cells():
    cell = minirtrl.VanillaRNN(3, 4, 5)
    with pytest.raises(ValueError, match=r"bptt.*not online"):
        minirtrl.online("bptt", cell)
    with pytest.raises(ValueError, match="method"):
        minirtrl.online("sgd", cell)
    with pytest.raises(ValueError, match="rank"):
        minirtrl.online("kf", cell, 2)
    with pytest.raises(ValueError, match="rank"):
        minirtrl.online("ok", cell, 0)
    with pytest.raises(TypeError, match="cell"):
        minirtrl.online("kf", "vanilla")
    with pytest.raises(ValueError, match="batch"):
        minirtrl.online("kf", cell).init(0)


def bad_call(**change):
    cell, p, xs, ys, mask = problem("vanilla")
    algo = minirtrl.online("kf", cell)
    state = algo.init(B)
    signs = {"W1": np.ones((B, 1, 2))}
    args = dict(params=p, state=state, x=xs[0], y=ys[0], signs=signs, mask=mask[0])
    args.update(change)
    return algo.step(**args)


@pytest.mark.parametrize("change, error, pattern", [
    (dict(signs={"W1": np.ones((B, 2))}), ValueError, "signs"),
    (dict(signs={"W1": np.ones((B + 1, 1, 2))}), ValueError, "signs"),
    (dict(signs={"W1": np.zeros((B, 1, 2))}), ValueError, "signs"),
    (dict(signs={"W1": np.full((B, 1, 2), 2.0)}), ValueError, "signs"),
    (dict(signs={"W1": np.ones((B, 1, 2)), "W2": np.ones((B, 1, 2))}), ValueError, "signs"),
    (dict(signs={"nu": np.ones((B, 4))}), ValueError, "signs"),
    (dict(signs=None), ValueError, "signs"),
    (dict(signs=np.ones((B, 1, 2))), ValueError, "signs"),
    (dict(x=np.ones((B, 2))), ValueError, "x"),
    (dict(x=np.ones((1, B, 3))), ValueError, "x"),
    (dict(y=np.full(B, 9)), ValueError, "y"),
    (dict(y=np.ones(B)), TypeError, "y"),
    (dict(y=np.zeros(B + 1, dtype=np.int64)), ValueError, "y"),
    (dict(mask=np.full(B, 0.5)), ValueError, "mask"),
    (dict(state=(np.zeros((B, 4)), None)), TypeError, "state"),
    (dict(params={"W1": np.zeros((4, 8))}), ValueError, "params"),
])
def test_step_refuses_bad_arguments(change, error, pattern):
    with pytest.raises(error, match=pattern):
        bad_call(**change)


def test_step_refuses_a_state_of_another_method_batch_or_dtype():
    cell, p, xs, ys, _ = problem("vanilla")
    kf, uoro = minirtrl.online("kf", cell), minirtrl.online("uoro", cell)
    signs = {"W1": np.ones((B, 1, 2))}
    with pytest.raises(ValueError, match="state"):
        kf.step(p, uoro.init(B), xs[0], ys[0], signs=signs)
    with pytest.raises(ValueError, match="state"):
        kf.step(p, kf.init(B + 1), xs[0], ys[0], signs=signs)
    with pytest.raises(TypeError, match="state"):
        kf.step(p, kf.init(B, dtype=np.float32), xs[0], ys[0], signs=signs)
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="signs"):
        other = {"W1": strict.ones((B, 1, 2), dtype=strict.float64)}
        kf.step(p, kf.init(B), xs[0], ys[0], signs=other)


def test_rtrl_takes_no_signs():
    cell, p, xs, ys, _ = problem("rhn1")
    algo = minirtrl.online("rtrl", cell)
    a, _, _ = algo.step(p, algo.init(B), xs[0], ys[0])
    b, _, _ = algo.step(p, algo.init(B), xs[0], ys[0], signs={})
    with pytest.raises(ValueError, match="signs"):
        algo.step(p, algo.init(B), xs[0], ys[0], signs={"W1": np.ones((B, 1, 2))})
    for k, v in algo.influence(a).items():
        assert_close(v, algo.influence(b)[k], rtol=0)


# ---- the core alone, vendored -----------------------------------------------------------------
def test_core_alone_runs_the_vanilla_cell_and_the_online_step(tmp_path):
    shutil.copytree(PKG, tmp_path / "vendored_rtrl",
                    ignore=shutil.ignore_patterns("__pycache__", "drivers", *COMMANDS))
    code = (
        "import sys, numpy as np, vendored_rtrl as m\n"
        "from vendored_rtrl.testing import random_problem, expected_step, unbiasedness_z\n"
        "from vendored_rtrl.testing import assert_close\n"
        "cell = m.VanillaRNN(3, 4, 3, alpha=0.5)\n"
        "p = cell.init(0, init_scale=0.5)\n"
        "xs, ys, mask = random_problem(cell, 5, 2)\n"
        "ref = m.sequence_gradient('rtrl', cell, p, xs, ys, mask)[1]\n"
        "ok = []\n"
        "for method in m.METHODS:\n"
        "    rank = 2 if method in ('ok', 'kf-avg') else None\n"
        "    g = m.sequence_gradient(method, cell, p, xs, ys, mask, rank=rank, seed=1)[1]\n"
        "    ok.append(sorted(g) == ['V', 'W1']\n"
        "              and all(np.isfinite(v).all() for v in g.values()))\n"
        "algo = m.online('kf', cell)\n"
        "st = algo.init(2)\n"
        "signs = algo.draw_signs(np.random.default_rng(0), 2, xp=np, dtype=np.float64)\n"
        "st, loss, g = algo.step(p, st, xs[0], ys[0], signs=signs)\n"
        "e = expected_step(algo, p, st, xs[1], ys[1])\n"
        "assert_close(e.influence['W1'], e.exact['W1'], rtol=0, atol=1e-12)\n"
        "ok.append(True)\n"
        "print(all(ok), len(ok), 'minirtrl' in sys.modules)"
    )
    out = run(code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "9", "False"]  # 8 methods and the step
