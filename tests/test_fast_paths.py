"""The optimised code paths against their readable references, to float64 precision.

Each fast form below has a plain form it must equal up to roundoff:

- ``rhn.state_jacobian`` (K_l as one product over its rows) vs ``rhn.layer_jacobian``
  (the formula (5) of docs/algorithms.md, three broadcast products), on every backend;
- ``rhn.influence_pieces`` vs H_t and P_l D_l composed from ``layer_jacobian`` by hand;
- ``rhn.jvp_vjp`` (UORO's shared walk) vs the tests' ``jvp_state`` and ``RHN.vjp``;
- ``opt.opt`` vs Algorithm 3 written out per sample in NumPy (explicit k, Householder
  basis of v0^⊥);
- ``ok.step_gram`` (Gram matrices of the stacked factors, blockwise) vs ``ok.step_qr``
  (QR of the stacked factors) at a size where the Gram border and big block differ;
- ``grads_from_factors`` (kf, kf-avg, ok) vs contracting the dense estimate;
- ``readout.loss_and_grad`` vs the log-softmax written plainly.

And exact RTRL's state is exactly the theoretical B·Σ_l n·2n·k_l elements.
"""

import numpy as np
import pytest
from estimator_helpers import draw_signs, exact_step, jvp_state, reset

import minirtrl
from minirtrl import kf, ok, opt, readout, rtrl
from minirtrl.cells import rhn
from minirtrl.drivers.backends import load
from minirtrl.testing import assert_close, to_numpy

NPX, _ = load("numpy")
EPS = np.finfo(np.float64).eps


def setup(depth, *, n=5, n_in=3, B=3, seed=0, scale=0.7):
    cell = minirtrl.RHN(n_in, n, 4, depth=depth)
    params = cell.init(seed, xp=np, init_scale=scale, gate_bias=-0.3)
    rng = np.random.default_rng(seed + 1)
    s = rng.standard_normal((B, n)) * 0.5
    x = rng.standard_normal((B, n_in))
    _, layers = cell.step(params, s, x, xp=np)
    return cell, params, layers, rng


def assert_equal_to_roundoff(got, want, factor=64):
    """|got - want| <= factor·eps·max|want| elementwise (float64 precision)."""
    scale = np.max(np.abs(np.asarray(want)))
    assert scale > 0
    assert_close(np.asarray(got), np.asarray(want), rtol=0, atol=factor * EPS * scale)


# ---- rhn ------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_state_jacobian_equals_layer_jacobian(backend, to_xp, depth):
    xp = backend.xp
    cell, params, _, rng = setup(depth)
    p = {k: to_xp(v) for k, v in params.items()}
    _, layers = cell.step(p, to_xp(rng.standard_normal((3, cell.n_hidden))),
                         to_xp(rng.standard_normal((3, cell.n_in))), xp=xp)
    for l, layer in enumerate(layers, start=1):
        fast = rhn.state_jacobian(cell, p, l, layer, xp=xp)
        assert tuple(fast.shape) == (3, cell.n_hidden, cell.n_hidden)
        plain = rhn.layer_jacobian(cell, p, l, layer, xp=xp)
        assert_equal_to_roundoff(to_numpy(fast), to_numpy(plain))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_influence_pieces_equal_the_plain_products(depth):
    """H_t = K_L ⋯ K_1 and P_l D_l = K_L ⋯ K_{l+1} [diag(dh) | diag(dg)], composed by hand."""
    cell, params, layers, _ = setup(depth)
    H, pds = cell.influence_pieces(params, layers, xp=np)
    Ks = [rhn.layer_jacobian(cell, params, l, layer, xp=np) for l, layer in enumerate(layers, 1)]
    n = cell.n_hidden
    for l in range(1, depth + 1):
        P = np.broadcast_to(np.eye(n), Ks[0].shape)
        for K in Ks[l:]:  # K_{l+1}, ..., K_L
            P = K @ P
        dh, dg = rhn.d_diagonals(layers[l - 1])
        D = np.concatenate([np.eye(n) * dh[:, None, :], np.eye(n) * dg[:, None, :]], axis=2)
        assert_equal_to_roundoff(pds[l - 1], P @ D)
    H_ref = Ks[0]
    for K in Ks[1:]:
        H_ref = K @ H_ref
    assert_equal_to_roundoff(H, H_ref)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_jvp_vjp_equals_jvp_state_and_vjp_step(backend, to_xp, depth):
    xp = backend.xp
    cell, params, _, rng = setup(depth, B=4)
    p = {k: to_xp(v) for k, v in params.items()}
    _, layers = cell.step(p, to_xp(rng.standard_normal((4, cell.n_hidden))),
                         to_xp(rng.standard_normal((4, cell.n_in))), xp=xp)
    v = to_xp(rng.standard_normal((4, cell.n_hidden)))
    g = to_xp(rng.standard_normal((4, cell.n_hidden)))
    Hv, dzs = cell.jvp_vjp(p, layers, v, g, xp=xp)
    assert_equal_to_roundoff(to_numpy(Hv), to_numpy(jvp_state(cell, p, layers, v)))
    _, dzs_ref = cell.vjp(p, layers, g, xp=xp)
    assert len(dzs) == depth
    for dz, ref in zip(dzs, dzs_ref):
        assert_equal_to_roundoff(to_numpy(dz), to_numpy(ref))


# ---- Opt ------------------------------------------------------------------------------
def opt_reference(s, signs):
    """Algorithm 3 for ONE sample, written out: k, S, v0, a Householder basis of v0^⊥."""
    m = len(s)
    k = max(j for j in range(2, m + 1) if (j - 1) * s[j - 1] <= s[:j].sum())
    S = s[:k].sum()
    d = np.ones(m)
    d[:k] = (k - 1) * s[:k] / S if S > 0 else (k - 1) / k
    v0 = np.sqrt(np.maximum(1.0 - d, 0.0))
    w = v0.copy()
    w[0] += 1.0
    R = np.eye(m) - 2.0 * np.outer(w, w) / (w @ w)  # R e_1 = -v0; columns 2..m span v0^⊥
    scale = np.where(np.arange(m) < k, S / (k - 1), s)
    left = R[1:, :] * signs[None, :]
    return left, left * scale[None, :]


def test_opt_equals_the_per_sample_reference():
    rng = np.random.default_rng(3)
    cases = [np.sort(rng.exponential(size=m)) for m in (2, 3, 5, 9, 17) for _ in range(5)]
    cases += [np.array([1e-3, 2e-3, 1.0, 2.0, 3.0]), np.array([0.0, 0.0, 2.0]), np.zeros(4),
              np.array([1.0, 1.0, 1.0, 1.0])]
    for s in cases:
        signs = rng.choice([-1.0, 1.0], size=len(s))
        left, right = opt.opt(NPX.asarray(s), NPX.asarray(signs), xp=NPX)
        ref_left, ref_right = opt_reference(s, signs)
        assert_close(left, ref_left, rtol=0, atol=32 * EPS)
        assert_close(right, ref_right, rtol=0, atol=32 * EPS * max(s.max(), 1.0))
    # batched: every row equals its own reference
    S = np.sort(rng.exponential(size=(6, 5)), axis=1)
    signs = rng.choice([-1.0, 1.0], size=(6, 5))
    left, right = opt.opt(NPX.asarray(S), NPX.asarray(signs), xp=NPX)
    for b in range(6):
        ref_left, ref_right = opt_reference(S[b], signs[b])
        assert_close(left[b], ref_left, rtol=0, atol=32 * EPS)
        assert_close(right[b], ref_right, rtol=0, atol=32 * EPS * S[b].max())


# ---- r-OK: Gram form (fast) vs QR form (readable) ---------------------------------------
@pytest.mark.parametrize("r", [3, 5])
def test_step_gram_equals_step_qr(r):
    """A bigger block than the tests of test_ok: n = 6 (2n² = 72 > k), r+1 terms of mixed size."""
    cell, params, layers, rng = setup(1, n=6, n_in=4, B=3, seed=4)
    H, pds = cell.influence_pieces(params, layers, xp=np)
    a, PD = layers[0].a, pds[0]
    u = rng.standard_normal((3, r, a.shape[1])) * rng.uniform(0.1, 2.0, size=(3, r, 1))
    A = rng.standard_normal((3, r, 6, 12)) * 0.3
    for _ in range(4):
        signs = rng.choice([-1.0, 1.0], size=(3, r + 1))
        ug, Ag = ok.step_gram(u, A, H, a, PD, signs, xp=np)
        uq, Aq = ok.step_qr(u, A, H, a, PD, signs, xp=np)
        assert ug.shape == uq.shape == (3, r, a.shape[1]) and Ag.shape == Aq.shape == A.shape
        assert_close(ug, uq, rtol=0, atol=1e-12 * np.max(np.abs(uq)))
        assert_close(Ag, Aq, rtol=0, atol=1e-12 * np.max(np.abs(Aq)))
        u, A = ug, Ag  # carry on from the new state


# ---- gradients from factors -------------------------------------------------------------
@pytest.mark.parametrize("module, rank", [(kf, 1), (kf, 3), (ok, 3)])
def test_grads_from_factors_contract_the_dense_estimate(module, rank):
    cell, params, layers, rng = setup(2, B=4)
    state = module.init(cell, 4, rank=rank, xp=np, dtype=np.float64)
    for _ in range(3):
        noise = draw_signs(rng, module.sign_shapes(cell, 4, rank), xp=np, dtype=np.float64)
        state = module.update(cell, params, state, layers, noise, xp=np)
    c = rng.standard_normal((4, cell.n_hidden))
    dense = module.influence(cell, state, xp=np)
    got = module.grads(cell, state, c, xp=np)
    for name in cell.blocks:
        want = np.einsum("bn,bnij->ij", c, dense[name])
        assert_equal_to_roundoff(got[name], want, factor=256)


# ---- readout ------------------------------------------------------------------------------
def test_loss_and_grad_equals_the_plain_log_softmax(backend, to_xp):
    xp = backend.xp
    rng = np.random.default_rng(5)
    B, n, n_out = 4, 6, 7
    V, s = rng.standard_normal((n_out, n + 1)), rng.standard_normal((B, n)) * 3
    y, mask = rng.integers(0, n_out, size=B), np.array([1.0, 0.0, 1.0, 1.0])
    loss, dV, c = readout.loss_and_grad(to_xp(V), to_xp(s), to_xp(y), to_xp(mask), xp=xp)
    sb = np.concatenate([s, np.ones((B, 1))], axis=1)
    z = sb @ V.T
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    p = np.exp(logp)
    onehot = np.eye(n_out)[y]
    dlogits = (p - onehot) * mask[:, None]
    assert_equal_to_roundoff(to_numpy(loss), -logp[np.arange(B), y] * mask)
    assert_equal_to_roundoff(to_numpy(dV), dlogits.T @ sb)
    assert_equal_to_roundoff(to_numpy(c), dlogits @ V[:, :n])


# ---- memory -------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2])
def test_rtrl_state_is_exactly_the_influence(depth):
    """B · Σ_l n · 2n · k_l elements, before and after an update (no padding, no extra copy)."""
    cell, params, layers, _ = setup(depth, B=3)
    theory = 3 * sum(cell.n_hidden * 2 * cell.n_hidden * cell.width(l) for l in range(1, depth + 1))
    state = rtrl.init(cell, 3, xp=np, dtype=np.float64)
    for st in (state, rtrl.update(cell, params, state, layers, xp=np)):
        assert sum(G.size for G in st.G) == theory
        assert all(G.dtype == np.float64 for G in st.G)


# ---- resets folded into the step ------------------------------------------------------------
@pytest.mark.parametrize("method, rank", [("rtrl", 1), ("uoro", 1), ("kf", 1), ("kf-avg", 3),
                                          ("ok", 3)])
@pytest.mark.parametrize("depth", [1, 2])
def test_update_with_keep_is_the_update_of_the_reset_state(method, rank, depth):
    """``update(..., keep=k)`` (no pass over the state) == ``update(reset(state, k))``."""
    from minirtrl.methods import INFLUENCE, leaves

    module = INFLUENCE[method]
    cell, params, layers, rng = setup(depth, B=3)
    state = module.init(cell, 3, rank, xp=np, dtype=np.float64)
    for _ in range(3):  # a nonzero past
        noise = draw_signs(rng, module.sign_shapes(cell, 3, rank), xp=np, dtype=np.float64)
        state = module.update(cell, params, state, layers, noise, xp=np)
    keep = np.array([1.0, 0.0, 1.0])
    noise = draw_signs(rng, module.sign_shapes(cell, 3, rank), xp=np, dtype=np.float64)
    folded = module.update(cell, params, state, layers, noise, xp=np, keep=keep)
    plain = module.update(cell, params, reset(state, keep), layers, noise, xp=np)
    for got, want in zip(leaves(folded), leaves(plain), strict=True):
        assert_close(got, want, rtol=0, atol=0)
    dense = module.influence(cell, folded, xp=np)
    zero = {k: np.zeros((1, cell.n_hidden) + params[k].shape) for k in cell.blocks}
    exact = exact_step(cell, params, zero, tuple(type(l)(*(f[1:2] for f in l)) for l in layers))
    if method in ("rtrl", "kf", "kf-avg"):  # deterministic from zero: the exact first step
        for k in cell.blocks:
            assert_close(dense[k][1:2], exact[k], rtol=1e-12, atol=1e-15)
