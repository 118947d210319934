"""Adam and gradient-norm clipping as small pure functions on parameter dicts.

Nothing is updated in place: every function returns new dicts.
"""

from typing import NamedTuple


class AdamState(NamedTuple):
    step: int  # number of updates taken so far
    m: dict  # first moments, like params
    v: dict  # second moments, like params


def adam_init(params, *, xp):
    """Zero moments for ``params``."""
    zeros = {k: xp.zeros_like(p) for k, p in params.items()}
    return AdamState(0, zeros, dict(zeros))


def adam_step(params, grads, state, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, xp=None):
    """One Adam update (Kingma & Ba 2015, Algorithm 1); returns ``(params, state)``.

    ``θ ← θ - lr · m̂ / (sqrt(v̂) + eps)`` with bias-corrected moments ``m̂ = m/(1-β1^t)``,
    ``v̂ = v/(1-β2^t)``. Keys of ``grads`` must be those of ``params``.
    """
    t = state.step + 1
    m = {k: beta1 * state.m[k] + (1.0 - beta1) * g for k, g in grads.items()}
    v = {k: beta2 * state.v[k] + (1.0 - beta2) * (g * g) for k, g in grads.items()}
    c1, c2 = 1.0 - beta1**t, 1.0 - beta2**t
    if xp is None:
        from ._compat import array_namespace

        xp = array_namespace(*params.values())
    new = {k: p - lr * (m[k] / c1) / (xp.sqrt(v[k] / c2) + eps) for k, p in params.items()}
    return new, AdamState(t, m, v)


def global_norm(grads, keys, *, xp):
    """sqrt of the summed squares of ``grads[k]`` for ``k`` in ``keys`` (0-d array)."""
    return xp.sqrt(sum(xp.sum(grads[k] * grads[k]) for k in keys))


def clip_by_norm(grads, max_norm, keys, *, xp):
    """Scale ``grads[k]`` (k in ``keys``) so their joint norm is at most ``max_norm``.

    Returns ``(clipped grads, norm before clipping)``; other keys pass through unchanged.
    Branch-free (no host sync): the scale is ``min(1, max_norm / norm)``.
    """
    norm = global_norm(grads, keys, xp=xp)
    scale = max_norm / xp.maximum(norm, xp.full_like(norm, max_norm))
    return {k: (g * scale if k in keys else g) for k, g in grads.items()}, norm
