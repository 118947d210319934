"""Finite differences and array comparison: the oracles every other check rests on.

Everything here copies to NumPy float64 on the host, which is right for tests and wrong in
library code. Cost: ``numerical_gradient`` runs 2 forward passes per parameter entry.
"""

import numpy as np

from .. import readout
from .._compat import array_namespace, get_device, to_numpy


def sequence_loss(cell, params, xs, ys, mask=None, s0=None, *, loss="softmax",
                  reduction="sum"):
    """Forward pass only: ``Σ_t Σ_b mask·loss_t`` as a Python float (NumPy inputs).

    ``s0`` (B, n): the state before the first step (zeros when None); ``loss``,
    ``reduction``: the readout's loss (``minirtrl.online``).
    """
    head = readout.make(loss, reduction)
    xp = array_namespace(xs)
    s = xp.zeros((xs.shape[1], cell.n_state), dtype=xs.dtype) if s0 is None else s0
    total = 0.0
    for t in range(xs.shape[0]):
        s, _ = cell.step(params, s, xs[t, ...], xp=xp)
        w = xp.ones(xs.shape[1], dtype=xs.dtype) if mask is None else mask[t, :]
        total += float(xp.sum(head.value(params["V"], s, ys[t, ...], w, xp=xp)))
    return total


def numerical_jacobian(f, x, eps=1e-6):
    """Central differences of ``f`` (NumPy array -> NumPy array) at ``x``.

    Returns an array of shape ``f(x).shape + x.shape``.
    """
    x = np.array(x, dtype=np.float64)
    out = np.asarray(f(x))
    jac = np.zeros(out.shape + x.shape)
    for idx in np.ndindex(*x.shape):
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += eps
        xm[idx] -= eps
        jac[(...,) + idx] = (np.asarray(f(xp_)) - np.asarray(f(xm))) / (2 * eps)
    return jac


def numerical_gradient(cell, params, xs, ys, mask=None, eps=1e-6, *, s0=None,
                       loss="softmax", reduction="sum"):
    """Central finite differences of the summed loss w.r.t. every parameter (float64).

    Arrays of any backend are copied to NumPy float64 first; returns a dict of NumPy
    arrays with the keys of ``params``. ``s0``, ``loss``, ``reduction`` as for
    ``sequence_loss``. Costs 2 forward passes per parameter entry.
    """
    p = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}
    xs = to_numpy(xs).astype(np.float64)
    ys = to_numpy(ys)
    if loss == "mse":
        ys = ys.astype(np.float64)
    mask = None if mask is None else to_numpy(mask).astype(np.float64)
    s0 = None if s0 is None else to_numpy(s0).astype(np.float64)
    grads = {}
    for key in p:

        def f(w, key=key):
            return np.asarray(sequence_loss(cell, {**p, key: w}, xs, ys, mask, s0, loss=loss,
                                            reduction=reduction))

        grads[key] = numerical_jacobian(f, p[key], eps)
    return grads


def relative_error(actual, desired):
    """``max|actual - desired| / max|desired|`` on host copies (0 when both are 0)."""
    a, d = to_numpy(actual).astype(np.float64), to_numpy(desired).astype(np.float64)
    scale = np.max(np.abs(d))
    diff = np.max(np.abs(a - d)) if a.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def assert_close(actual, desired, *, rtol=None, atol=0.0, xp=None, device=None,
                 check_dtype=True, err_msg=""):
    """Assert ``actual`` is close to ``desired`` after checking namespace, shape, dtype, device.

    ``desired`` is either a host reference (a NumPy array or scalar, a list, a Python
    number) or an array of some library. Checks, in order:

    * namespace: ``actual`` comes from ``xp`` when given, else from ``desired``'s namespace
      when ``desired`` is a library array (a NumPy ``actual`` may stand for itself);
    * shape: equal (a Python number as ``desired`` is compared with every entry);
    * dtype: equal to ``desired``'s (a Python float stands for float64, an int for int64, a
      bool for bool), unless ``check_dtype=False``, which compares values only;
    * device: ``device`` when given, else that of a library ``desired`` of the same namespace;
    * values: ``|actual - desired| <= atol + rtol·|desired|`` elementwise. The default
      ``rtol`` is ``4 * sqrt(eps)`` of ``actual``'s dtype (about 6e-8 for float64, 1.4e-3
      for float32); ``rtol=0`` with ``atol=0`` asks for equality. Text arrays must be equal.
    """
    if isinstance(actual, (list, tuple, float, int)):
        actual = np.asarray(actual)
    found = array_namespace(actual)
    host = isinstance(desired, (np.ndarray, np.generic, list, tuple, float, int))
    if xp is None and not host:
        xp = array_namespace(desired)
    if xp is not None:
        assert found is xp, f"expected an array of {xp.__name__}, got {found.__name__}"
    a = to_numpy(actual)
    d = np.asarray(desired) if host else to_numpy(desired)
    if not isinstance(desired, (float, int)):
        assert a.shape == d.shape, f"shape {a.shape} != {d.shape}"
    if check_dtype:
        assert a.dtype == d.dtype, f"dtype {actual.dtype} != {d.dtype} (check_dtype=False " \
                                   "compares values only)"
    if not host and device is None and array_namespace(desired) is found:
        device = get_device(desired)
    if device is not None:
        assert get_device(actual) == device, f"device {get_device(actual)} != {device}"
    if a.dtype.kind in "USO":  # text (e.g. a checkpoint's JSON members): equal, or not
        np.testing.assert_array_equal(a, d, err_msg=err_msg)
        return
    if rtol is None:
        floating = np.issubdtype(a.dtype, np.floating)
        rtol = 4 * float(np.finfo(a.dtype).eps) ** 0.5 if floating else 0.0
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=err_msg)


def random_problem(cell, T, B, seed=0, *, masked=True):
    """A random sequence for ``cell`` as NumPy arrays ``(xs, ys, mask)``.

    ``xs`` (T, B, n_in) float64 ~ N(0, 1); ``ys`` (T, B) int64 in [0, n_out); ``mask``
    (T, B) float64 with about a third of the entries 0 (all ones when ``masked=False``).
    """
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((T, B, cell.n_in))
    ys = rng.integers(0, cell.n_out, size=(T, B))
    mask = (rng.random((T, B)) > 0.3).astype(np.float64) if masked else np.ones((T, B))
    return xs, ys, mask
