"""Recurrent Highway Network cell (Zilly et al. 2017, "Recurrent Highway Networks"), coupled
carry gate, recurrence depth L: ``docs/algorithms.md`` §1, eqs. (1)-(8).

The class reads in the order of §1: ``step`` is eqs. (1)-(3); ``influence_pieces`` composes
H_t and P_l D_l (eqs. (6)-(8)) from the per-layer Jacobians K_l of eq. (5), written plainly
by ``layer_jacobian``; ``vjp`` is back-propagation through one step. Below the marked line
are the fast forms: ``state_jacobian`` (K_l as one product batched over its rows, the
default, selected by name in ``JACOBIANS``) and ``jvp_vjp`` (UORO's two products in one walk).

Notation (code name -> symbol of §1):

    a        a_l        input of micro-layer l, length k_l (k_1 = n_in + n + 1, else n + 1)
    h        h          candidate tanh(z[:n])
    tau      τ          transform gate sigmoid(z[n:]); the carry gate is 1 - τ
    s_prev   s^{l-1}    state entering micro-layer l
    dh, dg   D_l        D_l = [diag(dh) | diag(dg)] = ∂s^l/∂z (eq. (4))
    K        K_l        ∂s^l/∂s^{l-1}                                        (B, n, n)
    H        H_t        ∂s_t/∂s_{t-1} = K_L ⋯ K_1                            (B, n, n)
    PD       P_l D_l    ∂s_t/∂z_l, the right immediate factor M_l            (B, n, 2n)
    cache    one ``Cache`` per micro-layer: what the derivatives need

Cost per step and sample: forward O(L n²); H_t and all P_l D_l O(L n³) (O(n²) at depth 1);
a Jacobian-vector or vector-Jacobian product through the step O(L n²).
"""

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from .. import _checks
from .._compat import get_device
from ._params import normal_params


class Cache(NamedTuple):
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
    @property
    def n_state(self):
        """Length of the state s_t: n."""
        return self.n_hidden

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

    def snap_units(self, name):
        """The pattern of the immediate Jacobian M_l (SnAp-1, ``docs/algorithms.md`` §11):
        (2n, c_l) int64, row i of ``W_l`` -> the units its pre-activation reaches in one step.

        The last block's candidate row i and gate row n+i reach unit i alone (c_L = 1); a
        block below it reaches every unit through P_l = K_L ⋯ K_{l+1} (c_l = n, eq. (7)).
        """
        if name not in self.blocks:
            raise ValueError(f"name must be one of {', '.join(self.blocks)}, not {name!r}")
        n = self.n_hidden
        if name == self.blocks[-1]:
            return np.tile(np.arange(n, dtype=np.int64), 2)[:, None]  # (2n, 1)
        return np.tile(np.arange(n, dtype=np.int64), (2 * n, 1))  # (2n, n)

    def init(self, seed, *, xp=None, dtype=None, device=None, init_scale=0.01, gate_bias=0.0):
        """Random parameters: every entry ~ N(0, init_scale²), gate biases = gate_bias.

        ``xp`` an array namespace module (default NumPy), ``dtype`` one of its real floating
        dtypes (default float64), ``device`` where the arrays live. Draws are made on the host
        from ``numpy.random.default_rng(seed)`` in the order W1, ..., WL, V, so a seed gives
        the same parameters on every backend. ``init_scale`` must be a finite number >= 0 and
        ``gate_bias`` a finite number (``ValueError`` naming it otherwise).
        """
        n = self.n_hidden
        gate_bias = _checks.finite_real("gate_bias", gate_bias)

        def set_gate_bias(name, w):
            if name != "V":
                w[n:, -1] = gate_bias  # transform-gate bias: last column, gate rows

        return normal_params(self.shapes(), seed, xp=xp, dtype=dtype, device=device,
                             init_scale=init_scale, adjust=set_gate_bias)

    # ---- the cell interface -------------------------------------------------------
    def step(self, params, s_prev, x, *, xp):
        """One time step, eqs. (1)-(3): ``s_prev (B, n)``, ``x (B, n_in)`` -> ``s_t (B, n)``.

        Returns ``(s, cache)``, ``cache`` a tuple of ``Cache`` (one per micro-layer).
        Cost O(B L n²).
        """
        n = self.n_hidden
        ones = xp.ones((s_prev.shape[0], 1), dtype=s_prev.dtype, device=get_device(s_prev))
        s = s_prev
        cache = []
        for l, name in enumerate(self.blocks, start=1):
            a = xp.concat([x, s, ones], axis=1) if l == 1 else xp.concat([s, ones], axis=1)
            z = a @ xp.matrix_transpose(params[name])  # (B, 2n)
            h = xp.tanh(z[:, :n])
            tau = sigmoid(z[:, n:], xp)
            cache.append(Cache(a, h, tau, s))
            s = h * tau + s * (1.0 - tau)
        return s, tuple(cache)

    def influence_pieces(self, params, cache, *, xp, jacobian="batched"):
        """``H_t`` (B, n, n) and ``(P_1 D_1, ..., P_L D_L)``, each (B, n, 2n): eqs. (6)-(8).

        Walks the micro-layers backwards: P_L = I, P_{l-1} = P_l K_l, and H_t = P_0.
        ``P_l D_l = [P_l diag(dh) | P_l diag(dg)]`` scales the columns of ``[P_l | P_l]``.
        ``jacobian`` names the form of K_l in ``JACOBIANS`` (the same values up to
        roundoff). Cost O(B L n³) (one n×n product per micro-layer but the last); O(B n²)
        at depth 1.
        """
        K_l = JACOBIANS[jacobian]
        P = None  # None stands for the identity P_L
        pds = [None] * self.depth
        for l in range(self.depth, 0, -1):
            cache_l = cache[l - 1]
            dh, dg = d_diagonals(cache_l)
            if P is None:
                eye = xp.eye(self.n_hidden, dtype=dh.dtype, device=get_device(dh))
            left = eye if P is None else P  # P_l: (n, n) or (B, n, n)
            pds[l - 1] = xp.concat([left, left], axis=-1) * xp.concat([dh, dg], axis=1)[:, None, :]
            K = K_l(self, params, l, cache_l, xp=xp)
            P = K if P is None else P @ K
        return P, tuple(pds)

    def vjp(self, params, cache, g, *, xp):
        """Back-propagate ``g = ∂L/∂s_t`` (B, n) through one step with the weights fixed.

        Returns ``(g_prev, dz)``: ``g_prev = ∂L/∂s_{t-1}`` (B, n) and, per micro-layer,
        ``dz_l = ∂L/∂z_l`` (B, 2n). The gradient of W_l is ``dz_l^T a_l`` (summed over
        the batch) or, per sample, the outer product ``dz_l[b] ⊗ a_l[b]``. Cost O(B L n²).
        """
        dzs = [None] * self.depth
        for l in range(self.depth, 0, -1):
            cache_l = cache[l - 1]
            dh, dg = d_diagonals(cache_l)
            dz = xp.concat([g * dh, g * dg], axis=1)  # (B, 2n) = g D_l
            dzs[l - 1] = dz
            ws = params[f"W{l}"][:, self.state_columns(l)]  # (2n, n)
            g = g * (1.0 - cache_l.tau) + dz @ ws
        return g, tuple(dzs)

    def jvp_vjp(self, params, cache, v, g, *, xp):
        """``H_t v`` and, per micro-layer, ``dz_l = g^T ∂s_t/∂z_l`` in one walk (UORO's step).

        The tangent H_t v of v (B, n), never forming H_t, and the ``dz`` of ``vjp(.., g)``,
        sharing the diagonals of each layer: ``(H v (B, n), (dz_1, ..., dz_L) each (B, 2n))``.
        Cost O(B L n²).
        """
        n = self.n_hidden
        pieces = []
        for l, cache_l in enumerate(cache, start=1):
            ws = params[f"W{l}"][:, self.state_columns(l)]  # (2n, n)
            dh, dg = d_diagonals(cache_l)
            carry = 1.0 - cache_l.tau
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


# ---- the pieces of eqs. (4), (5), as functions of one micro-layer --------------------------------
def sigmoid(z, xp):
    """Logistic function, written through tanh so it never overflows."""
    return 0.5 * (1.0 + xp.tanh(0.5 * z))


def d_diagonals(cache_l):
    """The two diagonals of D_l = ∂s^l/∂z (eq. (4)): ``dh, dg``, each (B, n)."""
    h, tau, s_prev = cache_l.h, cache_l.tau, cache_l.s_prev
    dh = tau * (1.0 - h * h)
    dg = (h - s_prev) * tau * (1.0 - tau)
    return dh, dg


def layer_jacobian(cell, params, l, cache_l, *, xp):
    """K_l = ∂s^l/∂s^{l-1} = diag(1-τ) + D_l W_l[:, state columns] (eq. (5)), (B, n, n)."""
    n = cell.n_hidden
    ws = params[f"W{l}"][:, cell.state_columns(l)]  # (2n, n)
    dh, dg = d_diagonals(cache_l)
    eye = xp.eye(n, dtype=dh.dtype, device=get_device(dh))
    return (
        eye * (1.0 - cache_l.tau)[:, :, None]
        + dh[:, :, None] * ws[:n, :]
        + dg[:, :, None] * ws[n:, :]
    )


# ---- fast form ----------------------------------------------------------------------------------
def state_jacobian(cell, params, l, cache_l, *, xp):
    """``layer_jacobian`` as one product batched over the rows of K_l (the default).

    Row i of K_l is ``dh_i W_h[i] + dg_i W_g[i] + (1 - τ_i) e_i`` (W_h, W_g: the candidate
    and gate rows of W_l's state columns): for every row a (B, 3) @ (3, n) product, one
    matmul batched over the n rows. Returns a (B, n, n) view of an (n, B, n) array.
    """
    n = cell.n_hidden
    ws = params[f"W{l}"][:, cell.state_columns(l)]  # (2n, n)
    dh, dg = d_diagonals(cache_l)
    eye = xp.eye(n, dtype=dh.dtype, device=get_device(dh))
    rows = xp.stack([ws[:n, :], ws[n:, :], eye], axis=1)  # (n, 3, n): [W_h[i]; W_g[i]; e_i]
    coef = xp.permute_dims(xp.stack([dh, dg, 1.0 - cache_l.tau], axis=2), (1, 0, 2))  # (n, B, 3)
    return xp.permute_dims(coef @ rows, (1, 0, 2))  # (B, n, n)


#: the forms of K_l, by name (``RHN.influence_pieces(..., jacobian=...)``)
JACOBIANS = {"readable": layer_jacobian, "batched": state_jacobian}
