"""r-OK, the optimal Kronecker-sum approximation of RTRL (Benzing, Gauy, Mujika, Martinsson &
Steger 2019, "Optimal Kronecker-Sum Approximation of Real Time Recurrent Learning",
Algorithms 1-3): ``docs/algorithms.md`` §6, eqs. (14)-(16); its signs and their canonical
orientation §9.

Per sample and block l the influence is ``G^l ≈ Σ_{i≤r} u_i ⊗ A_i``. One step stacks the r
carried terms and the immediate one, U = [u_1; …; u_r; a_l], V = [vec H A_1; …; vec M_l],
writes U = L_U Ũ and V = L_V Ṽ with orthonormal rows, takes the SVD of C = L_U^T L_V and
replaces its singular values by Opt's terms (``opt``). The module reads in that order
(``step_qr``); below the marked line is the fast form of the same step (``step_gram``: the
orthonormal rows from one batched eigh of the Gram matrices U U^T, V V^T, every operation on
the big factors a matrix product). ``FORMS`` selects one by name; they agree to roundoff
(tested in float64); the default is "gram".

The OK paper's symbols P, s, V, L below are not the RHN's P_l, the readout V or the depth L.

Notation (code -> symbol of §6):

    u  (B, r, k_l)       u_i        left factors;   U (B, r+1, k_l) = [u_1..u_r; a_l]
    A  (B, r, n, m_l)    A_i        right factors;  V (B, r+1, n m_l) = [vec H A_i; vec M_l]
    L, Y / W             L, Ũ       X = L Y, Y orthonormal rows (QR: Y = Q^T; Gram: Y = W X)
    C, P, s, Qh, f       C, P, σ, Q^T   SVD of C, s ascending; f the canonical sign (§9)
    left, right          Opt's output: coefficient rows on the singular directions
    MU, MV (B, r, r+1)   the new factors on the stacked old ones: u <- MU U, A <- MV V

Cost per step, sample and block (N = n m_l): O(r n² m_l) for H A (the dominant term),
O(r² (k_l + N)) for the bases and the new factors, O(r³) for the small decompositions.
Memory O(r (k_l + N)). Needs the array API ``linalg`` extension.
"""

from . import opt
from ._compat import get_device
from .guard import divide_where
from .kronecker import State, apply_left, dense_from_factors, grads_from_factors, zero_factors

#: Gram eigenvalues below GRAM_RTOL·(r+1)·eps·λ_max are treated as zero (rank deficiency).
GRAM_RTOL = 10.0
#: singular values of C below SVD_RTOL·(r+1)·eps·σ_max are treated as exactly zero.
SVD_RTOL = 10.0


def init(cell, batch, rank=1, *, xp, dtype, device=None):
    """Zero factors: ``u`` (B, r, k_l) and ``A`` (B, r, n, m_l) per block."""
    _require_linalg(xp)
    return zero_factors(cell, batch, rank, xp=xp, dtype=dtype, device=device)


def sign_shapes(cell, batch, rank=1):
    """One ±1 sign per singular direction (r+1), sample and block: ``{"W1": (B, r+1), ...}``
    (§9: in ascending order of the singular values, on the canonical pair)."""
    return dict.fromkeys(cell.blocks, (batch, rank + 1))


def update(cell, params, state, cache, signs, *, xp, form="gram", keep=None):
    """One r-OK step for every block: ``state`` at t-1 -> t.

    ``signs[name]`` (B, r+1) ±1 per block; ``form`` a key of ``FORMS`` (the same result up
    to roundoff). ``keep`` (B,) 0/1: where it is 0 the stream starts from zero factors (H_t
    and u are zeroed there: no pass over A).
    """
    _require_linalg(xp)
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, not {form!r}")
    step = FORMS[form]
    H, pieces = cell.influence_pieces(params, cache, xp=xp)  # (B, n, n), (B, n, m_l) each
    us = state.u
    if keep is not None:
        H = H * keep[:, None, None]
        us = tuple(u * keep[:, None, None] for u in us)
    new_u, As = [], []
    for name, u, A, M, cache_l in zip(cell.blocks, us, state.A, pieces, cache, strict=True):
        u_new, A_new = step(u, A, H, cache_l.a, M, signs[name], xp=xp)
        new_u.append(u_new)
        As.append(A_new)
    return State(tuple(new_u), tuple(As))


# ---- the paper's step -------------------------------------------------------------------------
def step_qr(u, A, H, a, M, signs, *, xp):
    """The r-OK step of one block as §6 writes it: stack (eq. (14)), reduce (eqs. (15), (16)).

    ``u`` (B, r, k), ``A`` (B, r, n, m), ``H`` (B, n, n), ``a`` (B, k), ``M`` (B, n, m),
    ``signs`` (B, r+1). Returns the new ``(u, A)``.
    """
    B, r, n, m = A.shape
    U = xp.concat([u, a[:, None, :]], axis=1)  # (B, r+1, k)
    V = xp.concat(
        [xp.reshape(apply_left(H, A, xp=xp), (B, r, n * m)), xp.reshape(M, (B, 1, -1))],
        axis=1,
    )  # (B, r+1, n m)
    u_new, v_new = reduce(U, V, signs, xp=xp, form="qr")
    return u_new, xp.reshape(v_new, (B, r, n, m))


def reduce(U, V, signs, *, xp, form="qr"):
    """Unbiased minimum-variance reduction of ``Σ_{a≤r+1} U_a ⊗ V_a`` to r terms (§6).

    ``U`` (B, m, K), ``V`` (B, m, N) with m = r+1 stacked factor pairs, ``signs`` (B, m) ±1,
    ``form`` "qr" (``basis_qr``) or "gram" (``bases_from_grams``). Returns ``u`` (B, r, K)
    and ``v`` (B, r, N) with ``E[Σ_j u_j ⊗ v_j] = Σ_a U_a ⊗ V_a`` over the signs, the
    variance of eq. (16) and ``|u_j| = |v_j|``; batched over B, no loop over samples.
    """
    K, N = U.shape[2], V.shape[2]
    if form == "gram":
        MU, MV = coefficients(U @ xp.matrix_transpose(U), V @ xp.matrix_transpose(V), signs,
                              xp=xp)
        return MU @ U, MV @ V
    if form != "qr":
        raise ValueError(f"form must be one of 'gram', 'qr', not {form!r}")
    (LU, YU), (LV, YV) = basis_qr(U, xp=xp), basis_qr(V, xp=xp)
    XU, XV = opt_on_bases(LU, LV, signs, xp=xp)
    return (XU @ YU)[:, :, :K], (XV @ YV)[:, :, :N]


def basis_qr(X, *, xp):
    """``L`` (B, m, m) and ``Y`` (B, m, max(N, m)) with ``X = L Y`` (zero-padded), Y Y^T = I.

    Householder QR of X^T; rank deficiency needs no guard (R just has zero rows).
    Cost O(m² N) per sample.
    """
    B, m, N = X.shape
    Xt = xp.matrix_transpose(X)  # (B, N, m)
    if m > N:  # too few columns for m orthonormal rows: pad with zeros
        pad = xp.zeros((B, m - N, m), dtype=X.dtype, device=get_device(X))
        Xt = xp.concat([Xt, pad], axis=1)
    Q, R = xp.linalg.qr(Xt)  # (B, N', m), (B, m, m)
    return xp.matrix_transpose(R), xp.matrix_transpose(Q)


def opt_on_bases(LU, LV, signs, *, xp):
    """Opt in the orthonormal bases: ``XU``, ``XV`` (B, r, m), the new factors' coefficients.

    ``U = L_U Y_U`` and ``V = L_V Y_V`` with orthonormal rows Y; the new factors are
    ``XU Y_U`` and ``XV Y_V``, balanced. Cost O(m³) per sample.
    """
    P, s, Qh, f = singular_terms(LU, LV, xp=xp)
    left, right = balance(*opt.opt(s, signs * f, xp=xp), xp=xp)  # (B, r, m), singular dirs
    return left @ xp.matrix_transpose(P), right @ Qh


def singular_terms(LU, LV, *, xp):
    """SVD of ``C = L_U^T L_V``, ascending, with the canonical sign of each pair (§9).

    Returns ``P`` (B, m, m), ``s`` (B, m) ascending, ``Qh`` (B, m, m) with
    ``C = P diag(s) Qh``, and ``f`` (B, m) ±1, which ``opt_on_bases`` folds into the signs
    (the same as flipping the pairs). Values below ``SVD_RTOL·m·eps·σ_max`` are set to 0
    (roundoff of a rank-deficient C), so an exact reduction stays exact.
    """
    m = LU.shape[1]
    P, s, Qh = svd_or_nan(xp.matrix_transpose(LU) @ LV, xp=xp)
    P, s, Qh = xp.flip(P, axis=-1), xp.flip(s, axis=-1), xp.flip(Qh, axis=-2)  # ascending
    negative = xp.sum(LU @ P, axis=-2) < 0.0  # (B, m): <Σ_a U_a, ũ_j> < 0
    f = 1.0 - 2.0 * xp.astype(negative, LU.dtype)
    tol = SVD_RTOL * m * xp.finfo(s.dtype).eps * s[:, -1:]
    return P, xp.where(s > tol, s, xp.zeros_like(s)), Qh, f


def balance(left, right, *, xp):
    """Opt's coefficient rows (B, r, m) scaled so every pair has equal norms (zero pairs -> 0).

    Each row of ``left`` has norm 1 (a row of an orthogonal matrix, signs flipped), and both
    sets of rows are coefficients on orthonormal directions, so the factors' norms are 1 and
    ``|right_j|``: the u side is scaled by ``|right_j|^½`` and the A side by ``|right_j|^-½``.
    """
    nv2 = xp.vecdot(right, right)[..., None]  # (B, r, 1): |right_j|²
    root = xp.sqrt(xp.sqrt(nv2))  # |right_j|^½, 0 for a zero pair
    inv = divide_where(xp.ones_like(root), root, root > 0.0, xp.zeros_like(root), xp=xp)
    return left * root, right * inv


def grads(cell, state, c, *, xp):
    """``{"W_l": Σ_b Σ_i (c_b A_i)^T u_i}``, each (m_l, k_l), for c (B, n) = ∂loss_t/∂s_t."""
    return {
        name: grads_from_factors(u, A, c, xp=xp)
        for name, u, A in zip(cell.blocks, state.u, state.A, strict=True)
    }


def influence(cell, state, *, xp):
    """The dense estimate ``{"W_l": Σ_i u_i ⊗ A_i}``, each (B, n, m_l, k_l)."""
    return {
        name: dense_from_factors(u, A, xp=xp)
        for name, u, A in zip(cell.blocks, state.u, state.A, strict=True)
    }


# ---- fast form: the same step from Gram matrices ------------------------------------------------
def step_gram(u, A, H, a, M, signs, *, xp):
    """``step_qr`` with every operation on the big factors a matrix product (the default).

    Three products touch the big factors: ``H A`` for all r terms, the Gram matrix of
    ``vec H A_i`` (its border with ``vec M`` is one thin product more) and the new factors
    ``MV V``, with V the r+1 stacked right factors. Same arguments and result as ``step_qr``.
    Cost per sample: O(r n² m) for H A, O(r² n m) for the Gram and the new factors.
    """
    mT = xp.matrix_transpose
    B, r, n, m = A.shape
    HA = xp.reshape(apply_left(H, A, xp=xp), (B, r, n * m))  # rows vec H A_i
    pd = xp.reshape(M, (B, 1, n * m))  # row vec M
    cross = HA @ mT(pd)  # (B, r, 1)
    gram_V = xp.concat(
        [xp.concat([HA @ mT(HA), cross], axis=2), xp.concat([mT(cross), pd @ mT(pd)], axis=2)],
        axis=1,
    )  # (B, r+1, r+1) = V V^T; its (r, r) block is one product
    U = xp.concat([u, a[:, None, :]], axis=1)  # (B, r+1, k)
    MU, MV = coefficients(U @ mT(U), gram_V, signs, xp=xp)  # (B, r, r+1) each
    V = xp.concat([HA, pd], axis=1)  # (B, r+1, n m)
    return MU @ U, xp.reshape(MV @ V, (B, r, n, m))


def coefficients(gram_U, gram_V, signs, *, xp):
    """The reduction as coefficient matrices on the stacked factors, from their Grams only.

    ``gram_U = U U^T``, ``gram_V = V V^T`` (B, m, m), ``signs`` (B, m). Returns ``MU``,
    ``MV`` (B, r, m): the new factors are ``MU U`` and ``MV V``.
    """
    (LU, WU), (LV, WV) = bases_from_grams(gram_U, gram_V, xp=xp)
    XU, XV = opt_on_bases(LU, LV, signs, xp=xp)
    return XU @ WU, XV @ WV  # Y = W X: W folded into the coefficients


def bases_from_grams(*grams, xp):
    """``(L, W)`` for each Gram matrix ``X X^T`` (B, m, m) given, from ONE batched eigh.

    ``X X^T = E diag(λ) E^T`` gives ``L = E diag(√λ)`` and ``W = diag(1/√λ) E^T``, so that
    ``X ≈ L (W X)`` with ``W X`` orthonormal rows. Eigenvalues below ``GRAM_RTOL·m·eps·λ_max``
    are dropped (their rows of ``W X`` and columns of ``L`` are zero), which guards
    rank-deficient X. The Gram matrix squares the condition number, so a component of X
    smaller than about sqrt(GRAM_RTOL·m·eps) of the largest is dropped; ``basis_qr`` keeps
    it. The Grams are stacked on a new leading axis for the one eigh.
    """
    m = grams[0].shape[1]
    stacked = xp.stack(grams, axis=0)  # (G, B, m, m): the batch axis stays whole (sharding)
    lam, E = eigh_or_nan(stacked, xp=xp)  # (G, B, m), (G, B, m, m)
    rtol = GRAM_RTOL * m * xp.finfo(lam.dtype).eps
    significant = lam > rtol * xp.max(lam, axis=-1, keepdims=True)
    zero = xp.zeros_like(lam)
    root = xp.sqrt(xp.where(significant, lam, zero))  # √λ, 0 where dropped
    inv = divide_where(xp.ones_like(lam), root, significant, zero, xp=xp)  # 1/√λ, 0 there
    L = E * root[..., None, :]
    W = inv[..., :, None] * xp.matrix_transpose(E)
    return [(L[g, ...], W[g, ...]) for g in range(len(grams))]


#: the two forms of one block's step, by name
FORMS = {"gram": step_gram, "qr": step_qr}


# ---- decompositions that fail soft --------------------------------------------------------------
def eigh_or_nan(M, *, xp):
    """``xp.linalg.eigh`` of a batch (..., m, m), NaN for the matrices with non-finite entries.

    A diverging run feeds the reduction inf or NaN, where ``eigh`` raises (NumPy's
    ``LinAlgError``, torch's ``_LinAlgError``): the sample is replaced by the identity for
    the call and its results by NaN, so the run's non-finite guard reports the step.
    """
    return _nan_on_failure(xp.linalg.eigh, M, xp=xp)


def svd_or_nan(M, *, xp):
    """``xp.linalg.svd(M, full_matrices=False)`` with ``eigh_or_nan``'s treatment of NaN."""
    return _nan_on_failure(lambda X: xp.linalg.svd(X, full_matrices=False), M, xp=xp)


def _nan_on_failure(decompose, M, *, xp):
    """``decompose(M)``'s outputs for M (..., m, k), the identity decomposed in place of the
    non-finite matrices and their outputs set to NaN."""
    bad = ~xp.all(xp.isfinite(M), axis=(-2, -1))  # (...,)
    eye = xp.eye(M.shape[-2], M.shape[-1], dtype=M.dtype, device=get_device(M))
    outputs = decompose(xp.where(bad[..., None, None], eye, M))
    return tuple(_nan_where(bad, o, xp=xp) for o in outputs)


def _nan_where(bad, x, *, xp):
    """``x`` (..., rest) with the matrices where ``bad`` (...,) set to NaN."""
    mask = xp.reshape(bad, tuple(bad.shape) + (1,) * (x.ndim - bad.ndim))
    return xp.where(mask, xp.full_like(x, xp.nan), x)


def _require_linalg(xp):
    if not hasattr(xp, "linalg"):
        raise ValueError(f"ok needs the array API linalg extension, which {xp.__name__} does "
                         "not provide (or has disabled)")
