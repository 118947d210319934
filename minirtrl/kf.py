"""KF-RTRL (Mujika, Meier & Steger 2018): one random Kronecker product per block.

Per sample and recurrent block l the influence ``G^l = ds_t/dW_l`` is estimated by
``u^l ⊗ A^l``, i.e. ``ds_t/dW_l[i, j] ≈ A^l[:, i] · u^l[j]``. One step (papers.md §5,
with ``ĥ_t -> a_l`` and ``D_t -> P_l D_l`` per block, SPEC §2)::

    HA  = H_t A_{t-1}                                   # the O(n² · 2n) product
    p1  = sqrt(‖HA‖ / ‖u_{t-1}‖),   p2 = sqrt(‖P_l D_l‖ / ‖a_l‖)
    c1, c2 ∈ {-1, +1} independent, per sample and block
    u_t = c1 p1 u_{t-1} + c2 p2 a_l
    A_t = c1 HA / p1    + c2 P_l D_l / p2

so that ``E[u_t ⊗ A_t] = H_t (u_{t-1} ⊗ A_{t-1}) + a_l ⊗ P_l D_l``: unbiased by
induction for fixed parameters. The p's minimise the added variance, which is
``2 (‖u‖‖HA‖‖a‖‖PD‖ + <u, a><HA, PD>)`` per step (papers.md §5).

Zero norms (a sequence start, a reset stream): where ``‖u‖·‖HA‖ = 0`` the old term is
zero and the step is exact and deterministic, ``u = a_l, A = P_l D_l``; where
``‖a‖·‖PD‖ = 0`` the new term is zero and ``u, A = u, HA``. Both are selected with
``xp.where`` (no division by zero, no branching on values).

The code keeps r independent chains per block, stacked, so that ``kf-avg``
(``minirtrl.kfavg``: the mean of r independent KF-RTRL estimates, the OK paper's
baseline) shares every line; ``kf`` is r = 1. All r chains of all samples are advanced
by one batched product, H_t broadcast over the stacked A's (``influence.apply_left``), no
loop over r or samples. Norms are one pass each (``vecdot``, no squared temporaries).

Notation (code name -> symbol):

    u        u^l          (B, r, k_l)     row factor, indexes the columns of W_l
    A        A^l          (B, r, n, 2n)   column factor, indexes (state, row of W_l)
    a        a_l = ĥ_t    (B, k_l)        micro-layer input [x; s^{l-1}; 1] or [s^{l-1}; 1]
    PD       P_l D_l      (B, n, 2n)      ∂s_t/∂z_l
    H        H_t          (B, n, n)       ∂s_t/∂s_{t-1}
    HA       H_t A^l      (B, r, n, 2n)
    c1, c2   c1, c2       (B, r)          random signs, ``noise[f"W{l}"][..., 0 / 1]``

Cost per step and sample: forming H_t and all P_l D_l O(L n³) (``rhn.influence_pieces``;
O(n²) at depth 1), then r L products n×n by n×2n, O(r L n³), and three elementwise
passes over the A's (norm of H A, the two scaled terms). Memory r Σ_l (k_l + 2n²).
"""

from typing import NamedTuple

from . import rhn
from .influence import apply_left, dense_from_factors, grads_from_factors
from .influence import reset  # noqa: F401 - part of the method interface


class State(NamedTuple):
    u: tuple  # per block: (B, r, k_l)
    A: tuple  # per block: (B, r, n, 2n)


# ---- the interface (kf: r = 1) ------------------------------------------------------
def init(cell, batch, *, rank=None, xp, dtype, device=None):
    """Zero factors for ``batch`` streams: ``u^l`` (B, 1, k_l), ``A^l`` (B, 1, n, 2n)."""
    return init_chains(cell, batch, _single(rank), xp=xp, dtype=dtype, device=device)


def noise_shapes(cell, batch, rank=None):
    """Signs ``(c1, c2)`` per sample and block: ``{"W1": (B, 1, 2), ...}``."""
    return chain_noise_shapes(cell, batch, _single(rank))


def _single(rank):
    if rank not in (None, 1):
        raise ValueError(f"rank must be 1 (or None) for kf, not {rank!r}; use kf-avg for r > 1")
    return 1


# ---- r stacked chains (shared with kfavg) -------------------------------------------
def init_chains(cell, batch, r, *, xp, dtype, device=None):
    """Zero factors of ``r`` chains per block: ``u^l`` (B, r, k_l), ``A^l`` (B, r, n, 2n)."""
    n = cell.n_hidden
    return State(
        tuple(
            xp.zeros((batch, r, cell.width(l)), dtype=dtype, device=device)
            for l in range(1, cell.depth + 1)
        ),
        tuple(xp.zeros((batch, r, n, 2 * n), dtype=dtype, device=device) for _ in cell.blocks),
    )


def chain_noise_shapes(cell, batch, r):
    """``{"W1": (B, r, 2), ...}``: last axis is (c1, c2) of each chain."""
    return {name: (batch, r, 2) for name in cell.blocks}


def update(cell, params, state, layers, noise, *, xp):
    """One KF-RTRL step of every chain of every block (r read from the state).

    ``noise[f"W{l}"]`` (B, r, 2) holds the signs (c1, c2). Cost O(B (L n³ + r L n³)).
    """
    H, pds = rhn.influence_pieces(cell, params, layers, xp=xp)
    us, As = [], []
    for name, u, A, PD, layer in zip(cell.blocks, state.u, state.A, pds, layers):
        u, A = kf_step(u, A, H, layer.a, PD, noise[name], xp=xp)
        us.append(u)
        As.append(A)
    return State(tuple(us), tuple(As))


def kf_step(u, A, H, a, PD, signs, *, xp):
    """The KF-RTRL update of r stacked chains of one block (see the module docstring).

    ``u`` (B, r, k), ``A`` (B, r, n, 2n), ``H`` (B, n, n), ``a`` (B, k), ``PD`` (B, n, 2n),
    ``signs`` (B, r, 2). Returns the new ``(u, A)``. Cost: the product ``H A`` plus three
    elementwise passes over A (the norm of ``H A``, its scaling, the added ``P_l D_l``).
    """
    HA = apply_left(H, A, xp=xp)  # (B, r, n, 2n)
    B, r, n, two_n = HA.shape
    n_u = norm(u, xp=xp)  # (B, r)
    n_HA = norm(xp.reshape(HA, (B, r, n * two_n)), xp=xp)  # (B, r)
    n_a = norm(a, xp=xp)[:, None]  # (B, 1)
    n_PD = norm(xp.reshape(PD, (B, n * two_n)), xp=xp)[:, None]  # (B, 1)
    old = (n_u > 0) & (n_HA > 0)  # u ⊗ HA ≠ 0                      (B, r)
    new = (n_a > 0) & (n_PD > 0)  # a ⊗ PD ≠ 0                      (B, 1)
    mix = old & new  # both terms present: the random step          (B, r)
    one = xp.ones_like(n_HA)
    p1 = xp.sqrt(xp.where(mix, n_HA, one) / xp.where(mix, n_u, one))  # (B, r)
    p2 = xp.sqrt(xp.where(mix, n_PD, one) / xp.where(mix, n_a, one))  # (B, r)
    # weight of the old and of the new term: ±1 when mixing, else 1/0 (exact step)
    carry = xp.astype(old, u.dtype)  # 1 where the old term is kept alone
    w_old = xp.where(mix, signs[:, :, 0], carry)
    w_new = xp.where(mix, signs[:, :, 1], 1.0 - carry)
    u = (w_old * p1)[:, :, None] * u + (w_new * p2)[:, :, None] * a[:, None, :]
    A = (w_old / p1)[:, :, None, None] * HA + (w_new / p2)[:, :, None, None] * PD[:, None, :, :]
    return u, A


def norm(x, *, axis=-1, xp):
    """Euclidean norm along one (negative) axis, one pass, no temporary: ``sqrt(vecdot(x, x))``."""
    return xp.sqrt(xp.vecdot(x, x, axis=axis))


def grads(cell, state, c, *, xp):
    """``c_t · mean_i (u_i ⊗ A_i)`` summed over the batch: ``{"W1": (2n, k_1), ...}``."""
    return {  # the 1/r of the mean goes on the small factor u
        name: grads_from_factors(u * (1.0 / u.shape[1]), A, c, xp=xp)
        for name, u, A in zip(cell.blocks, state.u, state.A)
    }


def influence(cell, state, *, xp):
    """The estimate ``mean_i u_i ⊗ A_i`` as dense ``{"W1": (B, n, 2n, k_1), ...}``."""
    return {
        name: dense_from_factors(u, A, xp=xp) / u.shape[1]
        for name, u, A in zip(cell.blocks, state.u, state.A)
    }
