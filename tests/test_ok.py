"""r-OK (``minirtrl.ok``, ``minirtrl.opt``): exact checks by enumerating every sign pattern.

Oracles: exact RTRL's one-step update of the previous dense estimate (unbiasedness),
the SVD of the dense (r+1)-term target via numpy (the Opt variance formula), the KF-RTRL
closed-form variance of KF-RTRL (1-OK <= KF), the QR form against the Gram form,
and the mean of many seeded whole-sequence estimates against exact RTRL.
"""

import numpy as np
import pytest
from estimator_helpers import draw_signs, reset

import minirtrl
from minirtrl import ok, opt, rtrl, testing
from minirtrl.cells.rhn import Cache
from minirtrl.drivers.backends import load
from minirtrl.testing import assert_close, random_problem, to_numpy

NPX, _ = load("numpy")


# ---- helpers -------------------------------------------------------------------------
def patterns(m):
    """All 2^m sign patterns of length m, (2^m, m) float64 (``testing.sign_patterns``)."""
    return np.stack([p["s"] for p in testing.sign_patterns({"s": (1, m)})])


def enumerate_noise(cell, B, r, xp, device=None):
    """Yield one noise dict per pattern index; each (sample, block) sees every pattern once.

    Sample b of block l uses pattern (p + 5b + 3l) mod 2^(r+1), so different samples and
    blocks get different signs at the same call while each still runs through all of them.
    """
    pats = patterns(r + 1)
    P = len(pats)
    for p in range(P):
        yield {
            name: xp.asarray(
                np.stack([pats[(p + 5 * b + 3 * l) % P] for b in range(B)]),
                dtype=xp.float64,
                device=device,
            )
            for l, name in enumerate(cell.blocks)
        }


def warm_state(cell, params, r, *, steps, seed, B, xp, device=None, dtype=None):
    """Run ``steps`` random r-OK steps from zero; return ``(state, s, rng)``."""
    dtype = xp.float64 if dtype is None else dtype
    rng = np.random.default_rng(seed)
    s = xp.asarray(rng.standard_normal((B, cell.n_hidden)) * 0.5, dtype=dtype, device=device)
    state = ok.init(cell, B, rank=r, xp=xp, dtype=dtype, device=device)
    for _ in range(steps):
        x = xp.asarray(rng.standard_normal((B, cell.n_in)), dtype=dtype, device=device)
        s, layers = cell.step(params, s, x, xp=xp)
        noise = draw_signs(rng, ok.sign_shapes(cell, B, r), xp=xp, dtype=dtype, device=device)
        state = ok.update(cell, params, state, layers, noise, xp=xp)
    return state, s, rng


def next_layers(cell, params, s, rng, *, xp, device=None):
    x = xp.asarray(rng.standard_normal((s.shape[0], cell.n_in)), dtype=s.dtype, device=device)
    return cell.step(params, s, x, xp=xp)[1]


def rtrl_target(cell, params, state, layers, *, xp):
    """Exact RTRL's update of the current dense estimate: {name: (B, n, 2n, k)} on the host."""
    dense = ok.influence(cell, state, xp=xp)
    n = cell.n_hidden
    G = rtrl.State(tuple(xp.reshape(dense[nm], (dense[nm].shape[0], n, -1)) for nm in cell.blocks))
    out = rtrl.influence(cell, rtrl.update(cell, params, G, layers, xp=xp), xp=xp)
    return {k: to_numpy(v) for k, v in out.items()}


def dense(cell, state, *, xp):
    return {k: to_numpy(v) for k, v in ok.influence(cell, state, xp=xp).items()}


def opt_variance_reference(s):
    """S²/(k-1) - Σ_{i<=k} s_i² from the definition of k, written as a plain loop."""
    s = np.sort(np.asarray(s, dtype=np.float64))
    k = max(j for j in range(2, len(s) + 1) if (j - 1) * s[j - 1] <= s[:j].sum())
    S = s[:k].sum()
    return S * S / (k - 1) - np.sum(s[:k] ** 2)


def opt_variance(s, *, xp):
    """The same variance in array-API form, for ascending s (..., m), from ``opt.mixed_count``."""
    k = opt.mixed_count(s, xp=xp)
    mixed = xp.arange(s.shape[-1], dtype=s.dtype) < k
    zero = xp.zeros_like(s)
    S = xp.sum(xp.where(mixed, s, zero), axis=-1)
    return S * S / (k[..., 0] - 1.0) - xp.sum(xp.where(mixed, s * s, zero), axis=-1)


def comparable_state(cell, params, layers, r, B, rng):
    """A state whose r+1 target terms have similar sizes (so Opt mixes more than two).

    ``A_i = H^{-1} W_i`` with W_i random of norm ~|P_l D_l| and |u_i| ~ |a_l|, so that
    ``H A_i = W_i`` competes with the new term a_l ⊗ P_l D_l.
    """
    H, pds = cell.influence_pieces(params, layers, xp=NPX)
    n = cell.n_hidden
    us, As = [], []
    for PD, layer in zip(pds, layers):
        k = layer.a.shape[1]
        u = rng.standard_normal((B, r, k))
        u *= (np.linalg.norm(layer.a, axis=1) / np.sqrt(k))[:, None, None]
        W = rng.standard_normal((B, r, n, 2 * n)) * rng.uniform(0.5, 1.5, size=(B, r, 1, 1))
        W *= (np.linalg.norm(PD, axis=(1, 2)) / np.sqrt(2 * n * n))[:, None, None, None]
        A = np.linalg.solve(H[:, None, :, :], W)  # (B, r, n, 2n): H A_i = W_i
        us.append(u)
        As.append(A)
    return ok.State(tuple(us), tuple(As))


def tiny_cell(depth, *, n_in=3, n=4):
    cell = minirtrl.RHN(n_in, n, 3, depth=depth)
    return cell, cell.init(7, xp=NPX, init_scale=0.7, gate_bias=0.5)


# ---- one step, exact by enumeration -----------------------------------------------
@pytest.mark.parametrize("form", ["gram", "qr"])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_one_step_unbiased_by_enumeration(r, depth, form):
    """Mean over all 2^(r+1) sign patterns == exact RTRL's update of G_{t-1} (float64)."""
    check_one_step_unbiased(r, depth, form, NPX, None)


@pytest.mark.linalg
@pytest.mark.parametrize("form", ["gram", "qr"])
def test_one_step_unbiased_on_every_backend(backend, form):
    """The same enumeration through each backend's linalg (r = 3, depth 2)."""
    xp, device = backend.xp, backend.device
    check_one_step_unbiased(3, 2, form, xp, device)


def check_one_step_unbiased(r, depth, form, xp, device):
    cell = minirtrl.RHN(3, 4, 3, depth=depth)
    params = cell.init(7, xp=xp, init_scale=0.7, gate_bias=0.5, device=device)
    B = 3
    state, s, rng = warm_state(cell, params, r, steps=r + 3, seed=r, B=B, xp=xp, device=device)
    layers = next_layers(cell, params, s, rng, xp=xp, device=device)
    states = [state]
    if xp is NPX:  # and one where Opt mixes more than the two smallest terms
        states.append(comparable_state(cell, params, layers, r, B, rng))
    for state in states:
        target = rtrl_target(cell, params, state, layers, xp=xp)
        mean = dict.fromkeys(cell.blocks, 0.0)
        count = 0
        for noise in enumerate_noise(cell, B, r, xp, device):
            new = ok.update(cell, params, state, layers, noise, xp=xp, form=form)
            shapes = [(B, r, cell.width(l)) for l in range(1, depth + 1)]
            assert [tuple(u.shape) for u in new.u] == shapes
            for k, v in dense(cell, new, xp=xp).items():
                mean[k] = mean[k] + v
            count += 1
        assert count == 2 ** (r + 1)
        for k in cell.blocks:
            assert np.max(np.abs(target[k])) > 1e-2  # a nontrivial target
            assert_close(mean[k] / count, target[k], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_one_step_variance_is_opt_formula(r, depth):
    """Enumerated E|Ĝ_t - target|² == S²/(k-1) - Σ s_i² from numpy's SVD of the target."""
    cell, params = tiny_cell(depth)
    B = 3
    warm, s, rng = warm_state(cell, params, r, steps=r + 3, seed=10 + r, B=B, xp=NPX)
    layers = next_layers(cell, params, s, rng, xp=NPX)
    comparable = comparable_state(cell, params, layers, r, B, rng)
    mixed_sizes = []
    for state in (warm, comparable):
        target = rtrl_target(cell, params, state, layers, xp=NPX)
        sq = {k: np.zeros(B) for k in cell.blocks}
        P = 2 ** (r + 1)
        for noise in enumerate_noise(cell, B, r, NPX):
            new = dense(cell, ok.update(cell, params, state, layers, noise, xp=NPX), xp=NPX)
            for k in cell.blocks:
                sq[k] += np.sum((new[k] - target[k]) ** 2, axis=(1, 2, 3)) / P
        for k in cell.blocks:
            for b in range(B):
                T = target[k][b]  # (n, 2n, k_l): a 2n² × k_l matrix of rank <= r+1
                sv = np.linalg.svd(np.reshape(T, (-1, T.shape[-1])), compute_uv=False)[: r + 1]
                expected = opt_variance_reference(sv)
                ascending = NPX.asarray(np.sort(sv))
                mixed_sizes.append(int(opt.mixed_count(ascending, xp=NPX)[0]))
                from_opt = float(opt_variance(ascending, xp=NPX))
                assert_close(from_opt, expected, rtol=1e-12)
                assert expected > 0.0
                atol = 1e-14 * np.sum(T * T)
                assert_close(sq[k][b], expected, rtol=1e-9, atol=atol)
    assert min(mixed_sizes) >= 2
    if r >= 2:  # the formula was checked with more than two values mixed
        assert max(mixed_sizes) >= 3, mixed_sizes


def test_one_ok_variance_never_exceeds_kf():
    """Var_1-OK = 2σ1σ2 (enumerated through ok.reduce) <= Var_KF (docs/algorithms.md §5),
    300 cases."""
    rng = np.random.default_rng(0)
    B, K, N = 300, 7, 12
    u, a = rng.standard_normal((B, K)), rng.standard_normal((B, K))
    HA, PD = rng.standard_normal((B, N)), rng.standard_normal((B, N))
    # correlated pairs of both signs, and cases with cos(u, a) = -cos(HA, PD) (tight bound)
    c = rng.uniform(-3, 3, size=(B, 1))
    a[:100] = a[:100] * 0.3 + c[:100] * u[:100]
    PD[50:150] = PD[50:150] * 0.3 - rng.uniform(-3, 3, size=(100, 1)) * HA[50:150]
    for i in range(200, 250):  # make x = -y exactly: the bound 2σ1σ2 <= Var_KF is tight
        x = rng.uniform(-0.9, 0.9)
        e_u, e_h = u[i] / np.linalg.norm(u[i]), HA[i] / np.linalg.norm(HA[i])
        w_u = rng.standard_normal(K)
        w_u -= (w_u @ e_u) * e_u
        w_h = rng.standard_normal(N)
        w_h -= (w_h @ e_h) * e_h
        a[i] = x * e_u + np.sqrt(1 - x * x) * w_u / np.linalg.norm(w_u)
        PD[i] = -x * e_h + np.sqrt(1 - x * x) * w_h / np.linalg.norm(w_h)
    U, V = np.stack([u, a], axis=1), np.stack([HA, PD], axis=1)  # (B, 2, K), (B, 2, N)
    target = u[:, :, None] * HA[:, None, :] + a[:, :, None] * PD[:, None, :]  # (B, K, N)

    var_ok = np.zeros(B)
    for p in patterns(2):
        uu, vv = ok.reduce(NPX.asarray(U), NPX.asarray(V), NPX.asarray(np.tile(p, (B, 1))), xp=NPX)
        assert uu.shape == (B, 1, K) and vv.shape == (B, 1, N)
        est = uu[:, 0, :, None] * vv[:, 0, None, :]
        var_ok += np.sum((est - target) ** 2, axis=(1, 2)) / 4

    sv = np.linalg.svd(target, compute_uv=False)[:, :2]
    two_s1s2 = 2 * sv[:, 0] * sv[:, 1]
    nrm = np.linalg.norm
    var_kf = 2 * (
        nrm(u, axis=1) * nrm(HA, axis=1) * nrm(a, axis=1) * nrm(PD, axis=1)
        + np.sum(u * a, axis=1) * np.sum(HA * PD, axis=1)
    )
    scale = np.sum(target**2, axis=(1, 2))
    assert_close(var_ok, two_s1s2, rtol=1e-10, atol=1e-13 * scale.max())
    assert np.all(two_s1s2 <= var_kf * (1 + 1e-10) + 1e-13 * scale)
    assert_close(two_s1s2[200:250], var_kf[200:250], rtol=1e-9)  # tight there
    assert np.mean(var_kf[:200] > two_s1s2[:200] * (1 + 1e-6)) > 0.9  # usually strictly better


# ---- Opt invariants ---------------------------------------------------------------
def test_opt_on_a_diagonal_with_a_gap():
    """s = [1e-3, 2e-3, 1, 2, 3]: the two small values are mixed, 1, 2, 3 kept exactly."""
    s = np.array([1e-3, 2e-3, 1.0, 2.0, 3.0])
    m = len(s)
    assert int(opt.mixed_count(NPX.asarray(s), xp=NPX)[0]) == 2
    mean = np.zeros((m, m))
    for p in patterns(m):
        left, right = opt.opt(NPX.asarray(s), NPX.asarray(p), xp=NPX)
        assert left.shape == right.shape == (m - 1, m)  # exactly r = m-1 terms
        M = left.T @ right  # Σ_j left_j ⊗ right_j in the singular basis
        assert_close(M[2:, :], np.diag(s)[2:, :], rtol=0, atol=1e-15)
        assert_close(M[:, 2:], np.diag(s)[:, 2:], rtol=0, atol=1e-15)
        # each kept direction is one whole term: one nonzero coefficient on each side
        for q in range(2, m):
            rows = np.nonzero(np.abs(left[:, q]) > 0)[0]
            assert len(rows) == 1
            assert np.count_nonzero(left[rows[0]]) == 1 and np.count_nonzero(right[rows[0]]) == 1
        mean += M / 2**m
    assert_close(mean, np.diag(s), rtol=0, atol=1e-15)

    # the same through ok.reduce on Σ_i s_i e_i ⊗ e_i, given in shuffled order, both forms
    order = np.array([3, 0, 4, 2, 1])
    U = np.eye(m)[order][None]  # (1, m, m)
    V = (np.diag(s)[order])[None]
    for form in ("gram", "qr"):
        for p in patterns(m):
            signs = NPX.asarray(p[None])
            uu, vv = ok.reduce(NPX.asarray(U), NPX.asarray(V), signs, xp=NPX, form=form)
            assert uu.shape == (1, m - 1, m) and vv.shape == (1, m - 1, m)
            M = uu[0].T @ vv[0]
            assert_close(M[2:, :], np.diag(s)[2:, :], rtol=0, atol=1e-14)
            assert_close(M[:, 2:], np.diag(s)[:, 2:], rtol=0, atol=1e-14)
            assert_close(
                np.linalg.norm(uu[0], axis=1), np.linalg.norm(vv[0], axis=1), rtol=1e-12
            )


def test_opt_handles_zeros_without_nan():
    """All-zero and mostly-zero singular values: finite, exact, no NaN."""
    for s in ([0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 1.0, 1.0, 3.0]):
        s = np.array(s)
        for p in patterns(len(s)):
            left, right = opt.opt(NPX.asarray(s), NPX.asarray(p), xp=NPX)
            assert np.all(np.isfinite(left)) and np.all(np.isfinite(right))
            assert_close(left.T @ right, np.diag(s), rtol=0, atol=1e-15)


@pytest.mark.parametrize("form", ["gram", "qr"])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("r", [1, 2, 4])
def test_rank_at_most_r_is_reduced_exactly(r, depth, form):
    """r+1 terms of rank <= r: every sign pattern gives the same, exact, result."""
    cell, params = tiny_cell(depth)
    B = 2
    state, s, rng = warm_state(cell, params, r, steps=r + 2, seed=20 + r, B=B, xp=NPX)
    layers = next_layers(cell, params, s, rng, xp=NPX)
    # make u_1 a multiple of the new a_l: the stacked left factors have rank <= r
    u = tuple(
        np.concat([0.7 * layer.a[:, None, :], u_l[:, 1:, :]], axis=1)
        for u_l, layer in zip(state.u, layers)
    )
    cases = [state._replace(u=u), ok.init(cell, B, rank=r, xp=NPX, dtype=NPX.float64)]
    for st in cases:
        target = rtrl_target(cell, params, st, layers, xp=NPX)
        for noise in enumerate_noise(cell, B, r, NPX):
            new = dense(cell, ok.update(cell, params, st, layers, noise, xp=NPX, form=form), xp=NPX)
            for k in cell.blocks:
                assert_close(new[k], target[k], rtol=1e-11, atol=1e-13)


# ---- the two orthogonalisations --------------------------------------------------------
def random_states(cell, B, r, rng):
    """Random full-rank states and rank-deficient ones (zero, repeated, dependent terms)."""
    n = cell.n_hidden
    u = tuple(rng.standard_normal((B, r, cell.width(l))) for l in range(1, cell.depth + 1))
    A = tuple(rng.standard_normal((B, r, n, 2 * n)) for _ in cell.blocks)
    yield ok.State(u, A)
    yield ok.init(cell, B, rank=r, xp=NPX, dtype=NPX.float64)
    if r >= 2:  # term 2 = term 1 with A × 2.5 (same u), terms 3.. with u = 0
        u2 = tuple(np.concat([x[:, :1], x[:, :1], x[:, 2:] * 0.0], axis=1) for x in u)
        A2 = tuple(np.concat([x[:, :1], 2.5 * x[:, :1], x[:, 2:]], axis=1) for x in A)
        yield ok.State(u2, A2)
    # old terms negligible next to the new one (u × 1e-150): numerically rank one
    yield ok.State(tuple(x * 1e-150 for x in u), A)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("r", [1, 2, 3, 4, 6])
def test_qr_form_equals_gram_form(r, depth):
    """Same signs -> same new factors and dense estimate in both forms (float64 precision).

    r = 6 with n = 3 makes k_2 = n+1 = 4 < r+1: fewer columns than terms (QR pads).
    """
    cell = minirtrl.RHN(2, 3, 3, depth=depth)
    params = cell.init(3, xp=NPX, init_scale=0.7)
    B = 4
    rng = np.random.default_rng(r)
    s = NPX.asarray(rng.standard_normal((B, cell.n_hidden)))
    layers = next_layers(cell, params, s, rng, xp=NPX)
    for st in random_states(cell, B, r, rng):
        noise = draw_signs(rng, ok.sign_shapes(cell, B, r), xp=NPX, dtype=NPX.float64)
        g = ok.update(cell, params, st, layers, noise, xp=NPX, form="gram")
        q = ok.update(cell, params, st, layers, noise, xp=NPX, form="qr")
        dg, dq = dense(cell, g, xp=NPX), dense(cell, q, xp=NPX)
        for i, k in enumerate(cell.blocks):
            assert np.all(np.isfinite(g.u[i])) and np.all(np.isfinite(g.A[i]))
            scale = np.max(np.abs(dq[k]))
            assert_close(dg[k], dq[k], rtol=0, atol=1e-12 * scale)
            assert_close(g.u[i], q.u[i], rtol=0, atol=1e-12 * np.max(np.abs(q.u[i])))
            assert_close(g.A[i], q.A[i], rtol=0, atol=1e-12 * np.max(np.abs(q.A[i])))
            # balanced pairs: |u_j| = |A_j|
            nu = np.linalg.norm(g.u[i], axis=2)
            na = np.linalg.norm(np.reshape(g.A[i], (B, r, -1)), axis=2)
            assert_close(nu, na, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("form", ["gram", "qr"])
def test_each_sample_uses_its_own_signs(form):
    """A batched step equals the same step run on each sample alone with its own signs."""
    cell, params = tiny_cell(2)
    B, r = 3, 3
    state, s, rng = warm_state(cell, params, r, steps=4, seed=5, B=B, xp=NPX)
    layers = next_layers(cell, params, s, rng, xp=NPX)
    noise = draw_signs(rng, ok.sign_shapes(cell, B, r), xp=NPX, dtype=NPX.float64)
    batched = dense(cell, ok.update(cell, params, state, layers, noise, xp=NPX, form=form), xp=NPX)
    for b in range(B):
        one = slice(b, b + 1)
        st = ok.State(tuple(u[one] for u in state.u), tuple(A[one] for A in state.A))
        ly = tuple(Cache(*(f[one] for f in layer)) for layer in layers)
        nz = {k: v[one] for k, v in noise.items()}
        alone = dense(cell, ok.update(cell, params, st, ly, nz, xp=NPX, form=form), xp=NPX)
        for k in cell.blocks:
            assert_close(batched[k][one], alone[k], rtol=1e-12, atol=1e-14)


def test_unknown_form_is_an_error():
    cell, params = tiny_cell(1)
    state, s, rng = warm_state(cell, params, 2, steps=1, seed=0, B=1, xp=NPX)
    layers = next_layers(cell, params, s, rng, xp=NPX)
    noise = draw_signs(rng, ok.sign_shapes(cell, 1, 2), xp=NPX, dtype=NPX.float64)
    with pytest.raises(ValueError, match="form"):
        ok.update(cell, params, state, layers, noise, xp=NPX, form="svd")


# ---- whole sequences -----------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2])
def test_sequence_gradient_unbiased_statistically(depth):
    """Mean of 300 seeded 2-OK gradients is within 5 standard errors of exact RTRL."""
    cell = minirtrl.RHN(3, 4, 3, depth=depth)
    params = cell.init(3, xp=NPX, init_scale=0.7)
    xs, ys, mask = random_problem(cell, 6, 2, seed=1)
    _, exact = minirtrl.sequence_gradient("rtrl", cell, params, xs, ys, mask)
    runs = [
        minirtrl.sequence_gradient("ok", cell, params, xs, ys, mask, rank=2, seed=seed)[1]
        for seed in range(300)
    ]
    for k in exact:
        g = np.stack([run[k] for run in runs])
        se = np.std(g, axis=0, ddof=1) / np.sqrt(len(g))
        atol = 1e-12 * np.max(np.abs(exact[k]))
        assert np.all(np.abs(np.mean(g, axis=0) - exact[k]) <= 5 * se + atol), k
        if k != "V":  # the recurrent blocks are really random (V is exact)
            assert np.max(se) > 1e-6 * np.max(np.abs(exact[k]))


@pytest.mark.linalg
def test_same_seed_same_estimate_on_every_backend(backend):
    xp, device = backend.xp, backend.device
    cell = minirtrl.RHN(3, 4, 3, depth=2)
    xs, ys, mask = random_problem(cell, 6, 2, seed=4)

    def run(xp, device, seed):
        params = cell.init(3, xp=xp, init_scale=0.7, device=device)
        _, g = minirtrl.sequence_gradient(
            "ok", cell, params, *(xp.asarray(a, device=device) for a in (xs, ys, mask)),
            rank=3, seed=seed,
        )
        return {k: to_numpy(v) for k, v in g.items()}

    ref = run(NPX, None, seed=5)
    got = run(xp, device, seed=5)
    other = run(NPX, None, seed=6)
    for k in ref:
        assert got[k].dtype == np.float64
        assert_close(got[k], ref[k], rtol=1e-10, atol=1e-13)
    assert not np.allclose(other["W1"], ref["W1"], rtol=1e-6)  # the seed matters


@pytest.mark.linalg
def test_float32_runs_finite(xp):
    cell = minirtrl.RHN(3, 6, 3, depth=2)
    params = cell.init(1, xp=xp, dtype=xp.float32, init_scale=0.5)
    xs, ys, _ = random_problem(cell, 30, 3, seed=2)
    loss, grads = minirtrl.sequence_gradient(
        "ok", cell, params, xp.asarray(xs, dtype=xp.float32), xp.asarray(ys), rank=3, seed=0
    )
    for v in (loss, *grads.values()):
        assert v.dtype == xp.float32
        assert np.all(np.isfinite(to_numpy(v)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_long_run_with_reset_stays_finite(dtype):
    """200 steps, stream 1 reset at step 100: finite throughout; exact right after the reset."""
    cell = minirtrl.RHN(4, 8, 3, depth=2)
    params = cell.init(2, xp=NPX, dtype=getattr(NPX, dtype), init_scale=0.5, gate_bias=0.5)
    dt = getattr(NPX, dtype)
    B, r = 3, 4
    rng = np.random.default_rng(0)
    s = NPX.zeros((B, cell.n_hidden), dtype=dt)
    state = ok.init(cell, B, rank=r, xp=NPX, dtype=dt)
    keep = NPX.asarray([1.0, 0.0, 1.0], dtype=dt)
    for t in range(200):
        if t == 100:
            s, state = s * keep[:, None], reset(state, keep)
            for x in state.u + state.A:
                assert_close(x[1], np.zeros(x[1].shape, dtype=dt), rtol=0)
        x = NPX.asarray(rng.standard_normal((B, cell.n_in)), dtype=dt)
        s, layers = cell.step(params, s, x, xp=NPX)
        noise = draw_signs(rng, ok.sign_shapes(cell, B, r), xp=NPX, dtype=dt)
        state = ok.update(cell, params, state, layers, noise, xp=NPX)
        for arr in state.u + state.A:
            assert arr.dtype == dt and np.all(np.isfinite(arr)), t
        if t == 100:  # the reset stream holds exactly the immediate influence a ⊗ PD
            _, pds = cell.influence_pieces(params, layers, xp=NPX)
            est = dense(cell, state, xp=NPX)
            for k, PD, layer in zip(cell.blocks, pds, layers):
                F = PD[1, :, :, None] * layer.a[1, None, None, :]
                tol = 1e-5 if dtype == "float32" else 1e-12
                assert_close(est[k][1], F, rtol=tol, atol=tol * np.max(np.abs(F)))
    assert max(np.max(np.abs(x)) for x in state.u + state.A) < 1e3


def test_interface():
    cell = minirtrl.RHN(2, 3, 2, depth=3)
    assert ok.sign_shapes(cell, 5, 4) == {"W1": (5, 5), "W2": (5, 5), "W3": (5, 5)}
    st = ok.init(cell, 5, rank=4, xp=NPX, dtype=NPX.float64)
    assert [u.shape for u in st.u] == [(5, 4, 6), (5, 4, 4), (5, 4, 4)]
    assert [A.shape for A in st.A] == [(5, 4, 3, 6)] * 3
    c = np.ones((5, 3))
    assert {k: v.shape for k, v in ok.grads(cell, st, c, xp=NPX).items()} == {
        "W1": (6, 6), "W2": (6, 4), "W3": (6, 4)
    }


# ---- a backend without linalg --------------------------------------------------------
@pytest.fixture
def strict_without_linalg():
    strict = pytest.importorskip("array_api_strict")
    saved = strict.get_array_api_strict_flags()
    strict.set_array_api_strict_flags(enabled_extensions=())
    try:
        yield strict
    finally:
        strict.reset_array_api_strict_flags()
        strict.set_array_api_strict_flags(**saved)


def test_missing_linalg_is_a_clear_error(strict_without_linalg):
    xp = strict_without_linalg
    assert not hasattr(xp, "linalg")
    cell = minirtrl.RHN(3, 4, 3)
    params = cell.init(0, xp=xp)
    xs, ys, _ = random_problem(cell, 3, 2)
    with pytest.raises(ValueError, match="ok needs the array API linalg extension"):
        minirtrl.sequence_gradient("ok", cell, params, xp.asarray(xs), xp.asarray(ys), rank=2)
    with pytest.raises(ValueError, match="ok needs the array API linalg extension"):
        ok.init(cell, 2, rank=2, xp=xp, dtype=xp.float64)
