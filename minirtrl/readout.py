"""Linear softmax readout and cross-entropy, with its gradient written by hand.

    logits_t = [s_t ; 1] V^T                       # (B, n_out)
    loss_t   = logsumexp(logits_t) - logits_t[y_t] # nats, per sample

Notation: ``c`` is c_t = ∂loss_t/∂s_t (B, n), the vector every recurrent-gradient method
contracts with its influence estimate (``docs/algorithms.md``, eq. (10)). Cost O(B n n_out).
"""

from ._compat import get_device


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


def loss(V, s, y, mask, *, xp):
    """Masked cross-entropy of one step, (B,) nats, without gradients (evaluation)."""
    logp = log_softmax(logits(V, s, xp=xp), xp=xp)  # (B, n_out)
    return -xp.sum(one_hot(y, V.shape[0], xp=xp, dtype=s.dtype) * logp, axis=1) * mask


def loss_and_grad(V, s, y, mask, *, xp):
    """Masked cross-entropy of one step and its gradients.

    Parameters: ``V`` (n_out, n+1), ``s`` (B, n), ``y`` (B,) integer, ``mask`` (B,) 0/1
    in the dtype of ``s``.

    Returns ``(loss, dV, c)``: ``loss`` (B,) nats times mask, ``dV`` (n_out, n+1) the
    gradient of ``sum(loss)``, and ``c`` (B, n) = ∂ sum(loss)/∂s.
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
    c = dlogits @ V[:, : s.shape[1]]  # (B, n)
    return loss, dV, c
