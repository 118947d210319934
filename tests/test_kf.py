"""KF-RTRL (``kf``) and the mean of r KF-RTRL chains (``kf-avg``).

Oracles: exact RTRL one step from the dense estimate (enumerating every sign pattern
through the real ``update``), the closed-form per-step variance (``docs/algorithms.md`` §5), exact
RTRL over a whole sequence (statistical, fixed seeds) and the NumPy result on the other
backends.
"""

import numpy as np
import pytest
from estimator_helpers import (
    draw_signs,
    every_signs,
    exact_step,
    make_cell,
    reset,
    small_problem,
    warm_start,
)

import minirtrl
from minirtrl import kf, rtrl, testing
from minirtrl.testing import assert_close

MODULES = {"kf": kf, "kf-avg": kf}  # kf-avg is the kf module with r > 1 chains


# ---- helpers (NumPy float64) ----------------------------------------------------------
def sign_patterns(cell, B, r):
    """Every signs dict of ``r`` chains on all blocks (the same pattern for every sample)."""
    return every_signs(kf.sign_shapes(cell, B, r))


def enumerate_update(module, cell, params, state, layers, r):
    """The dense influence after one step, for every sign pattern: {name: (P, B, n, 2n, k)}."""
    B = layers[0].a.shape[0]
    outs = [
        module.influence(cell, module.update(cell, params, state, layers, noise, xp=np), xp=np)
        for noise in sign_patterns(cell, B, r)
    ]
    return {k: np.stack([o[k] for o in outs]) for k in cell.blocks}


def closed_form_variance(H, A, u, a, PD):
    """docs/algorithms.md §5: 2(‖u‖‖HA‖‖a‖‖PD‖ + <u,a><HA,PD>) per sample, one chain."""
    HA = H @ A  # (B, n, 2n)
    nu, nHA = np.sqrt((u**2).sum(1)), np.sqrt((HA**2).sum((1, 2)))
    na, nPD = np.sqrt((a**2).sum(1)), np.sqrt((PD**2).sum((1, 2)))
    return 2 * (nu * nHA * na * nPD + (u * a).sum(1) * (HA * PD).sum((1, 2)))


# ---- one step, by enumeration -----------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("method, rank", [("kf", None), ("kf-avg", 2)])
def test_one_step_unbiased_by_enumeration(method, rank, depth):
    module, r = MODULES[method], rank or 1
    cell, params = make_cell(depth)
    state, layers = warm_start(module, cell, params, rank=r)
    G_prev = module.influence(cell, state, xp=np)
    assert all(np.abs(G).max() > 1e-3 for G in G_prev.values())  # a nonzero past
    target = exact_step(cell, params, G_prev, layers)
    samples = enumerate_update(module, cell, params, state, layers, r)
    for name in cell.blocks:
        scale = np.abs(target[name]).max()
        assert_close(
            samples[name].mean(0), target[name], rtol=1e-12, atol=1e-14 * scale
        )
        # and no single pattern is exact: the step is genuinely random
        errors = np.abs(samples[name] - target[name]).max(axis=(1, 2, 3, 4))
        assert errors.min() > 1e-3 * scale


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("method, rank", [("kf", None), ("kf-avg", 2)])
def test_one_step_variance_matches_closed_form(method, rank, depth):
    module, r = MODULES[method], rank or 1
    cell, params = make_cell(depth)
    state, layers = warm_start(module, cell, params, rank=r, steps=4)
    H, pds = cell.influence_pieces(params, layers, xp=np)
    samples = enumerate_update(module, cell, params, state, layers, r)
    for l, name in enumerate(cell.blocks):
        dev = samples[name] - samples[name].mean(0)
        measured = (dev**2).sum(axis=(2, 3, 4)).mean(0)  # E‖Ĝ - EĜ‖², per sample (B,)
        u, A = state.u[l], state.A[l]
        # independent chains: the variance of their mean is (1/r²) Σ_i Var_i
        expected = sum(
            closed_form_variance(H, A[:, i], u[:, i], layers[l].a, pds[l]) for i in range(r)
        ) / r**2
        assert np.all(expected > 1e-6)
        assert_close(measured, expected, rtol=1e-10)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("method, rank", [("kf", None), ("kf-avg", 2)])
def test_exact_start_is_deterministic_and_exact(method, rank, depth):
    module, r = MODULES[method], rank or 1
    cell, params = make_cell(depth)
    B = 2
    state = module.init(cell, B, rank=r, xp=np, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((B, cell.n_in))
    _, layers = cell.step(params, np.zeros((B, cell.n_hidden)), x, xp=np)
    _, pds = cell.influence_pieces(params, layers, xp=np)
    n = cell.n_hidden
    zero = {k: np.zeros((B, n) + params[k].shape) for k in cell.blocks}
    F = exact_step(cell, params, zero, layers)  # a_l ⊗ P_l D_l
    for noise in sign_patterns(cell, B, r):
        new = module.update(cell, params, state, layers, noise, xp=np)
        for l in range(len(cell.blocks)):
            for i in range(r):  # every chain: u = a_l, A = P_l D_l exactly
                assert_close(new.u[l][:, i], layers[l].a, rtol=0)
                assert_close(new.A[l][:, i], pds[l], rtol=0)
        dense = module.influence(cell, new, xp=np)
        for name in cell.blocks:
            assert_close(dense[name], F[name], rtol=1e-15, atol=0)


def test_kf_step_guards_select_the_exact_step():
    """The zero-norm branches of ``kf_step``: a zero old or new term is carried exactly."""
    rng = np.random.default_rng(0)
    B, r, n, k = 3, 2, 4, 5
    u, A = rng.standard_normal((B, r, k)), rng.standard_normal((B, r, n, 2 * n))
    H, a = rng.standard_normal((B, n, n)), rng.standard_normal((B, k))
    PD = rng.standard_normal((B, n, 2 * n))
    signs = -np.ones((B, r, 2))
    # new term zero (PD = 0): u, A = u, H A, whatever the signs
    u1, A1 = kf.kf_step(u, A, H, a, np.zeros_like(PD), signs, xp=np)
    assert_close(u1, u, rtol=0)
    assert_close(A1, H[:, None] @ A, rtol=1e-15)
    # old term zero in chain 0 (A = 0 there, u not): that chain restarts at a, PD
    A0 = np.concatenate([np.zeros_like(A[:, :1]), A[:, 1:]], axis=1)
    u2, A2 = kf.kf_step(u, A0, H, a, PD, signs, xp=np)
    assert_close(u2[:, 0], a, rtol=0)
    assert_close(A2[:, 0], PD, rtol=0)
    p1 = np.sqrt(np.sqrt(((H @ A[:, 1]) ** 2).sum((1, 2))) / np.sqrt((u[:, 1] ** 2).sum(1)))
    p2 = np.sqrt(np.sqrt((PD**2).sum((1, 2))) / np.sqrt((a**2).sum(1)))
    assert_close(u2[:, 1], -p1[:, None] * u[:, 1] - p2[:, None] * a, rtol=1e-14)
    # both zero: the estimate is exactly zero and finite
    u3, A3 = kf.kf_step(np.zeros_like(u), A, H, a, np.zeros_like(PD), signs, xp=np)
    assert np.all(np.isfinite(u3))
    assert_close(A3, 0.0, rtol=0)


def test_grads_contract_the_dense_influence():
    cell, params = make_cell(2)
    state, _ = warm_start(kf, cell, params, rank=3, B=3)
    c = np.random.default_rng(5).standard_normal((3, cell.n_hidden))
    dense = kf.influence(cell, state, xp=np)
    g = kf.grads(cell, state, c, xp=np)
    for name in cell.blocks:
        assert_close(g[name], np.einsum("bn,bnij->ij", c, dense[name]), rtol=1e-12)


# ---- whole sequences ----------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("method, rank", [("kf", None), ("kf-avg", 3)])
def test_sequence_gradient_is_unbiased(method, rank, depth):
    """Mean of N seeded estimates vs exact RTRL, element-wise within 5 standard errors.

    Deterministic (seeds 0..N-1). The bound is derived from the sample standard error; in
    addition the mean squared z-score over all entries must stay near its null value 1 (below 4).
    """
    N = 300
    cell, params, xs, ys, mask = small_problem(depth)
    _, exact = minirtrl.sequence_gradient("rtrl", cell, params, xs, ys, mask)
    runs = [
        minirtrl.sequence_gradient(method, cell, params, xs, ys, mask, seed=s, rank=rank)[1]
        for s in range(N)
    ]
    z2 = []
    for name in cell.blocks:
        est = np.stack([g[name] for g in runs])
        mean, se = est.mean(0), est.std(0, ddof=1) / np.sqrt(N)
        scale = np.abs(exact[name]).max()
        assert np.all(np.abs(mean - exact[name]) <= 5 * se + 1e-12 * scale)
        z2.append(((mean - exact[name]) / se).ravel() ** 2)
        # a single estimate is not the exact gradient
        assert np.abs(est[0] - exact[name]).max() > 1e-3 * scale
    # null spread of this statistic, measured over 40 disjoint blocks of 300 seeds
    # (uoro/kf, depth 1/2): 0.4 to 2.2; a bias of a few standard errors pushes it far above
    assert np.mean(np.concatenate(z2)) < 4.0
    for g in runs[:5]:  # the readout is exact
        assert_close(g["V"], exact["V"], rtol=1e-12)


def test_kf_avg_rank_one_is_kf():
    cell, params, xs, ys, mask = small_problem(2)
    for seed in (0, 1, 2):
        loss1, g1 = minirtrl.sequence_gradient("kf", cell, params, xs, ys, mask, seed=seed)
        loss2, g2 = minirtrl.sequence_gradient(
            "kf-avg", cell, params, xs, ys, mask, seed=seed, rank=1
        )
        assert_close(loss1, loss2, rtol=0)
        for k in g1:
            assert_close(g1[k], g2[k], rtol=0)


def test_rank_checks():
    cell, _ = make_cell(1)
    with pytest.raises(ValueError, match="rank"):
        minirtrl.online("kf", cell, 2)
    with pytest.raises(ValueError, match="rank"):
        minirtrl.online("kf-avg", cell, 0)
    assert minirtrl.online("kf-avg", cell).rank == 1 and minirtrl.online("kf", cell).rank == 1
    assert minirtrl.online("kf-avg", cell, 4).sign_shapes(2) == {"W1": (2, 4, 2)}
    assert minirtrl.online("kf", cell).sign_shapes(2) == {"W1": (2, 1, 2)}


# ---- backends, dtypes, resets, long runs --------------------------------------------------
@pytest.mark.parametrize("method, rank", [("kf", None), ("kf-avg", 3)])
def test_same_seed_same_estimate_on_every_backend(backend, to_xp, method, rank):
    xp, device = backend.xp, backend.device
    cell, params, xs, ys, mask = small_problem(2)
    loss_np, ref = minirtrl.sequence_gradient(
        method, cell, params, xs, ys, mask, seed=11, rank=rank
    )
    p_xp = {k: to_xp(v) for k, v in params.items()}
    loss, got = minirtrl.sequence_gradient(
        method, cell, p_xp, to_xp(xs), to_xp(ys), to_xp(mask), seed=11, rank=rank
    )
    assert_close(loss, loss_np, xp=xp, device=device)
    for k in ref:
        assert_close(got[k], ref[k], xp=xp, device=device)


@pytest.mark.parametrize("method, rank", [("kf", None), ("kf-avg", 2)])
def test_float32_is_finite_and_close_to_float64(backend, to_xp, method, rank):
    xp = backend.xp
    cell, params, xs, ys, mask = small_problem(2)
    _, ref = minirtrl.sequence_gradient(method, cell, params, xs, ys, mask, seed=4, rank=rank)
    p32 = {k: to_xp(v, dtype=xp.float32) for k, v in params.items()}
    _, got = minirtrl.sequence_gradient(
        method, cell, p32, to_xp(xs, dtype=xp.float32), to_xp(ys), to_xp(mask), seed=4, rank=rank
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
    B, r = 3, 2
    xs, _, _ = testing.random_problem(cell, 4, B, seed=2)
    _, _, st = minirtrl.methods.run(minirtrl.online("kf-avg", cell, r), params, to_xp(xs), xp=xp)
    state = st.est
    for l, (u, A) in enumerate(zip(state.u, state.A), start=1):
        assert tuple(u.shape) == (B, r, cell.width(l)) and tuple(A.shape) == (B, r, 4, 8)
        assert u.dtype == xp.float64 and A.dtype == xp.float64
    keep = to_xp(np.array([1.0, 0.0, 1.0]))
    new = reset(state, keep)
    for old_arr, new_arr in zip(state.u + state.A, new.u + new.A):
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
    B, r = 3, 2
    rng = np.random.default_rng(0)
    state = kf.init(cell, B, rank=r, xp=np, dtype=dt)
    exact = rtrl.init(cell, B, xp=np, dtype=dt)
    s = np.zeros((B, cell.n_hidden), dtype=dt)
    keep = np.array([1.0, 0.0, 1.0], dtype=dt)
    for t in range(200):
        if t == 100:
            state, exact, s = reset(state, keep), reset(exact, keep), s * keep[:, None]
        s, layers = cell.step(params, s, rng.standard_normal((B, cell.n_in)).astype(dt), xp=np)
        noise = draw_signs(rng, kf.sign_shapes(cell, B, r), xp=np, dtype=dt)
        state = kf.update(cell, params, state, layers, noise, xp=np)
        exact = rtrl.update(cell, params, exact, layers, xp=np)
        if t == 100:  # the reset stream restarted exactly
            est, ex = kf.influence(cell, state, xp=np), rtrl.influence(cell, exact, xp=np)
            for k in cell.blocks:
                rtol = 1e-5 if dtype == "float32" else 1e-14
                assert_close(est[k][1], ex[k][1], rtol=rtol)
    c = rng.standard_normal((B, cell.n_hidden)).astype(dt)
    g = kf.grads(cell, state, c, xp=np)
    for arr in state.u + state.A + tuple(g.values()):
        assert arr.dtype == dt and np.all(np.isfinite(arr))
    # the estimate is still of the size of the exact influence (noise bounded, not exploded)
    est, ex = kf.influence(cell, state, xp=np), rtrl.influence(cell, exact, xp=np)
    for k in cell.blocks:
        ratio = np.linalg.norm(est[k]) / np.linalg.norm(ex[k])
        assert 1e-3 < ratio < 1e3
