"""Random numbers, drawn on the host and moved to the backend.

The array API standard has no random-number generator, so every draw is made with an
explicit ``numpy.random.Generator`` and then moved with ``xp.asarray``. One seed
therefore gives the same draws on NumPy, array-api-strict, PyTorch and CuPy, which is
what lets the stochastic estimators be compared across backends exactly.
(Named ``rng.py``, not ``random.py``, so it never shadows the standard library.)
"""

import numpy as np


def signs(rng, shape, *, xp, dtype, device=None):
    """Independent uniform ±1 entries of the given shape, as an ``xp`` array."""
    draw = rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
    return xp.asarray(draw, dtype=dtype, device=device)


def draw_signs(rng, shapes, *, xp, dtype, device=None):
    """One ±1 array per entry of ``shapes`` (a dict name -> shape), drawn in key order."""
    return {k: signs(rng, shp, xp=xp, dtype=dtype, device=device) for k, shp in shapes.items()}
