"""The vanilla (leaky tanh) recurrent network, a cell of ``minirtrl.cells``:
``docs/algorithms.md`` §8, eqs. (17)-(20). α = 1 is the plain tanh RNN; 0 < α < 1 a leaky
integrator with time constant 1/α; it is the depth-1 RHN with zero gate rows and gate bias
logit(α) (§8).

Notation (code name -> symbol of ``docs/algorithms.md``):

    a        a        input [x_t; s_{t-1}; 1], length k = n_in + n + 1
    h        h        tanh(z)
    s_prev   s_{t-1}  state entering the step
    alpha    α        leak rate, 0 < α <= 1
    d        D        the diagonal of D = ∂s_t/∂z = α diag(1 - h²)                 (B, n)
    ws       W_s      W1[:, n_in : n_in + n], the columns that multiply s_{t-1}    (n, n)
    H        H_t      ∂s_t/∂s_{t-1} = (1 - α) I + D W_s                           (B, n, n)
    M        M_t      the right immediate factor D as a dense matrix               (B, n, n)

The immediate influence is F_t = a ⊗ M_t, i.e. ``∂s_t/∂W1[i, j] = M[:, :, i] * a[:, j]``
(= D[:, i] a[:, j]: row i of W1 reaches only unit i).

Cost per step and sample: forward O(n (n_in + n)); H_t O(n²); a Jacobian-vector or
vector-Jacobian product through the step O(n²).
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import _checks
from .._compat import get_device
from ._params import normal_params


class Cache(NamedTuple):
    """What one step keeps for its derivatives (all per sample)."""

    a: object  # (B, k)  input [x; s_{t-1}; 1]
    h: object  # (B, n)  tanh(z)
    s_prev: object  # (B, n)  s_{t-1}


@dataclass(frozen=True)
class VanillaRNN:
    """A leaky tanh RNN with a linear softmax readout (a cell of ``minirtrl.cells``).

    Parameters are a plain dict::

        {"W1": (n, n_in+n+1), "V": (n_out, n+1)}

    Columns of ``W1`` follow ``a`` (input, state, bias), as the RHN's do; ``V`` is the
    readout shared by all cells. ``alpha`` is the leak rate α, 0 < α <= 1 (1: no leak).
    """

    n_in: int
    n_hidden: int
    n_out: int
    alpha: float = 1.0

    def __post_init__(self):
        for name in ("n_in", "n_hidden", "n_out"):
            object.__setattr__(self, name, _checks.size(name, getattr(self, name)))
        object.__setattr__(self, "alpha", _checks.alpha(self.alpha))

    # ---- layout -------------------------------------------------------------------
    @property
    def n_state(self):
        """Length of the state s_t: n."""
        return self.n_hidden

    @property
    def blocks(self):
        """Names of the recurrent weight blocks: ``("W1",)``."""
        return ("W1",)

    def state_columns(self):
        """The slice of W1's columns that multiply s_{t-1}."""
        return slice(self.n_in, self.n_in + self.n_hidden)

    def shapes(self):
        """Parameter name -> shape: ``W1`` (n, n_in+n+1), then ``V`` (n_out, n+1)."""
        n = self.n_hidden
        return {"W1": (n, self.n_in + n + 1), "V": (self.n_out, n + 1)}

    def snap_units(self, name):
        """The pattern of the immediate Jacobian (SnAp-1, ``docs/algorithms.md`` §11): row i
        of ``W1`` reaches unit i alone, ``[[0], [1], ..., [n-1]]`` (n, 1) int64."""
        if name not in self.blocks:
            raise ValueError(f"name must be one of {', '.join(self.blocks)}, not {name!r}")
        return np.arange(self.n_hidden, dtype=np.int64)[:, None]

    def init(self, seed, *, xp=None, dtype=None, device=None, init_scale=0.01):
        """Random parameters: every entry ~ N(0, init_scale²) (biases included).

        ``xp``, ``dtype``, ``device`` as for ``RHN.init``; draws are made on the host from
        ``numpy.random.default_rng(seed)`` in the order W1, V, so a seed gives the same
        parameters on every backend.
        """
        return normal_params(self.shapes(), seed, xp=xp, dtype=dtype, device=device,
                             init_scale=init_scale)

    # ---- the cell interface -------------------------------------------------------
    def step(self, params, s_prev, x, *, xp):
        """One time step: ``s_prev (B, n)``, ``x (B, n_in)`` -> ``s_t (B, n)`` and the cache.

        Returns ``(s, (Cache(a, h, s_prev),))``: the cache has one entry, for ``W1``.
        Cost O(B n (n_in + n)).
        """
        ones = xp.ones((s_prev.shape[0], 1), dtype=s_prev.dtype, device=get_device(s_prev))
        a = xp.concat([x, s_prev, ones], axis=1)  # (B, k)
        h = xp.tanh(a @ xp.matrix_transpose(params["W1"]))  # (B, n)
        s = (1.0 - self.alpha) * s_prev + self.alpha * h
        return s, (Cache(a, h, s_prev),)

    def influence_pieces(self, params, cache, *, xp):
        """``H_t = (1 - α) I + D W_s`` (B, n, n) and ``(M_t,)`` with ``M_t = D`` (B, n, n).

        ``D = α diag(1 - h²)`` is written as a dense (B, n, n) matrix because the
        interface's ``M_l`` is a matrix (the methods contract it with factors and
        influences). Cost O(B n²).
        """
        d = diagonal(self, cache[0])  # (B, n)
        n = self.n_hidden
        eye = xp.eye(n, dtype=d.dtype, device=get_device(d))  # (n, n)
        ws = params["W1"][:, self.state_columns()]  # (n, n)
        H = (1.0 - self.alpha) * eye + d[:, :, None] * ws  # (B, n, n): row i scaled by d_i
        M = eye * d[:, None, :]  # (B, n, n) = diag(d)
        return H, (M,)

    def jvp_vjp(self, params, cache, v, g, *, xp):
        """``H_t v`` (B, n) and ``(g^T M_t,)`` = ``(g ⊙ d,)`` (B, n), for v, g (B, n).

        ``H_t v = (1 - α) v + d ⊙ (v W_s^T)``, H_t never formed. Cost O(B n²).
        """
        d = diagonal(self, cache[0])
        ws = params["W1"][:, self.state_columns()]  # (n, n)
        Hv = (1.0 - self.alpha) * v + d * (v @ xp.matrix_transpose(ws))  # (B, n)
        return Hv, (g * d,)

    def vjp(self, params, cache, g, *, xp):
        """Back-propagate ``g = ∂L/∂s_t`` (B, n) through one step with the weights fixed.

        Returns ``(g_prev, (dz,))``: ``dz = ∂L/∂z = g ⊙ d`` (B, n) and
        ``g_prev = ∂L/∂s_{t-1} = (1 - α) g + dz W_s`` (B, n). The gradient of W1 is
        ``dz^T a`` (summed over the batch). Cost O(B n²).
        """
        dz = g * diagonal(self, cache[0])  # (B, n) = g D
        ws = params["W1"][:, self.state_columns()]  # (n, n)
        return (1.0 - self.alpha) * g + dz @ ws, (dz,)


def diagonal(cell, cache):
    """The diagonal of D = ∂s_t/∂z = α diag(1 - h²): (B, n)."""
    return cell.alpha * (1.0 - cache.h * cache.h)
