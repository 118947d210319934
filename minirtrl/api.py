"""The public entry points ``sequence_gradient`` and ``exact_influence``.

Both find the array namespace from their arguments (array type in = array type out),
check every argument with an error that names it, and then run a method over a
sequence from the zero state with the parameters held fixed.
"""

import numpy as np

from . import _checks, bptt, readout
from ._compat import array_namespace, get_device
from .cells import Cell
from .methods import METHODS, check_method, check_rank, influence_method
from .rng import draw_signs


# ---- argument checks --------------------------------------------------------------
def _namespace(name, arrays, xp=None):
    if any(a is None for a in arrays):
        raise TypeError(f"{name} is required (an array), not None")
    try:
        found = array_namespace(*arrays)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    if xp is not None and found is not xp:
        raise TypeError(f"{name} comes from {found.__name__}, but params from {xp.__name__}")
    return found


def check_params(cell, params):
    """Check keys, shapes and dtypes of ``params``; return its namespace."""
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a minirtrl cell such as minirtrl.RHN, not {type(cell).__name__}")
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, not {type(params).__name__}")
    expected = cell.shapes()
    if set(params) != set(expected):
        raise ValueError(f"params must have keys {sorted(expected)}, not {sorted(params)}")
    xp = _namespace("params", list(params.values()))
    dtype = params["V"].dtype
    for key, shape in expected.items():
        if tuple(params[key].shape) != shape:
            raise ValueError(f"params[{key!r}] must have shape {shape}, not {tuple(params[key].shape)}")
        if params[key].dtype != dtype or not xp.isdtype(dtype, "real floating"):
            raise TypeError(f"params[{key!r}] must share one real floating dtype with params['V']")
    return xp


def check_sequence(cell, params, xs, ys=None, mask=None):
    """Check ``xs``, ``ys``, ``mask`` against ``cell``; return them in the params' dtype."""
    xp = check_params(cell, params)
    dtype = params["V"].dtype
    _namespace("xs", [xs], xp)
    if xs.ndim != 3 or xs.shape[2] != cell.n_in or xs.shape[0] < 1 or xs.shape[1] < 1:
        raise ValueError(f"xs must have shape (T, B, {cell.n_in}) with T, B >= 1, not {tuple(xs.shape)}")
    if xp.isdtype(xs.dtype, "bool") or xp.isdtype(xs.dtype, "complex floating"):
        raise TypeError(f"xs must be real-valued, not {xs.dtype}")
    xs = xp.astype(xs, dtype)
    T, B = xs.shape[0], xs.shape[1]
    if ys is None:
        return xp, xs, None, None
    _namespace("ys", [ys], xp)
    if tuple(ys.shape) != (T, B):
        raise ValueError(f"ys must have shape (T, B) = {(T, B)}, not {tuple(ys.shape)}")
    if not xp.isdtype(ys.dtype, "integral"):
        raise TypeError(f"ys must be an integer array, not {ys.dtype}")
    if bool(xp.any(ys < 0)) or bool(xp.any(ys >= cell.n_out)):
        raise ValueError(f"ys must hold class indices in [0, {cell.n_out}), found values outside")
    ys = xp.astype(ys, xp.int64)  # a narrow integer type could not hold every class index
    if mask is None:
        mask = xp.ones((T, B), dtype=dtype, device=get_device(xs))
    else:
        _namespace("mask", [mask], xp)
        if tuple(mask.shape) != (T, B):
            raise ValueError(f"mask must have shape (T, B) = {(T, B)}, not {tuple(mask.shape)}")
        mask = xp.astype(mask, dtype)
        if bool(xp.any((mask != 0) & (mask != 1))):
            raise ValueError("mask must hold only 0 and 1")
    return xp, xs, ys, mask


# ---- running a method over a sequence ----------------------------------------------
def influence_step(module, cell, params, s, state, x, y, mask, noise, *, xp):
    """One online step of an influence method (the body of every RTRL-family loop).

    ``s`` (B, n) and ``state`` are s_{t-1} and the method's estimate of G_{t-1}; ``x``
    (B, n_in), ``y`` (B,) int64, ``mask`` (B,), ``noise`` the step's signs. Returns
    ``(s_t, state_t, loss_t (B,), grads)`` with ``grads`` = c_t·G_t per block plus the
    exact readout gradient ``"V"``, summed over the batch.
    """
    s, cache = cell.step(params, s, x, xp=xp)
    state = module.update(cell, params, state, cache, noise, xp=xp)
    loss, dV, c = readout.loss_and_grad(params["V"], s, y, mask, xp=xp)
    grads = module.grads(cell, state, c, xp=xp)
    grads["V"] = dV
    return s, state, loss, grads


def run_influence(method, cell, params, xs, ys=None, mask=None, *, seed=0, rank=1, xp):
    """Run an influence method over a sequence; return ``(loss (B,), grads, state)``.

    Arguments are assumed checked. With ``ys=None`` only the influence is computed
    (``loss`` and ``grads`` are None).
    """
    module = influence_method(method)
    T, B = xs.shape[0], xs.shape[1]
    dtype, device = params["V"].dtype, get_device(xs)
    rng = np.random.default_rng(seed)
    shapes = module.noise_shapes(cell, B, rank)
    state = module.init(cell, B, rank, xp=xp, dtype=dtype, device=device)
    s = xp.zeros((B, cell.n_hidden), dtype=dtype, device=device)
    loss, grads = None, None
    for t in range(T):
        noise = draw_signs(rng, shapes, xp=xp, dtype=dtype, device=device)
        if ys is None:  # influence only
            s, cache = cell.step(params, s, xs[t, ...], xp=xp)
            state = module.update(cell, params, state, cache, noise, xp=xp)
            continue
        s, state, l_t, g = influence_step(
            module, cell, params, s, state, xs[t, ...], ys[t, :], mask[t, :], noise, xp=xp
        )
        loss = l_t if loss is None else loss + l_t
        grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
    return loss, grads, state


def sequence_gradient(method, cell, params, xs, ys, mask=None, *, seed=0, rank=None, truncation=None):
    """Loss and gradient (or unbiased gradient estimate) of a whole sequence.

    Parameters
    ----------
    method : one of ``"bptt", "rtrl", "uoro", "kf", "ok", "kf-avg"``.
    cell : a cell (``RHN``); params : dict of arrays with the keys of ``cell.shapes()``.
    xs : (T, B, n_in) real; ys : (T, B) integers in [0, n_out); mask : (T, B) 0/1 or None.
    seed : seeds the random signs of the estimators (ignored by exact methods).
    rank : r for ``ok`` and ``kf-avg`` (default 1); an error for the other methods.
    truncation : TBPTT window for ``bptt`` (default: the whole sequence).

    Returns
    -------
    loss : 0-d array, ``Σ_t Σ_b mask·loss_t`` in nats.
    grads : dict with the keys of ``params``: exact for ``rtrl`` and untruncated ``bptt``,
        one unbiased random estimate (given ``seed``) for the others.
    """
    check_method(method)
    if ys is None:
        raise TypeError("ys is required: the (T, B) integer targets of the sequence")
    seed = _checks.seed(seed)
    r = check_rank(method, rank)
    if truncation is not None:
        if method != "bptt":
            raise ValueError(f"truncation applies only to method 'bptt', not {method!r}")
        truncation = _checks.integer("truncation", truncation, 1, type_error=ValueError)
    xp, xs, ys, mask = check_sequence(cell, params, xs, ys, mask)
    if method == "bptt":
        loss, grads = bptt.gradient(cell, params, xs, ys, mask, xp=xp, truncation=truncation)
    else:
        loss, grads, _ = run_influence(method, cell, params, xs, ys, mask, seed=seed, rank=r, xp=xp)
    return xp.sum(loss), grads


def exact_influence(cell, params, xs):
    """``{"W1": G^1, ...}``, each (B, n, m_l, k_l): ds_T/dW_l after the last step of ``xs``."""
    xp, xs, _, _ = check_sequence(cell, params, xs)
    _, _, state = run_influence("rtrl", cell, params, xs, xp=xp)
    return influence_method("rtrl").influence(cell, state, xp=xp)


__all__ = ["METHODS", "sequence_gradient", "exact_influence"]
