"""What every influence method (exact RTRL and its estimators) provides.

An influence method keeps, per sample, an estimate of ``G_t^l = ds_t/dW_l`` for every
recurrent block and exposes these module-level functions (so a method is a module), plus
``reset`` (re-exported from here):

    init(cell, batch, *, rank, xp, dtype, device) -> state      zero influence
    noise_shapes(cell, batch, rank) -> {name: shape}            random signs one step needs
    update(cell, params, state, layers, noise, *, xp) -> state  G_t from G_{t-1} (one step)
    grads(cell, state, c, *, xp) -> {"W1": (2n, k_1), ...}      c_t · G_t, summed over B
    influence(cell, state, *, xp) -> {"W1": (B, n, 2n, k_1), ...}   the estimate, dense

``layers`` is what ``rhn.step`` returned for this step, ``noise`` a dict of ±1 arrays
with the shapes of ``noise_shapes`` (drawn by the caller, so tests can enumerate every
sign pattern through the real code), ``c`` (B, n) = ∂loss_t/∂s_t. States are immutable
``NamedTuple``s of arrays whose first axis is the batch; ``reset`` below zeroes chosen
streams of any of them.

Helpers for the Kronecker-sum methods (``kf``, ``kf-avg``, ``ok``), whose state is r
stacked factor pairs ``u`` (B, r, k), ``A`` (B, r, n, 2n): ``apply_left`` (H_t A_i for
all terms and samples, one product), ``grads_from_factors`` (c_t · Σ_i u_i ⊗ A_i, two
products) and ``dense_from_factors`` (the dense estimate, for tests and tools).
"""


def reset(state, keep):
    """Zero the streams where ``keep`` (B,) is 0, for any state NamedTuple.

    Every array in ``state`` (possibly inside tuples) has the batch on its first axis.
    """

    def scale(x):
        if isinstance(x, tuple):
            return type(x)(*map(scale, x)) if hasattr(x, "_fields") else tuple(map(scale, x))
        return x * keep[(...,) + (None,) * (x.ndim - 1)]

    return scale(state)


def apply_left(H, A, *, xp):
    """``H_b A_{b,i}`` for every sample b and term i: ONE batched product, (B, r, n, 2n).

    ``H`` (B, n, n) is broadcast over the r terms of ``A`` (B, r, n, 2n), so a single
    matmul serves all samples and terms (no copy of A; on NumPy as fast as laying the r
    terms side by side as one n × r·2n matrix, and the terms stay contiguous for the
    products that follow). Cost O(r n³) per sample.
    """
    return H[:, None, :, :] @ A


def grads_from_factors(u, A, c, *, xp):
    """Gradient of a Kronecker-sum estimate ``Σ_i u_i ⊗ A_i`` contracted with ``c``.

    ``u`` (B, r, k), ``A`` (B, r, n, 2n), ``c`` (B, n) -> (2n, k), i.e.
    ``Σ_b Σ_i (c_b A_{b,i})^T u_{b,i}``: one product contracts c with all terms of all
    samples, one more sums over samples and terms.
    """
    B, r, n, two_n = A.shape
    cA = xp.reshape(xp.reshape(c, (B, 1, 1, n)) @ A, (B * r, two_n))  # rows c_b A_{b,i}
    return xp.matrix_transpose(cA) @ xp.reshape(u, (B * r, u.shape[2]))


def dense_from_factors(u, A, *, xp):
    """``Σ_i u_i ⊗ A_i`` as a dense (B, n, 2n, k) array (tests and the noise tool only)."""
    return xp.sum(A[:, :, :, :, None] * u[:, :, None, None, :], axis=1)


def select(state, lo, hi):
    """The streams ``lo:hi`` of any state NamedTuple (batch on the first axis of every array)."""

    def cut(x):
        if isinstance(x, tuple):
            return type(x)(*map(cut, x)) if hasattr(x, "_fields") else tuple(map(cut, x))
        return x[lo:hi, ...]

    return cut(state)
