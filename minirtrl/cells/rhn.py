"""Recurrent Highway Network cell (Zilly et al. 2017, "Recurrent Highway Networks"), coupled
carry gate, recurrence depth L. Equations (1)-(8) of ``docs/algorithms.md``.

One time step (batch axis first; every row below is per sample)::

    s^0 = s_{t-1}
    for l = 1..L:
        a_l = [x_t ; s^{l-1} ; 1]  (l = 1)   or   [s^{l-1} ; 1]  (l >= 2)    # (B, k_l)
        z   = a_l W_l^T                                                       # (B, 2n)
        h   = tanh(z[:, :n]);   tau = sigmoid(z[:, n:])
        s^l = h * tau + s^{l-1} * (1 - tau)
    s_t = s^L

Notation (code name -> symbol of ``docs/algorithms.md``):

    a        a_l        input of micro-layer l, length k_l (k_1 = n_in + n + 1, else n + 1)
    h        h          candidate tanh(z[:n])
    tau      τ          transform gate sigmoid(z[n:]); the carry gate is 1 - τ
    s_prev   s^{l-1}    state entering micro-layer l
    dh, dg   D_l        D_l = [diag(dh) | diag(dg)] = ∂s^l/∂z,  dh = τ(1-h²), dg = (h - s^{l-1})τ(1-τ)
    K        K_l        ∂s^l/∂s^{l-1} = diag(1-τ) + D_l W_l[:, state columns]      (B, n, n)
    H        H_t        ∂s_t/∂s_{t-1} = K_L ⋯ K_1                                 (B, n, n)
    PD       P_l D_l    ∂s_t/∂z_l with P_l = K_L ⋯ K_{l+1} (P_L = I)              (B, n, 2n)

The immediate influence of block l is F_t^l = a_l ⊗ (P_l D_l), i.e.
``∂s_t/∂W_l[i, j] = PD[:, :, i] * a[:, j]``; it is never formed here. ``PD`` is the RHN's
right immediate factor M_t^l of the cell interface (``minirtrl.cells``).

Cost per step and sample: forward O(L n²); forming H_t and all P_l D_l O(L n³) (O(n²)
at depth 1: K_l is written by one product batched over its rows, ``state_jacobian``,
equal to the readable ``layer_jacobian``); a Jacobian-vector or vector-Jacobian product
through the step O(L n²) (both at once, sharing the diagonals: ``jvp_vjp``).
"""

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from .. import _checks
from .._compat import get_device
from ._params import normal_params


class Layer(NamedTuple):
    """What one micro-layer keeps for its derivatives (all per sample)."""

    a: object  # (B, k_l)  input [x; s^{l-1}; 1] or [s^{l-1}; 1]
    h: object  # (B, n)    candidate
    tau: object  # (B, n)  transform gate
    s_prev: object  # (B, n)  s^{l-1}


@dataclass(frozen=True)
class RHN:
    """A depth-L RHN with a linear softmax readout (a cell of ``minirtrl.cells``).

    Parameters are a plain dict::

        {"W1": (2n, n_in+n+1), "W2": (2n, n+1), ..., "WL": (2n, n+1), "V": (n_out, n+1)}

    Columns of ``W_l`` follow ``a_l`` (input, state, bias); rows are candidate rows
    first, gate rows second.
    """

    n_in: int
    n_hidden: int
    n_out: int
    depth: int = 1

    def __post_init__(self):
        for name in ("n_in", "n_hidden", "n_out", "depth"):
            object.__setattr__(self, name, _checks.size(name, getattr(self, name)))

    # ---- layout -------------------------------------------------------------------
    @cached_property
    def blocks(self):
        """Names of the recurrent weight blocks, ``("W1", ..., "WL")`` (made once)."""
        return tuple(f"W{l}" for l in range(1, self.depth + 1))

    def width(self, l):
        """k_l, the length of a_l (l counted from 1)."""
        return self.n_in + self.n_hidden + 1 if l == 1 else self.n_hidden + 1

    def state_columns(self, l):
        """The slice of W_l's columns that multiply s^{l-1}."""
        start = self.n_in if l == 1 else 0
        return slice(start, start + self.n_hidden)

    def shapes(self):
        """Parameter name -> shape: ``W1`` .. ``WL``, then ``V``."""
        n = self.n_hidden
        out = {f"W{l}": (2 * n, self.width(l)) for l in range(1, self.depth + 1)}
        out["V"] = (self.n_out, n + 1)
        return out

    def init(self, seed, xp="numpy", dtype="float64", init_scale=0.01, gate_bias=0.0, device=None):
        """Random parameters: every entry ~ N(0, init_scale²), gate biases = gate_bias.

        ``xp`` is an array namespace or a backend name (see ``minirtrl.backends``);
        draws are made on the host from ``numpy.random.default_rng(seed)`` in the order
        W1, ..., WL, V, so a seed gives the same parameters on every backend.
        """
        n = self.n_hidden

        def set_gate_bias(name, w):
            if name != "V":
                w[n:, -1] = gate_bias  # transform-gate bias: last column, gate rows

        return normal_params(self.shapes(), seed, xp, dtype, init_scale, device, set_gate_bias)

    # ---- the cell interface -------------------------------------------------------
    def step(self, params, s_prev, x, *, xp):
        """One time step: ``s_prev (B, n)``, ``x (B, n_in)`` -> ``s_t (B, n)`` and the layers.

        Returns ``(s, layers)`` where ``layers`` is a tuple of ``Layer`` (one per micro-layer)
        holding what the derivatives need. Cost O(B L n²).
        """
        n = self.n_hidden
        ones = xp.ones((s_prev.shape[0], 1), dtype=s_prev.dtype, device=get_device(s_prev))
        s = s_prev
        layers = []
        for l, name in enumerate(self.blocks, start=1):
            a = xp.concat([x, s, ones], axis=1) if l == 1 else xp.concat([s, ones], axis=1)
            z = a @ xp.matrix_transpose(params[name])  # (B, 2n)
            h = xp.tanh(z[:, :n])
            tau = sigmoid(z[:, n:], xp)
            layers.append(Layer(a, h, tau, s))
            s = h * tau + s * (1.0 - tau)
        return s, tuple(layers)

    def influence_pieces(self, params, layers, *, xp):
        """``H_t`` (B, n, n) and ``(P_1 D_1, ..., P_L D_L)``, each (B, n, 2n).

        Walks the micro-layers backwards: P_L = I, P_{l-1} = P_l K_l, and H_t = P_0.
        ``P_l D_l = [P_l diag(dh) | P_l diag(dg)]`` scales the columns of ``[P_l | P_l]`` and
        is written in one broadcast product. Cost O(B L n³) (one n×n product per micro-layer
        but the last one); O(B n²) at depth 1.
        """
        n = self.n_hidden
        eye = xp.eye(n, dtype=layers[0].h.dtype, device=get_device(layers[0].h))
        P = None  # None stands for the identity P_L
        pds = [None] * self.depth
        for l in range(self.depth, 0, -1):
            layer = layers[l - 1]
            dh, dg = d_diagonals(layer)
            left = eye if P is None else P  # P_l: (n, n) or (B, n, n)
            pds[l - 1] = xp.concat([left, left], axis=-1) * xp.concat([dh, dg], axis=1)[:, None, :]
            K = state_jacobian(self, params, l, layer.tau, dh, dg, eye, xp=xp)
            P = K if P is None else P @ K
        return P, tuple(pds)

    def jvp_vjp(self, params, layers, v, g, *, xp):
        """``H_t v`` and, per micro-layer, ``dz_l = g^T ∂s_t/∂z_l`` in one walk (UORO's step).

        The same as ``jvp_state(.., v)`` and the ``dz`` of ``vjp(.., g)``, sharing the
        diagonals of each layer: v, g (B, n) -> ``(H v (B, n), (dz_1, ..., dz_L) each (B, 2n))``.
        Cost O(B L n²).
        """
        n = self.n_hidden
        pieces = []
        for l, layer in enumerate(layers, start=1):
            ws = params[f"W{l}"][:, self.state_columns(l)]  # (2n, n)
            dh, dg = d_diagonals(layer)
            carry = 1.0 - layer.tau
            pieces.append((ws, dh, dg, carry))
            wv = v @ xp.matrix_transpose(ws)  # (B, 2n)
            v = carry * v + dh * wv[:, :n] + dg * wv[:, n:]
        dzs = [None] * self.depth
        for l in range(self.depth, 0, -1):
            ws, dh, dg, carry = pieces[l - 1]
            dzs[l - 1] = xp.concat([g * dh, g * dg], axis=1)  # (B, 2n) = g D_l
            if l > 1:
                g = g * carry + dzs[l - 1] @ ws
        return v, tuple(dzs)

    def vjp(self, params, layers, g, *, xp):
        """Back-propagate ``g = ∂L/∂s_t`` (B, n) through one step with the weights fixed.

        Returns ``(g_prev, dz)``: ``g_prev = ∂L/∂s_{t-1}`` (B, n) and, per micro-layer,
        ``dz_l = ∂L/∂z_l`` (B, 2n). The gradient of W_l is ``dz_l^T a_l`` (summed over
        the batch) or, per sample, the outer product ``dz_l[b] ⊗ a_l[b]``. Cost O(B L n²).
        """
        dzs = [None] * self.depth
        for l in range(self.depth, 0, -1):
            layer = layers[l - 1]
            dh, dg = d_diagonals(layer)
            dz = xp.concat([g * dh, g * dg], axis=1)  # (B, 2n) = g D_l
            dzs[l - 1] = dz
            ws = params[f"W{l}"][:, self.state_columns(l)]  # (2n, n)
            g = g * (1.0 - layer.tau) + dz @ ws
        return g, tuple(dzs)


# ---- the pieces, as functions of one layer ------------------------------------------
def sigmoid(z, xp):
    """Logistic function, written through tanh so it never overflows."""
    return 0.5 * (1.0 + xp.tanh(0.5 * z))


def d_diagonals(layer):
    """The two diagonals of D_l = ∂s^l/∂z: ``dh, dg``, each (B, n)."""
    h, tau, s_prev = layer.h, layer.tau, layer.s_prev
    dh = tau * (1.0 - h * h)
    dg = (h - s_prev) * tau * (1.0 - tau)
    return dh, dg


def layer_jacobian(cell, params, l, layer, *, xp):
    """K_l = ∂s^l/∂s^{l-1} = diag(1-τ) + D_l W_l[:, state columns], shape (B, n, n).

    The readable form (three broadcast products); ``influence_pieces`` uses the
    equivalent ``state_jacobian`` (one batched product; ``bench/README.md`` has the timings).
    """
    n = cell.n_hidden
    ws = params[f"W{l}"][:, cell.state_columns(l)]  # (2n, n)
    dh, dg = d_diagonals(layer)
    eye = xp.eye(n, dtype=dh.dtype, device=get_device(dh))
    return (
        eye * (1.0 - layer.tau)[:, :, None]
        + dh[:, :, None] * ws[:n, :]
        + dg[:, :, None] * ws[n:, :]
    )


def state_jacobian(cell, params, l, tau, dh, dg, eye, *, xp):
    """K_l (B, n, n) from its pieces, as one product batched over the rows.

    Row i of K_l is ``dh_i W_h[i] + dg_i W_g[i] + (1 - τ_i) e_i`` (W_h, W_g: the candidate
    and gate rows of W_l's state columns, ``eye`` the n × n identity), i.e. for every row
    a (B, 3) @ (3, n) product: one matmul batched over the n rows writes all of K_l,
    equal to ``layer_jacobian`` up to roundoff. Returns a (B, n, n) view of an (n, B, n) array.
    """
    n = cell.n_hidden
    ws = params[f"W{l}"][:, cell.state_columns(l)]  # (2n, n)
    rows = xp.stack([ws[:n, :], ws[n:, :], eye], axis=1)  # (n, 3, n): [W_h[i]; W_g[i]; e_i]
    coef = xp.permute_dims(xp.stack([dh, dg, 1.0 - tau], axis=2), (1, 0, 2))  # (n, B, 3)
    return xp.permute_dims(coef @ rows, (1, 0, 2))  # (B, n, n)


def jvp_state(cell, params, layers, v, *, xp):
    """``H_t v`` for v (B, n), without forming H_t: O(B L n²) (the readable form)."""
    n = cell.n_hidden
    for l, layer in enumerate(layers, start=1):
        ws = params[f"W{l}"][:, cell.state_columns(l)]  # (2n, n)
        dh, dg = d_diagonals(layer)
        wv = v @ xp.matrix_transpose(ws)  # (B, 2n)
        v = (1.0 - layer.tau) * v + dh * wv[:, :n] + dg * wv[:, n:]
    return v
