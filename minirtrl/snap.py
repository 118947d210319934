"""SnAp-1 (Menick, Elsen, Evci, Osindero, Simonyan & Graves 2021, "Practical Real Time
Recurrent Learning with a Sparse Approximation"): the influence kept only where the immediate
Jacobian ``F_t^l = a_l ⊗ M_l`` can be nonzero, ``docs/algorithms.md`` §11, eqs. (21)-(23).

The pattern is the cell's: ``cell.snap_units(name)`` (m_l, c_l) lists, for row i of W_l, the
c_l entries u(i, a) of the state that row's pre-activation reaches within one step (-1: no
entry), i.e. the structural nonzeros of column i of M_l. Per sample the state keeps those
entries alone, ``J^l[i, a, j] = Ĝ^l[u(i, a), i, j]``; every other entry of Ĝ^l is zero. One
step is the influence recurrence (9) followed by the projection on the pattern, written
with the entries of H_t that connect kept entries only:

    J[i, a, :] ← Σ_a' H_t[u(i,a), u(i,a')] J[i, a', :] + M_l[u(i,a), i] a_l      (0 where u = -1)

Deterministic (no signs) and biased: what H_t carries off the pattern is dropped.

Notation (code name -> symbol of §11):

    J        J^l                   (B, m_l, c_l, k_l)  the kept entries of Ĝ^l
    units    u                     (m_l, c_l)          ``cell.snap_units(name)``, on the device
    Hs       H_t[u(i,a), u(i,a')]  (B, m_l, c_l, c_l)  the entries of H_t between kept entries
    Ms       M_l[u(i,a), i]        (B, m_l, c_l)

Cost per step and sample: the cell's ``influence_pieces``, gathers of Σ_l m_l c_l (c_l + 1)
entries and Σ_l m_l c_l² k_l multiply-adds; memory Σ_l m_l c_l k_l. Where every row reaches
one unit (the vanilla RNN, a depth-1 RHN) c_l = 1: O(n k) per block, the size of W_l, of the
order of one BPTT step. A block below the top of a depth-L RHN reaches every unit (c_l = n)
and costs what exact RTRL does. Each step moves the small index arrays ``units`` to the
device (no read back).
"""

from typing import NamedTuple

import numpy as np

from ._compat import array_namespace, get_device, index_dtype


class State(NamedTuple):
    """The kept entries of the influence; build one from a dense ``{name: (B, n, m_l, k_l)}``
    with ``from_influence`` (its projection on the pattern)."""

    J: tuple  # per block: (B, m_l, c_l, k_l)


# ---- the pattern ----------------------------------------------------------------------------
def pattern(cell, name):
    """``cell.snap_units(name)``, (m_l, c_l) integers; a cell without it is refused."""
    if not callable(getattr(cell, "snap_units", None)):
        raise ValueError(f"method 'snap1' needs the sparsity pattern of the immediate Jacobian "
                         f"(cell.snap_units), which {type(cell).__name__} does not give")
    return cell.snap_units(name)


def check_cell(cell):
    """``cell`` if it gives a valid pattern for every block, else ``ValueError`` naming it.

    Valid: an integer array (m_l, c_l), c_l >= 1, entries in [-1, n_state), no entry twice in
    a row (-1 aside). Run once by ``online`` and ``sequence_gradient``.
    """
    shapes = cell.shapes()
    for name in cell.blocks:
        units = np.asarray(pattern(cell, name))
        where = f"{type(cell).__name__}.snap_units({name!r})"
        m = shapes[name][0]
        if units.dtype.kind not in "iu" or units.ndim != 2 or units.shape[0] != m \
                or units.shape[1] < 1:
            raise ValueError(f"{where} must be an integer array of shape ({m}, c), c >= 1, "
                             f"not {units.dtype} {units.shape}")
        if units.size and (units.min() < -1 or units.max() >= cell.n_state):
            raise ValueError(f"{where} must hold state indices in [0, {cell.n_state}) or -1")
        ordered = np.sort(units, axis=1)
        if np.any((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)):
            raise ValueError(f"{where} lists a state entry twice in a row")
    return cell


class Pattern(NamedTuple):
    """One block's pattern on the device of the state (made by ``on_device``)."""

    units: object  # (m, c) index type (int64): u(i, a), -1 where there is no entry
    index: object  # (m, c) index type (int64): u(i, a), 0 where there is no entry
    valid: object  # (m, c) 0/1 in the state's dtype


def on_device(cell, name, like, *, xp):
    """The ``Pattern`` of block ``name`` on ``like``'s device, in ``like``'s dtype."""
    units = xp.asarray(pattern(cell, name), dtype=index_dtype(xp), device=get_device(like))
    kept = units >= 0
    return Pattern(units, xp.where(kept, units, xp.zeros_like(units)), xp.astype(kept, like.dtype))


def at_pattern(X, p, *, xp):
    """``X[:, u(i, a), i, ...]`` for an X whose axes 1, 2 are (state, row of W_l): the
    (B, m, c, ...) entries on the pattern, 0 where there is no entry. One gather."""
    B, n, m = X.shape[0], X.shape[1], X.shape[2]
    rest = tuple(X.shape[3:])
    rows = xp.arange(m, dtype=p.index.dtype, device=get_device(p.index))
    flat = xp.reshape(p.index * m + rows[:, None], (-1,))  # (m c,) into axis (state, row)
    got = xp.take(xp.reshape(X, (B, n * m) + rest), flat, axis=1)
    got = xp.reshape(got, (B, m, p.index.shape[1]) + rest)
    return got * xp.reshape(p.valid, (1, m, p.index.shape[1]) + (1,) * len(rest))


def between_kept(H, p, *, xp):
    """``H[:, u(i, a), u(i, a')]`` (B, m, c, c): the entries of H (B, n, n) that connect
    kept entries of the same row of W_l, 0 where either has no entry. One gather."""
    B, n = H.shape[0], H.shape[1]
    m, c = p.index.shape
    flat = xp.reshape(p.index[:, :, None] * n + p.index[:, None, :], (-1,))  # (m c c,)
    got = xp.reshape(xp.take(xp.reshape(H, (B, n * n)), flat, axis=1), (B, m, c, c))
    return got * (p.valid[:, :, None] * p.valid[:, None, :])


# ---- the method -------------------------------------------------------------------------------
def init(cell, batch, rank=1, *, xp, dtype, device=None):
    """Zero kept entries: ``J^l`` (B, m_l, c_l, k_l) per block (``rank`` is ignored)."""
    shapes = cell.shapes()
    return State(tuple(
        xp.zeros((batch, shapes[name][0], pattern(cell, name).shape[1], shapes[name][1]),
                 dtype=dtype, device=device)
        for name in cell.blocks))


def sign_shapes(cell, batch, rank=1):
    """SnAp-1 draws no signs: ``{}``."""
    return {}


def update(cell, params, state, cache, signs=None, *, xp, keep=None):
    """Eq. (22) for every block (``signs`` is ignored).

    ``keep`` (B,) 0/1: where it is 0 the stream starts from J = 0 (the gathered entries of
    H_t are zeroed there, not J: no pass over J). Cost O(B Σ_l m_l c_l² k_l) besides the
    cell's ``influence_pieces``.
    """
    H, pieces = cell.influence_pieces(params, cache, xp=xp)
    new = []
    for name, J, M, cache_l in zip(cell.blocks, state.J, pieces, cache, strict=True):
        p = on_device(cell, name, J, xp=xp)
        Hs = between_kept(H, p, xp=xp)  # (B, m, c, c)
        if keep is not None:
            Hs = Hs * keep[:, None, None, None]
        carried = Hs * J if J.shape[2] == 1 else Hs @ J  # c = 1: a scale, not 1×1 products
        new.append(add_immediate(carried, at_pattern(M, p, xp=xp), cache_l.a))
    return State(tuple(new))


def add_immediate(carried, Ms, a):
    """``carried + Ms ⊗ a``: the carried entries (B, m, c, k) plus the immediate influence
    on the pattern, ``Ms`` (B, m, c) = M_l[u(i, a), i], times ``a`` (B, k)."""
    return carried + Ms[:, :, :, None] * a[:, None, None, :]


def grads(cell, state, c, *, xp):
    """``c_t · Ĝ_t^l`` summed over the batch: ``Σ_b Σ_a c[b, u(i,a)] J[b, i, a, :]``,
    ``{"W1": (m_1, k_1), ...}``. Cost O(B Σ_l m_l c_l k_l): a transposed copy of J and one
    batched product."""
    out = {}
    for name, J in zip(cell.blocks, state.J, strict=True):
        p = on_device(cell, name, J, xp=xp)
        B, m, width, k = J.shape  # width: c_l
        cs = xp.reshape(xp.take(c, xp.reshape(p.index, (-1,)), axis=1), (B, m, width))
        cs = cs * p.valid  # (B, m, c): c at u(i, a), 0 where there is no entry
        # one product per row i over the B·c entries it sums (J's rows brought to the front)
        left = xp.reshape(xp.permute_dims(cs, (1, 0, 2)), (m, 1, B * width))
        right = xp.reshape(xp.permute_dims(J, (1, 0, 2, 3)), (m, B * width, k))
        out[name] = (left @ right)[:, 0, :]  # (m, k)
    return out


def influence(cell, state, *, xp):
    """The estimate as dense ``{"W1": (B, n, m_1, k_1), ...}``, zero off the pattern."""
    out = {}
    n = cell.n_state
    for name, J in zip(cell.blocks, state.J, strict=True):
        p = on_device(cell, name, J, xp=xp)
        states = xp.arange(n, dtype=p.units.dtype, device=get_device(p.units))
        onehot = xp.astype(p.units[:, :, None] == states, J.dtype)  # (m, c, n): u(i, a) = u
        G = xp.permute_dims(onehot, (0, 2, 1)) @ J  # (B, m, n, k)
        out[name] = xp.permute_dims(G, (0, 2, 1, 3))
    return out


def from_influence(cell, G):
    """The ``State`` of a dense influence ``{"W1": (B, n, m_1, k_1), ...}``: its entries on
    the pattern (the rest is dropped)."""
    xp = array_namespace(*G.values())
    return State(tuple(at_pattern(G[name], on_device(cell, name, G[name], xp=xp), xp=xp)
                       for name in cell.blocks))
