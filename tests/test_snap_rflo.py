"""SnAp-1 (``snap1``) and RFLO (``rflo``): each equal, step by step, to its definition written
densely here (the influence recurrence masked to the immediate Jacobian's pattern; for RFLO
with H_t replaced by (1 − α) I); equal to exact RTRL where the dropped terms are zero (a
diagonal or zero recurrent matrix); refused for cells they are not defined on; resets,
the online API and the readout's fixed feedback matrix; the state size of order one BPTT
step (shapes, not times)."""

import numpy as np
import pytest

import minirtrl
from minirtrl import rflo, rtrl, snap
from minirtrl.methods import INFLUENCE, METHODS, leaves, map_state
from minirtrl.testing import assert_close, random_problem

B, T = 3, 5
CELLS = {
    "vanilla": lambda: minirtrl.VanillaRNN(3, 4, 5, alpha=0.6),
    "rhn1": lambda: minirtrl.RHN(3, 4, 5, depth=1),
    "rhn2": lambda: minirtrl.RHN(3, 4, 5, depth=2),
    "gru": lambda: _gated("GRU"),
    "lstm": lambda: _gated("LSTM"),
}


def _gated(name):
    cls = getattr(minirtrl, name, None)
    if cls is None:
        pytest.skip(f"minirtrl.{name} is not there yet")
    return cls(3, 4, 5)


def problem(cell_name, seed=0, scale=0.5):
    cell = CELLS[cell_name]()
    params = cell.init(seed, init_scale=scale)
    xs, ys, mask = random_problem(cell, T, B, seed=seed + 1)
    return cell, params, xs, ys, mask


def recurrent_to(params, cell, value):
    """``params`` with W1's state columns (the recurrent matrix W_s) replaced by ``value``."""
    W1 = params["W1"].copy()
    W1[:, cell.n_in:cell.n_in + cell.n_hidden] = value
    return {**params, "W1": W1}


# ---- the definitions, dense, in plain NumPy --------------------------------------------------
def pattern_mask(cell, name, m):
    """mask[u, i] = 1 where state entry u is listed for row i by ``cell.snap_units``."""
    units = np.asarray(cell.snap_units(name))
    mask = np.zeros((cell.n_state, m))
    for i in range(m):
        for u in units[i]:
            if u >= 0:
                mask[u, i] = 1.0
    return mask


def error_to_c(V, s, y, mask, feedback=None):
    """c_t of the summed softmax loss, written out: (softmax − e_y) ⊙ mask times V[:, :n]
    (or F^T); zero on the state entries the readout does not read."""
    n = V.shape[1] - 1
    z = np.concatenate([s[:, :n], np.ones((s.shape[0], 1))], axis=1) @ V.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    e = (p - np.eye(V.shape[0])[y]) * mask[:, None]
    c = e @ (V[:, :n] if feedback is None else feedback.T)
    return np.concatenate([c, np.zeros((s.shape[0], s.shape[1] - n))], axis=1)


def masked_rtrl(cell, params, xs, ys, mask, *, rflo_H=False, feedback=None, G0=None, s0=None):
    """G ← mask ⊙ (H G + a ⊗ M) from the cell's pieces (H ← (1 − α) I for ``rflo_H``);
    returns the influence after every step and the summed gradient c_t · G_t."""
    shapes = cell.shapes()
    masks = {k: pattern_mask(cell, k, shapes[k][0]) for k in cell.blocks}
    s = np.zeros((B, cell.n_state)) if s0 is None else s0
    G = dict(G0) if G0 else {k: np.zeros((B, cell.n_state) + shapes[k]) for k in cell.blocks}
    grads = {k: np.zeros(shapes[k]) for k in cell.blocks}
    history = []
    for t in range(xs.shape[0]):
        s, cache = cell.step(params, s, xs[t], xp=np)
        H, Ms = cell.influence_pieces(params, cache, xp=np)
        if rflo_H:
            H = (1.0 - cell.alpha) * np.broadcast_to(np.eye(cell.n_state), H.shape)
        for k, M, c_l in zip(cell.blocks, Ms, cache, strict=True):
            F = M[:, :, :, None] * c_l.a[:, None, None, :]
            G[k] = masks[k][None, :, :, None] * (np.einsum("buv,bvij->buij", H, G[k]) + F)
        c = error_to_c(params["V"], s, ys[t], mask[t], feedback)
        for k in cell.blocks:
            grads[k] += np.einsum("bu,buij->ij", c, G[k])
        history.append({k: v.copy() for k, v in G.items()})
    return history, grads


def run_online(algo, params, xs, ys, mask, *, state=None):
    """Step ``algo`` over the sequence: the dense influence after every step, the summed
    gradients and the last state."""
    state = algo.init(B) if state is None else state
    history, total = [], None
    for t in range(xs.shape[0]):
        state, _, g = algo.step(params, state, xs[t], ys[t], mask[t])
        total = g if total is None else {k: total[k] + g[k] for k in total}
        history.append(algo.influence(state))
    return history, total, state


# ---- SnAp-1 is its definition ------------------------------------------------------------------
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_snap1_is_masked_rtrl_step_by_step(cell_name):
    cell, p, xs, ys, mask = problem(cell_name)
    want, want_grads = masked_rtrl(cell, p, xs, ys, mask)
    got, got_grads, _ = run_online(minirtrl.online("snap1", cell), p, xs, ys, mask)
    for t in range(T):
        for k in cell.blocks:
            assert_close(got[t][k], want[t][k], rtol=1e-12, atol=1e-14, err_msg=f"{k} t={t}")
    for k in cell.blocks:
        assert_close(got_grads[k], want_grads[k], rtol=1e-12, atol=1e-14)
    exact = minirtrl.sequence_gradient("rtrl", cell, p, xs, ys, mask)[1]
    assert np.abs(exact[cell.blocks[-1]] - got_grads[cell.blocks[-1]]).max() > 1e-4  # biased


@pytest.mark.parametrize("cell_name", ["vanilla", "rhn1", "rhn2"])
def test_snap1_on_every_backend(backend, to_xp, cell_name):
    cell, p, xs, ys, mask = problem(cell_name)
    want, want_grads = masked_rtrl(cell, p, xs, ys, mask)
    px = {k: to_xp(v) for k, v in p.items()}
    _, grads = minirtrl.sequence_gradient("snap1", cell, px, to_xp(xs), to_xp(ys), to_xp(mask))
    for k in cell.blocks:
        assert_close(grads[k], want_grads[k], xp=backend.xp, device=backend.device,
                     rtol=1e-12, atol=1e-14)
    algo = minirtrl.online("snap1", cell)
    state = algo.init(B, xp=backend.xp, device=backend.device)
    for t in range(T):
        state, _, _ = algo.step(px, state, to_xp(xs[t]), to_xp(ys[t]), to_xp(mask[t]))
    for k, G in algo.influence(state).items():
        assert_close(G, want[-1][k], xp=backend.xp, device=backend.device, rtol=1e-12,
                     atol=1e-14)


def test_snap1_keeps_the_whole_influence_of_blocks_that_reach_every_unit():
    """In a depth-2 RHN, W1 reaches every unit within a step (c_1 = n): its SnAp-1 influence
    is exact RTRL's; W2's is not."""
    cell, p, xs, ys, mask = problem("rhn2")
    assert cell.snap_units("W1").shape == (8, 4) and cell.snap_units("W2").shape == (8, 1)
    exact = minirtrl.sequence_gradient("rtrl", cell, p, xs, ys, mask)[1]
    got = minirtrl.sequence_gradient("snap1", cell, p, xs, ys, mask)[1]
    assert_close(got["W1"], exact["W1"], rtol=1e-12, atol=1e-15)
    assert np.abs(got["W2"] - exact["W2"]).max() > 1e-4


@pytest.mark.parametrize("recurrent", ["diagonal", "zero"])
def test_snap1_is_exact_rtrl_where_the_recurrent_jacobian_is_diagonal(recurrent):
    cell, p, xs, ys, mask = problem("vanilla")
    n = cell.n_hidden
    diag = np.diag(np.random.default_rng(5).uniform(-1.5, 1.5, n))
    p = recurrent_to(p, cell, diag if recurrent == "diagonal" else 0.0)
    loss, exact = minirtrl.sequence_gradient("rtrl", cell, p, xs, ys, mask)
    loss_s, got = minirtrl.sequence_gradient("snap1", cell, p, xs, ys, mask)
    assert_close(loss_s, loss, rtol=0)
    for k in exact:
        assert_close(got[k], exact[k], rtol=1e-12, atol=1e-15)
    G = minirtrl.exact_influence(cell, p, xs)["W1"]
    history, _, _ = run_online(minirtrl.online("snap1", cell), p, xs, ys, mask)
    assert_close(history[-1]["W1"], G, rtol=1e-12, atol=1e-15)


# ---- RFLO is its definition ---------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_rflo_is_rtrl_with_the_recurrent_jacobian_dropped(alpha):
    cell = minirtrl.VanillaRNN(3, 4, 5, alpha=alpha)
    p = cell.init(0, init_scale=0.5)
    xs, ys, mask = random_problem(cell, T, B, seed=1)
    want, want_grads = masked_rtrl(cell, p, xs, ys, mask, rflo_H=True)
    got, got_grads, _ = run_online(minirtrl.online("rflo", cell), p, xs, ys, mask)
    for t in range(T):
        assert_close(got[t]["W1"], want[t]["W1"], rtol=1e-12, atol=1e-15)
    assert_close(got_grads["W1"], want_grads["W1"], rtol=1e-12, atol=1e-15)
    exact = minirtrl.sequence_gradient("rtrl", cell, p, xs, ys, mask)[1]
    assert np.abs(exact["W1"] - got_grads["W1"]).max() > 1e-4  # biased


def test_rflo_traces_by_hand():
    """J_t[i, j] = (1 − α) J_{t-1}[i, j] + α (1 − h_i²) a_j, the forward pass written out."""
    alpha = 0.4
    cell = minirtrl.VanillaRNN(2, 3, 4, alpha=alpha)
    p = cell.init(2, init_scale=0.7)
    xs, ys, mask = random_problem(cell, T, B, seed=3)
    s, J = np.zeros((B, 3)), np.zeros((B, 3, 6))
    for t in range(T):
        a = np.concatenate([xs[t], s, np.ones((B, 1))], axis=1)
        h = np.tanh(a @ p["W1"].T)
        s = (1 - alpha) * s + alpha * h
        J = (1 - alpha) * J + alpha * (1 - h**2)[:, :, None] * a[:, None, :]
    _, _, state = run_online(minirtrl.online("rflo", cell), p, xs, ys, mask)
    assert_close(state.est.J[0][:, :, 0, :], J, rtol=1e-12)
    assert_close(state.s, s, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.25, 0.7, 1.0])
def test_rflo_is_exact_rtrl_when_the_recurrent_weights_are_zero(backend, to_xp, alpha):
    cell = minirtrl.VanillaRNN(3, 4, 5, alpha=alpha)
    p = recurrent_to(cell.init(0, init_scale=0.5), cell, 0.0)
    xs, ys, mask = random_problem(cell, T, B, seed=1)
    px = {k: to_xp(v) for k, v in p.items()}
    args = (cell, px, to_xp(xs), to_xp(ys), to_xp(mask))
    loss, exact = minirtrl.sequence_gradient("rtrl", *args)
    loss_r, got = minirtrl.sequence_gradient("rflo", *args)
    assert_close(loss_r, loss, rtol=0)
    for k in exact:
        assert_close(got[k], exact[k], rtol=1e-12, atol=1e-15)
    G = minirtrl.exact_influence(cell, px, to_xp(xs))["W1"]
    algo = minirtrl.online("rflo", cell)
    state = algo.init(B, xp=backend.xp, device=backend.device)
    for t in range(T):
        state, _, _ = algo.step(px, state, to_xp(xs[t]))
    assert_close(algo.influence(state)["W1"], G, rtol=1e-12, atol=1e-15)


def test_rflo_and_snap1_differ_where_the_recurrent_jacobian_has_a_diagonal():
    """RFLO drops all of D W_s, SnAp-1 keeps its diagonal: equal only when W_s is zero."""
    cell, p, xs, ys, mask = problem("vanilla")
    diag = recurrent_to(p, cell, np.diag([0.9, -0.8, 0.7, 1.1]))
    g_s = minirtrl.sequence_gradient("snap1", cell, diag, xs, ys, mask)[1]["W1"]
    g_r = minirtrl.sequence_gradient("rflo", cell, diag, xs, ys, mask)[1]["W1"]
    assert np.abs(g_s - g_r).max() > 1e-4
    zero = recurrent_to(p, cell, 0.0)
    g_s = minirtrl.sequence_gradient("snap1", cell, zero, xs, ys, mask)[1]["W1"]
    g_r = minirtrl.sequence_gradient("rflo", cell, zero, xs, ys, mask)[1]["W1"]
    assert_close(g_r, g_s, rtol=1e-12, atol=1e-15)


# ---- the fixed random feedback matrix -------------------------------------------------------
def test_rflo_with_feedback_is_the_formula_by_hand():
    """dW1 = Σ_t Σ_b (F e_t)_i J_t[i, j], e_t the readout's masked softmax error: written out."""
    alpha = 0.5
    cell = minirtrl.VanillaRNN(2, 3, 4, alpha=alpha)
    p = cell.init(1, init_scale=0.6)
    xs, ys, mask = random_problem(cell, T, B, seed=2)
    F = np.random.default_rng(9).standard_normal((3, 4))
    s, J, dW1, dV = np.zeros((B, 3)), np.zeros((B, 3, 6)), np.zeros((3, 6)), np.zeros((4, 4))
    for t in range(T):
        a = np.concatenate([xs[t], s, np.ones((B, 1))], axis=1)
        h = np.tanh(a @ p["W1"].T)
        s = (1 - alpha) * s + alpha * h
        J = (1 - alpha) * J + alpha * (1 - h**2)[:, :, None] * a[:, None, :]
        sb = np.concatenate([s, np.ones((B, 1))], axis=1)
        z = sb @ p["V"].T
        q = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        e = (q - np.eye(4)[ys[t]]) * mask[t][:, None]  # (B, n_out)
        dW1 += np.einsum("bi,bij->ij", e @ F.T, J)
        dV += e.T @ sb
    _, grads = minirtrl.sequence_gradient("rflo", cell, p, xs, ys, mask, feedback=F)
    assert_close(grads["W1"], dW1, rtol=1e-12)
    assert_close(grads["V"], dV, rtol=1e-12)  # the readout's own gradient stays exact
    plain = minirtrl.sequence_gradient("rflo", cell, p, xs, ys, mask)[1]
    assert np.abs(plain["W1"] - dW1).max() > 1e-3  # the feedback matters
    assert_close(plain["V"], dV, rtol=1e-12)


@pytest.mark.parametrize("method", ["rtrl", "snap1", "bptt"])
def test_feedback_replaces_the_readout_matrix_in_every_methods_c(method):
    cell, p, xs, ys, mask = problem("rhn1")
    F = np.random.default_rng(4).standard_normal((4, 5))
    if method == "snap1":
        _, want = masked_rtrl(cell, p, xs, ys, mask, feedback=F)
    else:  # exact influence of every prefix, contracted with c_t = F e_t
        want, s = {"W1": 0.0}, np.zeros((B, 4))
        for t in range(T):
            s, _ = cell.step(p, s, xs[t], xp=np)
            G = minirtrl.exact_influence(cell, p, xs[:t + 1])["W1"]
            want["W1"] = want["W1"] + np.einsum("bu,buij->ij", error_to_c(p["V"], s, ys[t],
                                                                          mask[t], F), G)
    got = minirtrl.sequence_gradient(method, cell, p, xs, ys, mask, feedback=F)[1]
    assert_close(got["W1"], want["W1"], rtol=1e-10, atol=1e-14)


def test_feedback_with_the_mse_loss_on_a_backend(backend, to_xp):
    cell, p, xs, _, mask = problem("vanilla")
    y = np.random.default_rng(6).standard_normal((T, B, 5))
    F = np.random.default_rng(7).standard_normal((4, 5))
    s, J, dW1 = np.zeros((B, 4)), np.zeros((B, 4, 8)), np.zeros((4, 8))
    for t in range(T):  # RFLO with feedback, the squared error written out
        s, cache = cell.step(p, s, xs[t], xp=np)
        d = 0.6 * (1 - cache[0].h ** 2)
        J = 0.4 * J + d[:, :, None] * cache[0].a[:, None, :]
        e = (np.concatenate([s, np.ones((B, 1))], axis=1) @ p["V"].T - y[t]) * mask[t][:, None]
        dW1 += np.einsum("bi,bij->ij", e @ F.T, J)
    px = {k: to_xp(v) for k, v in p.items()}
    _, grads = minirtrl.sequence_gradient("rflo", cell, px, to_xp(xs), to_xp(y), to_xp(mask),
                                          loss="mse", feedback=to_xp(F))
    assert_close(grads["W1"], dW1, xp=backend.xp, device=backend.device, rtol=1e-12)


def test_feedback_is_refused_naming_it():
    cell, p, xs, ys, mask = problem("vanilla")
    with pytest.raises(ValueError, match=r"^feedback must have shape \(4, 5\) \(n_hidden, "
                                         r"n_out\), not \(5, 4\)$"):
        minirtrl.online("rflo", cell, feedback=np.zeros((5, 4)))
    with pytest.raises(TypeError, match=r"^feedback must be float32 or float64, not int64$"):
        minirtrl.sequence_gradient("rflo", cell, p, xs, ys, mask,
                                   feedback=np.zeros((4, 5), dtype=np.int64))
    with pytest.raises(TypeError, match=r"^feedback: list is not a supported array type$"):
        minirtrl.online("rflo", cell, feedback=[[0.0] * 5] * 4)
    with pytest.raises(TypeError, match=r"^feedback must be a float64 array of array_api_compat"
                                        r".numpy, like params, not a float32 array of "
                                        r"array_api_compat.numpy$"):
        minirtrl.sequence_gradient("rtrl", cell, p, xs, ys, mask,
                                   feedback=np.zeros((4, 5), dtype=np.float32))
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"^feedback must be a float64 array of array_api_compat"
                                        r".numpy, like params, not a torch.float64 array of "
                                        r"array_api_compat.torch$"):
        minirtrl.online("rflo", cell, feedback=torch.zeros((4, 5), dtype=torch.float64)).step(
            p, minirtrl.online("rflo", cell).init(B), xs[0], ys[0])


# ---- refusals ---------------------------------------------------------------------------------
class NoPattern:
    """A cell with the interface but without ``snap_units`` (delegates to a vanilla RNN)."""

    def __init__(self):
        self._cell = minirtrl.VanillaRNN(3, 4, 5)
        for name in ("n_in", "n_hidden", "n_out", "n_state", "blocks"):
            setattr(self, name, getattr(self._cell, name))

    def __getattr__(self, name):
        if name in ("shapes", "init", "step", "influence_pieces", "jvp_vjp", "vjp"):
            return getattr(self._cell, name)
        raise AttributeError(name)


class BadPattern(minirtrl.VanillaRNN):
    """A vanilla RNN whose pattern is ``units``."""

    def __init__(self, units):
        super().__init__(3, 4, 5)
        object.__setattr__(self, "units", units)

    def snap_units(self, name):
        return self.units


def test_snap1_refuses_a_cell_without_a_pattern_in_one_line():
    cell = NoPattern()
    p = cell.init(0)
    xs, ys, mask = random_problem(cell, T, B)
    message = (r"^method 'snap1' needs the sparsity pattern of the immediate Jacobian "
               r"\(cell.snap_units\), which NoPattern does not give$")
    with pytest.raises(ValueError, match=message):
        minirtrl.online("snap1", cell)
    with pytest.raises(ValueError, match=message):
        minirtrl.sequence_gradient("snap1", cell, p, xs, ys, mask)
    for method in ("rtrl", "uoro", "kf"):  # the other methods need no pattern
        assert minirtrl.online(method, cell).cell is cell


@pytest.mark.parametrize("units, message", [
    (np.zeros((4, 1)), r"must be an integer array of shape \(4, c\), c >= 1, not float64 "
                       r"\(4, 1\)"),
    (np.zeros((3, 1), dtype=np.int64), r"must be an integer array of shape \(4, c\)"),
    (np.zeros((4, 0), dtype=np.int64), r"must be an integer array of shape \(4, c\)"),
    (np.full((4, 1), 4), r"must hold state indices in \[0, 4\) or -1"),
    (np.full((4, 1), -2), r"must hold state indices in \[0, 4\) or -1"),
    (np.array([[0, 1], [1, 1], [2, -1], [3, -1]]), r"lists a state entry twice in a row"),
])
def test_snap1_refuses_a_bad_pattern_naming_it(units, message):
    with pytest.raises(ValueError, match=r"^BadPattern.snap_units\('W1'\) " + message):
        minirtrl.online("snap1", BadPattern(units))


def test_snap1_takes_a_padded_pattern():
    """-1 pads a row that reaches fewer entries: [[0, -1], [1, 2], ...] is the dense reference's
    mask too (here wider than the true pattern: still masked RTRL)."""
    units = np.array([[0, -1], [1, 2], [-1, 2], [3, 0]])
    cell = BadPattern(units)
    p = cell.init(0, init_scale=0.5)
    xs, ys, mask = random_problem(cell, T, B, seed=1)
    want, want_grads = masked_rtrl(cell, p, xs, ys, mask)
    got, got_grads, _ = run_online(minirtrl.online("snap1", cell), p, xs, ys, mask)
    assert_close(got[-1]["W1"], want[-1]["W1"], rtol=1e-12, atol=1e-15)
    assert_close(got_grads["W1"], want_grads["W1"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cell_name", ["rhn1", "rhn2", "gru", "lstm"])
def test_rflo_refuses_other_cells_in_one_line(cell_name):
    cell = CELLS[cell_name]()
    p = cell.init(0)
    xs, ys, mask = random_problem(cell, T, B)
    message = (r"^rflo is defined for the leaky RNN \(VanillaRNN\) only, not "
               f"{type(cell).__name__}$")
    with pytest.raises(ValueError, match=message):
        minirtrl.online("rflo", cell)
    with pytest.raises(ValueError, match=message):
        minirtrl.sequence_gradient("rflo", cell, p, xs, ys, mask)
    with pytest.raises(ValueError, match=message):  # the module alone too (drivers use it)
        rflo.init(cell, B, xp=np, dtype=np.float64)


def test_rank_is_refused_for_snap1_and_rflo():
    cell = minirtrl.VanillaRNN(3, 4, 5)
    for method in ("snap1", "rflo"):
        with pytest.raises(ValueError, match=r"^rank applies only to methods ok, kf-avg"):
            minirtrl.online(method, cell, 2)


# ---- resets, the online API, the registry ------------------------------------------------------
@pytest.mark.parametrize("method, cell_name", [("snap1", "vanilla"), ("snap1", "rhn1"),
                                               ("snap1", "rhn2"), ("rflo", "vanilla")])
def test_update_with_keep_is_the_update_of_the_reset_state(method, cell_name):
    module = INFLUENCE[method]
    cell, p, xs, _, _ = problem(cell_name)
    state, s = module.init(cell, B, xp=np, dtype=np.float64), np.zeros((B, cell.n_state))
    for t in range(3):  # a nonzero past
        s, cache = cell.step(p, s, xs[t], xp=np)
        state = module.update(cell, p, state, cache, {}, xp=np)
    keep = np.array([1.0, 0.0, 1.0])
    _, cache = cell.step(p, s * keep[:, None], xs[3], xp=np)
    folded = module.update(cell, p, state, cache, {}, xp=np, keep=keep)
    reset = map_state(lambda x: x * keep[:, None, None, None], state)
    plain = module.update(cell, p, reset, cache, {}, xp=np)
    for got, want in zip(leaves(folded), leaves(plain), strict=True):
        assert_close(got, want, rtol=0, atol=0)
    fresh = module.update(cell, p, module.init(cell, B, xp=np, dtype=np.float64), cache, {},
                          xp=np)
    for got, want in zip(leaves(folded), leaves(fresh), strict=True):
        assert_close(got[1], want[1], rtol=0, atol=0)  # the reset stream: the first step
        assert np.abs(got[0] - want[0]).max() > 1e-6  # the others carry their past


@pytest.mark.parametrize("method", ["snap1", "rflo"])
def test_step_loop_is_sequence_gradient_and_takes_no_signs(method):
    cell, p, xs, ys, mask = problem("vanilla")
    loss, grads = minirtrl.sequence_gradient(method, cell, p, xs, ys, mask, seed=3)
    algo = minirtrl.online(method, cell)
    assert algo.sign_shapes(B) == {}
    state, total, summed = algo.init(B), 0.0, None
    for t in range(T):
        state, l_t, g_t = algo.step(p, state, xs[t], ys[t], mask[t], signs={})
        total = total + l_t
        summed = g_t if summed is None else {k: summed[k] + g_t[k] for k in summed}
    assert_close(np.sum(total), loss, rtol=0, atol=0)
    for k in grads:
        assert_close(summed[k], grads[k], rtol=0, atol=0)
    other = minirtrl.sequence_gradient(method, cell, p, xs, ys, mask, seed=99)[1]
    for k in grads:  # deterministic: the seed does not matter
        assert_close(other[k], grads[k], rtol=0, atol=0)
    assert_close(algo.grads(state, np.ones((B, 4)))["W1"],
                 np.einsum("bu,buij->ij", np.ones((B, 4)), algo.influence(state)["W1"]),
                 rtol=1e-12)


@pytest.mark.parametrize("cell_name", ["vanilla", "rhn2"])
def test_a_start_is_projected_on_the_pattern(cell_name):
    """From ``start(s0, snap.from_influence(cell, G0))`` the method is masked RTRL from the
    projection of G0; ``random_start`` too runs (entries of padded slots are ignored)."""
    cell, p, xs, ys, mask = problem(cell_name)
    shapes = cell.shapes()
    rng = np.random.default_rng(8)
    G0 = {k: rng.standard_normal((B, cell.n_state) + shapes[k]) for k in cell.blocks}
    s0 = rng.uniform(-1, 1, (B, cell.n_state))
    projected = {k: G0[k] * pattern_mask(cell, k, shapes[k][0])[None, :, :, None]
                 for k in cell.blocks}
    algo = minirtrl.online("snap1", cell)
    start = algo.start(s0, snap.from_influence(cell, G0))
    for k, v in algo.influence(start).items():
        assert_close(v, projected[k], rtol=0)
    _, want_grads = masked_rtrl(cell, p, xs, ys, mask, G0=projected, s0=s0)
    _, grads = minirtrl.sequence_gradient("snap1", cell, p, xs, ys, mask, start=start)
    for k in cell.blocks:
        assert_close(grads[k], want_grads[k], rtol=1e-12, atol=1e-14)
    random = algo.random_start(B, seed=1)
    _, g = minirtrl.sequence_gradient("snap1", cell, p, xs, ys, mask, start=random)
    assert all(np.isfinite(v).all() for v in g.values())


def test_registry_lists_snap1_and_rflo_last():
    assert METHODS == ("bptt", "rtrl", "uoro", "kf", "ok", "kf-avg", "snap1", "rflo")
    assert INFLUENCE["snap1"] is snap and INFLUENCE["rflo"] is rflo


# ---- the cost claim: the state of one BPTT step -------------------------------------------------
@pytest.mark.parametrize("cell_name", ["vanilla", "rhn1", "rhn2", "gru", "lstm"])
def test_snap1_state_is_the_pattern_times_the_columns(cell_name):
    """Per sample Σ_l m_l c_l k_l numbers; with one unit per row (c_l = 1) that is the size of
    the weights, n_state times less than exact RTRL's n_state · m_l · k_l."""
    cell = CELLS[cell_name]()
    shapes = cell.shapes()
    per_sample = sum(a.size for a in leaves(snap.init(cell, 1, xp=np, dtype=np.float64)))
    exact = sum(a.size for a in leaves(rtrl.init(cell, 1, xp=np, dtype=np.float64)))
    widths = {k: np.asarray(cell.snap_units(k)).shape[1] for k in cell.blocks}
    assert per_sample == sum(shapes[k][0] * widths[k] * shapes[k][1] for k in cell.blocks)
    assert exact == sum(cell.n_state * shapes[k][0] * shapes[k][1] for k in cell.blocks)
    if cell_name in ("vanilla", "rhn1", "gru"):  # one unit per row: the size of the weights
        assert per_sample == sum(np.prod(shapes[k]) for k in cell.blocks)
        assert exact == cell.n_state * per_sample
    if cell_name == "rhn2":  # W1 reaches every unit (c_1 = n): RTRL's size; W2 c_2 = 1
        assert widths == {"W1": cell.n_hidden, "W2": 1}


def test_rflo_state_is_the_size_of_the_weights():
    cell = minirtrl.VanillaRNN(3, 6, 5)
    state = rflo.init(cell, 2, xp=np, dtype=np.float64)
    assert [a.shape for a in leaves(state)] == [(2, 6, 1, 3 + 6 + 1)]
    assert sum(a.size for a in leaves(state)) == 2 * cell.shapes()["W1"][0] * 10
    assert sum(a.size for a in leaves(rtrl.init(cell, 2, xp=np, dtype=np.float64))) == \
        6 * sum(a.size for a in leaves(state))
