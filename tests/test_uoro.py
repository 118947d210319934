"""UORO (``uoro``): one rank-one estimate over all recurrent blocks.

Oracles: exact RTRL one step from the dense estimate (enumerating all 2^n sign vectors
through the real ``update``), a dense re-derivation of one step from H_t and F_t (no JVP or
VJP), exact RTRL over a whole sequence (statistical, fixed seeds) and the NumPy result on
the other backends.
"""

import numpy as np
import pytest
from estimator_helpers import (
    draw_signs,
    every_signs,
    exact_step,
    immediate,
    make_cell,
    reset,
    small_problem,
    warm_start,
)

import minirtrl
from minirtrl import rtrl, testing, uoro
from minirtrl.testing import assert_close


# ---- helpers (NumPy float64) ----------------------------------------------------------
def all_sign_vectors(B, n):
    """Every ν ∈ {±1}^n, the same for every sample: (2^n, B, n)."""
    return np.stack([signs["nu"] for signs in every_signs({"nu": (B, n)})])


# ---- one step ------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [0, 3])
@pytest.mark.parametrize("depth", [1, 2])
def test_one_step_unbiased_by_enumeration(depth, steps):
    """Mean over all 2^n sign vectors = H G + F (steps = 0: from the zero state)."""
    cell, params = make_cell(depth, n=4)
    state, layers = warm_start(uoro, cell, params, steps=steps)
    G_prev = uoro.influence(cell, state, xp=np)
    if steps:
        assert all(np.abs(G).max() > 1e-3 for G in G_prev.values())
    target = exact_step(cell, params, G_prev, layers)
    outs = [
        uoro.influence(cell, uoro.update(cell, params, state, layers, {"nu": nu}, xp=np), xp=np)
        for nu in all_sign_vectors(2, cell.n_hidden)
    ]
    for name in cell.blocks:
        samples = np.stack([o[name] for o in outs])
        scale = np.abs(target[name]).max()
        assert_close(samples.mean(0), target[name], rtol=1e-12, atol=1e-14 * scale)
        errors = np.abs(samples - target[name]).max(axis=(1, 2, 3, 4))
        assert errors.min() > 1e-3 * scale  # no single sign vector is exact


@pytest.mark.parametrize("depth", [1, 2])
def test_one_step_matches_dense_formula(depth):
    """s̃, θ̃ after one step, re-derived from dense H_t and F_t (no JVP/VJP)."""
    cell, params = make_cell(depth, n=5)
    state, layers = warm_start(uoro, cell, params, steps=4, B=3)
    nu = np.random.default_rng(9).choice([-1.0, 1.0], size=(3, cell.n_hidden))
    new = uoro.update(cell, params, state, layers, {"nu": nu}, xp=np)
    H, _ = cell.influence_pieces(params, layers, xp=np)
    F = immediate(cell, params, layers)
    s_f = np.einsum("bij,bj->bi", H, state.s)
    dtheta = [np.einsum("bn,bnij->bij", nu, F[k]) for k in cell.blocks]
    theta_norm = np.sqrt(sum((th**2).sum((1, 2)) for th in state.theta))
    dtheta_norm = np.sqrt(sum((dt**2).sum((1, 2)) for dt in dtheta))
    rho0 = np.sqrt(theta_norm / np.linalg.norm(s_f, axis=1))
    rho1 = np.sqrt(dtheta_norm / np.sqrt(cell.n_hidden))
    assert_close(new.s, rho0[:, None] * s_f + rho1[:, None] * nu, rtol=1e-12)
    for l in range(cell.depth):
        expected = state.theta[l] / rho0[:, None, None] + dtheta[l] / rho1[:, None, None]
        assert_close(new.theta[l], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("depth", [1, 2])
def test_start_from_zero_is_finite_rank_one_of_the_signs(depth):
    """Zero state (guards ρ0 = 1): the estimate is ν ⊗ (ν^T F_t), for every ν."""
    cell, params = make_cell(depth, n=4)
    state, layers = warm_start(uoro, cell, params, steps=0)
    F = immediate(cell, params, layers)
    for nu in all_sign_vectors(2, cell.n_hidden)[::5]:
        new = uoro.update(cell, params, state, layers, {"nu": nu}, xp=np)
        assert np.all(np.isfinite(new.s))
        dense = uoro.influence(cell, new, xp=np)
        for k in cell.blocks:
            expected = nu[:, :, None, None] * np.einsum("bn,bnij->bij", nu, F[k])[:, None]
            assert_close(dense[k], expected, rtol=1e-12, atol=1e-16)


def test_grads_contract_the_dense_influence():
    cell, params = make_cell(2)
    state, _ = warm_start(uoro, cell, params, B=3)
    c = np.random.default_rng(5).standard_normal((3, cell.n_hidden))
    dense = uoro.influence(cell, state, xp=np)
    g = uoro.grads(cell, state, c, xp=np)
    for name in cell.blocks:
        assert_close(g[name], np.einsum("bn,bnij->ij", c, dense[name]), rtol=1e-12)


def test_rank_and_sign_shapes():
    cell, _ = make_cell(2)
    assert uoro.sign_shapes(cell, 3, 1) == {"nu": (3, 4)}
    with pytest.raises(ValueError, match="rank"):
        minirtrl.online("uoro", cell, 2)


# ---- whole sequences ----------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2])
def test_sequence_gradient_is_unbiased(depth):
    """Mean of N seeded estimates vs exact RTRL, element-wise within 5 standard errors.

    Deterministic (seeds 0..N-1). In addition the mean squared z-score over all entries
    must stay near its null value 1 (below 4).
    """
    N = 300
    cell, params, xs, ys, mask = small_problem(depth)
    _, exact = minirtrl.sequence_gradient("rtrl", cell, params, xs, ys, mask)
    runs = [
        minirtrl.sequence_gradient("uoro", cell, params, xs, ys, mask, seed=s)[1]
        for s in range(N)
    ]
    z2 = []
    for name in cell.blocks:
        est = np.stack([g[name] for g in runs])
        mean, se = est.mean(0), est.std(0, ddof=1) / np.sqrt(N)
        scale = np.abs(exact[name]).max()
        assert np.all(np.abs(mean - exact[name]) <= 5 * se + 1e-12 * scale)
        z2.append(((mean - exact[name]) / se).ravel() ** 2)
        assert np.abs(est[0] - exact[name]).max() > 1e-3 * scale  # one estimate is not exact
    # null spread of this statistic, measured over 40 disjoint blocks of 300 seeds
    # (uoro/kf, depth 1/2): 0.4 to 2.2; a bias of a few standard errors pushes it far above
    assert np.mean(np.concatenate(z2)) < 4.0
    for g in runs[:5]:  # the readout is exact
        assert_close(g["V"], exact["V"], rtol=1e-12)


# ---- backends, dtypes, resets, long runs --------------------------------------------------
def test_same_seed_same_estimate_on_every_backend(backend, to_xp):
    xp, device = backend.xp, backend.device
    cell, params, xs, ys, mask = small_problem(2)
    loss_np, ref = minirtrl.sequence_gradient("uoro", cell, params, xs, ys, mask, seed=11)
    p_xp = {k: to_xp(v) for k, v in params.items()}
    loss, got = minirtrl.sequence_gradient(
        "uoro", cell, p_xp, to_xp(xs), to_xp(ys), to_xp(mask), seed=11
    )
    assert_close(loss, loss_np, xp=xp, device=device)
    for k in ref:
        assert_close(got[k], ref[k], xp=xp, device=device)


def test_float32_is_finite_and_close_to_float64(backend, to_xp):
    xp = backend.xp
    cell, params, xs, ys, mask = small_problem(2)
    _, ref = minirtrl.sequence_gradient("uoro", cell, params, xs, ys, mask, seed=4)
    p32 = {k: to_xp(v, dtype=xp.float32) for k, v in params.items()}
    _, got = minirtrl.sequence_gradient(
        "uoro", cell, p32, to_xp(xs, dtype=xp.float32), to_xp(ys), to_xp(mask), seed=4
    )
    for k in ref:
        assert got[k].dtype == xp.float32
        assert bool(xp.all(xp.isfinite(got[k])))
        assert_close(got[k], ref[k], xp=xp, device=backend.device, rtol=1e-3,
                     atol=1e-4 * np.abs(ref[k]).max(),
                     check_dtype=False)  # float32 against the float64 reference


def test_state_shapes_and_reset_zeroes_chosen_streams(backend, to_xp, host):
    xp, device = backend.xp, backend.device
    cell = minirtrl.RHN(3, 4, 3, depth=2)
    params = cell.init(0, xp=xp, init_scale=0.5, device=device)
    B = 3
    xs, _, _ = testing.random_problem(cell, 4, B, seed=2)
    _, _, st = minirtrl.methods.run(minirtrl.online("uoro", cell), params, to_xp(xs), xp=xp)
    state = st.est
    assert tuple(state.s.shape) == (B, 4) and state.s.dtype == xp.float64
    for l, th in enumerate(state.theta, start=1):
        assert tuple(th.shape) == (B, 8, cell.width(l)) and th.dtype == xp.float64
    new = reset(state, to_xp(np.array([1.0, 0.0, 1.0])))
    for old_arr, new_arr in zip((state.s,) + state.theta, (new.s,) + new.theta):
        o, nw = host(old_arr), host(new_arr)
        assert_close(nw[1], 0.0, rtol=0)
        assert np.abs(o[1]).max() > 0
        assert_close(nw[[0, 2]], o[[0, 2]], rtol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_long_run_stays_finite_and_restarts_exactly(dtype):
    """200 steps, moderate random weights, depth 2, a stream reset mid-run (zero-norm guard)."""
    cell = minirtrl.RHN(5, 8, 3, depth=2)
    params = cell.init(3, xp=np, dtype=getattr(np, dtype), init_scale=1.0)
    dt = params["V"].dtype
    B = 3
    rng = np.random.default_rng(0)
    state = uoro.init(cell, B, xp=np, dtype=dt)
    exact = rtrl.init(cell, B, xp=np, dtype=dt)
    s = np.zeros((B, cell.n_hidden), dtype=dt)
    keep = np.array([1.0, 0.0, 1.0], dtype=dt)
    for t in range(200):
        if t == 100:
            state, exact, s = reset(state, keep), reset(exact, keep), s * keep[:, None]
        s, layers = cell.step(params, s, rng.standard_normal((B, cell.n_in)).astype(dt), xp=np)
        noise = draw_signs(rng, uoro.sign_shapes(cell, B), xp=np, dtype=dt)
        state = uoro.update(cell, params, state, layers, noise, xp=np)
        exact = rtrl.update(cell, params, exact, layers, xp=np)
        if t == 100:  # the reset stream restarted from zero: ν ⊗ (ν^T F_t), F_t = exact G_t
            nu = noise["nu"][1]
            est, ex = uoro.influence(cell, state, xp=np), rtrl.influence(cell, exact, xp=np)
            for k in cell.blocks:
                expected = nu[:, None, None] * np.tensordot(nu, ex[k][1], axes=1)[None]
                assert_close(
                    est[k][1], expected, rtol=1e-4 if dtype == "float32" else 1e-12,
                    atol=1e-6 * np.abs(expected).max(),
                )
    c = rng.standard_normal((B, cell.n_hidden)).astype(dt)
    g = uoro.grads(cell, state, c, xp=np)
    for arr in (state.s,) + state.theta + tuple(g.values()):
        assert arr.dtype == dt and np.all(np.isfinite(arr))
    assert np.abs(state.s).max() > 0
