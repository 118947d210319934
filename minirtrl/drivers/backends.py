"""Backends by name, for the drivers, the benchmarks and the tests.

The library core never imports a backend: it works on whatever arrays it is given.
This module is where a *name* ("numpy", "cupy", "torch", "array_api_strict") becomes an
array namespace and a device, and where results are copied back to NumPy for printing
and saving. Nothing here is imported at ``import minirtrl`` time except this module's
own code; each backend module is imported only when asked for.
"""

import numpy as np

from .._compat import array_namespace, get_device, to_numpy  # noqa: F401 (to_numpy: for callers)

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


def load(name, device=None):
    """Return ``(xp, device)`` for a backend name and, optionally, a device name.

    ``xp`` is the array-API-compatible namespace (wrapped by array-api-compat where the
    library needs it) and ``device`` the device new arrays are created on: the backend's
    default, or the one named by ``device`` (see ``DEVICES``). Raises ``BackendError`` with
    a one-line reason if the backend is unknown, not installed (naming the extra to
    install), has no usable GPU (CuPy), or has no such device.
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
    xp = array_namespace(x)
    return xp, (get_device(x) if device is None else _device(name, mod, str(device)))


#: the device names each backend takes (``load(name, device)``, the drivers' ``--device``)
DEVICES = {
    "numpy": "cpu",
    "torch": "cpu, cuda, cuda:N (the N-th GPU), mps (Apple GPUs)",
    "cupy": "N, the index of a GPU (0 is the first)",
    "array_api_strict": "CPU_DEVICE, device1, device2",
}


def _device(name, mod, text):
    """The device object ``text`` names for backend ``name``, or ``BackendError``."""
    def missing(why):
        return BackendError(f"backend {name!r} has no device {text!r} ({why}); devices: "
                            f"{DEVICES[name]}")

    if name == "numpy":
        if text != "cpu":
            raise missing("NumPy computes on the CPU")
        return "cpu"
    if name == "array_api_strict":
        if text not in ("CPU_DEVICE", "device1", "device2"):
            raise missing("not one of its devices")
        return mod.Device(text)
    if name == "cupy":
        if not text.isdigit():
            raise missing("a GPU index is a number")
        count = mod.cuda.runtime.getDeviceCount()
        if int(text) >= count:
            raise missing(f"this machine has {count} GPU{'s' if count != 1 else ''}")
        return mod.cuda.Device(int(text))
    try:  # torch
        device = mod.device(text)
    except (RuntimeError, ValueError):
        raise missing("not a torch device name") from None
    if device.type == "cuda":
        count = mod.cuda.device_count() if mod.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise missing(f"{count} CUDA device{'s' if count != 1 else ''} usable here")
    elif device.type == "mps":
        if not (getattr(mod.backends, "mps", None) and mod.backends.mps.is_available()):
            raise missing("MPS is not available here")
    elif device.type != "cpu":
        raise missing(f"device type {device.type!r} is not supported")
    return device


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


def dtype_of(xp, name):
    """The ``xp`` dtype object for ``"float32"`` or ``"float64"``."""
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', not {name!r}")
    return getattr(xp, name)
