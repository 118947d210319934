"""Training and evaluation streams of an encoded text (host-side NumPy).

* :func:`stream_offsets`, :func:`batch_at`, :func:`window_at`: the ``B`` training streams,
  started at evenly spaced offsets of the training text and read as a circular text. They are
  pure functions of the step counter ``t``, so a resumed run only needs ``t``.
* :func:`eval_streams`: a validation or test split cut into ``S`` long streams (the state is
  carried through, never reset), with a 0/1 mask such that the masked sum over all positions
  counts every next-symbol prediction of the split exactly once.

Notation: ``N`` symbols of a split (``len(ids)``; N - 1 next-symbol predictions), ``B``
training streams, ``t`` their position counter (one step = one symbol per stream), ``S``
evaluation streams, ``T`` their common length (the last few padded by at most one step).
"""

import numpy as np


def stream_offsets(n_symbols, n_streams):
    """(B,) int64 start positions ``b·N // B`` of ``B = n_streams`` training streams."""
    if n_symbols < 2 or n_streams < 1:
        raise ValueError(f"need n_symbols >= 2 and n_streams >= 1; got {n_symbols}, {n_streams}")
    return (np.arange(n_streams, dtype=np.int64) * n_symbols) // n_streams


def window_at(ids, offsets, t, length):
    """Inputs and targets of steps ``t .. t+length-1``, each (length, B) like ``ids``.

    ``inputs[j, b] = ids[(offsets[b] + t + j) % N]`` and ``targets[j, b]`` is the symbol after
    it, ``ids[(offsets[b] + t + j + 1) % N]``: the text is read as a circle, so after its last
    symbol comes its first again. Cost O(length·B).
    """
    n = ids.shape[0]
    steps = int(t) + np.arange(length + 1, dtype=np.int64)  # (length+1,)
    pos = (np.asarray(offsets, dtype=np.int64)[None, :] + steps[:, None]) % n  # (length+1, B)
    window = ids[pos]
    return window[:-1, :], window[1:, :]


def batch_at(ids, offsets, t):
    """(B,) input ids and (B,) target ids of step ``t`` (see :func:`window_at`)."""
    inputs, targets = window_at(ids, offsets, t, 1)
    return inputs[0, :], targets[0, :]


def eval_streams(ids, n_streams):
    """A split as ``S = n_streams`` contiguous streams: (T, S) inputs, targets and mask.

    The N - 1 predictions ``ids[i] -> ids[i+1]`` (i = 0..N-2) are cut into S consecutive
    chunks, chunk s holding i in ``[s(N-1)//S, (s+1)(N-1)//S)``; so lengths differ by at most
    one, T = ceil((N-1)/S), and a stream shorter than T is padded by one step at its end.
    ``inputs[j, s] = ids[i]``, ``targets[j, s] = ids[i+1]`` for the j-th prediction i of chunk
    s; padding holds ids 0 (valid symbols) with ``mask`` 0.0, elsewhere ``mask`` is 1.0
    (float64). Run each stream from a zero state and carry the state through all T steps:
    ``sum(mask · loss) / sum(mask)`` is then the mean over every prediction of the split,
    each counted once (``sum(mask) == N - 1``).
    """
    m = ids.shape[0] - 1  # predictions
    if not 1 <= n_streams <= m:
        raise ValueError(f"n_streams must be between 1 and len(ids) - 1 = {m}; got {n_streams}")
    bounds = (np.arange(n_streams + 1, dtype=np.int64) * m) // n_streams  # (S+1,)
    lengths = np.diff(bounds)  # (S,)
    steps = np.arange(int(lengths.max()), dtype=np.int64)[:, None]  # (T, 1)
    mask = steps < lengths[None, :]  # (T, S)
    pos = np.where(mask, bounds[None, :-1] + steps, 0)  # (T, S) index of the input symbol
    inputs = np.where(mask, ids[pos], 0).astype(ids.dtype)
    targets = np.where(mask, ids[pos + 1], 0).astype(ids.dtype)
    return inputs, targets, mask.astype(np.float64)
