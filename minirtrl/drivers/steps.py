"""One optimiser step of the training loop (``loop``): the step's characters packed into one
transfer, the gradient of each method (``online_step``, ``window_step``, ``every_step``), the
exact RTRL shadow of ``--align`` (``shadow_step``) and the update (``apply_step``: batch-mean
gradient, clip, Adam, checked for divergence); on JAX the gradient and the update compiled as
one program (``fused_step``).
"""

import math
from typing import NamedTuple

import numpy as np

from .. import bptt
from .._compat import to_numpy
from ..adam import AdamState, adam_step, clip_by_norm
from ..methods import influence_step
from . import align
from .checkpoint import Run
from .safety import Diverged

#: a batch-mean loss above this many bits per character is divergence: the right character
#: was given a probability below 2^-100, which no model being trained gets to
MAX_BITS = 100.0


# ---- one optimiser step -------------------------------------------------------------------
class Setup(NamedTuple):
    """What does not change during a run: the model, where it lives, the method."""

    cell: object
    xp: object
    device: object
    dtype: object
    module: object  # influence method module; None for bptt
    sign_shapes: dict
    K: int  # characters per optimiser step
    B: int
    lr: float
    clip: float
    every_step: bool = False  # bptt --every-step
    align: int = 0  # --align N: an align record every N steps (0: no shadow)
    fused: bool = False  # JAX: the step and the update compiled as one (``fused_step``)
    spread: object = None  # --shard: a ``compiled.Spread`` of the streams over devices


def pack(batches, signs=None):
    """Host batches of K characters and a step's signs -> one (K, B, width) float64 array,
    rows ``[x | y | mask | keep | signs]`` (the step's one transfer to the device)."""
    rows = np.stack([
        np.concatenate([b.x, b.y[:, None], b.mask[:, None], b.keep[:, None]], axis=1)
        for b in batches
    ])
    if signs:
        B = rows.shape[1]
        flat = np.concatenate([v.reshape(B, -1) for v in signs.values()], axis=1)
        rows = np.concatenate([rows, np.broadcast_to(flat, (rows.shape[0], *flat.shape))],
                              axis=2)
    return rows


def _unpack(packed, n_in, xp):
    x = packed[..., :n_in]
    y = xp.astype(packed[..., n_in], xp.int64)
    return x, y, packed[..., n_in + 1], packed[..., n_in + 2]


def _signs(packed, n_in, shapes, xp):
    """The step's sign arrays from the columns after ``[x | y | mask | keep]``."""
    out, start = {}, n_in + 3
    for name, shape in shapes.items():
        size = math.prod(shape[1:])
        out[name] = xp.reshape(packed[:, start:start + size], shape)
        start += size
    return out


def online_step(setup, now, packed, resets=True):
    """One character of the RTRL family: ``(loss (B,), grads, est, s)``, not yet applied.

    ``resets`` is False when the host knows no stream starts a sequence here (one pass less).
    """
    cell, xp = setup.cell, setup.xp
    row = packed[0, ...]
    x, y, mask, keep = _unpack(row, cell.n_in, xp)
    signs = _signs(row, cell.n_in, setup.sign_shapes, xp)
    s, est, loss, grads = influence_step(setup.module, cell, now.params, now.s, now.est, x, y,
                                         mask, signs, xp=xp, keep=keep if resets else None)
    return loss, grads, est, s


def window_step(setup, now, packed, resets=True):
    """One bptt window of K characters: ``(loss (B,), grads, None, s)``."""
    cell, xp = setup.cell, setup.xp
    x, y, mask, keep = _unpack(packed, cell.n_in, xp)
    keep = keep if resets else None
    loss, grads, s = bptt.window_gradient(cell, now.params, now.s, x, y, mask, xp=xp, keep=keep)
    return loss, grads, None, s


def every_step(setup, now, packed, resets=True):
    """One character of every-step TBPTT: ``(loss (B,), grads, window, s)``."""
    cell, xp = setup.cell, setup.xp
    x, y, mask, keep = _unpack(packed[0, ...], cell.n_in, xp)
    window, loss, grads, s = bptt.every_step(cell, now.params, now.est, x, y, mask, xp=xp,
                                             keep=keep if resets else None)
    return loss, grads, window, s


def shadow_step(setup, now, packed, resets, grads):
    """The ``align.Shadow`` after this step: exact RTRL over its characters from the
    learner's state before the step."""
    cell, xp = setup.cell, setup.xp
    x, y, mask, keep = _unpack(packed, cell.n_in, xp)
    return align.step(now.shadow, cell, now.params, now.s, x, y, mask, keep if resets else None,
                      grads, xp=xp)


def apply_step(setup, now, loss, grads, est, s, shadow=None):
    """Batch-mean gradient, clip, Adam, guard: ``(new Run, batch-mean bits per character)``.

    ``Diverged`` (nothing committed) when the loss, a gradient or a new parameter is not
    finite, or the loss is above ``MAX_BITS`` bits per character.
    """
    params, adam, probe = update(setup, now, loss, grads)
    return accept(setup, now, params, adam, est, s, shadow, probe)


def update(setup, now, loss, grads):
    """The update's arrays, no host read (JAX can trace it): ``(params, adam, probe)``, the
    batch-mean gradient clipped and one Adam step; ``probe`` (4,) = the batch-mean loss, the
    recurrent gradient's norm, the sums of the readout gradient and of the new parameters."""
    xp, B = setup.xp, setup.B
    grads = {k: g / B for k, g in grads.items()}
    grads, norm = clip_by_norm(grads, setup.clip, setup.cell.blocks)
    params, adam = adam_step(now.params, grads, now.adam, lr=setup.lr)
    # an array is finite iff its sum is (up to an overflow of the sum, which would stop a
    # run that was about to diverge anyway)
    probe = xp.stack([xp.sum(loss) / B, norm, xp.sum(grads["V"]),
                      sum(xp.sum(p) for p in params.values())])
    return params, adam, probe


def accept(setup, now, params, adam, est, s, shadow, probe):
    """The step's one host read (``probe``) and the divergence guard: ``(Run, bits)``."""
    mean_loss, norm_w, sum_v, sum_p = (float(v) for v in to_numpy(probe))  # the one host read
    step, bits = now.step + 1, mean_loss / math.log(2.0) / setup.K
    if not all(map(math.isfinite, (mean_loss, norm_w, sum_v, sum_p))):
        raise Diverged(
            f"diverged at step {step}: non-finite loss, gradient or parameters (loss {mean_loss}, "
            f"recurrent gradient norm {norm_w}, readout gradient sum {sum_v}, parameter sum "
            f"{sum_p}); stopped without saving this state", step)
    if bits > MAX_BITS:
        raise Diverged(
            f"diverged at step {step}: a loss of {bits:.4g} bits per character, over "
            f"{MAX_BITS:g} (the right character given a probability below 2^-100); stopped "
            "without saving this state", step)
    return Run(step, params, adam, est, s, shadow), bits


# ---- the compiled step (JAX) --------------------------------------------------------------------
def fused_step(setup, step_fn):
    """``step_fn`` and ``update`` compiled as one JAX program (``compiled.jit``):
    ``f(now, packed, resets) -> (Run, bits)``, ``apply_step(*step_fn(...))`` in one
    dispatch, the host read and the guard outside. Not for ``--align`` or ``--every-step``
    (their Python-side state stays eager). Nothing is donated: the loop keeps the run before
    a step to undo it on an interrupt."""
    from .. import compiled

    def pure(params, m, v, t, est, s, packed, resets):
        now = Run(0, params, AdamState(t, m, v), est, s)
        loss, grads, est, s = step_fn(setup, now, packed, resets)
        params, adam, probe = update(setup, now, loss, grads)
        return params, adam.m, adam.v, est, s, probe

    fn = compiled.jit(pure, static_argnames=("resets",))

    def step(now, packed, resets):
        params, m, v, est, s, probe = fn(now.params, now.adam.m, now.adam.v, now.adam.step,
                                         now.est, now.s, packed, resets=resets)
        return accept(setup, now, params, AdamState(now.adam.step + 1, m, v), est, s, None,
                      probe)

    return step
