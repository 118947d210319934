"""Backpropagation through time, whole window or truncated (TBPTT), for any cell of
``minirtrl.cells``. ``docs/algorithms.md``, eq. (11).

The oracle the RTRL family is checked against, and the baseline it is compared with.
The sequence is cut into windows of ``truncation`` steps (one window when it is None);
the state is carried from one window to the next, but no gradient crosses a window
boundary. Within a window every step's loss is back-propagated to the window start.

Cost: memory O(K B L n) activations (the caches) for a window of K steps; time O(B L n²)
per step forward and the same backward (for the RHN).
"""

from ._compat import get_device
from .readout import SOFTMAX


def window_gradient(cell, params, s0, xs, ys, mask, *, xp, keep=None, readout=SOFTMAX):
    """Loss and gradient of one window, back-propagated to its start.

    Parameters: ``s0`` (B, n) the state entering the window (treated as a constant),
    ``xs`` (K, B, n_in), ``ys`` (K, B) integers (or (K, B, n_out) real for the ``mse``
    readout), ``mask`` (K, B) 0/1 in the parameters' dtype, ``keep`` (K, B) 0/1 or None:
    when ``keep[t, b] == 0`` stream b is reset to the zero state just before step t (a new
    sequence starts there); ``readout`` a ``readout.Readout`` (the loss).

    Returns ``(loss, grads, s_end)``: ``loss`` (B,) summed over the window, ``grads`` a
    dict like ``params`` (summed over batch and window), ``s_end`` (B, n).
    """
    s = s0
    tape = []
    loss, grads_V = None, None
    for t in range(xs.shape[0]):
        if keep is not None:
            s = s * keep[t, :][:, None]
        s, cache = cell.step(params, s, xs[t, ...], xp=xp)
        l_t, dV_t, c_t = readout.loss_and_grad(params["V"], s, ys[t, ...], mask[t, :], xp=xp)
        loss = l_t if loss is None else loss + l_t
        grads_V = dV_t if grads_V is None else grads_V + dV_t
        tape.append((cache, c_t))
    grads = {}
    g = None
    for t in range(len(tape) - 1, -1, -1):
        cache, c_t = tape[t]
        g = c_t if g is None else g + c_t
        g, dzs = cell.vjp(params, cache, g, xp=xp)
        for name, dz, cache_l in zip(cell.blocks, dzs, cache, strict=True):
            dW = xp.matrix_transpose(dz) @ cache_l.a  # (m_l, k_l)
            grads[name] = grads[name] + dW if name in grads else dW
        if keep is not None:
            g = g * keep[t, :][:, None]
    grads["V"] = grads_V
    return loss, grads, s


def gradient(cell, params, xs, ys, mask, *, xp, truncation=None, s0=None, readout=SOFTMAX):
    """(T)BPTT over a whole sequence from ``s0`` (B, n) (the zero state when None).

    Returns ``(loss, grads)`` with ``loss`` (B,) and ``grads`` summed over all windows.
    """
    T = xs.shape[0]
    K = T if truncation is None else truncation
    V = params["V"]
    s = s0
    if s is None:
        s = xp.zeros((xs.shape[1], cell.n_state), dtype=V.dtype, device=get_device(V))
    loss, grads = None, None
    for start in range(0, T, K):
        stop = min(start + K, T)
        l_w, g_w, s = window_gradient(cell, params, s, xs[start:stop, ...], ys[start:stop, ...],
                                      mask[start:stop, :], xp=xp, readout=readout)
        loss = l_w if loss is None else loss + l_w
        grads = g_w if grads is None else {k: grads[k] + g_w[k] for k in grads}
    return loss, grads
