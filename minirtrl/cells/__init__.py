"""Cells: the recurrent networks every gradient method works on, behind one small interface.

A cell knows its sizes and parameter layout and writes its own Jacobians by hand; the
methods (``bptt``, ``rtrl``, ``uoro``, ``kf``, ``kf-avg``, ``ok``) use nothing else of it.
Adding a cell means writing one class with this interface; the equations it must satisfy
are ``docs/algorithms.md`` §1 (eq. (8)) and §2:

    n_in, n_hidden, n_out     sizes (n = n_hidden)
    n_state                   length of the state s (n, or 2n for the LSTM's [h; c]); the
                              readout reads its first n entries
    blocks                    names of the recurrent weight blocks, e.g. ("W1", ..., "WL")
    shapes()                  {name: shape} of every parameter: each block (m_l, k_l), then
                              "V" (n_out, n+1), the readout shared by all cells
    init(seed, *, xp=None, dtype=None, device=None, ...) -> params
                              random parameters, drawn on the host from ``seed``

    step(params, s, x, *, xp) -> (s_t, cache)
        one time step, s (B, n), x (B, n_in) -> s_t (B, n). ``cache`` is a tuple with one
        entry per block; entry l has the attribute ``a`` = a_l (B, k_l), the vector block l
        multiplies (k_l = shapes()[block][1]); anything else in it is the cell's own.
    influence_pieces(params, cache, *, xp) -> (H, (M_1, ..., M_L))
        H = H_t = ∂s_t/∂s_{t-1} (B, n, n) and, per block, the right immediate factor
        M_l (B, n, m_l), m_l = shapes()[block][0], such that the immediate influence is
        ∂s_t/∂W_l[i, j] = M_l[:, :, i] · a_l[:, j]  (F_t^l = a_l ⊗ M_l).
    jvp_vjp(params, cache, v, g, *, xp) -> (H v, (g M_1, ..., g M_L))
        v, g (B, n): the tangent H_t v (B, n) and, per block, g^T M_l (B, m_l), without
        forming H_t.
    vjp(params, cache, g, *, xp) -> (g H, (g M_1, ..., g M_L))
        back-propagation of g = ∂L/∂s_t (B, n) through the step (weights fixed): g^T H_t
        (B, n) and, per block, g^T M_l (B, m_l), whose outer product with a_l is the
        gradient of W_l.
    snap_units(name) -> (m_l, c_l) NumPy int64   optional; needed by ``snap1`` alone
        for each row i of block ``name``, the c_l indices (sorted, into s) of the state
        entries that row's pre-activation reaches within one step: the structural nonzeros
        of column i of M_l, the same count c_l for every row; a row that reaches fewer is
        padded at its end with -1 (no entry). A cell without it is refused by ``snap1``.

``xp`` is the namespace of the arrays, passed down by the method that found it. The
cells:

    RHN         m_l = 2n: candidate and gate rows; k_1 = n_in+n+1, k_l = n+1 for l >= 2
    VanillaRNN  one block, m = n, k = n_in+n+1
    GRU         torch.nn.GRUCell's layout: blocks W_ih (3n, n_in+1) and W_hh (3n, n+1),
                rows r, z, n, bias last; state h
    LSTM        torch.nn.LSTMCell's layout: blocks W_ih (4n, n_in+1) and W_hh (4n, n+1),
                rows i, f, g, o, bias last; state [h; c] (n_state = 2n)
"""

from typing import Protocol, runtime_checkable

from .gru import GRU
from .lstm import LSTM
from .rhn import RHN
from .vanilla import VanillaRNN


@runtime_checkable
class Cell(Protocol):
    """The interface above (checked by ``isinstance`` on its method names)."""

    n_in: int
    n_hidden: int
    n_out: int
    n_state: int
    blocks: tuple

    def shapes(self) -> dict: ...

    def init(self, seed, *, xp=None, dtype=None, device=None) -> dict: ...

    def step(self, params, s, x, *, xp): ...

    def influence_pieces(self, params, cache, *, xp): ...

    def jvp_vjp(self, params, cache, v, g, *, xp): ...

    def vjp(self, params, cache, g, *, xp): ...


__all__ = ["GRU", "LSTM", "RHN", "Cell", "VanillaRNN"]
