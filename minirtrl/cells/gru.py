"""The gated recurrent unit (Cho et al. 2014, "Learning Phrase Representations using RNN
Encoder-Decoder for Statistical Machine Translation") in the form of ``torch.nn.GRUCell``,
a cell of ``minirtrl.cells``: ``docs/algorithms.md`` §10, eqs. (25)-(28).

One step, with torch's gate order r, z, n (its candidate applies the reset gate after the
recurrent product, as cuDNN does, not to h before it as the paper does):

    r  = σ(W_ir x + b_ir + W_hr h + b_hr)
    z  = σ(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h

Two weight blocks, each a torch weight with its bias as the last column: ``W_ih`` =
[weight_ih | bias_ih] (3n, n_in+1) multiplies a_1 = [x; 1], ``W_hh`` = [weight_hh | bias_hh]
(3n, n+1) multiplies a_2 = [h; 1]; rows r, z, n in both. The reset gate multiplies the
candidate rows of W_hh a_2 elementwise, so each block's immediate influence is still one
Kronecker product a_l ⊗ M_l. The state is h (n_state = n).

Notation (code name -> symbol of ``docs/algorithms.md`` §10):

    a1, a2   a_1, a_2   [x; 1] (B, n_in+1) and [h; 1] (B, n+1)
    r, z     r, z       reset gate, update gate                                   (B, n)
    cand     n          candidate (``Gates.n`` in the cache)                      (B, n)
    hn       q_n        W_hn h + b_hn, the candidate rows of q = W_hh a_2          (B, n)
    h_prev   h          the state entering the step                              (B, n)
    dr, dz, dn  d_r, d_z, d_n  ∂h'/∂ of the r, z, n pre-activations of W_ih a_1  (B, n)
    d1, d2   d_1, d_2   [dr | dz | dn] and [dr | dz | dn ⊙ r]                     (B, 3n)
    M        M_l        [diag(d_l[:n]) | diag(d_l[n:2n]) | diag(d_l[2n:])]        (B, n, 3n)
    H        H_t        ∂h'/∂h = diag(z) + M_2 W_hh[:, :n]                       (B, n, n)

Cost per step and sample: forward O(n (n_in + n)); H_t O(n²); a Jacobian-vector or
vector-Jacobian product through the step O(n²).

``GRU.to_torch`` and ``GRU.from_torch`` convert the parameters to and from the tensors of
``torch.nn.GRUCell`` (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``) as arrays of
the same library; torch itself is not imported here.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import _checks
from .._compat import get_device
from ._params import normal_params
from .rhn import sigmoid


class Gates(NamedTuple):
    """What one step keeps for its derivatives (all per sample, (B, n))."""

    r: object
    z: object
    n: object
    hn: object  # W_hn h + b_hn
    h_prev: object


class Cache(NamedTuple):
    """One block's entry of the cache: the vector it multiplies and the step's gates."""

    a: object  # (B, k_l)  a_1 = [x; 1] or a_2 = [h; 1]
    gates: Gates


@dataclass(frozen=True)
class GRU:
    """A GRU laid out as ``torch.nn.GRUCell``, with a linear softmax readout.

    Parameters are a plain dict::

        {"W_ih": (3n, n_in+1), "W_hh": (3n, n+1), "V": (n_out, n+1)}

    ``W_ih`` = [weight_ih | bias_ih], ``W_hh`` = [weight_hh | bias_hh], rows r, z, n as in
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
        """Length of the state s_t = h: n."""
        return self.n_hidden

    @property
    def blocks(self):
        """Names of the recurrent weight blocks: ``("W_ih", "W_hh")``."""
        return ("W_ih", "W_hh")

    def shapes(self):
        """Parameter name -> shape: ``W_ih`` (3n, n_in+1), ``W_hh`` (3n, n+1), ``V``."""
        n = self.n_hidden
        return {"W_ih": (3 * n, self.n_in + 1), "W_hh": (3 * n, n + 1),
                "V": (self.n_out, n + 1)}

    def snap_units(self, name):
        """The pattern of the immediate Jacobian (SnAp-1, ``docs/algorithms.md`` §11): rows
        r_i, z_i, n_i of either block reach unit i alone, (3n, 1) int64."""
        check_block(self, name)
        return np.tile(np.arange(self.n_hidden, dtype=np.int64), 3)[:, None]

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
        ``torch.nn.GRUCell`` (3n, n_in), (3n, n), (3n,), (3n,) as new arrays of the params'
        library, and the readout ``V`` as it is. Move them into a torch cell with
        ``torch.no_grad()`` and ``copy_``."""
        return to_torch(self, params)

    def from_torch(self, tensors, V=None):
        """The parameters from the tensors of ``torch.nn.GRUCell`` (arrays of one library,
        e.g. NumPy copies of its ``state_dict()``) and the readout ``V``
        (n_out, n+1) (default ``tensors["V"]``): the inverse of ``GRU.to_torch``."""
        return from_torch(self, tensors, V)

    # ---- the cell interface -------------------------------------------------------
    def step(self, params, s_prev, x, *, xp):
        """One time step: ``s_prev (B, n)``, ``x (B, n_in)`` -> ``s_t (B, n)`` and the cache.

        Returns ``(h', (Cache(a1, gates), Cache(a2, gates)))``. Cost O(B n (n_in + n)).
        """
        n = self.n_hidden
        ones = xp.ones((s_prev.shape[0], 1), dtype=s_prev.dtype, device=get_device(s_prev))
        a1 = xp.concat([x, ones], axis=1)  # (B, n_in+1)
        a2 = xp.concat([s_prev, ones], axis=1)  # (B, n+1)
        gi = a1 @ xp.matrix_transpose(params["W_ih"])  # (B, 3n)
        gh = a2 @ xp.matrix_transpose(params["W_hh"])  # (B, 3n)
        r = sigmoid(gi[:, :n] + gh[:, :n], xp)
        z = sigmoid(gi[:, n:2 * n] + gh[:, n:2 * n], xp)
        hn = gh[:, 2 * n:]
        cand = xp.tanh(gi[:, 2 * n:] + r * hn)
        gates = Gates(r, z, cand, hn, s_prev)
        return (1.0 - z) * cand + z * s_prev, (Cache(a1, gates), Cache(a2, gates))

    def influence_pieces(self, params, cache, *, xp):
        """``H_t`` (B, n, n) and ``(M_1, M_2)``, each (B, n, 3n) (eqs. (27), (28)).

        ``M_l`` is three diagonal matrices side by side, written densely because the
        interface's ``M_l`` is a matrix. ``H_t = diag(z) + M_2 W_hh[:, :n]`` is formed as
        a sum of three row scalings of W_hh's blocks. Cost O(B n²).
        """
        n = self.n_hidden
        d1, d2 = diagonals(cache[0].gates, xp)
        eye = xp.eye(n, dtype=d1.dtype, device=get_device(d1))
        three = xp.concat([eye, eye, eye], axis=-1)  # (n, 3n)
        ws = params["W_hh"][:, :n]  # (3n, n): rows r, z, n
        H = eye * cache[0].gates.z[:, :, None]
        for j in range(3):
            H = H + d2[:, j * n:(j + 1) * n, None] * ws[j * n:(j + 1) * n, :]
        return H, (three * d1[:, None, :], three * d2[:, None, :])

    def jvp_vjp(self, params, cache, v, g, *, xp):
        """``H_t v`` (B, n) and ``(g^T M_1, g^T M_2)`` (B, 3n) each, for v, g (B, n).

        ``H_t v = z ⊙ v + Σ_gates (d2 ⊙ (v W_hh[:, :n]^T))``, H_t never formed. Cost O(B n²).
        """
        n = self.n_hidden
        d1, d2 = diagonals(cache[0].gates, xp)
        wv = d2 * (v @ xp.matrix_transpose(params["W_hh"][:, :n]))  # (B, 3n)
        Hv = cache[0].gates.z * v + wv[:, :n] + wv[:, n:2 * n] + wv[:, 2 * n:]
        g3 = xp.concat([g, g, g], axis=1)
        return Hv, (g3 * d1, g3 * d2)

    def vjp(self, params, cache, g, *, xp):
        """Back-propagate ``g = ∂L/∂s_t`` (B, n) through one step with the weights fixed.

        Returns ``(g_prev, (g M_1, g M_2))``: ``g M_l`` (B, 3n) is ∂L/∂(W_l a_l), so the
        gradient of W_l is ``(g M_l)^T a_l`` (summed over the batch), and ``g_prev = g H_t
        = g ⊙ z + (g M_2) W_hh[:, :n]`` (B, n). Cost O(B n²).
        """
        d1, d2 = diagonals(cache[0].gates, xp)
        g3 = xp.concat([g, g, g], axis=1)
        gm2 = g3 * d2
        g_prev = g * cache[0].gates.z + gm2 @ params["W_hh"][:, :self.n_hidden]
        return g_prev, (g3 * d1, gm2)


def diagonals(gates, xp):
    """The diagonals of M_1 and M_2 (eq. (27)), each (B, 3n): ``d1 = [dr | dz | dn]``, the
    derivatives of h' by the r, z, n pre-activations of W_ih a_1, and ``d2 = [dr | dz |
    dn ⊙ r]``, by those of W_hh a_2 (the reset gate scales its candidate rows)."""
    r, z, cand = gates.r, gates.z, gates.n
    dn = (1.0 - z) * (1.0 - cand * cand)
    dr = dn * gates.hn * r * (1.0 - r)
    dz = (gates.h_prev - cand) * z * (1.0 - z)
    return xp.concat([dr, dz, dn], axis=1), xp.concat([dr, dz, dn * r], axis=1)


def check_block(cell, name):
    """``ValueError`` naming ``name`` unless it is one of ``cell.blocks``."""
    if name not in cell.blocks:
        raise ValueError(f"name must be one of {', '.join(cell.blocks)}, not {name!r}")


# ---- the torch layout (shared with the LSTM) ---------------------------------------------------
TORCH_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def to_torch(cell, params):
    """``{"weight_ih", "weight_hh", "bias_ih", "bias_hh", "V"}`` of a cell whose blocks are
    ``W_ih`` = [weight_ih | bias_ih] and ``W_hh`` = [weight_hh | bias_hh] (GRU, LSTM): new
    arrays of the params' library (``V`` as it is)."""
    xp = _checks.params(cell, params)
    n_in, n = cell.n_in, cell.n_hidden
    w_ih, w_hh = params["W_ih"], params["W_hh"]
    pieces = {"weight_ih": w_ih[:, :n_in], "weight_hh": w_hh[:, :n], "bias_ih": w_ih[:, n_in],
              "bias_hh": w_hh[:, n]}
    out = {k: xp.asarray(v, copy=True) for k, v in pieces.items()}
    out["V"] = params["V"]
    return out


def from_torch(cell, tensors, V=None):
    """The inverse of ``to_torch``: ``{"W_ih", "W_hh", "V"}`` from the four torch tensors
    (arrays of one library, shapes checked: ``ValueError``/``TypeError`` naming the key)."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of arrays, not {type(tensors).__name__}")
    missing = [k for k in TORCH_NAMES if k not in tensors]
    extra = sorted(set(tensors) - {*TORCH_NAMES, "V"})
    if missing or extra:
        raise ValueError(f"tensors must have keys {list(TORCH_NAMES)} (and optionally 'V'), "
                         f"not {sorted(tensors)}")
    if V is None:
        V = tensors.get("V")
    if V is None:
        raise TypeError("V is required (the readout, an array (n_out, n_hidden+1))")
    got = {k: tensors[k] for k in TORCH_NAMES}
    xp = _checks.arrays("tensors", got)
    rows, n = cell.shapes()["W_ih"][0], cell.n_hidden
    want = {"weight_ih": (rows, cell.n_in), "weight_hh": (rows, n), "bias_ih": (rows,),
            "bias_hh": (rows,)}
    for k, shape in want.items():
        if tuple(got[k].shape) != shape:
            raise ValueError(f"tensors[{k!r}] must have shape {shape}, not {tuple(got[k].shape)}")
    params = {
        "W_ih": xp.concat([got["weight_ih"], xp.expand_dims(got["bias_ih"], axis=1)], axis=1),
        "W_hh": xp.concat([got["weight_hh"], xp.expand_dims(got["bias_hh"], axis=1)], axis=1),
        "V": V,
    }
    _checks.params(cell, params)
    return params
