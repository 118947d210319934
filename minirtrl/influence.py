"""What every influence method (exact RTRL and its estimators) provides, and its state.

An influence method keeps, per sample, an estimate of ``G_t^l = ds_t/dW_l`` for every
recurrent block of a cell (``docs/algorithms.md``, eq. (9)) and is a module with
these functions:

    init(cell, batch, rank, *, xp, dtype, device) -> state     zero influence
    noise_shapes(cell, batch, rank) -> {name: shape}           random signs one step needs
    update(cell, params, state, cache, noise, *, xp, keep=None) -> state
                                                               G_t from G_{t-1} (one step)
    grads(cell, state, c, *, xp) -> {"W1": (m_1, k_1), ...}    c_t · G_t, summed over B
    influence(cell, state, *, xp) -> {"W1": (B, n, m_1, k_1), ...}   the estimate, dense

``keep`` (B,) 0/1 or None: where it is 0 the stream starts from the zero influence (a
new sequence), which the method folds into its step at no extra pass over its state (the
same as ``update(..., reset(state, keep), ...)``). ``cache`` is what ``cell.step``
returned for this step, ``noise`` a dict of ±1 arrays
with the shapes of ``noise_shapes`` (drawn by the caller, so tests can enumerate every
sign pattern through the real code, and another implementation can be driven with the
same signs: ``minirtrl.online``; each ``noise_shapes`` docstring says what every sign
multiplies), ``c`` (B, n) = ∂loss_t/∂s_t, ``rank`` the r of
``ok`` and ``kf-avg`` (checked by ``minirtrl.methods.check_rank``; 1 for the others,
which ignore it). States are immutable ``NamedTuple``s of arrays (possibly inside
tuples) whose first axis is the batch; the functions below walk any of them.
"""


def map_state(fn, state):
    """``state`` with every array ``x`` replaced by ``fn(x)``; tuples and NamedTuples kept."""
    if isinstance(state, tuple):
        items = [map_state(fn, item) for item in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return None if state is None else fn(state)


def leaves(state):
    """The arrays of ``state`` in depth-first order (what a checkpoint stores)."""
    out = []
    map_state(out.append, state)
    return out


def rebuild(template, arrays):
    """``template``'s structure filled with ``arrays`` (in the order of ``leaves``)."""
    it = iter(arrays)
    return map_state(lambda _: next(it), template)


def reset(state, keep):
    """Zero the streams where ``keep`` (B,) is 0 (a new sequence starts there)."""
    return map_state(lambda x: x * keep[(...,) + (None,) * (x.ndim - 1)], state)


def select(state, lo, hi):
    """The streams ``lo:hi`` of ``state``."""
    return map_state(lambda x: x[lo:hi, ...], state)
