"""Helpers shared by the estimator tests (NumPy float64): small cells, warm states, exact steps."""

import numpy as np

import minirtrl
from minirtrl import rtrl, testing
from minirtrl.rng import draw_signs


def make_cell(depth, n=4, n_in=3, scale=0.5, seed=0):
    """A small RHN (3 outputs) and its parameters."""
    cell = minirtrl.RHN(n_in, n, 3, depth=depth)
    return cell, cell.init(seed, xp="numpy", init_scale=scale, gate_bias=0.5)


def run_steps(module, cell, params, state, s, rng, steps, rank):
    """``steps`` random steps of an influence method; returns ``(state, s)``."""
    B = s.shape[0]
    for _ in range(steps):
        s, layers = cell.step(params, s, rng.standard_normal((B, cell.n_in)), xp=np)
        noise = draw_signs(rng, module.noise_shapes(cell, B, rank), xp=np, dtype=np.float64)
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


def exact_step(cell, params, G_prev, layers):
    """Exact RTRL one step from the dense influence ``G_prev``: H G + F, per block."""
    B, n = next(iter(G_prev.values())).shape[:2]
    state = rtrl.State(tuple(np.reshape(G_prev[k], (B, n, -1)) for k in cell.blocks))
    return rtrl.influence(cell, rtrl.update(cell, params, state, layers, xp=np), xp=np)


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
