"""UORO (Tallec & Ollivier 2018, "Unbiased Online Recurrent Optimization", Algorithm 1):
one rank-one estimate over all recurrent parameters, ``docs/algorithms.md`` §4, eq. (12);
its zero guard §4, its signs §9.

Per sample the influence of every block is ``G^l ≈ s̃ ⊗ θ̃^l``, one state-sized ``s̃``
shared by all blocks; the norms of ρ0, ρ1 are per sample, over all blocks jointly.

Notation (code name -> symbol of §4):

    s        s̃               (B, n)          state-side factor
    theta    θ̃ = (θ̃^1, ...)  per block (B, m_l, k_l), parameter-side factor
    s_f      H_t s̃           (B, n)
    nu       ν               (B, n)          ``signs["nu"]``
    dz       dz_l = ν^T M_l  per block (B, m_l); δθ^l = dz_l ⊗ a_l is never stored
    rho0/1   ρ0, ρ1          (B,)

Cost per step and sample: one JVP and one VJP through the step in one walk
(``cell.jvp_vjp``), O(L n²), one read of θ̃ for its norm and one pass writing the new θ̃,
O(Σ_l m_l k_l); ‖δθ‖ = (Σ_l ‖dz_l‖² ‖a_l‖²)^½ needs no pass. Memory n + Σ_l m_l k_l.
"""

from typing import NamedTuple

from .guard import norm_ratio


class State(NamedTuple):
    """The estimate ``G^l ≈ s̃ ⊗ θ̃^l``; ``State(s, theta)`` of your own arrays is a start
    (``Online.start``)."""

    s: object  # (B, n)
    theta: tuple  # per block: (B, m_l, k_l)


def init(cell, batch, rank=1, *, xp, dtype, device=None):
    """Zero factors: ``s̃`` (B, n) and ``θ̃^l`` (B, m_l, k_l) (``rank`` is ignored)."""
    shapes = cell.shapes()
    return State(
        xp.zeros((batch, cell.n_state), dtype=dtype, device=device),
        tuple(xp.zeros((batch, *shapes[name]), dtype=dtype, device=device)
              for name in cell.blocks),
    )


def sign_shapes(cell, batch, rank=1):
    """One sign vector ν per sample and step: ``{"nu": (B, n)}`` (§9)."""
    return {"nu": (batch, cell.n_state)}


def update(cell, params, state, cache, signs, *, xp, keep=None):
    """Eq. (12) for every sample. Cost O(B L n²).

    ``keep`` (B,) 0/1: where it is 0 the stream starts from s̃ = θ̃ = 0 (folded into s̃ and
    the 1/ρ0 that scales θ̃: no extra pass over θ̃).
    """
    nu = signs["nu"]  # (B, n)
    s_old = state.s if keep is None else state.s * keep[:, None]
    s_f, dzs = cell.jvp_vjp(params, cache, s_old, nu, xp=xp)  # H_t s̃, ν^T M_l
    sq_theta = sum(sq_norm(th, xp=xp) for th in state.theta)  # ‖θ̃‖²   (B,)
    if keep is not None:
        sq_theta = sq_theta * keep
    sq_dtheta = sum(  # ‖δθ‖² = Σ_l ‖dz_l‖² ‖a_l‖²
        xp.vecdot(dz, dz) * xp.vecdot(c.a, c.a) for dz, c in zip(dzs, cache, strict=True)
    )
    rho0 = norm_ratio(sq_theta, xp.vecdot(s_f, s_f), xp=xp)  # (B,)
    rho1 = norm_ratio(sq_dtheta, xp.vecdot(nu, nu), xp=xp)  # (B,)
    s = rho0[:, None] * s_f + rho1[:, None] * nu
    inv0, inv1 = (1.0 / rho0)[:, None, None], (1.0 / rho1)[:, None]
    if keep is not None:
        inv0 = inv0 * keep[:, None, None]  # θ̃ of a stream that starts over counts as 0
    theta = tuple(
        th * inv0 + (dz * inv1)[:, :, None] * cache_l.a[:, None, :]  # θ̃/ρ0 + δθ/ρ1
        for th, dz, cache_l in zip(state.theta, dzs, cache, strict=True)
    )
    return State(s, theta)


def sq_norm(x, *, xp):
    """Per-sample squared Euclidean norm of a (B, ...) array, one pass: (B,)."""
    flat = xp.reshape(x, (x.shape[0], -1))
    return xp.vecdot(flat, flat)


def grads(cell, state, c, *, xp):
    """``Σ_b (c_b · s̃_b) θ̃_b^l`` for every block: ``{"W1": (m_1, k_1), ...}``."""
    B = c.shape[0]
    w = xp.reshape(xp.vecdot(c, state.s), (1, B))  # (1, B): c_b · s̃_b
    out = {}
    for name, th in zip(cell.blocks, state.theta, strict=True):
        g = w @ xp.reshape(th, (B, -1))  # (1, m k)
        out[name] = xp.reshape(g, (th.shape[1], th.shape[2]))
    return out


def influence(cell, state, *, xp):
    """The estimate ``s̃ ⊗ θ̃^l`` as dense ``{"W1": (B, n, m_1, k_1), ...}``."""
    return {
        name: state.s[:, :, None, None] * th[:, None, :, :]
        for name, th in zip(cell.blocks, state.theta, strict=True)
    }
