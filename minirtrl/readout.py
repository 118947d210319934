"""The linear readout and its loss, with gradients written by hand.

    o_t = [s_t ; 1] V^T                            # (B, n_out) logits or outputs
    softmax: loss_t = logsumexp(o_t) - o_t[y_t]    # nats per sample, y_t (B,) integers
    mse:     loss_t = ½ ‖o_t − y_t‖²               # per sample, y_t (B, n_out) real

each times the 0/1 ``mask``; summed over the batch (``reduction="sum"``, the default) or
divided by B (``"mean"``). ``Readout(loss, reduction, feedback)`` names the choice; the module
functions ``loss_and_grad`` and ``loss`` are softmax summed.

Notation: ``c`` is c_t = ∂loss_t/∂s_t (B, n), the vector every recurrent-gradient method
contracts with its influence estimate (``docs/algorithms.md``, eq. (10)): c_t = e_t V[:, :n]
with e_t = ∂loss_t/∂o_t (B, n_out) the readout's error. A fixed ``feedback`` matrix F
(n, n_out) replaces V[:, :n]^T there, c_t = e_t F^T (RFLO's random feedback, Murray 2019;
``docs/algorithms.md`` §11): every method then contracts that c with its influence, and the
readout's own gradient stays exact. Cost O(B n n_out).
"""

from typing import NamedTuple

from ._compat import array_namespace, get_device

#: the losses a ``Readout`` computes, and how it reduces them over the batch
LOSSES = ("softmax", "mse")
REDUCTIONS = ("sum", "mean")


def one_hot(y, n_out, *, xp, dtype):
    """Integer targets (B,) -> one-hot (B, n_out) of the given dtype."""
    classes = xp.arange(n_out, dtype=y.dtype, device=get_device(y))
    return xp.astype(y[:, None] == classes[None, :], dtype)


def with_bias(s, *, xp):
    """[s ; 1] for s (B, n) -> (B, n + 1)."""
    ones = xp.ones((s.shape[0], 1), dtype=s.dtype, device=get_device(s))
    return xp.concat([s, ones], axis=1)


def logits(V, s, *, xp):
    """(B, n_out) logits of states s (B, n)."""
    return with_bias(s, xp=xp) @ xp.matrix_transpose(V)


def log_softmax(z, *, xp):
    """Row-wise log-softmax of z (B, n_out), stable."""
    m = xp.max(z, axis=1, keepdims=True)
    return z - (m + xp.log(xp.sum(xp.exp(z - m), axis=1, keepdims=True)))


def output(V, s):
    """The entries of the state ``s`` (B, n_state) the readout ``V`` (n_out, n+1) reads: the
    first n (all of them but for the LSTM, whose state is [h; c])."""
    n = V.shape[1] - 1
    return s if s.shape[1] == n else s[:, :n]


def loss(V, s, y, mask, *, xp):
    """Masked cross-entropy of one step, (B,) nats, without gradients (evaluation)."""
    logp = log_softmax(logits(V, output(V, s), xp=xp), xp=xp)  # (B, n_out)
    return -xp.sum(one_hot(y, V.shape[0], xp=xp, dtype=s.dtype) * logp, axis=1) * mask


def loss_and_grad(V, s, y, mask, *, xp, feedback=None):
    """Masked cross-entropy of one step and its gradients.

    Parameters: ``V`` (n_out, n+1), ``s`` (B, n), ``y`` (B,) integer, ``mask`` (B,) 0/1
    in the dtype of ``s``; ``feedback`` None or a fixed (n, n_out) matrix F.

    Returns ``(loss, dV, c)``: ``loss`` (B,) nats times mask, ``dV`` (n_out, n+1) the
    gradient of ``sum(loss)``, and ``c`` (B, n) = ∂ sum(loss)/∂s, or e F^T with a
    ``feedback`` F (e = softmax − onehot, masked).
    """
    sb = with_bias(s, xp=xp)  # (B, n+1)
    z = sb @ xp.matrix_transpose(V)  # (B, n_out) logits
    z = z - xp.max(z, axis=1, keepdims=True)  # shifted: exp cannot overflow
    e = xp.exp(z)
    total = xp.sum(e, axis=1, keepdims=True)  # (B, 1)
    onehot = one_hot(y, V.shape[0], xp=xp, dtype=s.dtype)
    loss = (xp.log(total)[:, 0] - xp.vecdot(onehot, z)) * mask  # (B,) = -log softmax[y]
    dlogits = (e / total - onehot) * mask[:, None]  # (B, n_out) = softmax - onehot
    dV = xp.matrix_transpose(dlogits) @ sb  # (n_out, n+1)
    c = dlogits @ back(V, s.shape[1], feedback, xp=xp)  # (B, n)
    return loss, dV, c


def squared_error_and_grad(V, s, y, mask, *, xp, feedback=None):
    """Masked ½‖o − y‖² of one step and its gradients, like ``loss_and_grad``.

    ``y`` (B, n_out) real targets. Returns ``(loss (B,), dV (n_out, n+1), c (B, n))``.
    """
    sb = with_bias(s, xp=xp)  # (B, n+1)
    d = (sb @ xp.matrix_transpose(V) - y) * mask[:, None]  # (B, n_out) = ∂loss/∂o
    loss = 0.5 * xp.sum(d * d, axis=1)  # (B,) (mask is 0/1: d*d is masked once)
    return loss, xp.matrix_transpose(d) @ sb, d @ back(V, s.shape[1], feedback, xp=xp)


def back(V, n, feedback, *, xp):
    """The (n_out, n) matrix that takes the error e_t to c_t: V[:, :n], or F^T for a
    ``feedback`` F (n, n_out), which must be an array of V's library and dtype."""
    if feedback is None:
        return V[:, :n]
    lib, want = array_namespace(feedback), array_namespace(V)
    if lib is not want or feedback.dtype != V.dtype:
        raise TypeError(f"feedback must be a {V.dtype} array of {want.__name__}, like params, "
                        f"not a {feedback.dtype} array of {lib.__name__}")
    return xp.matrix_transpose(feedback)


class Readout(NamedTuple):
    """A loss on the linear readout: ``loss`` one of ``LOSSES``, ``reduction`` of
    ``REDUCTIONS``. ``loss_and_grad(V, s, y, mask, *, xp)`` -> ``(loss (B,), dV, c)`` of the
    reduced loss (its sum over the batch is the loss; ``"mean"`` divides every term by B),
    ``c`` (B, n_state) = ∂loss/∂s: the readout reads ``output(V, s)``. ``feedback`` None, or
    a fixed (n, n_out) array F of the parameters' library and dtype: then c = e F^T (module
    docstring) and the recurrent gradients are RFLO's feedback-alignment ones."""

    loss: str = "softmax"
    reduction: str = "sum"
    feedback: object = None

    def loss_and_grad(self, V, s, y, mask, *, xp):
        fn = loss_and_grad if self.loss == "softmax" else squared_error_and_grad
        out = output(V, s)  # (B, n)
        value, dV, c = fn(V, out, y, mask, xp=xp, feedback=self.feedback)
        if self.reduction == "mean":
            B = s.shape[0]
            value, dV, c = value / B, dV / B, c / B
        if out is not s:  # the state entries the readout does not read: c is zero there
            rest = xp.zeros((s.shape[0], s.shape[1] - out.shape[1]), dtype=c.dtype,
                            device=get_device(c))
            c = xp.concat([c, rest], axis=1)  # (B, n_state)
        return value, dV, c

    def value(self, V, s, y, mask, *, xp):
        """The reduced loss of one step, (B,), without gradients."""
        if self.loss == "softmax" and self.reduction == "sum":
            return loss(V, s, y, mask, xp=xp)
        return self.loss_and_grad(V, s, y, mask, xp=xp)[0]


def make(loss="softmax", reduction="sum", feedback=None):
    """The ``Readout`` of ``loss``, ``reduction`` and ``feedback`` (checked by the caller);
    ``ValueError`` naming a bad loss or reduction."""
    for name, value, choices in (("loss", loss, LOSSES), ("reduction", reduction, REDUCTIONS)):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                             f"not {value!r}")
    return Readout(loss, reduction, feedback)


#: the default: softmax cross-entropy summed over the batch
SOFTMAX = Readout()
