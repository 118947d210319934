"""The online step API: advance an influence method one step, with signs you provide.

``minirtrl.online(method, cell, rank=None)`` returns an ``Online``: the state of B streams,
the exact shapes of the random signs one step consumes, and the step itself. Feeding the
same ±1 signs to another implementation of the same estimator lets the two be compared to
roundoff, step by step. ``sequence_gradient`` is this loop with the signs drawn, step
after step, from ``numpy.random.default_rng(seed)`` (``Online.draw_signs``)::

    algo = minirtrl.online("kf", cell)
    state = algo.init(B)
    for t in range(T):
        signs = algo.draw_signs(rng, B, xp=np, dtype=np.float64)   # or your own ±1 arrays
        state, loss_t, grads_t = algo.step(params, state, xs[t], ys[t], signs)

One step (``docs/algorithms.md``, eqs. (9), (10)): ``s_t, cache = cell.step(s_{t-1}, x_t)``;
the method's estimate of G_t from that of G_{t-1}; ``loss_t`` and c_t = ∂loss_t/∂s_t from the
readout; ``grads_t`` = c_t · Ĝ_t per block plus the exact readout gradient ``"V"``, summed
over the batch (``Σ_t grads_t`` is what ``sequence_gradient`` returns).

What each sign multiplies (``sign_shapes(B)``; every sign is independent and uniform ±1):

    rtrl          {}                       exact: no signs
    uoro          "nu" (B, n)              ν of eq. (12): signs["nu"][b] is sample b's
                                           ν ∈ {±1}^n; s̃ ← ρ0 H s̃ + ρ1 ν,
                                           θ̃ ← θ̃/ρ0 + (ν^T F)/ρ1
    kf, kf-avg    "W_l" (B, r, 2)          eq. (13), per sample b, chain i and block W_l:
                                           [b, i, 0] = c1 (the carried term),
                                           [b, i, 1] = c2 (the new immediate term):
                                           u ← c1 p1 u + c2 p2 a_l,  A ← c1 HA/p1 + c2 M_l/p2
                                           (kf: r = 1; kf-avg: r chains)
    ok            "W_l" (B, r+1)           eq. (16), per sample b and block W_l:
                                           [b, j] = ε_j of the j-th singular direction of
                                           C = L_U^T L_V in ASCENDING order of the singular
                                           values, applied to the canonical sign of that
                                           singular pair (``ok.singular_terms``: the left
                                           vector has a nonnegative inner product with the
                                           sum of the stacked left factors
                                           [u_1; ...; u_r; a_l])

Where a norm is zero (the first step from the zero state, a reset stream) kf and kf-avg
take their exact deterministic step and that sample's signs are not used; uoro still uses
ν there (s̃ = ρ1 ν), and ok's signs then only flip the signs of exact factor pairs.

Notation: ``s`` s_t (B, n); ``est`` the method's state (its estimate of every G_t^l);
``signs`` the step's ±1 arrays. ``step`` checks its arguments like ``sequence_gradient``
(shapes, array library, every sign ±1: one host read per check) and costs one step of
the method; ``sequence_gradient`` runs the unchecked ``advance``, which both share.
"""

from typing import NamedTuple

from . import _checks, readout
from ._compat import array_namespace
from .arguments import check_cell, check_signs, check_step, namespace
from .backends import resolve
from .influence import leaves
from .methods import INFLUENCE, check_rank, influence_method
from .rng import draw_signs


class OnlineState(NamedTuple):
    """The state of B streams after a step: the cell's state and the method's estimate."""

    s: object  # (B, n)  s_t
    est: object  # the method's state: its estimate of G_t^l for every block


class Online(NamedTuple):
    """An influence method on a cell, one step at a time (see the module docstring)."""

    method: str  # "rtrl", "uoro", "kf", "ok" or "kf-avg"
    cell: object
    rank: int  # r of ok and kf-avg; 1 for the others
    module: object  # the method's module (``minirtrl.influence``'s interface)

    def init(self, batch, *, xp="numpy", dtype="float64", device=None):
        """Zero state and zero influence for ``batch`` streams: an ``OnlineState``.

        ``xp`` is an array namespace or a backend name, ``dtype`` a dtype or its name.
        """
        batch = _checks.size("batch", batch)
        xp, dtype, device = resolve(xp, dtype, device)
        est = self.module.init(self.cell, batch, self.rank, xp=xp, dtype=dtype, device=device)
        return OnlineState(xp.zeros((batch, self.cell.n_hidden), dtype=dtype, device=device), est)

    def sign_shapes(self, batch):
        """``{name: shape}`` of the ±1 signs one step of ``batch`` streams consumes.

        ``{}`` for rtrl; ``{"nu": (B, n)}`` for uoro; ``{"W1": (B, r, 2), ...}`` for kf and
        kf-avg; ``{"W1": (B, r+1), ...}`` for ok (the meaning: the module docstring).
        """
        return self.module.noise_shapes(self.cell, _checks.size("batch", batch), self.rank)

    def draw_signs(self, rng, batch, *, xp, dtype, device=None):
        """One step's signs, drawn from the numpy Generator ``rng`` as ``sequence_gradient`` does.

        Independent uniform ±1 entries, one array per key of ``sign_shapes`` in key order,
        each entry ``-1`` where ``rng.random()`` is below 0.5 and ``+1`` otherwise, drawn in
        C order on the host and moved with ``xp.asarray`` (so one seed gives the same signs on
        every backend; ``minirtrl.rng`` has the rule).
        """
        xp, dtype, device = resolve(xp, dtype, device)
        return draw_signs(rng, self.sign_shapes(batch), xp=xp, dtype=dtype, device=device)

    def step(self, params, state, x, y, signs=None, mask=None):
        """One step of B streams: ``(state_t, loss_t (B,), grads_t)``.

        Parameters
        ----------
        params : the cell's parameters (their array library is the one used).
        state : the ``OnlineState`` after the previous step (``init`` for the first).
        x : (B, n_in) real; y : (B,) integer targets in [0, n_out), or None for the
            influence alone (then ``loss_t`` and ``grads_t`` are None).
        signs : ``{name: ±1 array of sign_shapes(B)[name]}``; None only for rtrl.
        mask : (B,) 0/1 or None (all ones): the loss of a stream with mask 0 is not counted.

        Returns
        -------
        state_t : ``OnlineState``; loss_t : (B,) nats times mask; grads_t : dict with the
        keys of ``params``, c_t · Ĝ_t per block and the exact readout gradient, summed
        over the batch. Cost: one step of the method plus the checks (one host read each
        for the targets, the mask and the signs).
        """
        xp, x, y, mask = check_step(self.cell, params, x, y, mask)
        dtype = params["V"].dtype
        check_state(self, state, x.shape[0], xp, dtype)
        signs = check_signs(signs, self.sign_shapes(x.shape[0]), xp, dtype)
        return advance(self, params, state, x, y, mask, signs, xp=xp)

    def influence(self, state):
        """The current estimate as dense ``{name: (B, n, m_l, k_l)}`` (exact for rtrl)."""
        xp = array_namespace(state.s)
        return self.module.influence(self.cell, state.est, xp=xp)


def online(method, cell, rank=None):
    """An ``Online`` for influence method ``method`` on ``cell`` (``rank`` for ok, kf-avg).

    ``method`` is one of ``"rtrl", "uoro", "kf", "ok", "kf-avg"``; ``bptt`` is refused (it
    is not an online method: it needs the whole window before the first gradient).
    """
    if method == "bptt":
        raise ValueError("method 'bptt' is not online (it back-propagates a whole window); "
                         f"choose one of {', '.join(INFLUENCE)}")
    module = influence_method(method)
    return Online(method, check_cell(cell), check_rank(method, rank), module)


def check_state(algo, state, batch, xp, dtype):
    """``state`` must be an ``OnlineState`` of this method, cell, batch, library and dtype."""
    if not isinstance(state, OnlineState):
        raise TypeError(f"state must be an OnlineState (Online.init), not {type(state).__name__}")
    arrays = leaves(state.est)
    namespace("state", [state.s, *arrays], xp)
    if tuple(state.s.shape) != (batch, algo.cell.n_hidden):
        raise ValueError(f"state.s must have shape {(batch, algo.cell.n_hidden)}, "
                         f"not {tuple(state.s.shape)}")
    template = algo.module.init(algo.cell, 0, algo.rank, xp=xp, dtype=dtype)  # batch 0: no data
    want = [tuple(a.shape[1:]) for a in leaves(template)]
    if (type(state.est) is not type(template) or [tuple(a.shape[1:]) for a in arrays] != want
            or any(a.shape[0] != batch for a in arrays)):
        raise ValueError(f"state.est is not a {algo.method} state of this cell, rank and batch")
    if any(a.dtype != dtype for a in [state.s, *arrays]):
        raise TypeError(f"state must have the dtype of params, {dtype}")


# ---- the step itself, unchecked ---------------------------------------------------------
def influence_step(module, cell, params, s, est, x, y, mask, signs, *, xp, keep=None):
    """One online step of an influence method (the body of every RTRL-family loop).

    ``s`` (B, n) and ``est`` are s_{t-1} and the method's estimate of G_{t-1}; ``x``
    (B, n_in), ``y`` (B,) int64, ``mask`` (B,), ``signs`` the step's signs; ``keep`` (B,)
    0/1 or None: where it is 0 the stream starts a new sequence here, from the zero state
    and the zero influence (as ``influence.reset`` would make them, folded into the
    method's step). Returns ``(s_t, est_t, loss_t (B,), grads)`` with ``grads`` = c_t·G_t
    per block plus the exact readout gradient ``"V"``, summed over the batch. Arguments
    are not checked.
    """
    if keep is not None:
        s = s * keep[:, None]
    s, cache = cell.step(params, s, x, xp=xp)
    est = module.update(cell, params, est, cache, signs, xp=xp, keep=keep)
    if y is None:  # the influence alone
        return s, est, None, None
    loss, dV, c = readout.loss_and_grad(params["V"], s, y, mask, xp=xp)
    grads = module.grads(cell, est, c, xp=xp)
    grads["V"] = dV
    return s, est, loss, grads


def advance(algo, params, state, x, y, mask, signs, *, xp):
    """``Online.step`` without the checks: ``(OnlineState, loss_t, grads_t)``."""
    s, est, loss, grads = influence_step(algo.module, algo.cell, params, state.s, state.est,
                                         x, y, mask, signs, xp=xp)
    return OnlineState(s, est), loss, grads


__all__ = ["Online", "OnlineState", "online"]
