"""r-OK: the optimal Kronecker-sum approximation of RTRL (Benzing, Gauy, Mujika, Martinsson
& Steger 2019, "Optimal Kronecker-Sum Approximation of Real Time Recurrent Learning",
Algorithms 1-3). ``docs/algorithms.md``, eqs. (14)-(16).

Per block l the influence is kept as r Kronecker products, ``G^l ≈ Σ_i u_i ⊗ A_i``, and
one step (the paper's Algorithm 1 with the reduction of its Algorithms 2 and 3) is

    A_i <- H_t A_i                                    (all r terms in one batched product)
    Ĝ    = Σ_i u_i ⊗ A_i + a_l ⊗ M_l                  (r+1 terms: the exact one-step target)
    U = L_U Ũ,  V = L_V Ṽ                             (orthonormal rows Ũ, Ṽ; (r+1)×(r+1) L's)
    C    = L_U^T L_V = P Σ Q^T                         (SVD of the small coefficient matrix)
    (u_i, A_i)_{i<=r} <- Opt(Σ) mapped back through P, Q, Ũ, Ṽ   (minimum-variance, unbiased)

so that E[new estimate] = H_t G_{t-1} + F_t exactly, with per-step variance
S²/(k-1) - Σ_{i<=k} s_i² (see ``opt``). ``M_l`` is the cell's right immediate factor
(P_l D_l for a depth-L RHN). Random signs: one per singular direction, sample and block.

The orthogonalisation has two forms with the same result up to roundoff (``FORMS``):

    form    step         how U = L_U Ũ, V = L_V Ṽ are found
    "qr"    step_qr      xp.linalg.qr of the stacked factors: the readable reference
    "gram"  step_gram    one batched eigh of the Grams U U^T, V V^T (default, fast): every
                         operation on the big factors is a matrix product (H A for all
                         terms, the Gram block of the vec H A_i and its border with vec M_l,
                         the new factors MV V) plus one copy, the stacking V = [H A; M_l]

The symbols P, s, V, L, K below are the OK paper's: P the left singular vectors, s the
singular values, V the stacked right factors, L the triangular (or Gram) factors and k
the size of Opt's mixed set. They are not the RHN's P_l, the readout V, the depth L or a
bptt window K.

Notation (code -> paper):

    u  (B, r, k_l)       u_i        left factors;   U (B, r+1, k_l) = [u_1..u_r; a_l]
    A  (B, r, n, m_l)    A_i        right factors;  V (B, r+1, n m_l) = [vec H A_i; vec M_l]
    L, Y / W             L, Ũ       X = L Y, Y orthonormal rows (QR: Y = Q^T; Gram: Y = W X)
    C, P, s, Qh, f       C, P, σ, Q^T   SVD of the coefficient matrix, s ascending; f the
                                        canonical sign of each singular pair
    left, right          Opt output: coefficient rows on the singular directions
    MU, MV (B, r, r+1)   the new factors on the stacked old ones: u <- MU U, A <- MV V

Cost per step, sample and block (N = n m_l): O(r n² m_l) for H A (the dominant term),
O(r² (k_l + N)) for the Gram matrices and the final coefficient products, O(r³) for eigh
and SVD. Memory O(r (k_l + N)). Needs the array API ``linalg`` extension.
"""

from . import opt
from ._compat import get_device
from .guard import divide_where
from .kronecker import State, apply_left, dense_from_factors, grads_from_factors, zero_factors

#: Gram eigenvalues below GRAM_RTOL·(r+1)·eps·λ_max are treated as zero (rank deficiency).
GRAM_RTOL = 10.0
#: singular values of C below SVD_RTOL·(r+1)·eps·σ_max are treated as exactly zero.
SVD_RTOL = 10.0


def _require_linalg(xp):
    if not hasattr(xp, "linalg"):
        raise ValueError(
            f"ok needs the array API linalg extension, which {xp.__name__} does not provide "
            "(or has disabled)"
        )


def init(cell, batch, rank=1, *, xp, dtype, device=None):
    """Zero factors: ``u`` (B, r, k_l) and ``A`` (B, r, n, m_l) per block."""
    _require_linalg(xp)
    return zero_factors(cell, batch, rank, xp=xp, dtype=dtype, device=device)


def noise_shapes(cell, batch, rank=1):
    """One ±1 sign per singular direction (r+1), sample and block: ``{"W1": (B, r+1), ...}``.

    ``noise[f"W{l}"][b, j]`` is ε_j of Opt (eq. (16)) for sample b and block l: the sign of
    the j-th singular direction of C = L_U^T L_V counted in ASCENDING order of the singular
    values, applied to that singular pair in its canonical orientation (``singular_terms``:
    the left singular vector has a nonnegative inner product with the sum of the stacked
    left factors ``[u_1; ...; u_r; a_l]``).
    """
    return {name: (batch, rank + 1) for name in cell.blocks}


# ---- decompositions that fail soft -----------------------------------------------------
def _finite(M, *, xp):
    """(B,) True where the matrix ``M[b]`` (B, m, m) has only finite entries."""
    return xp.all(xp.isfinite(xp.reshape(M, (M.shape[0], -1))), axis=1)


def _nan_where(bad, x, *, xp):
    """``x`` (B, ...) with the samples where ``bad`` (B,) set to NaN."""
    mask = xp.reshape(bad, (bad.shape[0],) + (1,) * (x.ndim - 1))
    return xp.where(mask, xp.full_like(x, xp.nan), x)


def eigh_or_nan(M, *, xp):
    """``xp.linalg.eigh`` of a batch (B, m, m), NaN for the samples with non-finite entries.

    A diverging run feeds the reduction inf or NaN, where ``eigh`` raises (NumPy's
    ``LinAlgError``, torch's ``_LinAlgError``): the sample is replaced by the identity for
    the call and its results by NaN, so the run's non-finite guard reports the step.
    """
    return _nan_on_failure(xp.linalg.eigh, M, xp=xp)


def svd_or_nan(M, *, xp):
    """``xp.linalg.svd(M, full_matrices=False)`` with ``eigh_or_nan``'s treatment of NaN."""
    return _nan_on_failure(lambda X: xp.linalg.svd(X, full_matrices=False), M, xp=xp)


def _nan_on_failure(decompose, M, *, xp):
    """``decompose(M)``'s outputs, the identity decomposed in place of non-finite samples
    and their outputs set to NaN."""
    bad = ~_finite(M, xp=xp)
    eye = xp.eye(M.shape[-1], dtype=M.dtype, device=get_device(M))
    return tuple(_nan_where(bad, o, xp=xp) for o in decompose(xp.where(bad[:, None, None], eye, M)))


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


def bases_from_grams(*grams, xp):
    """``(L, W)`` for each Gram matrix ``X X^T`` (B, m, m) given, from ONE batched eigh.

    ``X X^T = E diag(λ) E^T`` gives ``L = E diag(√λ)`` and ``W = diag(1/√λ) E^T``, so that
    ``X ≈ L (W X)`` with ``W X`` orthonormal rows. Eigenvalues below ``GRAM_RTOL·m·eps·λ_max``
    are dropped (their rows of ``W X`` and columns of ``L`` are zero), which guards
    rank-deficient X. The Gram matrix squares the condition number, so a component of X
    smaller than about sqrt(GRAM_RTOL·m·eps) of the largest is dropped; ``basis_qr``
    keeps it. The Grams (all (B, m, m)) are stacked along the batch axis for one eigh.
    """
    B, m = grams[0].shape[0], grams[0].shape[1]
    lam, E = eigh_or_nan(xp.concat(grams, axis=0), xp=xp)  # (G·B, m), (G·B, m, m)
    rtol = GRAM_RTOL * m * xp.finfo(lam.dtype).eps
    keep = lam > rtol * xp.max(lam, axis=-1, keepdims=True)
    zero = xp.zeros_like(lam)
    root = xp.sqrt(xp.where(keep, lam, zero))  # √λ, 0 where dropped
    inv = divide_where(xp.ones_like(lam), root, keep, zero, xp=xp)  # 1/√λ, 0 where dropped
    L = E * root[:, None, :]
    W = inv[:, :, None] * xp.matrix_transpose(E)
    return [(L[g * B : (g + 1) * B, ...], W[g * B : (g + 1) * B, ...]) for g in range(len(grams))]


# ---- the reduction r+1 -> r ---------------------------------------------------------
def singular_terms(LU, LV, *, xp):
    """SVD of ``C = L_U^T L_V``, ascending, with one canonical sign per singular pair.

    Returns ``P`` (B, m, m), ``s`` (B, m) ascending, ``Qh`` (B, m, m) with
    ``C = P diag(s) Qh``, and ``f`` (B, m) ±1: the pair (column j of P, row j of Qh)
    times ``f_j`` is the canonical one, whose left singular vector has a nonnegative
    inner product with the sum of the stacked left factors (a basis-independent choice,
    so the QR and Gram forms and every backend draw the same estimate from the same
    signs; ``opt_on_bases`` folds ``f`` into the random signs, which is the same as
    flipping the pairs). Values below ``SVD_RTOL·m·eps·σ_max`` are set to 0 (roundoff of
    a rank-deficient C), so an exact reduction stays exact.
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

    Each row of ``left`` has norm 1 (a row of an orthogonal matrix, signs flipped), and
    both sets of rows are coefficients on orthonormal directions (orthogonal P, Qh and
    bases), so the factors' norms are 1 and ``|right_j|``: the u side is scaled by
    ``|right_j|^½`` and the A side by ``|right_j|^-½``.
    """
    nv2 = xp.vecdot(right, right)[..., None]  # (B, r, 1): |right_j|²
    root = xp.sqrt(xp.sqrt(nv2))  # |right_j|^½, 0 for a zero pair
    inv = divide_where(xp.ones_like(root), root, root > 0.0, xp.zeros_like(root), xp=xp)
    return left * root, right * inv


def opt_on_bases(LU, LV, signs, *, xp):
    """Opt in the orthonormal bases: ``XU``, ``XV`` (B, r, m), the new factors' coefficients.

    ``U = L_U Y_U`` and ``V = L_V Y_V`` with orthonormal rows Y; the new factors are
    ``XU Y_U`` and ``XV Y_V``, balanced. Cost O(m³) per sample.
    """
    P, s, Qh, f = singular_terms(LU, LV, xp=xp)
    left, right = balance(*opt.opt(s, signs * f, xp=xp), xp=xp)  # (B, r, m), singular dirs
    return left @ xp.matrix_transpose(P), right @ Qh


def coefficients(gram_U, gram_V, signs, *, xp):
    """The reduction as coefficient matrices on the stacked factors, from their Grams only.

    ``gram_U = U U^T``, ``gram_V = V V^T`` (B, m, m), ``signs`` (B, m). Returns ``MU``,
    ``MV`` (B, r, m): the new factors are ``MU U`` and ``MV V`` (``reduce``, Gram form).
    """
    (LU, WU), (LV, WV) = bases_from_grams(gram_U, gram_V, xp=xp)
    XU, XV = opt_on_bases(LU, LV, signs, xp=xp)
    return XU @ WU, XV @ WV  # Y = W X: W folded into the coefficients


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
        MU, MV = coefficients(U @ xp.matrix_transpose(U), V @ xp.matrix_transpose(V), signs, xp=xp)
        return MU @ U, MV @ V
    if form != "qr":
        raise ValueError(f"form must be one of 'gram', 'qr', not {form!r}")
    (LU, YU), (LV, YV) = basis_qr(U, xp=xp), basis_qr(V, xp=xp)
    XU, XV = opt_on_bases(LU, LV, signs, xp=xp)
    return (XU @ YU)[:, :, :K], (XV @ YV)[:, :, :N]


# ---- one step of one block ----------------------------------------------------------
def step_gram(u, A, H, a, M, signs, *, xp):
    """The r-OK step of one block, every large operation a matrix product (the fast form).

    ``u`` (B, r, k), ``A`` (B, r, n, m), ``H`` (B, n, n), ``a`` (B, k), ``M`` (B, n, m),
    ``signs`` (B, r+1). Three products touch the big factors: ``H A`` for all r terms,
    the Gram matrix of ``vec H A_i`` (its border with ``vec M`` is one thin product
    more) and the new factors ``MV V``, with V the r+1 stacked right factors. Returns
    the new ``(u, A)``; same result as ``step_qr`` up to roundoff (tested).
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


def step_qr(u, A, H, a, M, signs, *, xp):
    """The r-OK step of one block written plainly: stack, ``reduce(form="qr")``, unstack.

    The readable reference for ``step_gram`` (same arguments and result).
    """
    B, r, n, m = A.shape
    U = xp.concat([u, a[:, None, :]], axis=1)  # (B, r+1, k)
    V = xp.concat(
        [xp.reshape(apply_left(H, A, xp=xp), (B, r, n * m)), xp.reshape(M, (B, 1, -1))],
        axis=1,
    )  # (B, r+1, n m)
    u_new, v_new = reduce(U, V, signs, xp=xp, form="qr")
    return u_new, xp.reshape(v_new, (B, r, n, m))


#: the two forms of one block's step (see the module docstring)
FORMS = {"gram": step_gram, "qr": step_qr}


def update(cell, params, state, cache, noise, *, xp, form="gram", keep=None):
    """One r-OK step for every block: ``state`` at t-1 -> t (see the module docstring).

    ``noise[name]`` (B, r+1) ±1 per block; ``form`` selects the orthogonalisation
    (a key of ``FORMS``; identical results up to roundoff). ``keep`` (B,) 0/1: where it is
    0 the stream starts from zero factors (H_t and u are zeroed there: no pass over A).
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
    for name, u, A, M, layer in zip(cell.blocks, us, state.A, pieces, cache):
        u_new, A_new = step(u, A, H, layer.a, M, noise[name], xp=xp)
        new_u.append(u_new)
        As.append(A_new)
    return State(tuple(new_u), tuple(As))


def grads(cell, state, c, *, xp):
    """``{"W_l": Σ_b Σ_i (c_b A_i)^T u_i}``, each (m_l, k_l), for c (B, n) = ∂loss_t/∂s_t."""
    return {
        name: grads_from_factors(u, A, c, xp=xp)
        for name, u, A in zip(cell.blocks, state.u, state.A)
    }


def influence(cell, state, *, xp):
    """The dense estimate ``{"W_l": Σ_i u_i ⊗ A_i}``, each (B, n, m_l, k_l)."""
    return {
        name: dense_from_factors(u, A, xp=xp) for name, u, A in zip(cell.blocks, state.u, state.A)
    }
