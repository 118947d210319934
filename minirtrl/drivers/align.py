"""``--align N``: exact RTRL run beside the learner, on the states it visits, and how well the
learner's recurrent gradient points where exact RTRL's does.

Every optimiser step the shadow runs exact RTRL (``rtrl``, eq. (9)) over the step's
characters from the state the learner entered the step with, with the learner's parameters
and inputs, and resets its influence where the streams restart. It compares the learner's
recurrent gradient g (every block but ``V``, concatenated, summed over the batch, before
clipping) with exact RTRL's g* of the same characters (for window ``bptt``: the sum of the
window's step gradients c_t · G_t, the influence carried from the streams' starts):

    align_cos = <g, g*> / (‖g‖ ‖g*‖)          align_rel = ‖g − g*‖ / ‖g*‖

and sums both until the record (``align`` in the log) every N steps gives their means over
the steps since the last record. A step whose exact gradient is zero (nothing to align with)
or whose figures are not finite is not counted. The influence and the sums are part of the
run (``Shadow``, in its checkpoints), so a resumed run logs the same figures.

For the online methods the shadow's step is the learner's own step of the state (the same
operations on the same arrays). Every-step TBPTT carries the last state of its window, run
again with the step's parameters; the shadow steps from the learner's state before the step
with the step's parameters, which differs from that window's by what the parameters moved
during the window.

Cost per step: exact RTRL, O(B n⁴) time and B·n·Σ_l m_l k_l memory (``memory``), and one
host read of four numbers.
"""

import math
from typing import NamedTuple

from .. import rtrl
from .._compat import to_numpy
from ..methods import influence_step


class Shadow(NamedTuple):
    """Exact RTRL beside the learner: its influence and the figures summed since the last
    record."""

    est: object  # rtrl.State: G^l per block, (B, n_state, m_l k_l)
    cos: float  # Σ align_cos over the steps counted
    rel: float  # Σ align_rel
    count: int  # steps counted since the last record


def start(cell, batch, *, xp, dtype, device):
    """The ``Shadow`` of ``batch`` streams that start from the zero influence."""
    return Shadow(rtrl.init(cell, batch, xp=xp, dtype=dtype, device=device), 0.0, 0.0, 0)


def step(shadow, cell, params, s, x, y, mask, keep, grads, *, xp):
    """``shadow`` after one optimiser step of K characters, its figures summed.

    ``s`` (B, n_state) the learner's state before the step; ``x`` (K, B, n_in), ``y``,
    ``mask``, ``keep`` (K, B) the step's characters (``keep`` None: no stream restarts);
    ``grads`` the learner's gradient of the step (``V`` is left out). Cost: K steps of exact
    RTRL and the comparison.
    """
    est, exact = shadow.est, None
    for t in range(x.shape[0]):
        s, est, _, g = influence_step(rtrl, cell, params, s, est, x[t, ...], y[t, ...],
                                      mask[t, ...], {}, xp=xp,
                                      keep=None if keep is None else keep[t, ...])
        exact = g if exact is None else {k: exact[k] + g[k] for k in cell.blocks}
    cos, rel = compare(grads, exact, cell.blocks, xp=xp)
    if cos is None:
        return shadow._replace(est=est)
    return Shadow(est, shadow.cos + cos, shadow.rel + rel, shadow.count + 1)


def compare(grads, exact, blocks, *, xp):
    """``(cosine, relative error)`` of ``grads`` against ``exact`` over ``blocks`` (their
    arrays concatenated), as Python floats; ``(None, None)`` where ``exact`` is zero or a
    figure is not finite. One host read."""
    sums = []
    for k in blocks:
        g, e = grads[k], exact[k]
        sums.append(xp.stack([xp.sum(g * e), xp.sum(g * g), xp.sum(e * e),
                              xp.sum((g - e) * (g - e))]))
    dot, gg, ee, dd = (float(v) for v in to_numpy(sum(sums)))
    if not ee > 0:
        return None, None
    cos = dot / math.sqrt(gg * ee) if gg > 0 else 0.0
    rel = math.sqrt(dd / ee)
    if not (math.isfinite(cos) and math.isfinite(rel)):
        return None, None
    return max(-1.0, min(1.0, cos)), rel


def figures(shadow):
    """``(record fields, shadow with its sums cleared)``: the means since the last record
    (None where no step was counted) and how many steps they average."""
    n = shadow.count
    fields = {"align_cos": shadow.cos / n if n else None,
              "align_rel": shadow.rel / n if n else None, "align_steps": n}
    return fields, shadow._replace(cos=0.0, rel=0.0, count=0)
