"""Helpers shared by the estimator tests (NumPy float64): small cells, warm states, exact steps,
and the reference forms only the tests use."""

import numpy as np

import minirtrl
from minirtrl import testing
from minirtrl.methods import host_signs, map_state


def draw_signs(rng, shapes, *, xp, dtype, device=None):
    """One step's signs from ``rng`` (``methods.host_signs``), moved to ``xp``."""
    host = host_signs(rng, shapes)
    return {k: xp.asarray(v, dtype=dtype, device=device) for k, v in host.items()}


def every_signs(shapes):
    """One signs dict per pattern of ``testing.sign_patterns(shapes)``, the same pattern for
    every sample (the batch axis of ``shapes`` broadcast)."""
    for pattern in testing.sign_patterns(shapes):
        yield {k: np.array(np.broadcast_to(v, (shapes[k][0], *v.shape)))
               for k, v in pattern.items()}


def reset(state, keep):
    """Zero the streams of a method's state where ``keep`` (B,) is 0: the plain form of the
    reset every ``update(..., keep=keep)`` folds into its step."""
    return map_state(lambda x: x * keep[(...,) + (None,) * (x.ndim - 1)], state)


def make_cell(depth, n=4, n_in=3, scale=0.5, seed=0):
    """A small RHN (3 outputs) and its parameters."""
    cell = minirtrl.RHN(n_in, n, 3, depth=depth)
    return cell, cell.init(seed, init_scale=scale, gate_bias=0.5)


def run_steps(module, cell, params, state, s, rng, steps, rank):
    """``steps`` random steps of an influence method; returns ``(state, s)``."""
    B = s.shape[0]
    for _ in range(steps):
        s, layers = cell.step(params, s, rng.standard_normal((B, cell.n_in)), xp=np)
        noise = draw_signs(rng, module.sign_shapes(cell, B, rank), xp=np, dtype=np.float64)
        state = module.update(cell, params, state, layers, noise, xp=np)
    return state, s


def warm_start(module, cell, params, *, B=2, steps=3, rank=1, seed=1):
    """A state after ``steps`` random steps, plus the layers of one more step."""
    rng = np.random.default_rng(seed)
    state = module.init(cell, B, rank=rank, xp=np, dtype=np.float64)
    s = np.zeros((B, cell.n_hidden))
    state, s = run_steps(module, cell, params, state, s, rng, steps, rank)
    _, layers = cell.step(params, s, rng.standard_normal((B, cell.n_in)), xp=np)
    return state, layers


def exact_step(cell, params, G_prev, cache):
    """Exact RTRL one step from the dense influence ``G_prev``, written densely from the cell's
    pieces (eq. (9), ``G_t = H_t G + a_l ⊗ M_l``), independent of ``rtrl`` and ``testing``."""
    H, Ms = cell.influence_pieces(params, cache, xp=np)
    return {k: np.einsum("bij,bjmk->bimk", H, G_prev[k])
            + Ms[l][:, :, :, None] * cache[l].a[:, None, None, :]
            for l, k in enumerate(cell.blocks)}


def immediate(cell, params, layers):
    """F_t^l = a_l ⊗ P_l D_l per block, (B, n, 2n, k_l), via exact RTRL from zero."""
    B, n = layers[0].a.shape[0], cell.n_hidden
    zero = {k: np.zeros((B, n) + params[k].shape) for k in cell.blocks}
    return exact_step(cell, params, zero, layers)


def small_problem(depth, T=6, B=2):
    """A small cell, its parameters and a random masked sequence (seed 7)."""
    cell, params = make_cell(depth, n=4, n_in=3, scale=0.5)
    xs, ys, mask = testing.random_problem(cell, T, B, seed=7)
    return cell, params, xs, ys, mask


def jvp_state(cell, params, cache, v):
    """``H_t v`` of an RHN step for v (B, n), without forming H_t: the plain form of the
    tangent half of ``RHN.jvp_vjp`` (one micro-layer at a time, eqs. (4), (5))."""
    n = cell.n_hidden
    for l, cache_l in enumerate(cache, start=1):
        ws = params[f"W{l}"][:, cell.state_columns(l)]  # (2n, n)
        h, tau, s_prev = cache_l.h, cache_l.tau, cache_l.s_prev
        dh, dg = tau * (1.0 - h * h), (h - s_prev) * tau * (1.0 - tau)
        wv = v @ ws.T  # (B, 2n)
        v = (1.0 - tau) * v + dh * wv[:, :n] + dg * wv[:, n:]
    return v
