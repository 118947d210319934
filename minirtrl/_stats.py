"""Statistical oracles for unbiased estimators (re-exported by ``minirtrl.testing``).

* ``expected_step``: the exact expectation of one step of an estimator over its signs,
  by running every sign pattern through ``Online``, beside exact RTRL's step from the
  same estimate (for small cells: at most 2^16 patterns).
* ``unbiasedness_z``: the mean of many seeded estimates against the exact value, in
  standard errors; ``assert_unbiased`` asserts on it; ``z_threshold`` is the bound for
  a given number of entries (the multiple-comparison correction).

Notation: N seeds (estimates), M entries compared, z = (mean − exact) / SE with
SE = sample standard deviation / √N, per entry.
"""

import math
from typing import NamedTuple

import numpy as np

from . import rtrl
from ._compat import get_device
from .arguments import check_step
from .backends import to_numpy
from .online import Online, advance, check_state
from .online import online as make_online

#: the most sign patterns ``expected_step`` enumerates
MAX_PATTERNS = 2**16


# ---- one step, exactly --------------------------------------------------------------
class StepExpectation(NamedTuple):
    """``expected_step``'s result (arrays of the parameters' library)."""

    influence: dict  # {name: (B, n, m, k)}  E over the signs of the estimate after the step
    grads: dict  # E of the step's gradient (c_t · Ĝ_t summed over B, and the exact "V")
    exact: dict  # {name: (B, n, m, k)}  H_t Ĝ_{t-1} + F_t: exact RTRL from the same estimate
    exact_grads: dict  # c_t · exact summed over B, and "V"
    patterns: int  # number of sign patterns enumerated


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
    table = 1.0 - 2.0 * ((np.arange(2**bits)[:, None] >> np.arange(bits)[None, :]) & 1)  # (P, bits)
    out = []
    for row in table:
        pattern, at = {}, 0
        for k, shape in shapes.items():
            pattern[k] = np.reshape(row[at : at + sizes[k]], shape[1:])
            at += sizes[k]
        out.append(pattern)
    return out


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
    estimate Ĝ_{t-1} (what an unbiased step's mean must equal). Cost: 2^P steps.
    """
    if not isinstance(online, Online):
        raise TypeError(f"online must be what minirtrl.online returns, not {type(online).__name__}")
    xp, x, y, mask = check_step(online.cell, params, x, y, mask)
    B, dtype = x.shape[0], params["V"].dtype
    check_state(online, state, B, xp, dtype)
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
    exact, exact_g = _exact_step(online, params, state, x, y, mask, xp=xp)
    return StepExpectation(mean, mean_g, exact, exact_g, P)


def _exact_step(online, params, state, x, y, mask, *, xp):
    """Exact RTRL's one step from the current dense estimate of ``state``."""
    cell = online.cell
    dense = online.influence(state)
    G = rtrl.State(tuple(xp.reshape(dense[k], (dense[k].shape[0], cell.n_hidden, -1))
                         for k in cell.blocks))
    exact_algo = make_online("rtrl", cell)
    new, _, g = advance(exact_algo, params, type(state)(state.s, G), x, y, mask, {}, xp=xp)
    return exact_algo.influence(new), g


# ---- many estimates, in standard errors ---------------------------------------------
def _z_scores(estimate_fn, exact, seeds, rtol):
    """``({name: z}, N, M)``: host float64 z arrays, N estimates, M varying entries.

    z is (mean − exact)/SE where SE > rtol·scale (scale = max |exact[name]|, or 1 where
    exact[name] is zero); elsewhere the estimates do not vary (beyond roundoff), and z is
    0 where the mean equals exact within rtol·scale and +inf where it does not.
    """
    seeds = list(seeds)
    if len(seeds) < 2:
        raise ValueError(f"seeds must hold at least 2 seeds, not {len(seeds)}")
    runs = [estimate_fn(seed) for seed in seeds]
    N, M = len(runs), 0
    out = {}
    for name, ref in exact.items():
        ref = to_numpy(ref).astype(np.float64)
        est = np.stack([to_numpy(run[name]).astype(np.float64) for run in runs])
        mean, se = est.mean(axis=0), est.std(axis=0, ddof=1) / math.sqrt(N)
        scale = float(np.max(np.abs(ref))) or 1.0
        tol = rtol * scale
        diff = mean - ref
        varies = se > tol
        M += int(np.sum(varies))
        fixed_z = np.where(np.abs(diff) <= tol, 0.0, np.inf)
        out[name] = np.where(varies, diff / np.where(varies, se, 1.0), fixed_z)
    return out, N, M


def unbiasedness_z(estimate_fn, exact, seeds, *, rtol=1e-9):
    """The largest |z| of the mean of ``estimate_fn(seed)`` over ``seeds`` against ``exact``.

    Parameters
    ----------
    estimate_fn : seed -> ``{name: array}`` (any backend), one random estimate, e.g.
        ``lambda s: minirtrl.sequence_gradient("kf", cell, params, xs, ys, seed=s)[1]``.
    exact : ``{name: array}``, the exact values; only its keys are compared.
    seeds : at least 2 seeds (N = len(seeds) estimates; N >= 100 is advisable).
    rtol : entries whose standard error is at most ``rtol · max|exact[name]|`` do not
        vary (a deterministic entry, e.g. the exact readout gradient): they must equal
        exact within that tolerance, else the figure is +inf.

    Returns
    -------
    z : float, max over all varying entries of ``|mean − exact| / SE``. For an unbiased
        estimator each entry's z is about standard normal (Student-t with N−1 degrees of
        freedom), so the maximum over M entries grows like sqrt(2 ln M): compare it with
        ``z_threshold(M)``, not with 2 or 3.
    """
    table, _, _ = _z_scores(estimate_fn, exact, seeds, rtol)
    return float(max((np.max(np.abs(z)) for z in table.values() if z.size), default=0.0))


def z_threshold(entries, p=1e-3):
    """The bound on the largest |z| of ``entries`` compared entries, at false-alarm rate ``p``.

    Bonferroni: the z with ``entries · P(|Z| > z) = p`` for a standard normal Z, so an
    unbiased estimator exceeds it with probability at most ``p`` whatever the correlation
    between entries (e.g. 3.29 for one entry, 4.42 for 100, 5.33 for 10 000 at p = 1e-3).
    """
    entries = max(int(entries), 1)
    target = p / entries
    lo, hi = 0.0, 40.0
    for _ in range(200):  # bisection on erfc(z/√2) = target (erfc is decreasing)
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if math.erfc(mid / math.sqrt(2.0)) > target else (lo, mid)
    return hi


def assert_unbiased(estimate_fn, exact, seeds, *, z_max=None, p=1e-3, rtol=1e-9):
    """Assert ``unbiasedness_z(estimate_fn, exact, seeds) <= z_max``; return that z.

    ``z_max`` defaults to ``z_threshold(M, p)`` with M the number of varying entries. The
    message names the worst entry, N, M and the bound. A bias b of an entry with standard
    deviation σ is flagged once b > z_max σ / √N: choose N for the bias to detect.
    """
    table, N, M = _z_scores(estimate_fn, exact, seeds, rtol)
    bound = z_threshold(M, p) if z_max is None else float(z_max)
    worst = max(table, key=lambda k: float(np.max(np.abs(table[k]), initial=0.0)))
    z = float(np.max(np.abs(table[worst]), initial=0.0))
    if not z <= bound:
        flat = int(np.argmax(np.abs(table[worst])))
        where = [int(i) for i in np.unravel_index(flat, table[worst].shape)]
        raise AssertionError(
            f"mean of {N} estimates is {z:.3g} standard errors from exact at {worst}{where} "
            f"(bound {bound:.3g} for {M} varying entries); the estimator looks biased")
    return z
