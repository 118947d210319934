"""Backends by name, for the drivers, the benchmarks and the tests.

The library core never imports a backend: it works on whatever arrays it is given.
This module is where a *name* ("numpy", "cupy", "torch", "array_api_strict") becomes an
array namespace and a device, and where results are copied back to NumPy for printing
and saving. Nothing here is imported at ``import minirtrl`` time except this module's
own code; each backend module is imported only when asked for.
"""

import numpy as np

from ._compat import array_namespace, get_device, is_array_api_strict_namespace, to_device

NAMES = ("numpy", "cupy", "torch", "array_api_strict")
EXTRA = {"numpy": None, "cupy": "cupy", "torch": "torch", "array_api_strict": "test"}


class BackendError(ValueError):
    """A backend that was asked for cannot be used here (the message says why)."""


def _probe_cupy(mod):
    # ``import cupy`` succeeds without a GPU; only a device count and an allocation tell.
    try:
        count = mod.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - any CUDA failure means "no usable GPU"
        raise BackendError(f"backend 'cupy': no usable CUDA device ({exc})") from None
    if count < 1:
        raise BackendError("backend 'cupy': no CUDA device found")
    try:
        float(mod.ones(1).sum())
    except Exception as exc:  # noqa: BLE001
        raise BackendError(f"backend 'cupy': CUDA device unusable ({exc})") from None


def load(name):
    """Return ``(xp, device)`` for a backend name.

    ``xp`` is the array-API-compatible namespace (wrapped by array-api-compat where the
    library needs it) and ``device`` the device new arrays are created on (the default
    one). Raises ``BackendError`` with a one-line reason if the backend is unknown, not
    installed (naming the extra to install) or, for CuPy, has no usable GPU.
    """
    if name not in NAMES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    try:
        mod = _import(name)
    except ImportError:
        extra = EXTRA[name]
        raise BackendError(
            f"backend {name!r} is not installed; install it with: pip install 'minirtrl[{extra}]'"
        ) from None
    if name == "cupy":
        _probe_cupy(mod)
    x = mod.empty(0)
    return array_namespace(x), get_device(x)


def _import(name):
    """The module of backend ``name`` (imported only now, when it is asked for)."""
    if name == "numpy":
        return np
    if name == "cupy":
        import cupy

        return cupy
    if name == "torch":
        import torch

        return torch
    import array_api_strict

    return array_api_strict


def to_numpy(x):
    """Copy an array of any supported backend to a NumPy array on the host.

    For I/O and tests only: in library code a transfer to the host is a bug.
    """
    if isinstance(x, np.ndarray):
        return x
    xp = array_namespace(x)
    if is_array_api_strict_namespace(xp):
        return np.asarray(x.to_device(xp.Device("CPU_DEVICE")))
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    return np.asarray(to_device(x, "cpu"))


def dtype_of(xp, name):
    """The ``xp`` dtype object for ``"float32"`` or ``"float64"``."""
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', not {name!r}")
    return getattr(xp, name)
