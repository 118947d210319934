"""Oracles and assertions for testing minirtrl and for cross-checking other code.

* ``numerical_gradient``, ``numerical_jacobian``: central finite differences (float64, host).
* ``assert_close``: compare an array of any library with a reference, after checking that
  it is an array of the expected namespace, shape, dtype and device.
* ``exact_step``: exact RTRL's step from any dense influence (the oracle of one step).
* ``sign_patterns``, ``expected_step``: the exact expectation of one estimator step over
  every sign pattern, beside ``exact_step`` from the same estimate (small cells).
* ``expected_of``: the same expectation for a caller's own step function (any estimator).
* ``unbiasedness_z``, ``assert_unbiased``, ``z_threshold``: the mean of many seeded
  estimates against the exact value, in standard errors; ``detectable_bias`` and
  ``seeds_needed``: what such a test can see with N seeds, and the N a given bias needs.

Everything here copies to NumPy, which is right for tests and wrong in library code.
Notation of the statistics: N seeds (estimates), M entries compared, z = (mean − exact) / SE
with SE = sample standard deviation / √N, per entry.
"""

import math
from typing import NamedTuple

import numpy as np

from . import _checks, readout, rtrl
from ._compat import array_namespace, get_device, to_numpy  # to_numpy: for tests too
from .methods import Online, OnlineState, advance, leaves

#: the most sign patterns ``expected_step`` enumerates
MAX_PATTERNS = 2**16


# ---- finite differences ---------------------------------------------------------------------
def sequence_loss(cell, params, xs, ys, mask=None, s0=None, *, loss="softmax",
                  reduction="sum"):
    """Forward pass only: ``Σ_t Σ_b mask·loss_t`` as a Python float (NumPy inputs).

    ``s0`` (B, n): the state before the first step (zeros when None); ``loss``,
    ``reduction``: the readout's loss (``minirtrl.online``).
    """
    head = readout.make(loss, reduction)
    xp = array_namespace(xs)
    s = xp.zeros((xs.shape[1], cell.n_hidden), dtype=xs.dtype) if s0 is None else s0
    total = 0.0
    for t in range(xs.shape[0]):
        s, _ = cell.step(params, s, xs[t, ...], xp=xp)
        w = xp.ones(xs.shape[1], dtype=xs.dtype) if mask is None else mask[t, :]
        total += float(xp.sum(head.value(params["V"], s, ys[t, ...], w, xp=xp)))
    return total


def numerical_jacobian(f, x, eps=1e-6):
    """Central differences of ``f`` (NumPy array -> NumPy array) at ``x``.

    Returns an array of shape ``f(x).shape + x.shape``.
    """
    x = np.array(x, dtype=np.float64)
    out = np.asarray(f(x))
    jac = np.zeros(out.shape + x.shape)
    for idx in np.ndindex(*x.shape):
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += eps
        xm[idx] -= eps
        jac[(...,) + idx] = (np.asarray(f(xp_)) - np.asarray(f(xm))) / (2 * eps)
    return jac


def numerical_gradient(cell, params, xs, ys, mask=None, eps=1e-6, *, s0=None,
                       loss="softmax", reduction="sum"):
    """Central finite differences of the summed loss w.r.t. every parameter (float64).

    Arrays of any backend are copied to NumPy float64 first; returns a dict of NumPy
    arrays with the keys of ``params``. ``s0``, ``loss``, ``reduction`` as for
    ``sequence_loss``. Costs 2 forward passes per parameter entry.
    """
    p = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}
    xs = to_numpy(xs).astype(np.float64)
    ys = to_numpy(ys)
    if loss == "mse":
        ys = ys.astype(np.float64)
    mask = None if mask is None else to_numpy(mask).astype(np.float64)
    s0 = None if s0 is None else to_numpy(s0).astype(np.float64)
    grads = {}
    for key in p:

        def f(w, key=key):
            return np.asarray(sequence_loss(cell, {**p, key: w}, xs, ys, mask, s0, loss=loss,
                                            reduction=reduction))

        grads[key] = numerical_jacobian(f, p[key], eps)
    return grads


def relative_error(actual, desired):
    """``max|actual - desired| / max|desired|`` on host copies (0 when both are 0)."""
    a, d = to_numpy(actual).astype(np.float64), to_numpy(desired).astype(np.float64)
    scale = np.max(np.abs(d))
    diff = np.max(np.abs(a - d)) if a.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def assert_close(actual, desired, *, rtol=None, atol=0.0, xp=None, device=None,
                 check_dtype=True, err_msg=""):
    """Assert ``actual`` is close to ``desired`` after checking namespace, shape, dtype, device.

    ``desired`` is either a host reference (a NumPy array or scalar, a list, a Python
    number) or an array of some library. Checks, in order:

    * namespace: ``actual`` comes from ``xp`` when given, else from ``desired``'s namespace
      when ``desired`` is a library array (a NumPy ``actual`` may stand for itself);
    * shape: equal (a Python number as ``desired`` is compared with every entry);
    * dtype: equal to ``desired``'s (a Python float stands for float64, an int for int64, a
      bool for bool), unless ``check_dtype=False``, which compares values only;
    * device: ``device`` when given, else that of a library ``desired`` of the same namespace;
    * values: ``|actual - desired| <= atol + rtol·|desired|`` elementwise. The default
      ``rtol`` is ``4 * sqrt(eps)`` of ``actual``'s dtype (about 6e-8 for float64, 1.4e-3
      for float32); ``rtol=0`` with ``atol=0`` asks for equality. Text arrays must be equal.
    """
    if isinstance(actual, (list, tuple, float, int)):
        actual = np.asarray(actual)
    found = array_namespace(actual)
    host = isinstance(desired, (np.ndarray, np.generic, list, tuple, float, int))
    if xp is None and not host:
        xp = array_namespace(desired)
    if xp is not None:
        assert found is xp, f"expected an array of {xp.__name__}, got {found.__name__}"
    a = to_numpy(actual)
    d = np.asarray(desired) if host else to_numpy(desired)
    if not isinstance(desired, (float, int)):
        assert a.shape == d.shape, f"shape {a.shape} != {d.shape}"
    if check_dtype:
        assert a.dtype == d.dtype, f"dtype {actual.dtype} != {d.dtype} (check_dtype=False " \
                                   "compares values only)"
    if not host and device is None and array_namespace(desired) is found:
        device = get_device(desired)
    if device is not None:
        assert get_device(actual) == device, f"device {get_device(actual)} != {device}"
    if a.dtype.kind in "USO":  # text (e.g. a checkpoint's JSON members): equal, or not
        np.testing.assert_array_equal(a, d, err_msg=err_msg)
        return
    if rtol is None:
        floating = np.issubdtype(a.dtype, np.floating)
        rtol = 4 * float(np.finfo(a.dtype).eps) ** 0.5 if floating else 0.0
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=err_msg)


def random_problem(cell, T, B, seed=0, *, masked=True):
    """A random sequence for ``cell`` as NumPy arrays ``(xs, ys, mask)``.

    ``xs`` (T, B, n_in) float64 ~ N(0, 1); ``ys`` (T, B) int64 in [0, n_out); ``mask``
    (T, B) float64 with about a third of the entries 0 (all ones when ``masked=False``).
    """
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((T, B, cell.n_in))
    ys = rng.integers(0, cell.n_out, size=(T, B))
    mask = (rng.random((T, B)) > 0.3).astype(np.float64) if masked else np.ones((T, B))
    return xs, ys, mask
# ---- one step, exactly ----------------------------------------------------------------------
def exact_step(cell, params, s, G, x, y=None, mask=None):
    """Exact RTRL's step from the state ``s`` (B, n) and ANY dense influence ``G``.

    ``G`` is ``{name: (B, n, m_l, k_l)}`` (e.g. another estimator's estimate of G_{t-1}),
    ``x`` (B, n_in), ``y`` (B,) or None, ``mask`` (B,) or None. Returns ``(G_t, grads)``:
    ``G_t = H_t G + F_t`` per block (eq. (9)) and the step's gradient c_t · G_t plus the
    exact readout gradient, summed over the batch (None without ``y``).
    """
    xp, x, y, mask = _checks.step(cell, params, x, y, mask)
    algo = Online("rtrl", cell, 1, rtrl)
    n = cell.n_hidden
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
