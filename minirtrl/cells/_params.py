"""Random parameter initialisation shared by the cells: N(0, scale²) drawn on the host."""

import numpy as np

from .. import _checks


def normal_params(shapes, seed, *, xp, dtype, device, init_scale, adjust=None):
    """``{name: array}`` with entries ~ N(0, init_scale²), drawn in the order of ``shapes``.

    ``xp``, ``dtype``, ``device`` as a cell's ``init`` takes them (``_checks.creation``);
    ``adjust(name, w)`` may change each host array ``w`` in place before it is moved (e.g.
    to set gate biases). Draws come from ``numpy.random.default_rng(seed)``, so a seed gives
    the same parameters on every backend. ``init_scale`` must be a finite number >= 0.
    """
    seed = _checks.seed(seed)
    init_scale = _checks.nonnegative_real("init_scale", init_scale)
    xp, dtype, device = _checks.creation(xp, dtype, device)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in shapes.items():
        w = rng.standard_normal(shape) * init_scale
        if adjust is not None:
            adjust(name, w)
        params[name] = xp.asarray(w, dtype=dtype, device=device)
    return params
