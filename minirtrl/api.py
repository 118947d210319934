"""The public entry points ``sequence_gradient`` and ``exact_influence``.

Both find the array namespace from their arguments (array type in = array type out),
check every argument with an error that names it (``minirtrl.arguments``), and then run a
method over a sequence from the zero state with the parameters held fixed: ``bptt``
(``minirtrl.bptt``) or the loop of the online step (``minirtrl.online``).
"""

import numpy as np

from . import _checks, bptt
from ._compat import get_device
from .arguments import check_sequence
from .methods import METHODS, RANKED, check_method, check_rank, influence_method
from .online import advance, online
from .rng import draw_sign_steps

#: steps whose signs are drawn and moved to the device at once
SIGN_BLOCK = 256


def run_influence(method, cell, params, xs, ys=None, mask=None, *, seed=0, rank=1, xp):
    """Run an influence method over a sequence; return ``(loss (B,), grads, est)``.

    The loop of ``Online.step`` from the zero state, with each step's signs those of
    ``Online.draw_signs`` from ``numpy.random.default_rng(seed)`` (drawn ``SIGN_BLOCK``
    steps at a time, which gives the same signs: ``rng.draw_sign_steps``). Arguments are assumed
    checked (the unchecked ``online.advance`` runs each step). With ``ys=None`` only the
    influence is computed (``loss`` and ``grads`` are None).
    """
    algo = online(method, cell, rank if method in RANKED else None)
    T, B = xs.shape[0], xs.shape[1]
    dtype, device = params["V"].dtype, get_device(xs)
    rng = np.random.default_rng(seed)
    shapes = algo.sign_shapes(B)
    state = algo.init(B, xp=xp, dtype=dtype, device=device)
    loss, grads = None, None
    for t in range(T):
        if t % SIGN_BLOCK == 0:  # the next steps' signs at once: one transfer per block
            block = draw_sign_steps(rng, shapes, min(SIGN_BLOCK, T - t), xp=xp, dtype=dtype,
                                    device=device)
        signs = {k: v[t % SIGN_BLOCK, ...] for k, v in block.items()}
        y, m = (None, None) if ys is None else (ys[t, :], mask[t, :])
        state, l_t, g = advance(algo, params, state, xs[t, ...], y, m, signs, xp=xp)
        if ys is not None:
            loss = l_t if loss is None else loss + l_t
            grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
    return loss, grads, state.est


def sequence_gradient(method, cell, params, xs, ys, mask=None, *, seed=0, rank=None, truncation=None):
    """Loss and gradient (or unbiased gradient estimate) of a whole sequence.

    Parameters
    ----------
    method : one of ``"bptt", "rtrl", "uoro", "kf", "ok", "kf-avg"``.
    cell : a cell (``RHN``, ``VanillaRNN``).
    params : dict of arrays with the keys of ``cell.shapes()``.
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
