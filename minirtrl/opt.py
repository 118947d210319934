"""Opt: the unbiased, minimum-variance rank reduction r+1 -> r of a diagonal matrix.

Benzing, Gauy, Mujika, Martinsson & Steger 2019, "Optimal Kronecker-Sum Approximation of
Real Time Recurrent Learning", Algorithm 3: ``docs/algorithms.md`` §6, eq. (16) (the mixed
set of size k, S, d_i, v0, the terms and their variance).

How it is computed: with fixed shapes for a whole batch although k varies per sample. A kept
direction gets d_i = 1, so v0 is 0 there, and v0^⊥ is spanned by the columns 2..m of the
Householder reflection R = I - 2 w w^T / |w|², w = e_1 + v0, which maps e_1 to -v0 and
leaves every kept e_q alone (index 1 is always mixed, so it is a valid pivot).

Notation: ``s`` s_i (ascending), ``signs`` ε_i, ``k`` k, ``S`` S, ``d`` d_i, ``v0`` v_0,
``R`` the completed basis (its columns 2..m are the w_j), ``scale`` the factor carried by
the right side: S/(k-1) on mixed directions, s_q on kept ones.

Cost per sample: O(m²) (one m×m reflection).
"""

from ._compat import get_device
from .guard import divide_where


def opt(s, signs, *, xp):
    """Opt(diag(s)): the m-1 output terms as coefficient rows on the m singular directions.

    Parameters
    ----------
    s : (..., m) singular values, nonnegative, sorted ascending.
    signs : (..., m) independent ±1, one per singular direction.

    Returns
    -------
    left, right : (..., m-1, m). Output term j is ``(Σ_i left[j, i] x_i) ⊗ (Σ_i right[j, i] y_i)``
        where ``s_i x_i ⊗ y_i`` are the singular terms. Over the signs,
        ``E[left^T right] = diag(s)`` and ``|left^T right - diag(s)|_F² = Var`` (a constant).
        A kept direction q appears in exactly one term, as ``(ε_q e_q, ε_q s_q e_q)``.

    Notes
    -----
    S = 0 (all mixed values zero, e.g. a zero state) gives zero mixed terms, never NaN.
    Cost O(m²) per row.
    """
    m = s.shape[-1]
    eye = xp.eye(m, dtype=s.dtype, device=get_device(s))
    k = mixed_count(s, xp=xp)  # (..., 1)
    mixed = xp.arange(m, dtype=s.dtype, device=get_device(s)) < k  # (..., m), a prefix
    k1 = k - 1.0  # k - 1 >= 1                                                (..., 1)
    S = xp.vecdot(s, xp.astype(mixed, s.dtype))[..., None]  # Σ_{i<=k} s_i    (..., 1)
    # 1 - d_i on the mixed set: 1 - (k-1) s_i / S, or 1/k each when S = 0 (all zero)
    one_minus_d = 1.0 - divide_where(k1 * s, S, S > 0.0, 1.0 - 1.0 / k, xp=xp)
    zero = xp.zeros_like(one_minus_d)
    v0 = xp.where(mixed, xp.sqrt(xp.maximum(one_minus_d, zero)), zero)  # unit on mixed, 0 kept
    scale = xp.where(mixed, S / k1, s)  # (..., m)

    w = v0 + eye[0, :]  # e_1 + v0, |w|² = 2 + 2 v0_1 >= 2
    ww = w[..., 1:, None] * w[..., None, :]  # rows 2..m of w w^T, (..., m-1, m)
    R = eye[1:, :] - (2.0 / xp.vecdot(w, w))[..., None, None] * ww  # rows 2..m of R
    left = R * signs[..., None, :]  # (..., m-1, m): row j = ε ⊙ (column j+1 of R, R symmetric)
    return left, left * scale[..., None, :]


def mixed_count(s, *, xp):
    """k for each row of ascending singular values ``s`` (..., m), as (..., 1) in s's dtype.

    The test ``(k-1) s_k <= Σ_{i<=k} s_i`` holds for a prefix of k (it is monotone:
    the slack changes by (k-1)(s_k - s_{k+1}) <= 0), so k is the number of k it holds for.
    """
    m = s.shape[-1]
    km1 = xp.arange(m, dtype=s.dtype, device=get_device(s))  # k - 1 = 0, 1, ..., m-1
    holds = km1 * s <= xp.cumulative_sum(s, axis=-1)
    return xp.sum(xp.astype(holds, s.dtype), axis=-1, keepdims=True)
