"""The long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers,
Schmidhuber & Cummins 2000, no peepholes) in the form of ``torch.nn.LSTMCell``, a cell of
``minirtrl.cells``: ``docs/algorithms.md`` §10, eqs. (29)-(32).

One step, with torch's gate order i, f, g, o, and p = W_ih [x; 1] + W_hh [h; 1] (4n):

    i = σ(p_i),  f = σ(p_f),  g = tanh(p_g),  o = σ(p_o)
    c' = f ⊙ c + i ⊙ g,        h' = o ⊙ tanh(c')

The state is s = [h; c] (n_state = 2n), h first: the readout reads the output h, the first
n entries; c is state, not output. Two weight blocks, each a torch weight with its bias as
the last column: ``W_ih`` = [weight_ih | bias_ih] (4n, n_in+1) multiplies a_1 = [x; 1],
``W_hh`` = [weight_hh | bias_hh] (4n, n+1) multiplies a_2 = [h; 1]. Both feed the same
pre-activation p, so M_1 = M_2 = ∂s'/∂p.

Notation (code name -> symbol of ``docs/algorithms.md`` §10):

    a1, a2          a_1, a_2   [x; 1] (B, n_in+1) and [h; 1] (B, n+1)
    i, f, g, o      i, f, g, o the gates and the cell input                      (B, n)
    c_prev          c          the cell state entering the step                  (B, n)
    tc              tanh(c')                                                      (B, n)
    k               κ          ∂h'/∂c' = o ⊙ (1 − tanh²(c'))                      (B, n)
    dc              δ^c        ∂c'/∂p: [g i(1−i) | c f(1−f) | i(1−g²) | 0]        (B, 4n)
    dh              δ^h        ∂h'/∂p: [κ δ^c_i | κ δ^c_f | κ δ^c_g | tanh(c') o(1−o)]
    M               M_l        [[diag(δ^h)], [diag(δ^c)]] per gate               (B, 2n, 4n)
    H               H_t        ∂[h'; c']/∂[h; c]                                  (B, 2n, 2n)

Cost per step and sample: forward O(n (n_in + n)); H_t O(n²); a Jacobian-vector or
vector-Jacobian product through the step O(n²).

``LSTM.to_torch`` and ``LSTM.from_torch`` convert the parameters to and from the tensors of
``torch.nn.LSTMCell`` (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``) as arrays of
the same library; torch itself is not imported here. torch's (h, c) is this cell's [h; c].
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import _checks
from .._compat import get_device
from ._params import normal_params
from .gru import check_block, from_torch, to_torch
from .rhn import sigmoid


class Gates(NamedTuple):
    """What one step keeps for its derivatives (all per sample, (B, n))."""

    i: object
    f: object
    g: object
    o: object
    c_prev: object
    tc: object  # tanh(c')


class Cache(NamedTuple):
    """One block's entry of the cache: the vector it multiplies and the step's gates."""

    a: object  # (B, k_l)  a_1 = [x; 1] or a_2 = [h; 1]
    gates: Gates


@dataclass(frozen=True)
class LSTM:
    """An LSTM laid out as ``torch.nn.LSTMCell``, state [h; c], linear softmax readout of h.

    Parameters are a plain dict::

        {"W_ih": (4n, n_in+1), "W_hh": (4n, n+1), "V": (n_out, n+1)}

    ``W_ih`` = [weight_ih | bias_ih], ``W_hh`` = [weight_hh | bias_hh], rows i, f, g, o as in
    torch; ``V`` is the readout shared by all cells.
    """

    n_in: int
    n_hidden: int
    n_out: int

    def __post_init__(self):
        for name in ("n_in", "n_hidden", "n_out"):
            object.__setattr__(self, name, _checks.size(name, getattr(self, name)))

    # ---- layout -------------------------------------------------------------------
    @property
    def n_state(self):
        """Length of the state s_t = [h; c]: 2n."""
        return 2 * self.n_hidden

    @property
    def blocks(self):
        """Names of the recurrent weight blocks: ``("W_ih", "W_hh")``."""
        return ("W_ih", "W_hh")

    def shapes(self):
        """Parameter name -> shape: ``W_ih`` (4n, n_in+1), ``W_hh`` (4n, n+1), ``V``."""
        n = self.n_hidden
        return {"W_ih": (4 * n, self.n_in + 1), "W_hh": (4 * n, n + 1),
                "V": (self.n_out, n + 1)}

    def snap_units(self, name):
        """The pattern of the immediate Jacobian (SnAp-1, ``docs/algorithms.md`` §11), (4n, 2)
        int64, the same for both blocks: rows i_j, f_j, g_j reach c_j and through it h_j,
        ``[j, n+j]``; row o_j reaches h_j alone, ``[j, -1]`` (-1: no entry)."""
        check_block(self, name)
        n = self.n_hidden
        units = np.arange(n, dtype=np.int64)
        through_c = np.stack([units, n + units], axis=1)  # (n, 2)
        only_h = np.stack([units, np.full(n, -1, dtype=np.int64)], axis=1)
        return np.concatenate([through_c, through_c, through_c, only_h])

    def init(self, seed, *, xp=None, dtype=None, device=None, init_scale=0.01):
        """Random parameters: every entry ~ N(0, init_scale²) (biases included).

        ``xp``, ``dtype``, ``device`` as for ``RHN.init``; draws are made on the host from
        ``numpy.random.default_rng(seed)`` in the order W_ih, W_hh, V, so a seed gives the
        same parameters on every backend.
        """
        return normal_params(self.shapes(), seed, xp=xp, dtype=dtype, device=device,
                             init_scale=init_scale)

    def to_torch(self, params):
        """``{"weight_ih", "weight_hh", "bias_ih", "bias_hh", "V"}``: the tensors of
        ``torch.nn.LSTMCell`` (4n, n_in), (4n, n), (4n,), (4n,) as new arrays of the params'
        library, and the readout ``V`` as it is. Move them into a torch cell with
        ``torch.no_grad()`` and ``copy_``."""
        return to_torch(self, params)

    def from_torch(self, tensors, V=None):
        """The parameters from the tensors of ``torch.nn.LSTMCell`` (arrays of one library,
        e.g. NumPy copies of its ``state_dict()``) and the readout ``V``
        (n_out, n+1) (default ``tensors["V"]``): the inverse of ``LSTM.to_torch``."""
        return from_torch(self, tensors, V)

    # ---- the cell interface -------------------------------------------------------
    def step(self, params, s_prev, x, *, xp):
        """One time step: ``s_prev (B, 2n)`` = [h; c], ``x (B, n_in)`` -> ``s_t (B, 2n)``.

        Returns ``([h'; c'], (Cache(a1, gates), Cache(a2, gates)))``. Cost O(B n (n_in + n)).
        """
        n = self.n_hidden
        h, c = s_prev[:, :n], s_prev[:, n:]
        ones = xp.ones((s_prev.shape[0], 1), dtype=s_prev.dtype, device=get_device(s_prev))
        a1 = xp.concat([x, ones], axis=1)  # (B, n_in+1)
        a2 = xp.concat([h, ones], axis=1)  # (B, n+1)
        p = a1 @ xp.matrix_transpose(params["W_ih"]) + a2 @ xp.matrix_transpose(params["W_hh"])
        i, f = sigmoid(p[:, :n], xp), sigmoid(p[:, n:2 * n], xp)
        g, o = xp.tanh(p[:, 2 * n:3 * n]), sigmoid(p[:, 3 * n:], xp)
        c_new = f * c + i * g
        tc = xp.tanh(c_new)
        gates = Gates(i, f, g, o, c, tc)
        return xp.concat([o * tc, c_new], axis=1), (Cache(a1, gates), Cache(a2, gates))

    def influence_pieces(self, params, cache, *, xp):
        """``H_t`` (B, 2n, 2n) and ``(M, M)``, M (B, 2n, 4n) (eqs. (31), (32)).

        ``M`` is two rows of four diagonal matrices, written densely because the interface's
        ``M_l`` is a matrix. ``H_t = [[Σ diag(δ^h) W_h·, diag(κ f)], [Σ diag(δ^c) W_h·,
        diag(f)]]``, each term a row scaling of a gate's block of W_hh. Cost O(B n²).
        """
        n = self.n_hidden
        gates = cache[0].gates
        dh, dc, k = diagonals(gates, xp)
        eye = xp.eye(n, dtype=dh.dtype, device=get_device(dh))
        four = xp.concat([eye, eye, eye, eye], axis=-1)  # (n, 4n)
        M = xp.concat([four * dh[:, None, :], four * dc[:, None, :]], axis=1)
        ws = params["W_hh"][:, :n]  # (4n, n): rows i, f, g, o
        Hh = dh[:, 3 * n:, None] * ws[3 * n:, :]  # the output gate reaches h alone
        Hc = None
        for j in range(3):
            term = dc[:, j * n:(j + 1) * n, None] * ws[j * n:(j + 1) * n, :]
            Hc = term if Hc is None else Hc + term
        Hh = Hh + k[:, :, None] * Hc  # h' = o tanh(c'): κ times c's row
        fdiag = eye * gates.f[:, :, None]
        H = xp.concat([xp.concat([Hh, k[:, :, None] * fdiag], axis=2),
                       xp.concat([Hc, fdiag], axis=2)], axis=1)
        return H, (M, M)

    def jvp_vjp(self, params, cache, v, g, *, xp):
        """``H_t v`` (B, 2n) and ``(g^T M, g^T M)`` (B, 4n) each, for v, g (B, 2n).

        With ``w = v_h W_hh[:, :n]^T`` (B, 4n), the tangent of p: ``c'_v = Σ δ^c ⊙ w + f ⊙
        v_c`` and ``h'_v = κ ⊙ c'_v + δ^h_o ⊙ w_o``. H_t never formed. Cost O(B n²).
        """
        n = self.n_hidden
        gates = cache[0].gates
        dh, dc, k = diagonals(gates, xp)
        wv = v[:, :n] @ xp.matrix_transpose(params["W_hh"][:, :n])  # (B, 4n)
        w = dc * wv
        dcv = w[:, :n] + w[:, n:2 * n] + w[:, 2 * n:3 * n] + gates.f * v[:, n:]
        wo = dh[:, 3 * n:] * wv[:, 3 * n:]
        gm = _gm(g, dh, dc, n, xp)
        return xp.concat([k * dcv + wo, dcv], axis=1), (gm, gm)

    def vjp(self, params, cache, g, *, xp):
        """Back-propagate ``g = ∂L/∂s_t`` (B, 2n) through one step with the weights fixed.

        Returns ``(g_prev, (g M, g M))``: ``g M = g_h δ^h + g_c δ^c`` (B, 4n) is ∂L/∂p, so
        the gradient of W_l is ``(g M)^T a_l`` (summed over the batch), and ``g_prev = g H_t
        = [(g M) W_hh[:, :n]; (κ g_h + g_c) ⊙ f]`` (B, 2n). Cost O(B n²).
        """
        n = self.n_hidden
        gates = cache[0].gates
        dh, dc, k = diagonals(gates, xp)
        gm = _gm(g, dh, dc, n, xp)
        gc = (k * g[:, :n] + g[:, n:]) * gates.f
        return xp.concat([gm @ params["W_hh"][:, :n], gc], axis=1), (gm, gm)


def diagonals(gates, xp):
    """``δ^h``, ``δ^c`` (B, 4n), the diagonals of M's two rows (∂h'/∂p and ∂c'/∂p, eq. (31)),
    and ``κ = ∂h'/∂c'`` (B, n)."""
    i, f, g, o, tc = gates.i, gates.f, gates.g, gates.o, gates.tc
    k = o * (1.0 - tc * tc)
    di, df, dg = g * i * (1.0 - i), gates.c_prev * f * (1.0 - f), i * (1.0 - g * g)
    dc = xp.concat([di, df, dg, xp.zeros_like(o)], axis=1)
    dh = xp.concat([k * di, k * df, k * dg, tc * o * (1.0 - o)], axis=1)
    return dh, dc, k


def _gm(g, dh, dc, n, xp):
    """``g^T M`` (B, 4n) for g = [g_h; g_c] (B, 2n)."""
    gh, gc = g[:, :n], g[:, n:]
    return xp.concat([gh] * 4, axis=1) * dh + xp.concat([gc] * 4, axis=1) * dc
