"""Random numbers, drawn on the host and moved to the backend.

The array API standard has no random-number generator, so every draw is made with an
explicit ``numpy.random.Generator`` and then moved with ``xp.asarray``. One seed
therefore gives the same draws on NumPy, array-api-strict, PyTorch and CuPy, which is
what lets the stochastic estimators be compared across backends exactly.
(Named ``rng.py``, not ``random.py``, so it never shadows the standard library.)

A sign is ``-1`` where a uniform double ``rng.random()`` is below 0.5 and ``+1`` otherwise.
Doubles are drawn one 64-bit word each, in order, with nothing buffered between calls, so
the signs of T steps drawn at once (``draw_sign_steps``: one draw and one transfer per
key for the whole block) are exactly those of T calls of ``draw_signs``, one per step.
"""

import math

import numpy as np


def _host_signs(rng, size):
    """``size`` independent uniform ±1 float64 values on the host (1-D)."""
    return np.where(rng.random(size) < 0.5, -1.0, 1.0)


def host_signs(rng, shapes):
    """One step's signs on the host: ``{name: float64 ±1 NumPy array of that shape}``."""
    return {k: _host_signs(rng, math.prod(shape)).reshape(shape) for k, shape in shapes.items()}


def draw_signs(rng, shapes, *, xp, dtype, device=None):
    """One step's signs: one ±1 array per entry of ``shapes`` (name -> shape), in key order."""
    return {k: xp.asarray(v, dtype=dtype, device=device) for k, v in host_signs(rng, shapes).items()}


def draw_sign_steps(rng, shapes, steps, *, xp, dtype, device=None):
    """The signs of ``steps`` consecutive steps: ``{name: (steps, *shape)}`` arrays.

    Element ``[t]`` of each array is what the t-th of ``steps`` calls of ``draw_signs``
    would return; the whole block costs one host draw and one transfer per name.
    """
    sizes = [math.prod(shape) for shape in shapes.values()]
    draw = _host_signs(rng, steps * sum(sizes)).reshape(steps, sum(sizes))  # step-major
    out, start = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes):
        part = draw[:, start:start + size].reshape((steps, *shape))
        out[name] = xp.asarray(part, dtype=dtype, device=device)
        start += size
    return out
