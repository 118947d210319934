"""UORO (Tallec & Ollivier 2017): a rank-one estimate over all recurrent parameters.

Per sample the influence of every block is estimated by one outer product,
``G^l ≈ s̃ ⊗ θ̃^l`` (``ds_t/dW_l[i, j] ≈ s̃ · θ̃^l[i, j]``), with one state-sized vector
``s̃`` shared by all blocks. One step (papers.md §4)::

    s_f = H_t s̃_{t-1}                          # JVP through the step, H_t never formed
    ν   ∈ {-1, +1}^n, one per sample and step
    δθ^l = ν^T ∂s_t/∂W_l = dz_l ⊗ a_l           # one VJP: dz_l = ν^T P_l D_l
    ρ0 = sqrt(‖θ̃‖ / ‖s_f‖),   ρ1 = sqrt(‖δθ‖ / ‖ν‖)
    s̃_t = ρ0 s_f + ρ1 ν
    θ̃_t = θ̃_{t-1} / ρ0 + δθ / ρ1

Norms are per sample; ‖θ̃‖ and ‖δθ‖ are taken over all blocks jointly. Since
``E[ν ν^T] = I`` and the cross terms are odd in ν while ρ1 is even in ν,
``E[s̃_t ⊗ θ̃_t] = H_t (s̃ ⊗ θ̃) + Σ_l a_l ⊗ P_l D_l``: unbiased for *any* positive ρ0, ρ1
that do not depend on the sign of ν. The ρ's above minimise the variance of the cross
terms (papers.md §4).

Zero norms: where ``‖θ̃‖·‖s_f‖ = 0`` (a sequence start or a reset stream: s̃ = θ̃ = 0) we
take ρ0 = 1, where ``‖δθ‖·‖ν‖ = 0`` ρ1 = 1; the step then stays exact in expectation and
finite. (The official code instead adds ε = 1e-5 to every norm in both ratios, with norms
taken over the whole minibatch, papers.md §4; the exact guard keeps the per-sample
estimates independent of each other and of ε.)

The gradient of loss_t is ``Σ_b (c_b · s̃_b) θ̃_b^l`` with the influence already updated
by step t; the readout V is exact (``api``).

Notation (code name -> symbol):

    s        s̃               (B, n)          state-side factor
    theta    θ̃ = (θ̃^1, ...)  per block (B, 2n, k_l), parameter-side factor
    s_f      H_t s̃           (B, n)
    nu       ν               (B, n)          ``noise["nu"]``
    dz       dz_l = ν^T P_l D_l   per block (B, 2n); δθ^l = dz_l ⊗ a_l is never stored
    rho0/1   ρ0, ρ1          (B,)

Cost per step and sample: one JVP and one VJP through the step in one walk
(``rhn.jvp_vjp``), O(L n²), plus one read of θ̃ for its norm and one pass writing the new
θ̃ = θ̃/ρ0 + (dz/ρ1) ⊗ a, O(Σ_l 2n k_l) = O(L n²); ‖δθ‖ = (Σ_l ‖dz_l‖² ‖a_l‖²)^½ needs
no pass. Memory n + Σ_l 2n k_l.
"""

from typing import NamedTuple

from . import rhn
from .influence import reset  # noqa: F401 - part of the method interface


class State(NamedTuple):
    s: object  # (B, n)
    theta: tuple  # per block: (B, 2n, k_l)


def init(cell, batch, *, rank=None, xp, dtype, device=None):
    """Zero factors: ``s̃`` (B, n) and ``θ̃^l`` (B, 2n, k_l)."""
    _single(rank)
    n = cell.n_hidden
    return State(
        xp.zeros((batch, n), dtype=dtype, device=device),
        tuple(
            xp.zeros((batch, 2 * n, cell.width(l)), dtype=dtype, device=device)
            for l in range(1, cell.depth + 1)
        ),
    )


def noise_shapes(cell, batch, rank=None):
    """One sign vector ν per sample and step: ``{"nu": (B, n)}``."""
    _single(rank)
    return {"nu": (batch, cell.n_hidden)}


def _single(rank):
    if rank not in (None, 1):
        raise ValueError(f"rank must be 1 (or None) for uoro, not {rank!r}")


def update(cell, params, state, layers, noise, *, xp):
    """One UORO step (see the module docstring). Cost O(B L n²).

    The norms need no pass over ``δθ``: ``‖dz_l ⊗ a_l‖ = ‖dz_l‖ ‖a_l‖``. ``θ̃`` is read
    once for its norm and once for the update ``θ̃/ρ0 + (dz/ρ1) ⊗ a``.
    """
    nu = noise["nu"]  # (B, n)
    s_f, dzs = rhn.jvp_vjp(cell, params, layers, state.s, nu, xp=xp)  # H_t s̃, ν^T P_l D_l
    sq_theta = sum(sq_norm(th, xp=xp) for th in state.theta)  # ‖θ̃‖²   (B,)
    sq_dtheta = sum(  # ‖δθ‖² = Σ_l ‖dz_l‖² ‖a_l‖²
        xp.vecdot(dz, dz) * xp.vecdot(layer.a, layer.a) for dz, layer in zip(dzs, layers)
    )
    rho0 = ratio_sqrt(sq_theta, xp.vecdot(s_f, s_f), xp=xp)  # (B,)
    rho1 = ratio_sqrt(sq_dtheta, xp.vecdot(nu, nu), xp=xp)  # (B,)
    s = rho0[:, None] * s_f + rho1[:, None] * nu
    inv0, inv1 = (1.0 / rho0)[:, None, None], (1.0 / rho1)[:, None]
    theta = tuple(
        th * inv0 + (dz * inv1)[:, :, None] * layer.a[:, None, :]  # θ̃/ρ0 + δθ/ρ1
        for th, dz, layer in zip(state.theta, dzs, layers)
    )
    return State(s, theta)


def sq_norm(x, *, xp):
    """Per-sample squared Euclidean norm of a (B, ...) array, one pass: (B,)."""
    flat = xp.reshape(x, (x.shape[0], -1))
    return xp.vecdot(flat, flat)


def ratio_sqrt(sq_num, sq_den, *, xp):
    """``sqrt(num / den)`` from the squares of two norms where both are > 0, else 1."""
    ok = (sq_num > 0) & (sq_den > 0)
    one = xp.ones_like(sq_num)
    return xp.sqrt(xp.sqrt(xp.where(ok, sq_num, one) / xp.where(ok, sq_den, one)))


def grads(cell, state, c, *, xp):
    """``Σ_b (c_b · s̃_b) θ̃_b^l`` for every block: ``{"W1": (2n, k_1), ...}``."""
    B = c.shape[0]
    w = xp.reshape(xp.vecdot(c, state.s), (1, B))  # (1, B): c_b · s̃_b
    out = {}
    for name, th in zip(cell.blocks, state.theta):
        g = w @ xp.reshape(th, (B, -1))  # (1, 2n k)
        out[name] = xp.reshape(g, (th.shape[1], th.shape[2]))
    return out


def influence(cell, state, *, xp):
    """The estimate ``s̃ ⊗ θ̃^l`` as dense ``{"W1": (B, n, 2n, k_1), ...}``."""
    return {
        name: state.s[:, :, None, None] * th[:, None, :, :]
        for name, th in zip(cell.blocks, state.theta)
    }
