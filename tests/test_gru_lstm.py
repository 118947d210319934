"""The GRU and LSTM cells (torch.nn.GRUCell / LSTMCell layouts): the step against its equations
written here, every hand-written Jacobian against central finite differences, rtrl == bptt ==
finite differences on every backend, the forward pass and the gradients equal to torch's own
cells and autograd (float64, where torch is installed), the converters to and from torch's
tensors, every method running on both, the estimators' one-step mean by sign enumeration
against an exact step built from finite differences, and the SnAp-1 pattern against the
structural nonzeros of the immediate Jacobian."""

import functools
import math

import numpy as np
import pytest

import minirtrl
from minirtrl import testing
from minirtrl.cells import GRU, LSTM, gru
from minirtrl.methods import RANKED
from minirtrl.testing import (
    assert_close,
    numerical_gradient,
    numerical_jacobian,
    random_problem,
    sequence_loss,
    to_numpy,
)

B, T = 2, 5
CELLS = {"gru": GRU, "lstm": LSTM}


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def setup(name, seed=0, n_in=3, n=4, n_out=5, scale=0.7):
    """A cell, parameters and a random state entering the step (c nonzero for the LSTM)."""
    cell = CELLS[name](n_in, n, n_out)
    params = cell.init(seed, xp=np, init_scale=scale)
    rng = np.random.default_rng(seed + 1)
    return cell, params, rng.standard_normal((B, cell.n_state)) * 0.5, rng.standard_normal(
        (B, n_in))


def per_sample(jac):
    """(B, N, B, N) Jacobian of a batched map -> per-sample blocks (B, N, N)."""
    return np.stack([jac[b, :, b, :] for b in range(jac.shape[0])])


def assert_fd_close(a, fd, tol=1e-7):
    assert_close(a, fd, rtol=0, atol=tol * np.max(np.abs(fd)))


# ---- the step ---------------------------------------------------------------------------------
def test_gru_step_is_torchs_equation():
    cell, p, h, x = setup("gru")
    n = 4
    wi, bi = p["W_ih"][:, :3], p["W_ih"][:, 3]
    wh, bh = p["W_hh"][:, :4], p["W_hh"][:, 4]
    gi, gh = x @ wi.T + bi, h @ wh.T + bh
    r, z = sig(gi[:, :n] + gh[:, :n]), sig(gi[:, n:2 * n] + gh[:, n:2 * n])
    cand = np.tanh(gi[:, 2 * n:] + r * gh[:, 2 * n:])
    s, cache = cell.step(p, h, x, xp=np)
    assert_close(s, (1 - z) * cand + z * h, rtol=1e-14)
    assert len(cache) == 2
    assert_close(cache[0].a, np.concatenate([x, np.ones((B, 1))], axis=1), rtol=0)
    assert_close(cache[1].a, np.concatenate([h, np.ones((B, 1))], axis=1), rtol=0)


def test_lstm_step_is_torchs_equation_and_state_is_h_then_c():
    cell, p, s_prev, x = setup("lstm")
    n = 4
    h, c = s_prev[:, :n], s_prev[:, n:]
    pre = x @ p["W_ih"][:, :3].T + p["W_ih"][:, 3] + h @ p["W_hh"][:, :4].T + p["W_hh"][:, 4]
    i, f = sig(pre[:, :n]), sig(pre[:, n:2 * n])
    g, o = np.tanh(pre[:, 2 * n:3 * n]), sig(pre[:, 3 * n:])
    c_new = f * c + i * g
    s, cache = cell.step(p, s_prev, x, xp=np)
    assert s.shape == (B, 2 * n) and cell.n_state == 2 * n
    assert_close(s[:, :n], o * np.tanh(c_new), rtol=1e-14)
    assert_close(s[:, n:], c_new, rtol=1e-14)
    assert_close(cache[1].a, np.concatenate([h, np.ones((B, 1))], axis=1), rtol=0)


# ---- the Jacobians ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CELLS)
def test_H_and_immediate_factors_against_finite_differences(name):
    cell, p, s_prev, x = setup(name)
    N = cell.n_state
    _, cache = cell.step(p, s_prev, x, xp=np)
    H, Ms = cell.influence_pieces(p, cache, xp=np)
    assert H.shape == (B, N, N)
    assert_fd_close(H, per_sample(numerical_jacobian(lambda s: cell.step(p, s, x, xp=np)[0],
                                                     s_prev)))
    shapes = cell.shapes()
    assert len(Ms) == len(cell.blocks) == 2
    for name_l, M, c in zip(cell.blocks, Ms, cache, strict=True):
        m, k = shapes[name_l]
        assert M.shape == (B, N, m) and c.a.shape == (B, k)
        fd = numerical_jacobian(lambda W, k_=name_l: cell.step({**p, k_: W}, s_prev, x, xp=np)[0],
                                p[name_l])  # (B, N, m, k)
        assert_fd_close(M[:, :, :, None] * c.a[:, None, None, :], fd)  # F^l = a_l ⊗ M_l


@pytest.mark.parametrize("name", CELLS)
def test_jvp_and_vjp_against_finite_differences(name):
    """H v, g H and g M_l against finite differences of the step itself (not against H)."""
    cell, p, s_prev, x = setup(name)
    _, cache = cell.step(p, s_prev, x, xp=np)
    v, g = np.random.default_rng(5).standard_normal((2, B, cell.n_state))
    fd_H = per_sample(numerical_jacobian(lambda s: cell.step(p, s, x, xp=np)[0], s_prev))
    Hv, gMs = cell.jvp_vjp(p, cache, v, g, xp=np)
    gH, gMs2 = cell.vjp(p, cache, g, xp=np)
    assert_fd_close(Hv, np.einsum("bij,bj->bi", fd_H, v))
    assert_fd_close(gH, np.einsum("bi,bij->bj", g, fd_H))
    for name_l, gM, gM2, c in zip(cell.blocks, gMs, gMs2, cache, strict=True):
        fd = numerical_jacobian(lambda W, k_=name_l: cell.step({**p, k_: W}, s_prev, x, xp=np)[0],
                                p[name_l])  # (B, N, m, k)
        want = np.einsum("bi,bimk->bmk", g, fd)  # g^T F^l = (g M_l) ⊗ a_l
        assert_fd_close(gM[:, :, None] * c.a[:, None, :], want)
        assert_close(gM2, gM, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", CELLS)
def test_the_pieces_are_the_same_on_every_backend(backend, to_xp, name):
    xp, device = backend.xp, backend.device
    cell, p, s_prev, x = setup(name)
    v, g = np.random.default_rng(6).standard_normal((2, B, cell.n_state))
    want_s, cache = cell.step(p, s_prev, x, xp=np)
    want = [cell.influence_pieces(p, cache, xp=np), cell.jvp_vjp(p, cache, v, g, xp=np),
            cell.vjp(p, cache, g, xp=np)]
    pb = {k: to_xp(a) for k, a in p.items()}
    s, cache_b = cell.step(pb, to_xp(s_prev), to_xp(x), xp=xp)
    got = [cell.influence_pieces(pb, cache_b, xp=xp),
           cell.jvp_vjp(pb, cache_b, to_xp(v), to_xp(g), xp=xp),
           cell.vjp(pb, cache_b, to_xp(g), xp=xp)]
    assert_close(s, want_s, xp=xp, device=device, rtol=1e-13, atol=1e-15)
    for (a, (b1, b2)), (wa, (w1, w2)) in zip(got, want, strict=True):
        for x_, w_ in ((a, wa), (b1, w1), (b2, w2)):
            assert_close(x_, w_, xp=xp, device=device, rtol=1e-12, atol=1e-14)


# ---- exact gradients ----------------------------------------------------------------------------
@functools.cache
def gradient_problem(name):
    cell, p, _, _ = setup(name, seed=2, scale=0.6)
    xs, ys, mask = random_problem(cell, T, B, seed=3)
    return cell, p, xs, ys, mask, numerical_gradient(cell, p, xs, ys, mask), \
        sequence_loss(cell, p, xs, ys, mask)


@pytest.mark.parametrize("name", CELLS)
def test_rtrl_equals_bptt_equals_finite_differences(backend, to_xp, name):
    xp, device = backend.xp, backend.device
    cell, p_np, xs, ys, mask, fd, expected_loss = gradient_problem(name)
    p = {k: to_xp(v) for k, v in p_np.items()}
    results = {m: minirtrl.sequence_gradient(m, cell, p, to_xp(xs), to_xp(ys), to_xp(mask))
               for m in ("rtrl", "bptt")}
    for method, (loss, grads) in results.items():
        assert_close(loss, expected_loss, xp=xp, device=device, rtol=1e-12, atol=0)
        assert set(grads) == set(cell.shapes())
        for k in p:
            assert_close(grads[k], fd[k], xp=xp, device=device, rtol=0,
                         atol=1e-7 * np.max(np.abs(fd[k])), err_msg=f"{method} {k}")
    for k in p:
        bptt = results["bptt"][1][k]
        assert_close(results["rtrl"][1][k], bptt, xp=xp, device=device, rtol=0,
                     atol=1e-12 * np.max(np.abs(to_numpy(bptt))))


def torch_run(name, cell, p, xs, ys, mask):
    """The loss, the states and the gradients of torch's own cell, the parameters moved in
    through ``to_torch``; the gradients brought back through ``from_torch``."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed (optional oracle)")
    module = (torch.nn.GRUCell if name == "gru" else torch.nn.LSTMCell)(
        cell.n_in, cell.n_hidden, dtype=torch.float64)
    tensors = cell.to_torch(p)
    with torch.no_grad():
        for k in gru.TORCH_NAMES:
            getattr(module, k).copy_(torch.from_numpy(tensors[k]))
    V = torch.tensor(tensors["V"], requires_grad=True)
    Bt, n = xs.shape[1], cell.n_hidden
    h = torch.zeros(Bt, n, dtype=torch.float64)
    c = torch.zeros(Bt, n, dtype=torch.float64)
    one = torch.ones(Bt, 1, dtype=torch.float64)
    total, states = torch.zeros((), dtype=torch.float64), []
    for t in range(xs.shape[0]):
        x = torch.from_numpy(xs[t])
        if name == "gru":
            h = module(x, h)
            states.append(h.detach().numpy().copy())
        else:
            h, c = module(x, (h, c))
            states.append(torch.cat([h, c], 1).detach().numpy().copy())
        ce = torch.nn.functional.cross_entropy(torch.cat([h, one], 1) @ V.T,
                                               torch.from_numpy(ys[t]), reduction="none")
        total = total + (ce * torch.from_numpy(mask[t])).sum()
    total.backward()
    grads = cell.from_torch({k: getattr(module, k).grad.numpy() for k in gru.TORCH_NAMES},
                            V.grad.numpy())
    return total.item(), states, grads


@pytest.mark.parametrize("name", CELLS)
def test_forward_and_gradients_equal_torch_cells_and_autograd(name):
    cell = CELLS[name](3, 6, 4)
    p = cell.init(3, xp=np, init_scale=0.5)
    xs, ys, mask = random_problem(cell, 8, 3, seed=9)
    loss_t, states_t, grads_t = torch_run(name, cell, p, xs, ys, mask)
    s = np.zeros((3, cell.n_state))
    for t in range(8):
        s, _ = cell.step(p, s, xs[t], xp=np)
        assert_close(s, states_t[t], rtol=0, atol=1e-14, err_msg=f"state at t={t}")
    for method in ("rtrl", "bptt"):
        loss, grads = minirtrl.sequence_gradient(method, cell, p, xs, ys, mask)
        assert_close(loss, loss_t, rtol=1e-13, atol=0)
        for k in p:
            ref = grads_t[k]
            assert_close(grads[k], ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)),
                         err_msg=f"{method} {k}")


# ---- the converters ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", CELLS)
def test_converters_round_trip_on_every_backend(backend, to_xp, name):
    xp, device = backend.xp, backend.device
    cell = CELLS[name](3, 4, 5)
    gates = 3 if name == "gru" else 4
    p_np = cell.init(1, xp=np, init_scale=0.5)
    p = {k: to_xp(v) for k, v in p_np.items()}
    tensors = cell.to_torch(p)
    want = {"weight_ih": p_np["W_ih"][:, :3], "weight_hh": p_np["W_hh"][:, :4],
            "bias_ih": p_np["W_ih"][:, 3], "bias_hh": p_np["W_hh"][:, 4], "V": p_np["V"]}
    assert set(tensors) == set(want)
    assert tensors["weight_ih"].shape == (gates * 4, 3)
    for k, v in want.items():
        assert_close(tensors[k], v, xp=xp, device=device, rtol=0, err_msg=k)
    back = cell.from_torch(tensors)  # V from the dict
    back2 = cell.from_torch({k: v for k, v in tensors.items() if k != "V"}, p["V"])
    for k in p:
        assert_close(back[k], p_np[k], xp=xp, device=device, rtol=0, err_msg=k)
        assert_close(back2[k], p_np[k], xp=xp, device=device, rtol=0, err_msg=k)


@pytest.mark.parametrize("name", CELLS)
def test_converter_reads_a_torch_state_dict(name):
    torch = pytest.importorskip("torch", reason="PyTorch not installed (optional oracle)")
    torch.manual_seed(0)
    module = (torch.nn.GRUCell if name == "gru" else torch.nn.LSTMCell)(3, 4, dtype=torch.float64)
    cell = CELLS[name](3, 4, 5)
    V = np.random.default_rng(0).standard_normal((5, 5))
    p = cell.from_torch({k: v.numpy() for k, v in module.state_dict().items()}, V)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3)))
    with torch.no_grad():
        out = module(x)
    ref = out.numpy() if name == "gru" else torch.cat(out, 1).numpy()
    s, _ = cell.step(p, np.zeros((2, cell.n_state)), x.numpy(), xp=np)
    assert_close(s, ref, rtol=0, atol=1e-14)


def test_converter_refuses_bad_input_in_one_line():
    cell = GRU(3, 4, 5)
    t = cell.to_torch(cell.init(0))
    cases = [
        ({k: v for k, v in t.items() if k != "bias_hh"}, None, ValueError,
         r"^tensors must have keys"),
        ({**t, "weight_hh": t["weight_hh"][:, :3]}, None, ValueError,
         r"^tensors\['weight_hh'\] must have shape \(12, 4\), not \(12, 3\)$"),
        ({k: v for k, v in t.items() if k != "V"}, None, TypeError, r"^V is required"),
        ([t], None, TypeError, r"^tensors must be a dict"),
        (t, np.zeros((5, 4)), ValueError, r"^params\['V'\] must have shape"),
    ]
    for tensors, V, error, message in cases:
        with pytest.raises(error, match=message) as info:
            cell.from_torch(tensors, V)
        assert "\n" not in str(info.value)


# ---- every method -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.linalg) if m == "ok" else m
                                    for m in minirtrl.METHODS])
def test_every_method_runs(backend, to_xp, name, method):
    xp, device = backend.xp, backend.device
    cell = CELLS[name](3, 3, 4)
    p = cell.init(0, xp=xp, device=device, init_scale=0.5)
    xs, ys, mask = (to_xp(a) for a in random_problem(cell, 3, B, seed=1))
    rank = 2 if method in RANKED else None
    if method == "rflo":  # defined for the leaky RNN alone
        with pytest.raises(ValueError, match=r"^rflo is defined for the leaky RNN"):
            minirtrl.sequence_gradient(method, cell, p, xs, ys, mask, rank=rank)
        return
    loss, grads = minirtrl.sequence_gradient(method, cell, p, xs, ys, mask, rank=rank, seed=2)
    exact_loss, _ = minirtrl.sequence_gradient("bptt", cell, p, xs, ys, mask)
    assert_close(loss, exact_loss, xp=xp, device=device, rtol=1e-12)
    assert {k: tuple(v.shape) for k, v in grads.items()} == cell.shapes()
    for k, v in grads.items():
        v = to_numpy(v)
        assert np.all(np.isfinite(v)) and np.any(v != 0), k


# ---- the estimators: one step by enumerating its signs ------------------------------------------
def fd_exact_step(cell, p, s_prev, x, G_prev):
    """Exact RTRL one step, ∂s_t/∂s_{t-1} G + ∂s_t/∂W (immediate), both by finite differences."""
    H = per_sample(numerical_jacobian(lambda s: cell.step(p, s, x, xp=np)[0], s_prev))
    out = {}
    for k in cell.blocks:
        F = numerical_jacobian(lambda W, k_=k: cell.step({**p, k_: W}, s_prev, x, xp=np)[0], p[k])
        out[k] = np.einsum("bij,bjmk->bimk", H, G_prev[k]) + F
    return out


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("method, rank", [("uoro", None), ("kf", None), ("kf-avg", 2),
                                          ("ok", 1), ("ok", 2)])
def test_one_step_mean_by_sign_enumeration_is_exact_rtrl(name, method, rank):
    cell = CELLS[name](2, 2, 3)
    p = cell.init(4, xp=np, init_scale=0.8)
    xs, ys, _ = random_problem(cell, 5, B, seed=6, masked=False)
    algo = minirtrl.online(method, cell, rank)
    state, rng = algo.init(B), np.random.default_rng(2)
    for t in range(4):  # a random, nonzero past
        state, _, _ = algo.step(p, state, xs[t], ys[t], signs=algo.draw_signs(rng, B))
    G_prev = algo.influence(state)
    assert all(np.abs(G_prev[k]).max() > 1e-3 for k in cell.blocks)
    target = fd_exact_step(cell, p, state.s, xs[4], G_prev)
    e = testing.expected_step(algo, p, state, xs[4], ys[4])
    assert e.patterns == 2 ** sum(math.prod(s[1:]) for s in algo.sign_shapes(B).values())
    one, _, _ = algo.step(p, state, xs[4], ys[4], signs=algo.draw_signs(rng, B))
    for k in cell.blocks:
        scale = np.abs(target[k]).max()
        assert_close(e.influence[k], target[k], rtol=0, atol=1e-8 * scale, err_msg=k)
        assert_close(e.influence[k], e.exact[k], rtol=0, atol=1e-13 * scale, err_msg=k)
        assert_close(e.grads[k], e.exact_grads[k], rtol=1e-11, atol=1e-14, err_msg=k)
    # and one pattern is not exact: the step is genuinely random
    assert max(np.abs(algo.influence(one)[k] - target[k]).max() / np.abs(target[k]).max()
               for k in cell.blocks) > 1e-3


# ---- the SnAp-1 pattern -------------------------------------------------------------------------
@pytest.mark.parametrize("name", CELLS)
def test_snap_units_are_the_structural_nonzeros_of_M(name):
    """Listed entries are nonzero at random parameters and state, every other entry of the
    immediate Jacobian is exactly zero (by finite differences of the step, not the cell's M)."""
    cell, p, s_prev, x = setup(name, n=3)
    n, gates = cell.n_hidden, 3 if name == "gru" else 4
    want_width = 1 if name == "gru" else 2
    for k in cell.blocks:
        units = cell.snap_units(k)
        assert units.dtype == np.int64 and units.shape == (gates * n, want_width)
        F = numerical_jacobian(lambda W, k_=k: cell.step({**p, k_: W}, s_prev, x, xp=np)[0], p[k])
        reach = np.abs(F).max(axis=(0, 3))  # (n_state, m): |∂s[u]/∂W[i, :]| over samples, columns
        for i in range(units.shape[0]):
            listed = [u for u in units[i] if u >= 0]
            assert listed == sorted(listed)
            assert set(np.flatnonzero(reach[:, i] > 1e-9)) == set(listed), (k, i)
            assert np.all(np.delete(reach[:, i], listed) == 0.0), (k, i)
    if name == "lstm":  # the output gate's rows reach h alone
        assert np.all(cell.snap_units("W_hh")[3 * n:, 1] == -1)
    with pytest.raises(ValueError, match=r"^name must be one of W_ih, W_hh, not 'W1'$"):
        cell.snap_units("W1")


# ---- construction -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CELLS)
def test_init_layout_draws_and_interface(name):
    cell = CELLS[name](3, 4, 5)
    gates = 3 if name == "gru" else 4
    p = cell.init(7, xp=np, init_scale=0.1)
    want = {"W_ih": (gates * 4, 4), "W_hh": (gates * 4, 5), "V": (5, 5)}
    assert {k: v.shape for k, v in p.items()} == want == cell.shapes()
    rng = np.random.default_rng(7)  # N(0, init_scale²), in the order W_ih, W_hh, V
    for k, shape in want.items():
        assert_close(p[k], rng.standard_normal(shape) * 0.1, rtol=0, err_msg=k)
    assert cell.blocks == ("W_ih", "W_hh") and isinstance(cell, minirtrl.cells.Cell)
    assert cell.n_state == (4 if name == "gru" else 8)
    assert getattr(minirtrl, type(cell).__name__) is CELLS[name]


@pytest.mark.parametrize("name", CELLS)
def test_bad_sizes_are_refused(name):
    with pytest.raises(ValueError, match="n_hidden"):
        CELLS[name](3, 0, 5)
    with pytest.raises(ValueError, match="n_in"):
        CELLS[name](True, 4, 5)
