"""The gradient methods: what each provides, the one step they all run, and the entry points.

Read top-down: the method interface and the registry; ``influence_step``, the online step
every RTRL-family loop runs; the signs a step consumes; the online step API (``online``,
``Online``); ``sequence_gradient`` and ``exact_influence``. The equations are in
``docs/algorithms.md`` (cited by section and number); argument checks are in ``_checks``.

An influence method keeps, per sample, an estimate of the influence ``G_t^l = ds_t/dW_l``
of every recurrent block of a cell (§2, eq. (9)) and is a module with these functions::

    init(cell, batch, rank, *, xp, dtype, device) -> state        zero influence
    sign_shapes(cell, batch, rank) -> {name: shape}               the ±1 signs of one step
    update(cell, params, state, cache, signs, *, xp, keep=None) -> state    G_{t-1} -> G_t
    grads(cell, state, c, *, xp) -> {"W1": (m_1, k_1), ...}       c_t · Ĝ_t, summed over B
    influence(cell, state, *, xp) -> {"W1": (B, n, m_1, k_1), ...}   the estimate, dense
    check_cell(cell) -> cell       (optional) refuses a cell the method is not defined for

The methods: ``rtrl`` (exact), the unbiased estimators ``uoro``, ``kf``, ``kf-avg``, ``ok``
(random signs), and the deterministic, biased approximations ``snap1`` (SnAp-1, any cell with
``snap_units``) and ``rflo`` (RFLO, ``VanillaRNN`` only), §11.

``cache`` is what ``cell.step`` returned for this step, ``c`` (B, n) = ∂loss_t/∂s_t, ``rank``
the r of ``ok`` and ``kf-avg`` (1 for the others, which ignore it), ``keep`` (B,) 0/1 or None:
where it is 0 the stream starts from the zero influence (a new sequence), folded into the
method's step at no extra pass over its state. ``xp`` is the namespace of the arrays, found
once by the caller. States are ``NamedTuple``s of arrays (possibly in tuples) whose first
axis is the batch (``leaves``, ``rebuild``). What every sign multiplies: §9.

Notation: ``s`` s_t (B, n); ``est`` a method's state; ``signs`` a step's ±1 arrays; ``x``
(B, n_in), ``y`` (B,) integer targets, ``mask`` (B,) 0/1 loss weights; ``xs``, ``ys``,
``mask`` with a leading time axis T.
"""

import math
from typing import NamedTuple

import numpy as np

from . import _checks, bptt, kf, ok, rflo, rtrl, snap, uoro
from ._compat import array_namespace, get_device
from .readout import SOFTMAX, Readout
from .readout import make as make_readout

#: influence method name -> the module implementing it
INFLUENCE = {"rtrl": rtrl, "uoro": uoro, "kf": kf, "ok": ok, "kf-avg": kf, "snap1": snap,
             "rflo": rflo}
#: every method name, in the order tables list them (``bptt``: ``minirtrl.bptt``)
METHODS = ("bptt", *INFLUENCE)
#: the methods that take a rank r (r Kronecker products per block)
RANKED = ("ok", "kf-avg")
#: the deterministic, biased approximations (no signs; their gradient is not RTRL's, §11)
APPROXIMATE = ("snap1", "rflo")


# ---- the step -------------------------------------------------------------------------------
def influence_step(module, cell, params, s, est, x, y, mask, signs, *, xp, keep=None,
                   readout=SOFTMAX):
    """One online step of an influence method: ``(s_t, est_t, loss_t (B,), grads)``.

    ``s`` (B, n) and ``est`` are s_{t-1} and ``module``'s estimate of G_{t-1}; ``y`` None
    computes the influence alone (``loss_t`` and ``grads`` None); ``keep`` (B,) 0/1 or None
    restarts the streams where it is 0 from the zero state and influence. ``grads`` =
    c_t · Ĝ_t per block plus the exact readout gradient ``"V"``, of ``readout``'s loss
    (a ``readout.Readout``; softmax cross-entropy summed over the batch by default), eq.
    (10). Arguments are not checked (``Online.step`` checks them).
    """
    if keep is not None:
        s = s * keep[:, None]
    s, cache = cell.step(params, s, x, xp=xp)
    est = module.update(cell, params, est, cache, signs, xp=xp, keep=keep)
    if y is None:
        return s, est, None, None
    loss, dV, c = readout.loss_and_grad(params["V"], s, y, mask, xp=xp)
    grads = module.grads(cell, est, c, xp=xp)
    grads["V"] = dV
    return s, est, loss, grads


# ---- the signs --------------------------------------------------------------------------------
# The array API has no random numbers: signs are drawn on the host from a numpy Generator and
# moved with ``xp.asarray``, so one seed gives the same signs on every backend. A sign is -1
# where a uniform double ``rng.random()`` is below 0.5, else +1; doubles are drawn one 64-bit
# word each, in order, so the signs of T steps drawn at once are those of T single steps.
def host_signs(rng, shapes):
    """One step's signs on the host: ``{name: float64 ±1 NumPy array of that shape}``."""
    return {k: _draw(rng, math.prod(shape)).reshape(shape) for k, shape in shapes.items()}


def _draw(rng, size):
    return np.where(rng.random(size) < 0.5, -1.0, 1.0)


def draw_sign_steps(rng, shapes, steps, *, xp, dtype, device=None):
    """The signs of ``steps`` consecutive steps: ``{name: (steps, *shape)}`` arrays.

    Element ``[t]`` is what the t-th of ``steps`` calls of ``host_signs`` would give; the
    block costs one host draw and one transfer per name.
    """
    sizes = [math.prod(shape) for shape in shapes.values()]
    draw = _draw(rng, steps * sum(sizes)).reshape(steps, sum(sizes))  # step-major
    out, start = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes, strict=True):
        part = draw[:, start:start + size].reshape((steps, *shape))
        out[name] = xp.asarray(part, dtype=dtype, device=device)
        start += size
    return out


# ---- the online step API -----------------------------------------------------------------------
class OnlineState(NamedTuple):
    """The state of B streams after a step: the cell's state and the method's estimate."""

    s: object  # (B, n)  s_t
    est: object  # the method's state: its estimate of G_t^l for every block


class Online(NamedTuple):
    """An influence method on a cell, one step at a time, with the signs you give it.

    Feeding the same ±1 signs to another implementation of the same estimator compares the
    two to roundoff, step by step; ``sequence_gradient`` is this loop with the signs of
    ``draw_signs``::

        algo = minirtrl.online("kf", cell)
        state = algo.init(B)
        for t in range(T):
            signs = algo.draw_signs(rng, B)          # or your own ±1 arrays
            state, loss_t, grads_t = algo.step(params, state, xs[t], ys[t], signs=signs)
    """

    method: str  # "rtrl", "uoro", "kf", "ok", "kf-avg", "snap1" or "rflo"
    cell: object
    rank: int  # r of ok and kf-avg; 1 for the others
    module: object  # the method's module (the interface above)
    readout: Readout = SOFTMAX  # the loss (``readout.Readout``)

    def init(self, batch, *, xp=None, dtype=None, device=None):
        """Zero state and zero influence of ``batch`` streams: an ``OnlineState``.

        ``xp`` an array namespace module (default NumPy), ``dtype`` one of its real floating
        dtypes (default float64), ``device`` where the arrays live (default: the library's).
        """
        batch = _checks.size("batch", batch)
        xp, dtype, device = _checks.creation(xp, dtype, device)
        est = self.module.init(self.cell, batch, self.rank, xp=xp, dtype=dtype, device=device)
        return OnlineState(xp.zeros((batch, self.cell.n_state), dtype=dtype, device=device), est)

    def start(self, s, est):
        """The ``OnlineState`` of your own arrays: ``s`` (B, n) and ``est``, the method's
        state, e.g. ``rtrl.from_influence(cell, G)``, ``uoro.State(s̃, θ̃)``, or
        ``kronecker.State(u, A)`` for kf, kf-avg and ok (shapes: ``init``'s; checked)."""
        xp = array_namespace(s)
        state = OnlineState(s, est)
        _checks.state(self, state, s.shape[0], xp, s.dtype, OnlineState, leaves)
        return state

    def random_start(self, batch, seed, *, scale=1.0, xp=None, dtype=None, device=None):
        """A seeded random ``OnlineState``: ``s`` uniform in (-1, 1) and every array of the
        method's state standard normal times ``scale`` (from ``default_rng(seed)``, on the
        host, so every backend gets the same start). For implementations that cannot start
        from the zero influence (0/0 in their normalisers) and for checks away from it."""
        zero = self.init(batch, xp=xp, dtype=dtype, device=device)
        xp = array_namespace(zero.s)
        rng = np.random.default_rng(_checks.seed(seed))

        def move(host, like):
            return xp.asarray(host, dtype=like.dtype, device=get_device(like))

        s = move(rng.uniform(-1.0, 1.0, zero.s.shape), zero.s)
        return OnlineState(s, map_state(
            lambda like: move(scale * rng.standard_normal(like.shape), like), zero.est))

    def grads(self, state, c):
        """``c · Ĝ_t`` per block, summed over the batch: ``{"W1": (m_1, k_1), ...}`` for
        your own ``c`` (B, n) = ∂loss_t/∂s_t (any loss, computed anywhere)."""
        xp = array_namespace(state.s, c)
        if tuple(c.shape) != tuple(state.s.shape):
            raise ValueError(f"c must have shape {tuple(state.s.shape)}, not {tuple(c.shape)}")
        return self.module.grads(self.cell, state.est, c, xp=xp)

    def sign_shapes(self, batch):
        """``{name: shape}`` of the ±1 signs one step of ``batch`` streams consumes (§9)."""
        return self.module.sign_shapes(self.cell, _checks.size("batch", batch), self.rank)

    def draw_signs(self, rng, batch, *, xp=None, dtype=None, device=None):
        """One step's signs from the numpy Generator ``rng``, as ``sequence_gradient`` draws them.

        ``xp``, ``dtype``, ``device`` as for ``init``.
        """
        xp, dtype, device = _checks.creation(xp, dtype, device)
        host = host_signs(rng, self.sign_shapes(batch))
        return {k: xp.asarray(v, dtype=dtype, device=device) for k, v in host.items()}

    def step(self, params, state, x, y=None, mask=None, *, signs=None):
        """One step of B streams: ``(state_t, loss_t (B,), grads_t)``.

        ``params`` the cell's parameters (their library is the one used); ``state`` the
        ``OnlineState`` after the previous step; ``x`` (B, n_in); ``y`` (B,) targets in
        [0, n_out) ((B, n_out) real for the mse loss), or None for the influence alone
        (``loss_t``, ``grads_t`` None: then ``grads(state, c)`` for your own c); ``mask``
        (B,) 0/1 or None; ``signs`` ``{name: ±1 array of sign_shapes(B)[name]}`` (None for
        rtrl, snap1 and rflo). ``grads_t``: c_t · Ĝ_t per block and the exact readout
        gradient, summed over the batch. Cost: one step of the method plus the checks (one
        host read each for the targets, the mask and the signs).
        """
        xp, x, y, mask = _checks.step(self.cell, params, x, y, mask, self.readout.loss)
        dtype = params["V"].dtype
        _checks.state(self, state, x.shape[0], xp, dtype, OnlineState, leaves)
        signs = _checks.signs(signs, self.sign_shapes(x.shape[0]), xp, dtype)
        return advance(self, params, state, x, y, mask, signs, xp=xp)

    def influence(self, state):
        """The current estimate as dense ``{name: (B, n, m_l, k_l)}`` (exact for rtrl)."""
        return self.module.influence(self.cell, state.est, xp=array_namespace(state.s))


def online(method, cell, rank=None, *, loss="softmax", reduction="sum", feedback=None):
    """An ``Online`` for influence method ``method`` on ``cell`` (``rank`` for ok, kf-avg).

    ``loss``: ``"softmax"`` (cross-entropy, integer targets) or ``"mse"`` (½‖o − y‖², real
    targets (B, n_out)) on the linear readout; ``reduction``: ``"sum"`` or ``"mean"`` over
    the batch; ``feedback``: None, or a fixed (n_hidden, n_out) array F of the parameters'
    library and dtype that takes the readout's error e_t to c_t = e_t F^T in place of
    V[:, :n]^T (RFLO's random feedback, §11; any method). ``bptt`` is refused: it is not
    online (it needs a whole window); so is a cell the method is not defined for (``snap1``
    needs ``cell.snap_units``, ``rflo`` a ``VanillaRNN``).
    """
    if method == "bptt":
        raise ValueError("method 'bptt' is not online (it back-propagates a whole window); "
                         f"choose one of {', '.join(INFLUENCE)}")
    _checks.method(method, tuple(INFLUENCE))
    cell = _checks.defined_on(INFLUENCE[method], _checks.cell(cell))
    return Online(method, cell, _checks.rank(method, rank, RANKED), INFLUENCE[method],
                  make_readout(loss, reduction, _checks.feedback(cell, feedback)))


def advance(algo, params, state, x, y, mask, signs, *, xp):
    """``Online.step`` without the checks: ``(OnlineState, loss_t, grads_t)``."""
    s, est, loss, grads = influence_step(algo.module, algo.cell, params, state.s, state.est,
                                         x, y, mask, signs, xp=xp, readout=algo.readout)
    return OnlineState(s, est), loss, grads


# ---- whole sequences ----------------------------------------------------------------------------
#: steps whose signs are drawn and moved to the device at once
SIGN_BLOCK = 256


def run(algo, params, xs, ys=None, mask=None, *, seed=0, xp, start=None):
    """The loop of ``advance`` over a sequence from ``start`` (an ``OnlineState``; the zero
    state and influence when None): ``(loss, grads, state)``.

    Each step's signs are those of ``Online.draw_signs`` from ``default_rng(seed)``, drawn
    ``SIGN_BLOCK`` steps at a time (the same signs). ``loss`` (B,) and ``grads`` are summed
    over time (None when ``ys`` is None). Arguments are not checked.
    """
    T, B = xs.shape[0], xs.shape[1]
    dtype, device = params["V"].dtype, get_device(xs)
    rng = np.random.default_rng(seed)
    shapes = algo.sign_shapes(B)
    state = start
    if state is None:
        state = OnlineState(xp.zeros((B, algo.cell.n_state), dtype=dtype, device=device),
                            algo.module.init(algo.cell, B, algo.rank, xp=xp, dtype=dtype,
                                             device=device))
    loss, grads = None, None
    for t in range(T):
        if t % SIGN_BLOCK == 0:  # the next steps' signs at once: one transfer per block
            block = draw_sign_steps(rng, shapes, min(SIGN_BLOCK, T - t), xp=xp, dtype=dtype,
                                    device=device)
        signs = {k: v[t % SIGN_BLOCK, ...] for k, v in block.items()}
        y, m = (None, None) if ys is None else (ys[t, ...], mask[t, :])
        state, l_t, g = advance(algo, params, state, xs[t, ...], y, m, signs, xp=xp)
        if ys is not None:
            loss = l_t if loss is None else loss + l_t
            grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
    return loss, grads, state


def sequence_gradient(method, cell, params, xs, ys, mask=None, *, seed=0, rank=None,
                      truncation=None, loss="softmax", reduction="sum", start=None,
                      feedback=None):
    """Loss and gradient (or a gradient estimate or approximation) of a whole sequence.

    Parameters
    ----------
    method : one of ``METHODS``: ``"bptt", "rtrl", "uoro", "kf", "ok", "kf-avg", "snap1",
        "rflo"`` (``snap1`` needs a cell with ``snap_units``, ``rflo`` a ``VanillaRNN``).
    cell : a cell (``RHN``, ``VanillaRNN``).
    params : dict of arrays with the keys of ``cell.shapes()``; their library is used.
    xs : (T, B, n_in) real; ys : (T, B) integers in [0, n_out) ((T, B, n_out) real for
        ``loss="mse"``); mask : (T, B) 0/1 or None.
    seed : seeds the random signs of the estimators (ignored by the methods without signs).
    rank : r for ``ok`` and ``kf-avg`` (default 1); an error for the other methods.
    truncation : TBPTT window for ``bptt`` (default: the whole sequence).
    loss, reduction, feedback : the readout's loss and its fixed feedback matrix (None:
        V's own), as for ``online``.
    start : an ``OnlineState`` to start from (``Online.start``, ``Online.random_start``);
        default the zero state and influence. ``bptt`` takes the state of ``start``
        and needs its estimate None (BPTT has no influence to start from).

    Returns
    -------
    loss : 0-d array, ``Σ_t Σ_b mask·loss_t`` (nats for softmax), parameters fixed.
    grads : dict with the keys of ``params``: exact for ``rtrl`` and untruncated ``bptt``,
        one unbiased random estimate (given ``seed``) for uoro, kf, ok and kf-avg, a
        deterministic biased approximation for snap1 and rflo.
    """
    _checks.method(method, METHODS)
    if ys is None:
        raise TypeError("ys is required: the (T, B) integer targets of the sequence")
    seed = _checks.seed(seed)
    r = _checks.rank(method, rank, RANKED)
    if truncation is not None:
        if method != "bptt":
            raise ValueError(f"truncation applies only to method 'bptt', not {method!r}")
        truncation = _checks.integer("truncation", truncation, 1, type_error=ValueError)
    _checks.defined_on(INFLUENCE.get(method), _checks.cell(cell))  # snap1, rflo: the cell
    readout = make_readout(loss, reduction, _checks.feedback(cell, feedback))
    xp, xs, ys, mask = _checks.sequence(cell, params, xs, ys, mask, readout.loss)
    if method == "bptt":
        if start is not None and start.est is not None:
            raise ValueError("method 'bptt' starts from a state alone: pass start with est=None")
        s0 = None if start is None else start.s
        total, grads = bptt.gradient(cell, params, xs, ys, mask, xp=xp, truncation=truncation,
                                     s0=s0, readout=readout)
    else:
        algo = Online(method, cell, r, INFLUENCE[method], readout)
        if start is not None:
            start = algo.start(*start)
        total, grads, _ = run(algo, params, xs, ys, mask, seed=seed, xp=xp, start=start)
    return xp.sum(total), grads


def exact_influence(cell, params, xs, *, start=None):
    """``{"W1": G^1, ...}``, each (B, n, m_l, k_l): ds_T/dW_l after the last step of ``xs``,
    from ``start`` (an ``OnlineState`` of ``rtrl``, e.g. ``online("rtrl", cell).start(s0,
    rtrl.from_influence(cell, G0))``; the zero state and influence when None)."""
    xp, xs, _, _ = _checks.sequence(cell, params, xs)
    algo = Online("rtrl", cell, 1, rtrl)
    if start is not None:
        start = algo.start(*start)
    _, _, state = run(algo, params, xs, xp=xp, start=start)
    return rtrl.influence(cell, state.est, xp=xp)


# ---- states --------------------------------------------------------------------------------------
def map_state(fn, state):
    """``state`` with every array ``x`` replaced by ``fn(x)``; tuples and NamedTuples kept."""
    if isinstance(state, tuple):
        items = [map_state(fn, item) for item in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return None if state is None else fn(state)


def leaves(state):
    """The arrays of ``state`` in depth-first order (what a checkpoint stores)."""
    out = []
    map_state(out.append, state)
    return out


def rebuild(template, arrays):
    """``template``'s structure filled with ``arrays`` (in the order of ``leaves``)."""
    it = iter(arrays)
    return map_state(lambda _: next(it), template)


__all__ = ["APPROXIMATE", "METHODS", "RANKED", "Online", "OnlineState", "exact_influence",
           "influence_step", "online", "sequence_gradient"]
