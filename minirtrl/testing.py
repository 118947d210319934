"""Oracles and assertions for testing minirtrl and for cross-checking other code.

* ``numerical_gradient``: central finite differences of the summed loss (float64, host).
* ``numerical_jacobian``: central finite differences of any function of one array.
* ``assert_close``: compare an array of any backend with a reference, after checking
  that it is an array of the expected namespace, shape, dtype and device.
* ``expected_step``: the exact expectation of one estimator step over every sign pattern,
  beside exact RTRL's step from the same estimate (small cells).
* ``unbiasedness_z``, ``assert_unbiased``, ``z_threshold``: the mean of many seeded
  estimates against the exact value, in standard errors (``_stats.py``).

Everything here copies to NumPy, which is right for tests and wrong in library code.
"""

import numpy as np

from . import readout
from ._compat import array_namespace, get_device
from ._stats import (  # noqa: F401 (re-exported)
    MAX_PATTERNS,
    StepExpectation,
    assert_unbiased,
    expected_step,
    sign_patterns,
    unbiasedness_z,
    z_threshold,
)
from .backends import to_numpy


def sequence_loss(cell, params, xs, ys, mask=None, s0=None):
    """Forward pass only: ``Σ_t Σ_b mask·loss_t`` (nats) as a Python float (NumPy inputs).

    ``s0`` (B, n): the state before the first step (zeros when None).
    """
    xp = array_namespace(xs)
    s = xp.zeros((xs.shape[1], cell.n_hidden), dtype=xs.dtype) if s0 is None else s0
    total = 0.0
    for t in range(xs.shape[0]):
        s, _ = cell.step(params, s, xs[t, ...], xp=xp)
        w = xp.ones(xs.shape[1], dtype=xs.dtype) if mask is None else mask[t, :]
        total += float(xp.sum(readout.loss(params["V"], s, ys[t, :], w, xp=xp)))
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


def numerical_gradient(cell, params, xs, ys, mask=None, eps=1e-6):
    """Central finite differences of the summed loss w.r.t. every parameter (float64).

    Arrays of any backend are copied to NumPy float64 first; returns a dict of NumPy
    arrays with the keys of ``params``. Costs 2 forward passes per parameter entry.
    """
    p = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}
    xs = to_numpy(xs).astype(np.float64)
    ys = to_numpy(ys)
    mask = None if mask is None else to_numpy(mask).astype(np.float64)
    grads = {}
    for key in p:

        def f(w, key=key):
            return np.asarray(sequence_loss(cell, {**p, key: w}, xs, ys, mask))

        grads[key] = numerical_jacobian(f, p[key], eps)
    return grads


def relative_error(actual, desired):
    """``max|actual - desired| / max|desired|`` on host copies (0 when both are 0)."""
    a, d = to_numpy(actual).astype(np.float64), to_numpy(desired).astype(np.float64)
    scale = np.max(np.abs(d))
    diff = np.max(np.abs(a - d)) if a.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def assert_close(actual, desired, *, rtol=None, atol=0.0, xp=None, device=None, err_msg=""):
    """Assert ``actual`` is close to ``desired`` after checking namespace, shape, dtype, device.

    ``desired`` is either a host reference (a NumPy array or scalar, a list, a Python
    number) or an array of some backend. Checks, in order:

    * namespace: ``actual`` comes from ``xp`` when given, else from ``desired``'s namespace
      when ``desired`` is a backend array (a NumPy ``actual`` may stand for itself);
    * shape: equal (a Python number as ``desired`` is compared with every entry);
    * dtype: equal to a backend ``desired``'s; of the same kind (float, int, bool) as a
      host reference's;
    * device: ``device`` when given, else that of a backend ``desired`` of the same namespace;
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
    if host:
        kinds = {"f": "float", "i": "int", "u": "int", "b": "bool", "c": "complex"}
        assert kinds.get(a.dtype.kind, a.dtype.kind) == kinds.get(d.dtype.kind, d.dtype.kind), (
            f"dtype {actual.dtype} is not of the kind of {d.dtype}")
    else:
        assert actual.dtype == desired.dtype, f"dtype {actual.dtype} != {desired.dtype}"
        if device is None and array_namespace(desired) is found:
            device = get_device(desired)
    if device is not None:
        assert get_device(actual) == device, f"device {get_device(actual)} != {device}"
    if a.dtype.kind in "USO":  # text (e.g. a checkpoint's JSON members): equal, or not
        np.testing.assert_array_equal(a, d, err_msg=err_msg)
        return
    if rtol is None:
        rtol = 4 * float(np.finfo(a.dtype).eps) ** 0.5 if np.issubdtype(a.dtype, np.floating) else 0.0
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
