"""Many estimates, in standard errors: unbiasedness z-tests and what they can see, the
noise of two estimators side by side, and a direct test of a sign sampler.

Notation: N seeds (estimates), M entries compared, z = (mean − exact) / SE with SE = sample
standard deviation / √N, per entry; the Bonferroni bound ``z_threshold(M, p)``.
"""

import math
from typing import NamedTuple

import numpy as np

from .. import _checks
from .._compat import to_numpy


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


# ---- how many seeds a test needs --------------------------------------------------------
def _normal_quantile(q):
    """The z with P(Z < z) = q for a standard normal Z (bisection on erfc)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < q else (lo, mid)
    return hi


def detectable_bias(seeds, spread, entries=1, p=1e-3, power=0.9):
    """The smallest bias an unbiasedness z-test with ``seeds`` estimates detects.

    ``spread`` is one estimate's standard deviation in the units you want the bias in (e.g.
    relative to ‖G‖: the square root of ``noise``'s E‖Ĝ − G‖²/‖G‖² per entry), ``entries``
    the number of entries compared (the Bonferroni bound ``z_threshold(entries, p)``), and
    ``power`` the probability of detection. A bias b is found with that probability when
    b √N / spread ≥ z_threshold + z_power. Returns b in the units of ``spread``.
    """
    seeds = _checks.integer("seeds", seeds, 2)
    return (z_threshold(entries, p) + _normal_quantile(power)) * spread / math.sqrt(seeds)


def seeds_needed(bias, spread, entries=1, p=1e-3, power=0.9):
    """The seeds a z-test needs to detect ``bias`` (same units as ``spread``) with
    probability ``power`` at false-alarm rate ``p``: the inverse of ``detectable_bias``."""
    if not bias > 0:
        raise ValueError(f"bias must be > 0, not {bias!r}")
    z = z_threshold(entries, p) + _normal_quantile(power)
    return max(2, math.ceil((z * spread / bias) ** 2))


# ---- noise: two estimators of the same quantity -------------------------------------------
class NoiseComparison(NamedTuple):
    """``compare_noise``'s result: the relative noise of two estimators, and their ratio.

    The noise of one estimate ĝ is ‖ĝ − g‖² / ‖g‖² over the compared keys jointly; each
    figure is its mean over the seeds with a standard error (SE = sd / √N).
    """

    yours: float  # E‖ĝ − g‖²/‖g‖² of your estimator
    yours_se: float
    ours: float  # the same for the reference estimator (e.g. minirtrl's)
    ours_se: float
    ratio: float  # yours / ours
    ratio_se: float  # by the delta method: ratio · sqrt((SE_y/y)² + (SE_o/o)²)
    z: float  # (yours − ours) / sqrt(SE_y² + SE_o²): the two samples are independent
    seeds: int  # N estimates of each


def relative_noise(estimates, exact, keys=None):
    """ ‖ĝ − g‖² / ‖g‖² of each estimate (host float64, shape (N,)) over ``keys`` jointly
    (default: every key of ``exact``)."""
    keys = list(exact) if keys is None else list(keys)
    ref = {k: to_numpy(exact[k]).astype(np.float64) for k in keys}
    scale = sum(float(np.sum(v * v)) for v in ref.values())
    if not scale > 0:
        raise ValueError("the exact values are all zero: relative noise is not defined")
    return np.array([sum(float(np.sum((to_numpy(e[k]).astype(np.float64) - ref[k]) ** 2))
                         for k in keys) for e in estimates]) / scale


def compare_noise(yours, ours, exact, seeds, *, keys=None):
    """The noise of ``yours`` against that of ``ours``, two estimators of ``exact``.

    ``yours``, ``ours``: seed -> ``{name: array}`` (any backend), one estimate each, drawn
    with their own random numbers (no common signs are needed); ``exact`` the exact value;
    ``seeds`` at least 2 (N). Two implementations of the same estimator have the same noise,
    so a ratio away from 1 by more than a few ``ratio_se`` (|z| > ``z_threshold(1)``) is a
    bug that an unbiasedness test cannot see (e.g. a missing variance-minimising scale).
    The squared errors are heavy-tailed: use N >= 200. Cost: 2N estimates.
    """
    seeds = list(seeds)
    if len(seeds) < 2:
        raise ValueError(f"seeds must hold at least 2 seeds, not {len(seeds)}")
    figures = []
    for fn in (yours, ours):
        e = relative_noise([fn(seed) for seed in seeds], exact, keys)
        figures.append((float(e.mean()), float(e.std(ddof=1)) / math.sqrt(len(seeds))))
    (y, y_se), (o, o_se) = figures
    ratio = y / o if o > 0 else math.inf
    ratio_se = ratio * math.hypot(y_se / y if y > 0 else 0.0, o_se / o if o > 0 else 0.0)
    spread = math.hypot(y_se, o_se)
    z = (y - o) / spread if spread > 0 else (0.0 if y == o else math.inf)
    return NoiseComparison(y, y_se, o, o_se, ratio, ratio_se, z, len(seeds))


# ---- a sign sampler's distribution ------------------------------------------------------------
class SignCheck(NamedTuple):
    """``check_signs``'s result. Fair independent signs have mean 0 and correlation 0 with
    each other and with the next draw's; each z below is such a figure times √draws."""

    draws: int
    entries: int  # signs per draw
    mean_z: float  # largest |z| of an entry's mean
    pair_z: float  # largest |z| of a correlation: two entries of a draw, or one draw and the next
    bound: float  # z_threshold over all the figures, at the given p
    problem: str  # "" when the draws look like fair independent signs, else why not

    @property
    def ok(self):
        return not self.problem


def check_signs(sampler, draws=2000, *, p=1e-3):
    """Test a sampler of ±1 signs directly: values, fairness, independence.

    ``sampler()`` returns one step's signs ``{name: array}`` (any backend) from the
    caller's own generator, the next step's on the next call. Checks that every value is
    exactly +1 or −1, that shapes do not change, that each entry's mean is 0 and that
    every two entries of a draw, and every entry of a draw with every entry of the next,
    are uncorrelated, all at one Bonferroni bound. A sign that is +1 with probability
    1/2 + δ is found once 2δ √draws exceeds the bound (δ = 0.1 at 2000 draws: z ≈ 8.9).
    Cost: ``draws`` calls and an (E, E) product for E signs per draw (E <= 4096).
    """
    draws = _checks.integer("draws", draws, 3)
    first = {k: to_numpy(v) for k, v in sampler().items()}
    shapes = {k: v.shape for k, v in first.items()}
    rows = []
    for i in range(draws):
        got = first if i == 0 else {k: to_numpy(v) for k, v in sampler().items()}
        if {k: v.shape for k, v in got.items()} != shapes:
            return SignCheck(i + 1, 0, math.nan, math.nan, math.nan,
                             f"draw {i + 1} has shapes { {k: v.shape for k, v in got.items()} }, "
                             f"the first {shapes}")
        rows.append(np.concatenate([np.ravel(got[k]).astype(np.float64) for k in sorted(got)]))
    X = np.stack(rows)  # (draws, E)
    E = X.shape[1]
    if E > 4096:
        raise ValueError(f"the sampler draws {E} signs at a time: more than the 4096 "
                         "check_signs correlates; test a smaller batch")
    bad = np.flatnonzero(np.abs(X) != 1.0)
    if bad.size:
        i, j = divmod(int(bad[0]), E)
        return SignCheck(draws, E, math.nan, math.nan, math.nan,
                         f"draw {i + 1} holds {float(X[i, j])!r} (entry {j}), not +1 or -1")
    root = math.sqrt(draws)
    mean_z = float(np.max(np.abs(X.mean(axis=0)))) * root
    same = (X.T @ X / draws)[np.triu_indices(E, 1)]  # entry pairs within a draw
    lag = X[1:].T @ X[:-1] / (draws - 1)  # (E, E) each entry against the previous draw's
    pair_z = float(max(np.max(np.abs(same), initial=0.0), np.max(np.abs(lag)))) * root
    bound = z_threshold(E + same.size + lag.size, p)
    problem = ""
    if mean_z > bound:
        j = int(np.argmax(np.abs(X.mean(axis=0))))
        problem = (f"entry {j} is +1 in {np.mean(X[:, j] > 0):.1%} of {draws} draws "
                   f"(z = {mean_z:.1f}, bound {bound:.2f}): not a fair sign")
    elif pair_z > bound:
        problem = (f"two signs are correlated (z = {pair_z:.1f}, bound {bound:.2f}): "
                   "not independent")
    return SignCheck(draws, E, mean_z, pair_z, bound, problem)
