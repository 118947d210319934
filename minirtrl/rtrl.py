"""Exact Real-Time Recurrent Learning (Williams & Zipser 1989) for the depth-L RHN.

Per block l the influence ``G^l = ds_t/dW_l`` is kept exactly and carried forward:

    G_t^l = H_t G_{t-1}^l + a_l ⊗ (P_l D_l),     G_0^l = 0          (SPEC §1)
    dloss_t/dW_l = c_t · G_t^l

Notation: ``G`` (B, n, 2n·k_l) is G^l with its last two axes (row i of W_l, column j)
flattened, so ``H @ G`` is one batched product; ``PD`` = P_l D_l (B, n, 2n); ``a`` = a_l.

Cost per step and sample: memory Σ_l n·2n·k_l = O(L n³); time O(n · n · 2n k_l) = O(n⁴)
for ``H_t G``. The immediate term a ⊗ PD costs two more passes over G: NumPy materialises
the broadcast product a ⊗ PD (one temporary the size of G, freed at once) and adds it to
the product's (B, n, 2n, k_l) view; no F is kept between steps.
"""

from typing import NamedTuple

from . import rhn
from .influence import reset  # noqa: F401 - part of the method interface


class State(NamedTuple):
    G: tuple  # per block: (B, n, 2n * k_l)


def init(cell, batch, *, rank=None, xp, dtype, device=None):
    n = cell.n_hidden
    return State(
        tuple(
            xp.zeros((batch, n, 2 * n * cell.width(l)), dtype=dtype, device=device)
            for l in range(1, cell.depth + 1)
        )
    )


def noise_shapes(cell, batch, rank=None):
    return {}


def update(cell, params, state, layers, noise=None, *, xp):
    """``G^l <- H_t G^l + a_l ⊗ P_l D_l`` for every block (noise is ignored).

    One product ``H_t @ G^l`` per block; the immediate term is added to it in one
    broadcast expression on its (B, n, 2n, k_l) view (a temporary the size of G, then
    the sum; F_t^l is not kept). Cost O(B Σ_l n · n · 2n k_l).
    """
    H, pds = rhn.influence_pieces(cell, params, layers, xp=xp)
    new = []
    for G, PD, layer in zip(state.G, pds, layers):
        B, n, two_n = PD.shape
        HG = xp.reshape(H @ G, (B, n, two_n, -1))  # (B, n, 2n, k): H_t G^l, a view
        G = HG + PD[:, :, :, None] * layer.a[:, None, None, :]  # + a_l ⊗ P_l D_l
        new.append(xp.reshape(G, (B, n, -1)))
    return State(tuple(new))


def grads(cell, state, c, *, xp):
    B, n = c.shape
    out = {}
    for name, G in zip(cell.blocks, state.G):
        g = xp.reshape(c, (1, B * n)) @ xp.reshape(G, (B * n, G.shape[2]))  # (1, 2n k)
        out[name] = xp.reshape(g, (2 * n, -1))
    return out


def influence(cell, state, *, xp):
    n = cell.n_hidden
    return {
        name: xp.reshape(G, (G.shape[0], n, 2 * n, -1)) for name, G in zip(cell.blocks, state.G)
    }

