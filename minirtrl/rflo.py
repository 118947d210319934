"""RFLO, random-feedback local online learning (Murray 2019, eLife, "Local online learning in
recurrent networks with random feedback"), for the leaky RNN ``VanillaRNN`` alone:
``docs/algorithms.md`` §11, eq. (24).

The eligibility trace of W1[i, j] is the influence ds_t/dW1 with the recurrent Jacobian
dropped and the leak kept, per sample:

    J_t[i, j] = (1 − α) J_{t-1}[i, j] + α (1 − h_i²) a_j          (= D_ii a_j, eq. (19))

i.e. SnAp-1's state on the vanilla pattern (row i of W1 -> unit i) with H_t replaced by
(1 − α) I: the state, its gradient ``c_t · J`` and its dense form are ``snap``'s. The
paper's fixed random feedback, c_t = B e_t in place of V[:, :n]^T e_t, is the readout's
``feedback`` (``readout.Readout``; ``online(..., feedback=...)``), which any method can use.
Deterministic (no signs) and biased; exact where the recurrent weights W1[:, state columns]
are zero (then H_t = (1 − α) I).

Cost per step and sample: O(n k) (k = n_in + n + 1), no Jacobian of the step; memory n k.
"""

from . import snap
from .cells.vanilla import VanillaRNN, diagonal

#: the eligibility traces: snap's ``State``, one (B, n, 1, k) array
State = snap.State


def check_cell(cell):
    """``cell`` if it is a ``VanillaRNN``, else a one-line ``ValueError`` naming it."""
    if not isinstance(cell, VanillaRNN):
        raise ValueError("rflo is defined for the leaky RNN (VanillaRNN) only, "
                         f"not {type(cell).__name__}")
    return cell


def init(cell, batch, rank=1, *, xp, dtype, device=None):
    """Zero traces ``J`` (B, n, 1, k) (``rank`` is ignored); another cell is refused."""
    return snap.init(check_cell(cell), batch, rank, xp=xp, dtype=dtype, device=device)


def sign_shapes(cell, batch, rank=1):
    """RFLO draws no signs: ``{}``."""
    return {}


def update(cell, params, state, cache, signs=None, *, xp, keep=None):
    """Eq. (24) (``signs`` is ignored). ``keep`` (B,) 0/1: where it is 0 the stream starts
    from J = 0 (its decay is 0 there: the same one pass over J). Cost O(B n k)."""
    (J,), (cache_1,) = state.J, cache
    decay = 1.0 - cell.alpha
    if keep is not None:
        decay = decay * keep[:, None, None, None]
    d = diagonal(cell, cache_1)  # (B, n) = α (1 − h²)
    return State((snap.add_immediate(decay * J, d[:, :, None], cache_1.a),))


#: ``c_t · J_t`` summed over the batch, and the dense form: snap's (same state)
grads = snap.grads
influence = snap.influence
from_influence = snap.from_influence
