"""Backpropagation through time, whole window or truncated (TBPTT), for any cell of
``minirtrl.cells``. ``docs/algorithms.md``, eq. (11).

The oracle the RTRL family is checked against, and the baseline it is compared with.
The sequence is cut into windows of ``truncation`` steps (one window when it is None);
the state is carried from one window to the next, but no gradient crosses a window
boundary. Within a window every step's loss is back-propagated to the window start.

Every-step TBPTT (``every_step``, the online baseline at the update frequency of the RTRL
family): at every step the gradient of that step's loss alone, back-propagated through the
last K steps from the state K steps back, held fixed. A ``Window`` keeps the inputs of the
last K - 1 steps and that one state; each step runs the K steps forward again with the
current parameters, and back.

Cost: memory O(K B L n) activations (the caches) for a window of K steps; time O(B L n²)
per step forward and the same backward (for the RHN). Every-step TBPTT: the same for each
step (K steps forward and back per step), plus K - 1 inputs and one state kept between steps.
"""

import operator
from typing import NamedTuple

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
    grads = backpropagate(cell, params, tape, keep, xp=xp)
    grads["V"] = grads_V
    return loss, grads, s


def backpropagate(cell, params, tape, keep=None, *, xp):
    """The recurrent gradients ``{"W1": (m_1, k_1), ...}`` of the losses of a tape.

    ``tape`` lists, oldest first, ``(cache, c)`` per step: what ``cell.step`` returned and
    ``c`` (B, n) = ∂loss/∂s of that step's loss, or None where the step has no loss of its
    own; ``keep`` (K, B) 0/1 or None as for ``window_gradient`` (no gradient flows back past
    a stream's reset). Cost: one ``cell.vjp`` and one (m_l, B) x (B, k_l) product per block
    and step.
    """
    grads = {}
    g = None
    for t in range(len(tape) - 1, -1, -1):
        cache, c_t = tape[t]
        if c_t is not None:
            g = c_t if g is None else g + c_t
        g, dzs = cell.vjp(params, cache, g, xp=xp)
        for name, dz, cache_l in zip(cell.blocks, dzs, cache, strict=True):
            dW = xp.matrix_transpose(dz) @ cache_l.a  # (m_l, k_l)
            grads[name] = grads[name] + dW if name in grads else dW
        if keep is not None:
            g = g * keep[t, :][:, None]
    return grads


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


# ---- every-step TBPTT ------------------------------------------------------------------------
class Window(NamedTuple):
    """What every-step TBPTT keeps of B streams between steps: the state K - 1 steps back and
    the inputs since (``start_window``, ``every_step``).

    The slots are oldest first and always K - 1 long; only the last ``filled`` hold steps
    (fewer than K - 1 in the first steps of a run, whose slots before them are zeros).
    """

    s: object  # (B, n_state) the state entering the oldest kept step
    xs: object  # (K - 1, B, n_in) the inputs of the kept steps
    keep: object  # (K - 1, B) 0 where a stream restarted (zero state) before that step
    filled: int  # how many of the slots hold steps, 0 .. K - 1


def start_window(cell, batch, truncation, *, xp, dtype, device=None, s0=None):
    """The ``Window`` of ``batch`` streams that start from ``s0`` (B, n_state) (zeros when
    None) and back-propagate each step's loss through its last ``truncation`` = K >= 1 steps."""
    try:
        K = operator.index(truncation)
    except TypeError:
        K = 0
    if isinstance(truncation, bool) or K < 1:
        raise ValueError(f"truncation must be an integer >= 1, not {truncation!r}")
    if s0 is None:
        s0 = xp.zeros((batch, cell.n_state), dtype=dtype, device=device)
    return Window(s0, xp.zeros((K - 1, batch, cell.n_in), dtype=dtype, device=device),
                  xp.ones((K - 1, batch), dtype=dtype, device=device), 0)


def every_step(cell, params, window, x, y, mask, *, xp, keep=None, readout=SOFTMAX):
    """One step of every-step TBPTT: ``(window, loss (B,), grads, s_t)``.

    ``window`` the ``Window`` after step t - 1 (K = ``window.xs.shape[0] + 1``); ``x``
    (B, n_in), ``y`` (B,) targets (or (B, n_out) real for the ``mse`` readout), ``mask``
    (B,) 0/1, ``keep`` (B,) 0/1 or None: where it is 0 the stream restarts from the zero
    state at this step. ``grads`` = the gradient of loss_t alone (``readout``'s loss of this
    step, summed over the batch) with respect to every parameter, back-propagated through
    the last min(t, K) steps, run forward again from the window's state with ``params``
    (that state held fixed); ``s_t`` the state that forward pass ends in. The window
    returned keeps the state after the oldest of those steps once K steps were run.

    With ``K >= t`` and parameters that did not change, ``grads`` is exact RTRL's
    ``c_t · G_t`` (and the readout's gradient) of step t. Cost: min(t, K) cell steps forward
    and back, one readout; memory their caches.
    """
    K = window.xs.shape[0] + 1
    B = x.shape[0]
    if keep is None:
        keep = xp.ones((B,), dtype=x.dtype, device=get_device(x))
    if window.filled:
        first = K - 1 - window.filled
        xs = xp.concat([window.xs[first:, ...], x[None, ...]], axis=0)
        keeps = xp.concat([window.keep[first:, ...], keep[None, ...]], axis=0)
    else:
        xs, keeps = x[None, ...], keep[None, ...]
    s, tape, after_first = window.s, [], None
    for i in range(xs.shape[0]):
        s, cache = cell.step(params, s * keeps[i, :][:, None], xs[i, ...], xp=xp)
        tape.append((cache, None))
        after_first = s if i == 0 else after_first
    loss, dV, c = readout.loss_and_grad(params["V"], s, y, mask, xp=xp)
    tape[-1] = (tape[-1][0], c)
    grads = backpropagate(cell, params, tape, keeps, xp=xp)
    grads["V"] = dV
    return _slide(window, x, keep, after_first, xp=xp), loss, grads, s


def _slide(window, x, keep, after_first, *, xp):
    """The window after a step: step t's input and reset appended; once it holds K - 1 steps
    (K steps were run) its oldest step leaves it and the state moves past that step."""
    K = window.xs.shape[0] + 1
    if K == 1:  # nothing is kept but the state
        return Window(after_first, window.xs, window.keep, 0)
    xs = xp.concat([window.xs[1:, ...], x[None, ...]], axis=0)
    keeps = xp.concat([window.keep[1:, ...], keep[None, ...]], axis=0)
    if window.filled == K - 1:
        return Window(after_first, xs, keeps, K - 1)
    return Window(window.s, xs, keeps, window.filled + 1)
