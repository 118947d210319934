"""UORO (Tallec & Ollivier 2018, "Unbiased Online Recurrent Optimization", Algorithm 1):
a rank-one estimate over all recurrent parameters. ``docs/algorithms.md``, eq. (12).

Per sample the influence of every block is estimated by one outer product,
``G^l ≈ s̃ ⊗ θ̃^l`` (``ds_t/dW_l[i, j] ≈ s̃ · θ̃^l[i, j]``), with one state-sized vector
``s̃`` shared by all blocks. One step::

    s_f = H_t s̃_{t-1}                          # JVP through the step, H_t never formed
    ν   ∈ {-1, +1}^n, one per sample and step
    δθ^l = ν^T ∂s_t/∂W_l = dz_l ⊗ a_l           # one VJP: dz_l = ν^T M_l
    ρ0 = sqrt(‖θ̃‖ / ‖s_f‖),   ρ1 = sqrt(‖δθ‖ / ‖ν‖)
    s̃_t = ρ0 s_f + ρ1 ν
    θ̃_t = θ̃_{t-1} / ρ0 + δθ / ρ1

Norms are per sample; ‖θ̃‖ and ‖δθ‖ are taken over all blocks jointly. Since
``E[ν ν^T] = I`` and the cross terms are odd in ν while ρ1 is even in ν,
``E[s̃_t ⊗ θ̃_t] = H_t (s̃ ⊗ θ̃) + Σ_l a_l ⊗ M_l``: unbiased for *any* positive ρ0, ρ1
that do not depend on the sign of ν; the ρ's above minimise the variance of the cross
terms.

Zero norms: where ``‖θ̃‖·‖s_f‖ = 0`` (a sequence start or a reset stream: s̃ = θ̃ = 0) we
take ρ0 = 1, where ``‖δθ‖·‖ν‖ = 0`` ρ1 = 1 (``guard.norm_ratio``); the step then stays
exact in expectation and finite. (The authors' code instead adds ε = 1e-5 to every norm
in both ratios, with norms taken over the whole minibatch; the exact guard keeps the
per-sample estimates independent of each other and of ε.)

The gradient of loss_t is ``Σ_b (c_b · s̃_b) θ̃_b^l`` with the influence already updated
by step t; the readout V is exact (``minirtrl.api``).

Notation (code name -> symbol):

    s        s̃               (B, n)          state-side factor
    theta    θ̃ = (θ̃^1, ...)  per block (B, m_l, k_l), parameter-side factor
    s_f      H_t s̃           (B, n)
    nu       ν               (B, n)          ``noise["nu"]``
    dz       dz_l = ν^T M_l  per block (B, m_l); δθ^l = dz_l ⊗ a_l is never stored
    rho0/1   ρ0, ρ1          (B,)

Cost per step and sample: one JVP and one VJP through the step in one walk
(``cell.jvp_vjp``), O(L n²), plus one read of θ̃ for its norm and one pass writing the new
θ̃ = θ̃/ρ0 + (dz/ρ1) ⊗ a, O(Σ_l m_l k_l) = O(L n²); ‖δθ‖ = (Σ_l ‖dz_l‖² ‖a_l‖²)^½ needs
no pass. Memory n + Σ_l m_l k_l.
"""

from typing import NamedTuple

from .guard import norm_ratio


class State(NamedTuple):
    s: object  # (B, n)
    theta: tuple  # per block: (B, m_l, k_l)


def init(cell, batch, rank=1, *, xp, dtype, device=None):
    """Zero factors: ``s̃`` (B, n) and ``θ̃^l`` (B, m_l, k_l) (``rank`` is ignored)."""
    shapes = cell.shapes()
    return State(
        xp.zeros((batch, cell.n_hidden), dtype=dtype, device=device),
        tuple(xp.zeros((batch,) + shapes[name], dtype=dtype, device=device) for name in cell.blocks),
    )


def noise_shapes(cell, batch, rank=1):
    """One sign vector ν per sample and step: ``{"nu": (B, n)}``.

    ``noise["nu"][b]`` is sample b's ν ∈ {±1}^n: it enters ``s̃ ← ρ0 H s̃ + ρ1 ν`` and
    ``θ̃ ← θ̃/ρ0 + δθ/ρ1`` with ``δθ^l = (ν^T M_l) ⊗ a_l`` (shared by all blocks).
    """
    return {"nu": (batch, cell.n_hidden)}


def update(cell, params, state, cache, noise, *, xp, keep=None):
    """One UORO step (see the module docstring). Cost O(B L n²).

    The norms need no pass over ``δθ``: ``‖dz_l ⊗ a_l‖ = ‖dz_l‖ ‖a_l‖``. ``θ̃`` is read
    once for its norm and once for the update ``θ̃/ρ0 + (dz/ρ1) ⊗ a``. ``keep`` (B,) 0/1:
    where it is 0 the stream starts from s̃ = θ̃ = 0 (folded into s̃ and the 1/ρ0 that
    scales θ̃: no extra pass over θ̃).
    """
    nu = noise["nu"]  # (B, n)
    s_old = state.s if keep is None else state.s * keep[:, None]
    s_f, dzs = cell.jvp_vjp(params, cache, s_old, nu, xp=xp)  # H_t s̃, ν^T M_l
    sq_theta = sum(sq_norm(th, xp=xp) for th in state.theta)  # ‖θ̃‖²   (B,)
    if keep is not None:
        sq_theta = sq_theta * keep
    sq_dtheta = sum(  # ‖δθ‖² = Σ_l ‖dz_l‖² ‖a_l‖²
        xp.vecdot(dz, dz) * xp.vecdot(layer.a, layer.a) for dz, layer in zip(dzs, cache)
    )
    rho0 = norm_ratio(sq_theta, xp.vecdot(s_f, s_f), xp=xp)  # (B,)
    rho1 = norm_ratio(sq_dtheta, xp.vecdot(nu, nu), xp=xp)  # (B,)
    s = rho0[:, None] * s_f + rho1[:, None] * nu
    inv0, inv1 = (1.0 / rho0)[:, None, None], (1.0 / rho1)[:, None]
    if keep is not None:
        inv0 = inv0 * keep[:, None, None]  # θ̃ of a stream that starts over counts as 0
    theta = tuple(
        th * inv0 + (dz * inv1)[:, :, None] * layer.a[:, None, :]  # θ̃/ρ0 + δθ/ρ1
        for th, dz, layer in zip(state.theta, dzs, cache)
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
    for name, th in zip(cell.blocks, state.theta):
        g = w @ xp.reshape(th, (B, -1))  # (1, m k)
        out[name] = xp.reshape(g, (th.shape[1], th.shape[2]))
    return out


def influence(cell, state, *, xp):
    """The estimate ``s̃ ⊗ θ̃^l`` as dense ``{"W1": (B, n, m_1, k_1), ...}``."""
    return {
        name: state.s[:, :, None, None] * th[:, None, :, :]
        for name, th in zip(cell.blocks, state.theta)
    }
