"""r-OK: the optimal Kronecker-sum approximation of RTRL (Benzing et al. 2019).

Per block l the influence is kept as r Kronecker products, ``G^l ≈ Σ_i u_i ⊗ A_i``, and
one step (Algorithms 1-3 of the paper, papers.md §6) is

    A_i <- H_t A_i                                    (all r terms in one batched product)
    Ĝ    = Σ_i u_i ⊗ A_i + a_l ⊗ (P_l D_l)            (r+1 terms: the exact one-step target)
    U = L_U Ũ,  V = L_V Ṽ                             (orthonormal rows Ũ, Ṽ; (r+1)×(r+1) L's)
    C    = L_U^T L_V = P Σ Q^T                         (SVD of the small coefficient matrix)
    (u_i, A_i)_{i<=r} <- Opt(Σ) mapped back through P, Q, Ũ, Ṽ   (minimum-variance, unbiased)

so that E[new estimate] = H_t G_{t-1} + F_t exactly, with per-step variance
S²/(k-1) - Σ_{i<=k} s_i² (see ``opt``). Two orthogonalisations give the same result:
``form="qr"`` (readable: xp.linalg.qr of the stacked factors) and ``form="gram"``
(default, fast: eigh of the (r+1)×(r+1) Gram matrices, so every large operation is a
matrix product). Random signs: one per singular direction, sample and block (``noise``).

Notation (code -> paper / SPEC §1):

    u  (B, r, k_l)       u_i        left factors;   U (B, r+1, k_l) = [u_1..u_r; a_l]
    A  (B, r, n, 2n)     A_i        right factors;  V (B, r+1, 2n²) = [vec H A_i; vec P_l D_l]
    L, Y / W             L, Ũ       X = L Y, Y orthonormal rows (QR: Y = Q^T; Gram: Y = W X)
    C, P, s, Qh          C, P, σ, Q^T   SVD of the coefficient matrix, s ascending after flipping
    left, right          Opt output: coefficient rows on the singular directions

Cost per step, sample and block (N = 2n²): O(r n³) for H A (the dominant term),
O(r² (k_l + N)) for the Gram matrices and the final coefficient products, O(r³) for eigh
and SVD. Memory O(r (k_l + N)). Needs the array API ``linalg`` extension.
"""

from typing import NamedTuple

from . import opt, rhn
from ._compat import get_device
from .influence import dense_from_factors, grads_from_factors
from .influence import reset  # noqa: F401 - part of the method interface

FORMS = ("gram", "qr")
#: Gram eigenvalues below GRAM_RTOL·(r+1)·eps·λ_max are treated as zero (rank deficiency).
GRAM_RTOL = 10.0
#: singular values of C below SVD_RTOL·(r+1)·eps·σ_max are treated as exactly zero.
SVD_RTOL = 10.0


class State(NamedTuple):
    u: tuple  # per block: (B, r, k_l)
    A: tuple  # per block: (B, r, n, 2n)


def _require_linalg(xp):
    if not hasattr(xp, "linalg"):
        raise ValueError(
            f"ok needs the array API linalg extension, which {xp.__name__} does not provide "
            "(or has disabled)"
        )


def _rank(rank):
    return 1 if rank is None else rank


def init(cell, batch, *, rank=1, xp, dtype, device=None):
    """Zero factors: ``u`` (B, r, k_l) and ``A`` (B, r, n, 2n) per block."""
    _require_linalg(xp)
    r, n = _rank(rank), cell.n_hidden
    blocks = range(1, cell.depth + 1)
    return State(
        tuple(xp.zeros((batch, r, cell.width(l)), dtype=dtype, device=device) for l in blocks),
        tuple(xp.zeros((batch, r, n, 2 * n), dtype=dtype, device=device) for l in blocks),
    )


def noise_shapes(cell, batch, rank=1):
    """One ±1 sign per singular direction (r+1), sample and block."""
    return {name: (batch, _rank(rank) + 1) for name in cell.blocks}


# ---- orthogonalisation: X (B, m, N) = L Y with orthonormal rows Y --------------------
def basis_qr(X, *, xp):
    """``L`` (B, m, m) and ``Y`` (B, m, max(N, m)) with ``X = L Y`` (zero-padded), Y Y^T = I.

    Householder QR of X^T; rank deficiency needs no guard (R just has zero rows).
    Cost O(m² N) per sample.
    """
    B, m, N = X.shape
    Xt = xp.matrix_transpose(X)  # (B, N, m)
    if N < m:  # too few columns for m orthonormal rows: pad with zeros
        pad = xp.zeros((B, m - N, m), dtype=X.dtype, device=get_device(X))
        Xt = xp.concat([Xt, pad], axis=1)
    Q, R = xp.linalg.qr(Xt)  # (B, N', m), (B, m, m)
    return xp.matrix_transpose(R), xp.matrix_transpose(Q)


def basis_gram(X, *, xp):
    """``L``, ``W`` (B, m, m) with ``X ≈ L (W X)`` and ``W X`` orthonormal rows.

    From the Gram matrix ``X X^T = E diag(λ) E^T``: ``L = E diag(√λ)``,
    ``W = diag(1/√λ) E^T``; eigenvalues below ``GRAM_RTOL·m·eps·λ_max`` are dropped
    (their rows of ``W X`` and columns of ``L`` are zero), which guards rank-deficient X.
    Only matrix products touch X: cost O(m² N) per sample, plus O(m³) for eigh.
    The Gram matrix squares the condition number, so a component of X smaller than about
    sqrt(GRAM_RTOL·m·eps) of the largest is dropped; ``basis_qr`` keeps it.
    """
    m = X.shape[1]
    lam, E = xp.linalg.eigh(X @ xp.matrix_transpose(X))  # (B, m), (B, m, m)
    tol = GRAM_RTOL * m * xp.finfo(X.dtype).eps * xp.max(lam, axis=-1, keepdims=True)
    keep = lam > tol
    root = xp.sqrt(xp.where(keep, lam, 1.0))
    L = E * xp.where(keep, root, 0.0)[:, None, :]
    W = xp.where(keep, 1.0 / root, 0.0)[:, :, None] * xp.matrix_transpose(E)
    return L, W


# ---- the reduction r+1 -> r ---------------------------------------------------------
def singular_terms(LU, LV, *, xp):
    """SVD of ``C = L_U^T L_V``, ascending, with one canonical sign per singular pair.

    Returns ``P`` (B, m, m), ``s`` (B, m) ascending, ``Qh`` (B, m, m) with
    ``C = P diag(s) Qh``. Each pair (column of P, row of Qh) is flipped so that its left
    singular vector has a nonnegative inner product with the sum of the stacked left
    factors: a basis-independent choice, so the QR and Gram forms and every backend draw
    the same estimate from the same signs. Values below ``SVD_RTOL·m·eps·σ_max`` are set
    to 0 (roundoff of a rank-deficient C), so an exact reduction stays exact.
    """
    m = LU.shape[1]
    P, s, Qh = xp.linalg.svd(xp.matrix_transpose(LU) @ LV, full_matrices=False)
    negative = xp.sum(LU @ P, axis=-2) < 0.0  # (B, m): <Σ_a U_a, ũ_j> < 0
    flip = 1.0 - 2.0 * xp.astype(negative, LU.dtype)
    P, Qh = P * flip[:, None, :], Qh * flip[:, :, None]
    P, s, Qh = xp.flip(P, axis=-1), xp.flip(s, axis=-1), xp.flip(Qh, axis=-2)  # ascending
    tol = SVD_RTOL * m * xp.finfo(s.dtype).eps * s[:, -1:]
    return P, xp.where(s > tol, s, 0.0), Qh


def balance(XU, XV, *, xp):
    """Scale coefficient rows (B, r, m) so every pair has equal norms (zero pairs -> 0).

    The rows are coefficients on orthonormal directions, so their norms are the factors'.
    """
    nu = xp.sqrt(xp.sum(XU * XU, axis=-1, keepdims=True))  # (B, r, 1)
    nv = xp.sqrt(xp.sum(XV * XV, axis=-1, keepdims=True))
    both = (nu > 0.0) & (nv > 0.0)
    nu_safe, nv_safe = xp.where(both, nu, 1.0), xp.where(both, nv, 1.0)
    cu = xp.where(both, xp.sqrt(nv_safe / nu_safe), 0.0)
    cv = xp.where(both, xp.sqrt(nu_safe / nv_safe), 0.0)
    return XU * cu, XV * cv


def reduce(U, V, signs, *, xp, form="gram"):
    """Unbiased minimum-variance reduction of ``Σ_{a<=r+1} U_a ⊗ V_a`` to r terms.

    Parameters
    ----------
    U : (B, m, K) and V : (B, m, N), m = r+1 stacked factor pairs.
    signs : (B, m) ±1, one per singular direction.
    form : ``"gram"`` (default, matrix products + eigh) or ``"qr"`` (xp.linalg.qr).

    Returns
    -------
    u : (B, r, K), v : (B, r, N) with ``E[Σ_j u_j ⊗ v_j] = Σ_a U_a ⊗ V_a`` over the signs,
    Frobenius variance ``S²/(k-1) - Σ_{i<=k} s_i²``, and ``|u_j| = |v_j|``.
    No loop over samples or terms: every step is batched over B.
    """
    K, N = U.shape[2], V.shape[2]
    if form == "gram":
        (LU, WU), (LV, WV) = basis_gram(U, xp=xp), basis_gram(V, xp=xp)
    elif form == "qr":
        (LU, YU), (LV, YV) = basis_qr(U, xp=xp), basis_qr(V, xp=xp)
    else:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, not {form!r}")
    P, s, Qh = singular_terms(LU, LV, xp=xp)
    left, right = opt.opt(s, signs, xp=xp)  # (B, r, m) on the singular directions
    XU, XV = balance(left @ xp.matrix_transpose(P), right @ Qh, xp=xp)  # on the bases Y
    if form == "gram":  # Y = W X: fold W into the coefficients, one product with X
        return (XU @ WU) @ U, (XV @ WV) @ V
    return (XU @ YU)[:, :, :K], (XV @ YV)[:, :, :N]


def propagate(H, A, *, xp):
    """``H_t A_i`` for all r terms, (B, r, n, 2n), as one (n × n)·(n × r·2n) product per sample.

    The factors are laid side by side first: a few large products are much faster than
    B·r small ones on NumPy, and no slower on PyTorch. Cost O(r n³) per sample.
    """
    B, r, n, two_n = A.shape
    side = xp.reshape(xp.permute_dims(A, (0, 2, 1, 3)), (B, n, r * two_n))  # (B, n, r·2n)
    HA = xp.reshape(H @ side, (B, n, r, two_n))
    return xp.permute_dims(HA, (0, 2, 1, 3))


def update(cell, params, state, layers, noise, *, xp, form="gram"):
    """One r-OK step for every block: ``state`` at t-1 -> t (see the module docstring).

    ``noise[name]`` (B, r+1) ±1 per block; ``form`` selects the orthogonalisation
    (``"gram"`` or ``"qr"``; identical results up to roundoff).
    """
    _require_linalg(xp)
    H, pds = rhn.influence_pieces(cell, params, layers, xp=xp)  # (B, n, n), (B, n, 2n) each
    us, As = [], []
    for name, u, A, PD, layer in zip(cell.blocks, state.u, state.A, pds, layers):
        B, r, n, two_n = A.shape
        U = xp.concat([u, layer.a[:, None, :]], axis=1)  # (B, r+1, k)
        V = xp.concat(
            [xp.reshape(propagate(H, A, xp=xp), (B, r, n * two_n)), xp.reshape(PD, (B, 1, -1))],
            axis=1,
        )  # (B, r+1, 2n²)
        u_new, v_new = reduce(U, V, noise[name], xp=xp, form=form)
        us.append(u_new)
        As.append(xp.reshape(v_new, (B, r, n, two_n)))
    return State(tuple(us), tuple(As))


def update_qr(cell, params, state, layers, noise, *, xp):
    """``update`` with the QR orthogonalisation (the readable reference form)."""
    return update(cell, params, state, layers, noise, xp=xp, form="qr")


def grads(cell, state, c, *, xp):
    """``{"W_l": Σ_b Σ_i (c_b A_i)^T u_i}``, each (2n, k_l), for c (B, n) = ∂loss_t/∂s_t."""
    return {
        name: grads_from_factors(u, A, c, xp=xp)
        for name, u, A in zip(cell.blocks, state.u, state.A)
    }


def influence(cell, state, *, xp):
    """The dense estimate ``{"W_l": Σ_i u_i ⊗ A_i}``, each (B, n, 2n, k_l)."""
    return {
        name: dense_from_factors(u, A, xp=xp) for name, u, A in zip(cell.blocks, state.u, state.A)
    }
