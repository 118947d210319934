"""One call for a whole check of another implementation of an influence estimator.

``check(yours, cell, params, xs, ys)`` drives your estimator, wrapped as an ``Estimator``,
over one sequence and runs every check that applies; it returns a ``Report`` (``ok``,
``failed``, and a readable table as ``str(report)``), so one pytest test is
``assert report.ok, report``. The checks, and what each can and cannot see:

    check          runs when                             sees
    expectation    2^P <= 2^16 sign patterns per step    any bias of a step, exactly: the mean
                                                         of your step over every pattern,
                                                         from your own estimate, against
                                                         exact RTRL's step (P = 0: your step
                                                         is exact RTRL's)
    same signs     ``method`` given, your sign shapes    any difference from minirtrl's
                   are minirtrl's, same start            estimator, noise-only bugs included;
                                                         not a sampler's bias (it uses ours)
    unbiased       ``gradient`` and ``ys`` given         bias of the whole gradient, your own
                                                         random numbers and loss included, down
                                                         to the figure it prints
    noise          ``gradient``, ``ys`` and ``method``   more (or less) noise than minirtrl's
                   given, same start                     estimator: unbiased-but-noisier bugs
    sampler        ``sampler`` given                     unfair or dependent signs

Notation: B streams, T steps, P signs per sample and step; G a dense influence
``{name: (B, n, m_l, k_l)}`` in minirtrl's layout (``layout`` converts yours).
Cost: T·2^P of your steps, T of minirtrl's, and 2·``seeds`` gradients.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import rtrl
from .._compat import to_numpy
from ..methods import OnlineState, advance, host_signs, online, sequence_gradient
from .stats import _normal_quantile, _z_scores, check_signs, compare_noise, z_threshold
from .steps import MAX_PATTERNS, exact_step, expected_of


class Estimator(NamedTuple):
    """Your implementation, as ``check`` drives it (NumPy float64 arrays go in).

    start : () -> your state before the first step (any object).
    step : (state, t, signs) -> your state after step t (t = 0 .. T−1 reads ``xs[t]``),
        with the ±1 signs given (``{name: array of sign_shapes[name]}``). It must not
        change ``state`` (``check`` runs several steps from one state).
    influence : state -> your estimate of G as ``{name: (B, n, m_l, k_l)}``, minirtrl's
        layout (``layout.input_first``, ``layout.unflatten_influence``).
    sign_shapes : ``{name: (B, ...)}`` the signs one step consumes (``{}``: deterministic).
    gradient : None, or seed -> your gradient over the sequence ``{name: (m_l, k_l)}`` (and
        ``"V"`` if you have it), minirtrl's layout, your own random numbers and loss.
    sampler : None, or () -> one step's signs from your own generator (the next step's on
        the next call), as ``gradient`` draws them.
    """

    start: Callable
    step: Callable
    influence: Callable
    sign_shapes: dict
    gradient: Callable = None
    sampler: Callable = None


class Check(NamedTuple):
    name: str
    passed: bool  # None: did not apply
    detail: str


class Report(NamedTuple):
    """What ``check`` found: one ``Check`` per check, in the order of the table above."""

    checks: tuple

    @property
    def ok(self):
        """True when no check failed and at least one ran."""
        ran = [c for c in self.checks if c.passed is not None]
        return bool(ran) and all(c.passed for c in ran)

    @property
    def failed(self):
        """The names of the checks that failed."""
        return [c.name for c in self.checks if c.passed is False]

    def __str__(self):
        mark = {True: "pass", False: "FAIL", None: "n/a "}
        return "\n".join(f"{mark[c.passed]}  {c.name:<12} {c.detail}" for c in self.checks)


def check(yours, cell, params, xs, ys=None, mask=None, *, method=None, rank=None,
          loss="softmax", reduction="sum", s0=None, start=None, seeds=200, same_signs=True,
          p=1e-3, rtol=1e-9):
    """Run every check that applies to ``yours`` (an ``Estimator``) on one sequence.

    ``params``, ``xs`` (T, B, n_in), ``ys``, ``mask``, ``loss``, ``reduction``: the
    problem, as for ``minirtrl.sequence_gradient`` (copied to NumPy float64); ``s0`` (B, n)
    the state before step 1 (zeros when None), and your ``start()`` the influence there.
    ``method`` (``rank``): the minirtrl estimator yours implements, for the same-signs and
    noise checks, started from ``start`` (an ``OnlineState`` equal to yours; default the
    zero influence at ``s0``, which needs yours to be zero too). ``seeds``: N gradients of
    each for the unbiased and noise checks; ``p`` their false-alarm rate; ``rtol`` the
    relative tolerance of the exact comparisons. Returns a ``Report``.
    """
    if not isinstance(yours, Estimator):
        raise TypeError(f"yours must be a testing.Estimator, not {type(yours).__name__}")
    params = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}
    xs = to_numpy(xs).astype(np.float64)
    B = xs.shape[1]
    s0 = np.zeros((B, cell.n_state)) if s0 is None else to_numpy(s0).astype(np.float64)
    G0 = _dense(yours.influence(yours.start()))
    ours, why_not = _our_start(cell, method, rank, loss, reduction, s0, G0, start, rtol)
    path = _trajectory(yours, cell, params, xs, s0)
    checks = [_expectation(yours, cell, params, xs, path, rtol)]
    zero = not any(np.any(v) for v in G0.values())
    checks.append(_same_signs(yours, ours, why_not, params, xs, path, rtol, same_signs, zero))
    gradients = {}
    if yours.gradient is not None and ys is not None:
        gradients = {seed: yours.gradient(seed) for seed in range(seeds)}
    exact = None
    if gradients:
        exact_start = online("rtrl", cell).start(s0, rtrl.from_influence(cell, G0))
        _, exact = sequence_gradient("rtrl", cell, params, xs, ys, mask, loss=loss,
                                     reduction=reduction, start=exact_start)
        unknown = sorted(set(gradients[0]) - set(exact))
        if unknown:
            raise ValueError(f"gradient returned {unknown}: keys must be among {sorted(exact)}")
        exact = {k: exact[k] for k in gradients[0]}
    checks.append(_unbiased(gradients, exact, p, rtol, ys, yours))
    checks.append(_noise(gradients, exact, ours, why_not, cell, params, xs, ys, mask, p, yours))
    checks.append(_sampler(yours, p))
    return Report(tuple(checks))


# ---- the pieces --------------------------------------------------------------------------------
def _dense(G):
    return {k: to_numpy(v).astype(np.float64) for k, v in G.items()}


def _gap(a, b):
    """max |a − b| / max |b| over every key (the difference where b is all zero)."""
    diff = max(float(np.max(np.abs(a[k] - b[k]), initial=0.0)) for k in b)
    scale = max(float(np.max(np.abs(b[k]), initial=0.0)) for k in b)
    return diff / scale if scale > 0 else diff


class _Path(NamedTuple):
    states: list  # your state before each step
    s: list  # (B, n) s_{t-1} before each step, by minirtrl's cell
    signs: list  # the host signs each step got
    after: list  # your dense estimate after each step


def _trajectory(yours, cell, params, xs, s0):
    """Your estimator over the sequence with signs from ``default_rng(0)``, as
    ``sequence_gradient`` draws them (so the same signs reach minirtrl's method)."""
    rng, state, s = np.random.default_rng(0), yours.start(), s0
    path = _Path([], [], [], [])
    for t in range(xs.shape[0]):
        signs = host_signs(rng, yours.sign_shapes)
        path.states.append(state)
        path.s.append(s)
        path.signs.append(signs)
        state = yours.step(state, t, signs)
        s, _ = cell.step(params, s, xs[t], xp=np)
        path.after.append(_dense(yours.influence(state)))
    return path


def _our_start(cell, method, rank, loss, reduction, s0, G0, start, rtol):
    """``(Online, OnlineState)`` of minirtrl's method at your start, or (None, why not)."""
    if method is None:
        return None, "no method given (method=)"
    algo = online(method, cell, rank, loss=loss, reduction=reduction)
    if start is None:
        start = algo.init(s0.shape[0])
        start = OnlineState(s0, start.est)
    state = algo.start(start.s, start.est)
    gap = _gap(_dense(algo.influence(state)), G0)
    if gap > rtol or not np.allclose(to_numpy(state.s), s0, rtol=rtol, atol=0.0):
        return None, (f"minirtrl's start differs from yours (relative {gap:.2g}): pass start=, "
                      "an OnlineState of your start (algo.start)")
    return (algo, state), ""


def _expectation(yours, cell, params, xs, path, rtol):
    P = sum(math.prod(shape[1:]) for shape in yours.sign_shapes.values())
    if 2**P > MAX_PATTERNS:
        return Check("expectation", None, f"2^{P} sign patterns per step: more than 2^16")
    worst, at = 0.0, 0
    for t, state in enumerate(path.states):
        before = _dense(yours.influence(state))
        mean, _ = expected_of(lambda signs, t=t, state=state: yours.influence(
            yours.step(state, t, signs)), yours.sign_shapes, xs.shape[1])
        if _gap(_dense(yours.influence(state)), before) > 0:
            return Check("expectation", False, f"step {t + 1} changed the state it was given")
        exact, _ = exact_step(cell, params, path.s[t], before, xs[t])
        gap = _gap(mean, _dense(exact))
        worst, at = max((worst, at), (gap, t + 1))
    if P == 0:
        same, differs = "your step is exact RTRL's", "your step differs from exact RTRL's"
    else:
        same = f"the mean of your step over its 2^{P} sign patterns equals exact RTRL's step"
        differs = same.replace("equals", "differs from")
    if worst > rtol:
        return Check("expectation", False, f"{differs} by {worst:.2g} (relative, worst at "
                     f"step {at})")
    return Check("expectation", True, f"{same} from your estimate at each of "
                 f"{len(path.states)} steps (largest relative difference {worst:.1e})")


def _same_signs(yours, ours, why_not, params, xs, path, rtol, wanted, zero_start):
    if not wanted:
        return Check("same signs", None, "turned off (same_signs=False)")
    if ours is None:
        return Check("same signs", None, why_not)
    algo, state = ours
    shapes = algo.sign_shapes(xs.shape[1])
    if {k: tuple(v) for k, v in yours.sign_shapes.items()} != shapes:
        return Check("same signs", None, f"your sign shapes {yours.sign_shapes} are not "
                     f"minirtrl's {algo.method} {shapes}")
    for t, signs in enumerate(path.signs):
        state, _, _ = advance(algo, params, state, xs[t], None, None, signs, xp=np)
        gap = _gap(path.after[t], _dense(algo.influence(state)))
        if gap > rtol:
            hint = (" (from a zero start: does your first step use its signs? see the "
                    "zero-start conventions)") if t == 1 and zero_start else ""
            return Check("same signs", False, f"your estimate differs from minirtrl's "
                         f"{algo.method} with the same signs by {gap:.2g} (relative) after "
                         f"step {t + 1}{hint}")
    return Check("same signs", True, f"equal to minirtrl's {algo.method} with the same signs "
                 f"over {len(path.signs)} steps (within {rtol:g})")


def _unbiased(gradients, exact, p, rtol, ys, yours):
    if not gradients:
        missing = "ys" if ys is None else "gradient"
        return Check("unbiased", None, f"no {missing} given")
    table, N, M = _z_scores(gradients.__getitem__, exact, list(gradients), rtol)
    bound = z_threshold(M, p)
    z = max(float(np.max(np.abs(v), initial=0.0)) for v in table.values())
    runs = {k: np.stack([to_numpy(g[k]).astype(np.float64) for g in gradients.values()])
            for k in exact}
    if M == 0:
        gap = _gap({k: v[0] for k, v in runs.items()}, _dense(exact))
        verdict = "equals" if z == 0 else f"differs by {gap:.2g} (relative) from"
        return Check("unbiased", z == 0, f"your gradient does not vary over {N} seeds and "
                     f"{verdict} the exact gradient (tolerance {rtol:g})")
    sd = math.sqrt(np.mean(np.concatenate([v.std(axis=0, ddof=1).ravel() for v in
                                           runs.values()]) ** 2))
    size = math.sqrt(np.mean(np.concatenate([to_numpy(v).ravel() for v in exact.values()])
                             ** 2))
    seen = (bound + _normal_quantile(0.9)) * sd / math.sqrt(N) / size
    detail = (f"largest |z| {z:.2f} of {M} varying entries, bound {bound:.2f} ({N} seeds); "
              f"an entry's bias is found (power 0.9) above {seen:.1%} of the gradient's rms "
              "entry")
    return Check("unbiased", z <= bound, detail)


def _noise(gradients, exact, ours, why_not, cell, params, xs, ys, mask, p, yours):
    if not gradients:
        return Check("noise", None, "needs gradient and ys")
    if ours is None:
        return Check("noise", None, why_not)
    if not yours.sign_shapes:
        return Check("noise", None, "your estimator is deterministic")
    algo, start = ours
    seeds = list(gradients)

    def mine(seed):
        return sequence_gradient(algo.method, cell, params, xs, ys, mask, seed=seed,
                                 rank=algo.rank if algo.method in ("ok", "kf-avg") else None,
                                 loss=algo.readout.loss, reduction=algo.readout.reduction,
                                 start=start)[1]

    result = compare_noise(gradients.__getitem__, mine, exact, seeds)
    bound = z_threshold(1, p)
    detail = (f"E‖ĝ−g‖²/‖g‖² {result.yours:.3g} ± {result.yours_se:.2g}, minirtrl's "
              f"{algo.method} {result.ours:.3g} ± {result.ours_se:.2g}: ratio "
              f"{result.ratio:.2f} ± {result.ratio_se:.2f} (z {result.z:+.1f}, bound "
              f"{bound:.2f}, {result.seeds} seeds each)")
    return Check("noise", abs(result.z) <= bound, detail)


def _sampler(yours, p):
    if yours.sampler is None:
        return Check("sampler", None, "no sampler given")
    result = check_signs(yours.sampler, p=p)
    if not result.ok:
        return Check("sampler", False, result.problem)
    return Check("sampler", True, f"{result.draws} draws of {result.entries} signs: fair and "
                 f"independent (largest |z| {max(result.mean_z, result.pair_z):.2f}, bound "
                 f"{result.bound:.2f})")


__all__ = ["Check", "Estimator", "Report", "check"]
