"""Adam and gradient-norm clipping as small pure functions on parameter dicts.

Nothing is updated in place: every function returns new dicts. Each takes arrays and works in
their library (their namespace is found from them). Arguments are checked first (``_checks``):
float32 or float64 arrays of one library, finite hyperparameters in range; an error names the
argument.
"""

from typing import NamedTuple

from . import _checks
from ._compat import array_namespace


class AdamState(NamedTuple):
    step: int  # number of updates taken so far
    m: dict  # first moments, like params
    v: dict  # second moments, like params


def adam_init(params):
    """Zero moments for ``params``, like them (library, dtype, device); two dicts, no array
    shared between them."""
    xp = _checks.arrays("params", params)
    return AdamState(0, {k: xp.zeros_like(p) for k, p in params.items()},
                     {k: xp.zeros_like(p) for k, p in params.items()})


def adam_step(params, grads, state, *, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam update (Kingma & Ba 2015, Algorithm 1); returns ``(params, state)``.

    ``θ ← θ - lr · m̂ / (sqrt(v̂) + eps)`` with bias-corrected moments ``m̂ = m/(1-β1^t)``,
    ``v̂ = v/(1-β2^t)``. Keys of ``grads`` must be those of ``params``; ``lr`` and ``eps`` are
    finite and > 0, ``beta1`` and ``beta2`` in [0, 1) (a 1 would divide by 1 - β^t = 0).
    """
    xp = _checks.arrays("params", params)
    _checks.arrays("grads", grads, xp)
    if set(grads) != set(params):
        raise ValueError(f"grads must have the keys of params, {sorted(params)}, not "
                         f"{sorted(grads)}")
    if not isinstance(state, AdamState):
        raise TypeError(f"state must be an AdamState (adam_init), not {type(state).__name__}")
    lr, eps = _checks.positive_real("lr", lr), _checks.positive_real("eps", eps)
    beta1, beta2 = _checks.decay("beta1", beta1), _checks.decay("beta2", beta2)
    t = state.step + 1
    m = {k: beta1 * state.m[k] + (1.0 - beta1) * g for k, g in grads.items()}
    v = {k: beta2 * state.v[k] + (1.0 - beta2) * (g * g) for k, g in grads.items()}
    c1, c2 = 1.0 - beta1**t, 1.0 - beta2**t
    new = {k: p - lr * (m[k] / c1) / (xp.sqrt(v[k] / c2) + eps) for k, p in params.items()}
    return new, AdamState(t, m, v)


def global_norm(grads, keys):
    """The joint Euclidean norm of ``grads[k]`` for ``k`` in ``keys``, a 0-d array.

    ``keys`` is a sequence of names (a string is refused: ``TypeError`` naming ``keys``).
    Overflow-safe: float64 gradients are divided by their largest magnitude ``m`` before
    they are squared, ``m · sqrt(Σ (g/m)²)``; float32 ones are squared in float64, where
    the square of any of their finite values is finite. So a float32 gradient of entries
    near 1e19 (whose squares overflow float32) has its true norm; a zero gradient has norm
    0 and a non-finite one a non-finite norm, without a warning (for the caller's guard).
    One pass over each gradient (two for float64).
    """
    keys, xp = _named(grads, keys)
    dtype = grads[keys[0]].dtype
    if dtype != xp.float64:  # squares of finite float32 values are finite in float64
        total = None
        for k in keys:
            g = xp.reshape(xp.astype(grads[k], xp.float64), (-1,))
            total = xp.vecdot(g, g) if total is None else total + xp.vecdot(g, g)
        return xp.astype(xp.sqrt(total), dtype)
    m = None  # the largest |g| over all keys, 0-d
    for k in keys:
        mk = xp.max(xp.abs(grads[k]))
        m = mk if m is None else xp.maximum(m, mk)
    scale = xp.where(xp.isfinite(m) & (m > 0), m, xp.ones_like(m))  # 1 for 0, inf, nan
    total = None
    for k in keys:
        g = xp.reshape(grads[k] / scale, (-1,))
        total = xp.vecdot(g, g) if total is None else total + xp.vecdot(g, g)
    return scale * xp.sqrt(total)


def clip_by_norm(grads, max_norm, keys):
    """Scale ``grads[k]`` (k in ``keys``) so their joint norm is at most ``max_norm``.

    ``max_norm`` must be a finite real number > 0 (``ValueError``/``TypeError`` naming it).
    Returns ``(clipped grads, norm before clipping)``; other keys pass through unchanged.
    Branch-free (no host sync): the scale is ``min(1, max_norm / norm)``.
    """
    max_norm = _checks.positive_real("max_norm", max_norm)
    keys, _ = _named(grads, keys)
    norm = global_norm(grads, keys)
    xp = array_namespace(norm)
    scale = max_norm / xp.maximum(norm, xp.full_like(norm, max_norm))
    return {k: (g * scale if k in keys else g) for k, g in grads.items()}, norm


def _named(grads, keys):
    """``(keys as a tuple, namespace)``: ``keys`` must name arrays of ``grads``, float32 or
    float64 of one library (errors name ``grads`` or ``keys``)."""
    if not isinstance(grads, dict):
        raise TypeError(f"grads must be a dict of arrays, not {type(grads).__name__}")
    keys = _checks.names("keys", keys, grads)
    return keys, _checks.arrays("grads", {k: grads[k] for k in keys})
