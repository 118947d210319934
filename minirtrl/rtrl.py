"""Exact Real-Time Recurrent Learning (Williams & Zipser 1989, "A learning algorithm for
continually running fully recurrent neural networks"), for any cell of ``minirtrl.cells``.

Per block l the influence ``G^l = ds_t/dW_l`` is kept exactly and carried forward:
``docs/algorithms.md`` §2, eqs. (9), (10).

Notation: ``G`` (B, n, m_l·k_l) is G^l with its last two axes (row i of W_l, column j)
flattened, so ``H @ G`` is one batched product; ``M`` = M_l (B, n, m_l); ``a`` = a_l.
For the RHN m_l = 2n.

Cost per step and sample: memory Σ_l n·m_l·k_l = O(L n³); time O(n · n · m_l k_l) = O(n⁴)
for ``H_t G``. The immediate term a ⊗ M costs two more passes over G (one temporary the
size of G, then the sum); no F is kept between steps.
"""

from typing import NamedTuple

from ._compat import array_namespace


class State(NamedTuple):
    """The dense influence, each block's last two axes flattened row-major; build one from
    ``{name: (B, n, m_l, k_l)}`` with ``from_influence``."""

    G: tuple  # per block: (B, n, m_l * k_l)


def init(cell, batch, rank=1, *, xp, dtype, device=None):
    """Zero influence: ``G^l`` (B, n, m_l·k_l) per block (``rank`` is ignored)."""
    n = cell.n_state
    shapes = cell.shapes()
    return State(tuple(
        xp.zeros((batch, n, shapes[name][0] * shapes[name][1]), dtype=dtype, device=device)
        for name in cell.blocks
    ))


def sign_shapes(cell, batch, rank=1):
    """Exact RTRL draws no signs: ``{}``."""
    return {}


def update(cell, params, state, cache, signs=None, *, xp, keep=None):
    """``G^l <- H_t G^l + a_l ⊗ M_l`` for every block, eq. (9) (``signs`` is ignored).

    One product ``H_t @ G^l`` per block; the immediate term is added to it in one
    broadcast expression on its (B, n, m_l, k_l) view. ``keep`` (B,) 0/1: where it is 0
    the stream starts from G = 0 (H_t is zeroed there, not G: no pass over G).
    Cost O(B Σ_l n · n · m_l k_l).
    """
    H, pieces = cell.influence_pieces(params, cache, xp=xp)
    if keep is not None:
        H = H * keep[:, None, None]
    new = []
    for G, M, cache_l in zip(state.G, pieces, cache, strict=True):
        B, n, m = M.shape
        HG = xp.reshape(H @ G, (B, n, m, -1))  # (B, n, m, k): H_t G^l, a view
        G = HG + M[:, :, :, None] * cache_l.a[:, None, None, :]  # + a_l ⊗ M_l
        new.append(xp.reshape(G, (B, n, -1)))
    return State(tuple(new))


def grads(cell, state, c, *, xp):
    """``c_t · G_t^l`` summed over the batch: ``{"W1": (m_1, k_1), ...}``."""
    B, n = c.shape
    shapes = cell.shapes()
    out = {}
    for name, G in zip(cell.blocks, state.G, strict=True):
        g = xp.reshape(c, (1, B * n)) @ xp.reshape(G, (B * n, G.shape[2]))  # (1, m k)
        out[name] = xp.reshape(g, shapes[name])
    return out


def from_influence(cell, G):
    """The ``State`` of a dense influence ``{"W1": (B, n, m_1, k_1), ...}`` (its last two
    axes flattened row-major: entry (i, j) of W_l is column i·k_l + j)."""
    xp = array_namespace(*G.values())
    return State(tuple(xp.reshape(G[name], (G[name].shape[0], G[name].shape[1], -1))
                       for name in cell.blocks))


def influence(cell, state, *, xp):
    """The influence as dense ``{"W1": (B, n, m_1, k_1), ...}``."""
    n, shapes = cell.n_state, cell.shapes()
    return {name: xp.reshape(G, (G.shape[0], n) + shapes[name])
            for name, G in zip(cell.blocks, state.G, strict=True)}
