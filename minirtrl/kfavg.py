"""r-KF-RTRL-AVG: the mean of r independent KF-RTRL estimates per block.

The baseline the OK paper compares r-OK with (papers.md §6, "Variants"): same memory and
time as r-OK, variance ``1/r`` of KF-RTRL's at each step for a given past. Each block keeps
r chains ``(u_i^l, A_i^l)``, each updated exactly like ``kf`` with its own signs; the
estimate is ``(1/r) Σ_i u_i^l ⊗ A_i^l``. Everything but the rank handling is ``minirtrl.kf``
(which works on the stacked (B, r, ...) layout and divides by r).

Notation: as in ``minirtrl.kf``; ``r`` = ``rank``, ``u`` (B, r, k_l), ``A`` (B, r, n, 2n),
``noise[f"W{l}"]`` (B, r, 2) = the signs (c1, c2) of every chain.

Cost per step and sample: O(L n³) for H_t and P_l D_l, plus O(r L n³) for the r products
``H_t A_i^l`` (one batched matmul per block). Memory r Σ_l (k_l + 2n²).
"""

import operator

from .kf import State, chain_noise_shapes, grads, influence, init_chains, update  # noqa: F401
from .influence import reset  # noqa: F401 - part of the method interface


def init(cell, batch, *, rank=None, xp, dtype, device=None):
    """Zero factors of ``rank`` chains per block (rank None means 1)."""
    return init_chains(cell, batch, _rank(rank), xp=xp, dtype=dtype, device=device)


def noise_shapes(cell, batch, rank=None):
    """``{"W1": (B, r, 2), ...}``: signs (c1, c2) per sample, chain and block."""
    return chain_noise_shapes(cell, batch, _rank(rank))


def _rank(rank):
    r = 1 if rank is None else operator.index(rank)
    if r < 1:
        raise ValueError(f"rank must be >= 1, not {r}")
    return r
