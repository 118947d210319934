"""Layout converters between minirtrl's parameters and influence and two common others.

minirtrl's first block ``W1`` (n, n_in + n + 1) multiplies ``[x; s; 1]`` (input, state,
bias), and its dense influence is ``(B, n, m, k)`` with ``G[b, :, i, j] = ds/dW[i, j]``.
Much RTRL code (e.g. written for ``kron(a, D)``) keeps instead

* the columns in the state-first order ``[s; x; 1]``: ``input_first`` / ``state_first``
  permute the last axis (of a weight, its gradient, or an influence), and
* the influence as one ``(n, m·k)`` matrix per sample over the flattened weight:
  ``flatten_influence(G, order)`` with ``order="F"`` (columns stacked: θ[j·m + i] = W[i, j],
  what ``kron(a, D)`` produces) or ``"C"`` (rows stacked: θ[i·k + j] = W[i, j]), and
  ``unflatten_influence`` back.

Every function works on arrays of any array-API library and on any leading axes.
"""

from .._compat import array_namespace


def input_first(W, n_in):
    """Columns ``[s; x; 1]`` -> minirtrl's ``[x; s; 1]`` on the last axis (k = n_in + n + 1)."""
    xp, n = array_namespace(W), _state_size(W, n_in)
    return xp.concat([W[..., n:n + n_in], W[..., :n], W[..., n + n_in:]], axis=-1)


def state_first(W, n_in):
    """minirtrl's ``[x; s; 1]`` -> ``[s; x; 1]`` on the last axis (the inverse of
    ``input_first``)."""
    xp, n = array_namespace(W), _state_size(W, n_in)
    return xp.concat([W[..., n_in:n_in + n], W[..., :n_in], W[..., n_in + n:]], axis=-1)


def flatten_influence(G, order="F"):
    """``(..., n, m, k)`` -> ``(..., n, m·k)``: ``"F"`` θ[j·m + i], ``"C"`` θ[i·k + j]."""
    xp = array_namespace(G)
    *lead, m, k = G.shape
    if order == "F":
        axes = (*range(len(lead)), len(lead) + 1, len(lead))
        return xp.reshape(xp.permute_dims(G, axes), (*lead, m * k))
    if order == "C":
        return xp.reshape(G, (*lead, m * k))
    raise ValueError(f"order must be 'F' or 'C', not {order!r}")


def unflatten_influence(G, m, k, order="F"):
    """``(..., n, m·k)`` -> ``(..., n, m, k)``, the inverse of ``flatten_influence``."""
    xp = array_namespace(G)
    *lead, size = G.shape
    if size != m * k:
        raise ValueError(f"G's last axis has {size} entries, not m·k = {m}·{k}")
    if order == "F":
        swapped = xp.reshape(G, (*lead, k, m))
        return xp.permute_dims(swapped, (*range(len(lead)), len(lead) + 1, len(lead)))
    if order == "C":
        return xp.reshape(G, (*lead, m, k))
    raise ValueError(f"order must be 'F' or 'C', not {order!r}")


def _state_size(W, n_in):
    n = W.shape[-1] - n_in - 1
    if n < 1:
        raise ValueError(f"a last axis of {W.shape[-1]} columns cannot hold n_in = {n_in} "
                         "inputs, a state and a bias")
    return n
