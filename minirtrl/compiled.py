"""Compiled steps on JAX: the library's own pure functions under ``jax.jit`` and ``jax.lax.scan``.

Nothing here is a second implementation: each wrapper calls the functions every backend runs
(``methods.advance``, ``adam_step``, ``clip_by_norm``) on arrays of ``jax.numpy``, and JAX
traces them once and compiles the whole step (Bradbury et al. 2018, JAX). JAX is imported when
a wrapper is built, never at import; the algorithm modules have no JAX import and no JAX
branch. The argument checks of ``Online.step`` read values, so they stay outside (run the
eager ``Online.step`` once to check your arrays); the signs stay drawn on the host
(``Online.draw_signs``, ``methods.draw_sign_steps``), so one seed gives the same signs on
every backend and a compiled run equals an eager one to roundoff (XLA's products are not
OpenBLAS's)::

    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)       # for float64
    algo = minirtrl.online("kf", cell)
    step = compiled.online_step(algo)                # jitted; the state is donated
    state = algo.init(B, xp=jnp)
    for t in range(T):
        signs = algo.draw_signs(rng, B, dtype=np.float64)    # host arrays: the call moves
        state, loss_t, grads_t = step(params, state, xs[t], ys[t], mask[t], signs)

Pass the signs as host NumPy arrays of the parameters' dtype: the compiled call moves them
with its other arguments, which costs less than a ``jnp.asarray`` per array (measured: 0.11
against 0.26 ms per kf step at n = 32, batch 1).

Notation: ``algo`` an ``Online`` (``minirtrl.online``); ``state`` an ``OnlineState``;
``signs`` one step's ``{name: ±1 array}`` (``Online.sign_shapes``), or K steps' stacked on a
leading axis ``{name: (K, *shape)}`` for the scanned forms.
"""

from typing import NamedTuple

import numpy as np

from ._compat import array_namespace
from .adam import adam_step, clip_by_norm
from .methods import Online, advance, draw_sign_steps, online


def _jax():
    import jax  # only when a compiled step is built: jax is an optional extra

    return jax


def online_step(algo, *, donate=True):
    """``Online.step`` without its checks, compiled: ``f(params, state, x, y, mask, signs)
    -> (state, loss_t (B,), grads_t)``.

    ``state`` is donated (its buffers are reused for the new state: do not read the old one
    after the call) unless ``donate=False``. ``y`` None computes the influence alone. Shapes
    and dtypes fixed per compilation: a new B or dtype compiles again.
    """
    jax = _jax()
    _online(algo)

    def step(params, state, x, y, mask, signs):
        return advance(algo, params, state, x, y, mask, signs, xp=array_namespace(x))

    return jax.jit(step, donate_argnums=(1,) if donate else ())


def scan_steps(algo, *, donate=True):
    """K online steps in one ``lax.scan``: ``f(params, state, xs, ys, mask, signs) ->
    (state, loss (B,), grads)``, loss and grads summed over the K steps.

    ``xs`` (K, B, n_in), ``ys`` (K, B), ``mask`` (K, B), ``signs`` ``{name: (K, *shape)}``
    (``methods.draw_sign_steps``). The parameters are fixed over the K steps (a training
    window of K characters, or a whole sequence). One compilation per K.
    """
    jax = _jax()
    _online(algo)

    def run(params, state, xs, ys, mask, signs):
        xp = array_namespace(xs)

        def body(carry, inputs):
            state, loss, grads = carry
            x, y, m, sg = inputs
            state, loss_t, grads_t = advance(algo, params, state, x, y, m, sg, xp=xp)
            return (state, loss + loss_t, {k: grads[k] + grads_t[k] for k in grads}), None

        zero_loss = xp.zeros((xs.shape[1],), dtype=params["V"].dtype)
        zero_grads = {k: xp.zeros_like(p) for k, p in params.items()}
        (state, loss, grads), _ = jax.lax.scan(body, (state, zero_loss, zero_grads),
                                               (xs, ys, mask, signs))
        return state, loss, grads

    return jax.jit(run, donate_argnums=(1,) if donate else ())


def sequence_gradient(method, cell, params, xs, ys, mask=None, *, seed=0, rank=None,
                      loss="softmax", reduction="sum"):
    """``minirtrl.sequence_gradient`` of an influence method through ``scan_steps``:
    ``(loss, grads)``, the same signs from ``seed`` (drawn on the host at once), equal to
    the eager result to roundoff. ``params``, ``xs``, ``ys``, ``mask`` are JAX arrays; the
    arguments are not checked (call the eager one once for that). Compiles on every call:
    keep ``scan_steps(algo)`` for repeated use.
    """
    algo = online(method, cell, rank, loss=loss, reduction=reduction)
    xp = array_namespace(xs)
    T, B = xs.shape[0], xs.shape[1]
    dtype = params["V"].dtype
    if mask is None:
        mask = xp.ones((T, B), dtype=dtype)
    signs = draw_sign_steps(np.random.default_rng(seed), algo.sign_shapes(B), T, xp=np,
                            dtype=dtype)  # host arrays (a JAX dtype is NumPy's): the call moves
    state = algo.init(B, xp=xp, dtype=dtype)
    _, total, grads = scan_steps(algo)(params, state, xs, ys, mask, signs)
    return xp.sum(total), grads


def train_step(algo, *, lr, clip, scale=1.0, report=None):
    """One training step compiled: the online step, the gradients times ``scale`` (e.g. 1/B
    for a batch mean), the recurrent ones clipped to a joint norm ``clip``, one Adam step.

    ``f(params, adam, state, x, y, mask, signs) -> (params, adam, state, loss_t, norm,
    extra)``: ``adam`` an ``AdamState`` (its step count comes back as a 0-d array),
    ``norm`` the recurrent gradient's norm before clipping, ``extra`` = ``report(loss_t,
    grads, params, norm)`` computed inside the compiled step (None without ``report``):
    what a caller reads back on the host, in one transfer, e.g. to check for divergence.
    Nothing is donated (a caller may keep the state before the step).
    """
    jax = _jax()
    _online(algo)
    keys = algo.cell.blocks

    def step(params, adam, state, x, y, mask, signs):
        state, loss_t, grads = advance(algo, params, state, x, y, mask, signs,
                                       xp=array_namespace(x))
        grads = {k: g * scale for k, g in grads.items()}
        grads, norm = clip_by_norm(grads, clip, keys)
        params, adam = adam_step(params, grads, adam, lr=lr)
        extra = None if report is None else report(loss_t, grads, params, norm)
        return params, adam, state, loss_t, norm, extra

    return jax.jit(step)


class Spread(NamedTuple):
    """B streams spread over devices: the batch axis of every batched array split over a
    one-axis mesh ``("batch",)`` of automatic sharding (``jax.sharding``), the parameters
    replicated. A compiled step on such arrays runs data-parallel: each device steps its
    streams, and the gradients, summed over the batch, take one all-reduce."""

    mesh: object  # jax.sharding.Mesh over the devices, axis "batch" (AxisType.Auto)

    @property
    def count(self):
        """The number of devices (B must be a multiple of it)."""
        return self.mesh.devices.size

    def split(self, tree, axis=0):
        """Every array of ``tree`` with its axis ``axis`` (the batch) split over the devices."""
        return self._put(tree, (None,) * axis + ("batch",))

    def replicate(self, tree):
        """Every array of ``tree`` whole on every device."""
        return self._put(tree, ())

    def _put(self, tree, spec):
        jax = _jax()
        from jax.sharding import NamedSharding, PartitionSpec

        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec(*spec)))


def spread(devices=None):
    """A ``Spread`` over ``devices`` (default: all of JAX's, ``jax.devices()``). On several
    hosts, call ``jax.distributed.initialize()`` first: ``jax.devices()`` then lists every
    host's devices."""
    jax = _jax()
    from jax.sharding import AxisType, Mesh

    devices = jax.devices() if devices is None else list(devices)
    return Spread(Mesh(np.array(devices), ("batch",), axis_types=(AxisType.Auto,)))


def jit(fn, **options):
    """``jax.jit(fn, **options)``, for callers that compose their own step from the
    library's pure functions (the drivers' training step)."""
    return _jax().jit(fn, **options)


def _online(algo):
    if not isinstance(algo, Online):
        raise TypeError(f"algo must be an Online (minirtrl.online), not {type(algo).__name__}")


__all__ = ["Spread", "jit", "online_step", "scan_steps", "sequence_gradient", "spread",
           "train_step"]
