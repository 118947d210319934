"""KF-RTRL (Mujika, Meier & Steger 2018, "Approximating Real-Time Recurrent Learning with
Random Kronecker Factors", Algorithm 1) and kf-avg, the mean of r independent KF-RTRL chains
(the baseline of Benzing et al. 2019): ``docs/algorithms.md`` §5, eq. (13); its signs §9.

Per sample and block l the influence is ``G^l ≈ u ⊗ A`` (``ds_t/dW_l[i, j] ≈ A[:, i] u[j]``);
kf-avg keeps r chains stacked on axis 1 and estimates their mean (kf is r = 1), all chains
advanced by one batched product.

Notation (code name -> symbol of §5):

    u        u^l          (B, r, k_l)     row factor, indexes the columns of W_l
    A        A^l          (B, r, n, m_l)  column factor, indexes (state, row of W_l)
    a        a_l          (B, k_l)        the vector block l multiplies (the paper's ĥ_t)
    M        M_l          (B, n, m_l)     right immediate factor (the paper's D_t)
    H        H_t          (B, n, n)       ∂s_t/∂s_{t-1}
    HA       H_t A^l      (B, r, n, m_l)
    c1, c2   c1, c2       (B, r)          signs[f"W{l}"][..., 0] and [..., 1]
    p1, p2   p1, p2       (B, r), (B, 1)

Cost per step and sample: the cell's ``influence_pieces`` (O(L n³) for a depth-L RHN, O(n²)
at depth 1), r L products n×n by n×m, O(r L n³), and three elementwise passes over the A's.
Memory r Σ_l (k_l + n m_l).
"""

from .guard import norm_ratio
from .kronecker import State, apply_left, dense_from_factors, grads_from_factors, zero_factors


def init(cell, batch, rank=1, *, xp, dtype, device=None):
    """Zero factors of ``rank`` chains per block: ``u^l`` (B, r, k_l), ``A^l`` (B, r, n, m_l)."""
    return zero_factors(cell, batch, rank, xp=xp, dtype=dtype, device=device)


def sign_shapes(cell, batch, rank=1):
    """``{"W1": (B, r, 2), ...}``: the signs (c1, c2) of every sample, chain and block (§9)."""
    return dict.fromkeys(cell.blocks, (batch, rank, 2))


def update(cell, params, state, cache, signs, *, xp, keep=None):
    """One KF-RTRL step of every chain of every block (r read from the state).

    ``signs[f"W{l}"]`` (B, r, 2) holds (c1, c2). ``keep`` (B,) 0/1: where it is 0 the stream
    starts from zero factors (H_t is zeroed there, so H A = 0 and the zero guard takes the
    exact step; no pass over A). Cost O(B (L n³ + r L n³)).
    """
    H, pieces = cell.influence_pieces(params, cache, xp=xp)
    if keep is not None:
        H = H * keep[:, None, None]
    us, As = [], []
    for name, u, A, M, cache_l in zip(cell.blocks, state.u, state.A, pieces, cache, strict=True):
        u, A = kf_step(u, A, H, cache_l.a, M, signs[name], xp=xp)
        us.append(u)
        As.append(A)
    return State(tuple(us), tuple(As))


def kf_step(u, A, H, a, M, signs, *, xp):
    """Eq. (13) for r stacked chains of one block, with the zero guard of §5.

    ``u`` (B, r, k), ``A`` (B, r, n, m), ``H`` (B, n, n), ``a`` (B, k), ``M`` (B, n, m),
    ``signs`` (B, r, 2). Returns the new ``(u, A)``.
    """
    HA = apply_left(H, A, xp=xp)  # (B, r, n, m)
    B, r, n, m = HA.shape
    flat_HA, flat_M = xp.reshape(HA, (B, r, n * m)), xp.reshape(M, (B, 1, n * m))
    sq_u, sq_HA = xp.vecdot(u, u), xp.vecdot(flat_HA, flat_HA)  # (B, r)
    sq_a, sq_M = xp.vecdot(a, a)[:, None], xp.vecdot(flat_M, flat_M)  # (B, 1)
    old = xp.minimum(sq_u, sq_HA) > 0  # u ⊗ HA ≠ 0                   (B, r)
    new = xp.minimum(sq_a, sq_M) > 0  # a ⊗ M ≠ 0                     (B, 1)
    mix = old & new  # both terms present: the random step            (B, r)
    c1, c2 = signs[:, :, 0], signs[:, :, 1]  # (B, r)
    p1 = norm_ratio(sq_HA, sq_u, ok=mix, xp=xp)  # sqrt(‖HA‖ / ‖u‖)
    p2 = norm_ratio(sq_M, sq_a, ok=mix, xp=xp)  # sqrt(‖M‖ / ‖a‖)

    # Eq. (13), u = c1 p1 u + c2 p2 a and A = c1 HA/p1 + c2 M/p2, as the weights of the
    # old and the new term on each side:
    u_old, u_new = c1 * p1, c2 * p2  # (B, r)
    A_old, A_new = c1 / p1, c2 / p2  # (B, r)

    # The zero-norm guard, after: where one term is zero, the other is kept exactly.
    alone = xp.astype(old, u.dtype)  # 1 keeps the old term alone, 0 the new one
    u_old, A_old = xp.where(mix, u_old, alone), xp.where(mix, A_old, alone)
    alone = 1.0 - alone
    u_new, A_new = xp.where(mix, u_new, alone), xp.where(mix, A_new, alone)

    u = u_old[:, :, None] * u + u_new[:, :, None] * a[:, None, :]
    A = A_old[:, :, None, None] * HA + A_new[:, :, None, None] * M[:, None, :, :]
    return u, A


def grads(cell, state, c, *, xp):
    """``c_t · mean_i (u_i ⊗ A_i)`` summed over the batch: ``{"W1": (m_1, k_1), ...}``."""
    return {  # the 1/r of the mean goes on the small factor u
        name: grads_from_factors(u * (1.0 / u.shape[1]), A, c, xp=xp)
        for name, u, A in zip(cell.blocks, state.u, state.A, strict=True)
    }


def influence(cell, state, *, xp):
    """The estimate ``mean_i u_i ⊗ A_i`` as dense ``{"W1": (B, n, m_1, k_1), ...}``."""
    return {
        name: dense_from_factors(u, A, xp=xp) / u.shape[1]
        for name, u, A in zip(cell.blocks, state.u, state.A, strict=True)
    }
