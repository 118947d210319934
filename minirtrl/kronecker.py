"""Helpers of the Kronecker-sum methods (``kf``, ``kf-avg``, ``ok``).

Their state is, per block, r stacked factor pairs ``u`` (B, r, k) and ``A`` (B, r, n, m)
with the estimate ``Σ_i u_i ⊗ A_i``, i.e. ``ds_t/dW[i, j] ≈ Σ_i A_i[:, i] u_i[j]``
(m = rows of the block, k = its columns).
"""

from typing import NamedTuple


class State(NamedTuple):
    """r stacked Kronecker factor pairs per block; ``State(u, A)`` of your own arrays (tuples,
    one per block) is a start of kf, kf-avg or ok (``Online.start``)."""

    u: tuple  # per block: (B, r, k_l)
    A: tuple  # per block: (B, r, n, m_l)


def zero_factors(cell, batch, rank, *, xp, dtype, device=None):
    """``State`` of zero factors: ``u^l`` (B, r, k_l), ``A^l`` (B, r, n, m_l) per block."""
    n, shapes, blocks = cell.n_state, cell.shapes(), cell.blocks
    return State(
        tuple(xp.zeros((batch, rank, shapes[b][1]), dtype=dtype, device=device) for b in blocks),
        tuple(xp.zeros((batch, rank, n, shapes[b][0]), dtype=dtype, device=device) for b in blocks),
    )


def apply_left(H, A, *, xp):
    """``H_b A_{b,i}`` for every sample b and term i: ONE batched product, (B, r, n, m).

    ``H`` (B, n, n) is broadcast over the r terms of ``A`` (B, r, n, m), so a single
    matmul serves all samples and terms (no copy of A). Cost O(r n² m) per sample.
    """
    return H[:, None, :, :] @ A


def grads_from_factors(u, A, c, *, xp):
    """Gradient of a Kronecker-sum estimate ``Σ_i u_i ⊗ A_i`` contracted with ``c``.

    ``u`` (B, r, k), ``A`` (B, r, n, m), ``c`` (B, n) -> (m, k), i.e.
    ``Σ_b Σ_i (c_b A_{b,i})^T u_{b,i}``: one product contracts c with all terms of all
    samples, one more sums over samples and terms.
    """
    B, r, n, m = A.shape
    cA = xp.reshape(xp.reshape(c, (B, 1, 1, n)) @ A, (B * r, m))  # rows c_b A_{b,i}
    return xp.matrix_transpose(cA) @ xp.reshape(u, (B * r, u.shape[2]))


def dense_from_factors(u, A, *, xp):
    """``Σ_i u_i ⊗ A_i`` as a dense (B, n, m, k) array (tests and the noise tool only)."""
    return xp.sum(A[:, :, :, :, None] * u[:, :, None, None, :], axis=1)
