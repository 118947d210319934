"""One step, exactly: exact RTRL's step from any influence, and the exact mean of an
estimator's step over every pattern of its ±1 signs (small cells: at most 2^16 patterns).

Notation: s s_{t-1} (B, n); G a dense influence {name: (B, n, m_l, k_l)}; P the signs one
sample consumes per step (2^P patterns).
"""

import math
from typing import NamedTuple

import numpy as np

from .. import _checks, rtrl
from .._compat import get_device, to_numpy
from ..methods import Online, OnlineState, advance, leaves

#: the most sign patterns ``expected_step`` enumerates
MAX_PATTERNS = 2**16


def exact_step(cell, params, s, G, x, y=None, mask=None):
    """Exact RTRL's step from the state ``s`` (B, n) and ANY dense influence ``G``.

    ``G`` is ``{name: (B, n, m_l, k_l)}`` (e.g. another estimator's estimate of G_{t-1}),
    ``x`` (B, n_in), ``y`` (B,) or None, ``mask`` (B,) or None. Returns ``(G_t, grads)``:
    ``G_t = H_t G + F_t`` per block (eq. (9)) and the step's gradient c_t · G_t plus the
    exact readout gradient, summed over the batch (None without ``y``).
    """
    xp, x, y, mask = _checks.step(cell, params, x, y, mask)
    algo = Online("rtrl", cell, 1, rtrl)
    n = cell.n_state
    state = OnlineState(s, rtrl.State(tuple(xp.reshape(G[k], (G[k].shape[0], n, -1))
                                            for k in cell.blocks)))
    new, _, grads = advance(algo, params, state, x, y, mask, {}, xp=xp)
    return algo.influence(new), grads


def sign_patterns(shapes):
    """Every assignment of ±1 to the signs of ONE sample: a list of ``{name: array}``.

    ``shapes`` is ``Online.sign_shapes(B)``; each pattern gives the trailing shape
    ``shape[1:]`` of every key, in key order, entries in C order. Refuses more than
    ``MAX_PATTERNS`` patterns (``ValueError`` with the count).
    """
    sizes = {k: math.prod(shape[1:]) for k, shape in shapes.items()}
    bits = sum(sizes.values())
    if 2**bits > MAX_PATTERNS:
        raise ValueError(f"one step has {bits} signs per sample, 2^{bits} sign patterns: more "
                         f"than the {MAX_PATTERNS} (2^16) expected_step enumerates; "
                         "use a smaller cell")
    table = 1.0 - 2.0 * ((np.arange(2**bits)[:, None] >> np.arange(bits)[None, :]) & 1)
    out = []
    for row in table:  # (bits,) per pattern
        pattern, at = {}, 0
        for k, shape in shapes.items():
            pattern[k] = np.reshape(row[at : at + sizes[k]], shape[1:])
            at += sizes[k]
        out.append(pattern)
    return out


class StepExpectation(NamedTuple):
    """``expected_step``'s result (arrays of the parameters' library)."""

    influence: dict  # {name: (B, n, m, k)}  E over the signs of the estimate after the step
    grads: dict  # E of the step's gradient (c_t · Ĝ_t summed over B, and the exact "V")
    exact: dict  # {name: (B, n, m, k)}  H_t Ĝ_{t-1} + F_t: exact RTRL from the same estimate
    exact_grads: dict  # c_t · exact summed over B, and "V"
    patterns: int  # number of sign patterns enumerated


def expected_step(online, params, state, x, y=None, mask=None):
    """The exact expectation of one ``online.step`` over its random signs.

    Runs the step once for each of the 2^P sign patterns of one sample (P signs per
    sample and step, at most 2^16 patterns), every sample of the batch getting the same
    pattern: a sample's step depends on its own signs only, so each sample still runs
    through all of its patterns once, and the mean is that sample's exact expectation.
    ``state`` is the ``OnlineState`` before the step, ``x`` (B, n_in), ``y`` (B,) or None
    (then ``grads`` and ``exact_grads`` are None), ``mask`` (B,) or None.

    Returns a ``StepExpectation``: the mean dense influence and gradient over the
    patterns, and exact RTRL's step ``H_t Ĝ_{t-1} + F_t`` applied to the current dense
    estimate Ĝ_{t-1} (``exact_step``: what an unbiased step's mean must equal). Cost: 2^P
    steps.
    """
    if not isinstance(online, Online):
        raise TypeError(f"online must be what minirtrl.online returns, "
                        f"not {type(online).__name__}")
    xp, x, y, mask = _checks.step(online.cell, params, x, y, mask)
    B, dtype = x.shape[0], params["V"].dtype
    _checks.state(online, state, B, xp, dtype, OnlineState, leaves)
    device = get_device(x)
    patterns = sign_patterns(online.sign_shapes(B))
    total, total_g = None, None
    for pattern in patterns:
        signs = {k: xp.asarray(np.ascontiguousarray(np.broadcast_to(v, (B,) + v.shape)),
                               dtype=dtype, device=device)
                 for k, v in pattern.items()}
        new, _, g = advance(online, params, state, x, y, mask, signs, xp=xp)
        dense = online.influence(new)
        total = dense if total is None else {k: total[k] + dense[k] for k in dense}
        if g is not None:
            total_g = g if total_g is None else {k: total_g[k] + g[k] for k in g}
    P = len(patterns)
    mean = {k: v / P for k, v in total.items()}
    mean_g = None if total_g is None else {k: v / P for k, v in total_g.items()}
    exact, exact_g = exact_step(online.cell, params, state.s, online.influence(state), x, y,
                                mask)
    return StepExpectation(mean, mean_g, exact, exact_g, P)


def expected_of(step, shapes, batch):
    """The exact mean over every sign pattern of a caller's estimator step.

    ``step(signs) -> {name: array}``: your step from a fixed state, given ``{name: ±1 NumPy
    float64 array of shapes[name]}`` (batch first, ``batch`` rows, every row the same
    pattern: each sample of the batch still runs through all of its own patterns), returning
    what to average (e.g. your dense influence estimate). ``shapes``: your step's signs per
    sample and step, ``{name: (batch, ...)}``. Returns ``({name: NumPy mean}, patterns)``;
    compare the mean with ``exact_step`` from your estimate before the step (the oracle for
    estimators minirtrl does not have). Cost: 2^P calls of ``step``.
    """
    patterns = sign_patterns(shapes)
    total = None
    for pattern in patterns:
        signs = {k: np.ascontiguousarray(np.broadcast_to(v, (batch, *v.shape)))
                 for k, v in pattern.items()}
        out = {k: to_numpy(v).astype(np.float64) for k, v in step(signs).items()}
        total = out if total is None else {k: total[k] + out[k] for k in out}
    return {k: v / len(patterns) for k, v in total.items()}, len(patterns)
