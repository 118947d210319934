"""Array libraries by name, for the commands, the benchmarks and the tests: where a name
("numpy", "cupy", "torch", "array_api_strict", "jax") becomes a namespace and a device, with
its threads, and what a log or a table of timings says about the machine it ran on.

The core never imports this module: it takes namespace modules. Each library is imported
only when asked for. ``load("jax")`` switches JAX's 64-bit mode on (``jax_enable_x64``), so
that float64 means float64 in the commands and the tests (without it JAX makes float32
arrays when float64 is asked for, which the library refuses with one line).
"""

import ctypes
import os
import platform

import numpy as np

from .._compat import array_namespace, get_device

NAMES = ("numpy", "cupy", "torch", "array_api_strict", "jax")
EXTRA = {"numpy": None, "cupy": "cupy", "torch": "torch", "array_api_strict": "test",
         "jax": "jax"}
#: the device names each library takes (``load(name, device)``, the commands' ``--device``)
DEVICES = {
    "numpy": "cpu",
    "torch": "cpu, cuda, cuda:N (the N-th GPU), mps (Apple GPUs)",
    "cupy": "N, the index of a GPU (0 is the first)",
    "array_api_strict": "CPU_DEVICE, device1, device2",
    "jax": "cpu, cpu:N, gpu, gpu:N (the N-th of that kind)",
}
#: torch's CPU threads when --threads is not given (measured: bench/README.md, "torch threads")
TORCH_THREADS = 1
# glibc's trim and mmap thresholds the commands set (keep_freed_memory): 1 GiB, 32 MiB
TRIM_THRESHOLD, MMAP_THRESHOLD = 1 << 30, 32 << 20
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class BackendError(ValueError):
    """A library that was asked for cannot be used here (the message says why)."""


def load(name, device=None):
    """``(xp, device)`` for a library name and, optionally, a device name (``DEVICES``).

    ``xp`` is the array-API namespace (array-api-compat's wrapper where needed), ``device``
    the library's default or the one named. ``BackendError`` with a one-line reason if the
    library is unknown, not installed (naming the extra), has no usable GPU or no such device.
    """
    if name not in NAMES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    try:
        mod = _import(name)
    except ImportError:
        raise BackendError(f"backend {name!r} is not installed; install it with: "
                           f"pip install 'minirtrl[{EXTRA[name]}]'") from None
    if name == "cupy":
        _probe_cupy(mod)
    if name == "jax":
        return _load_jax(mod, device)
    x = mod.empty(0)
    return array_namespace(x), get_device(x) if device is None else _device(name, mod, str(device))


def dtype_of(xp, name):
    """The ``xp`` dtype object for ``"float32"`` or ``"float64"``."""
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', not {name!r}")
    return getattr(xp, name)


def _import(name):
    if name == "numpy":
        return np
    if name == "cupy":
        import cupy

        return cupy
    if name == "torch":
        import torch

        return torch
    if name == "jax":
        import jax

        return jax
    import array_api_strict

    return array_api_strict


def _load_jax(jax, device):
    """``(jax.numpy, device)``, 64-bit mode on; ``device`` "cpu", "gpu" or "KIND:N"."""
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    if device is None:
        return array_namespace(jnp.zeros(0)), jax.devices()[0]
    text = str(device)
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "gpu") or (index and not index.isdigit()):
        raise BackendError(f"backend 'jax' has no device {text!r} (not a device name); "
                           f"devices: {DEVICES['jax']}")
    try:
        found = jax.devices(kind)
    except RuntimeError:
        found = []
    if int(index or 0) >= len(found):
        raise BackendError(f"backend 'jax' has no device {text!r} ({len(found)} {kind} "
                           f"device{'s' if len(found) != 1 else ''} here); devices: "
                           f"{DEVICES['jax']}")
    return array_namespace(jnp.zeros(0)), found[int(index or 0)]


def _probe_cupy(mod):
    # ``import cupy`` succeeds without a GPU; only a device count and an allocation tell.
    try:
        count = mod.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendError(f"backend 'cupy': no usable CUDA device ({exc})") from None
    if count < 1:
        raise BackendError("backend 'cupy': no CUDA device found")
    try:
        float(mod.ones(1).sum())
    except Exception as exc:
        raise BackendError(f"backend 'cupy': CUDA device unusable ({exc})") from None


def _device(name, mod, text):
    """The device object ``text`` names for library ``name``, or ``BackendError``."""
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


# ---- threads and memory -------------------------------------------------------------------
def set_threads(name, threads):
    """torch's CPU threads (``TORCH_THREADS`` when ``threads`` is None); ``BackendError`` if
    ``threads`` is given for another library (NumPy's BLAS reads its environment at start;
    JAX has no thread setter: XLA sizes its own pool)."""
    if name == "torch":
        import torch

        torch.set_num_threads(TORCH_THREADS if threads is None else threads)
    elif threads is not None and name == "jax":
        raise BackendError("--threads applies to --backend torch, not jax; XLA sizes its own "
                           "CPU thread pool (XLA_FLAGS before the command starts)")
    elif threads is not None:
        raise BackendError(f"--threads applies to --backend torch, not {name}; NumPy's BLAS "
                           "threads are set by OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before "
                           "the command starts")


def threads_of(name):
    """The threads library ``name`` computes with, as a short text for headers and lines."""
    if name == "torch":
        import torch

        return f"torch {torch.get_num_threads()}"
    if name == "cupy":
        return "GPU"
    if name == "jax":
        return "XLA (its own threads)"
    blas = [f"{k}={os.environ[k]}" for k in THREAD_VARS if k in os.environ]
    return "BLAS " + (" ".join(blas) if blas else f"default (up to {os.cpu_count()} cores)")


def keep_freed_memory():
    """Ask glibc to keep freed memory in the process: True if it took the settings.

    A step frees and allocates the same large temporaries again and again; by default glibc
    returns them to the kernel and the next step faults them in again, which can make a step
    several times slower. Only the commands call this, at their start.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to do
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return (bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)))


# ---- the machine header ---------------------------------------------------------------------
def machine_info(name, device):
    """What a log or a table of timings must name: the machine, the libraries, the load."""
    from .. import __version__

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "cores_usable": usable,
            "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "numpy": np.__version__,
            "minirtrl": __version__, "backend": name, "device": str(device),
            "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
            **_blas_info()}
    if name == "torch":
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    elif name == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        gpu = props.get("name", b"?")
        info.update(cupy=cupy.__version__, cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                    gpu=gpu.decode() if isinstance(gpu, bytes) else str(gpu))
    elif name == "array_api_strict":
        import array_api_strict

        info["array_api_strict"] = array_api_strict.__version__
    elif name == "jax":
        import jax

        info.update(jax=jax.__version__, jax_x64=bool(jax.config.jax_enable_x64),
                    jax_device_kind=getattr(device, "device_kind", str(device)),
                    jax_devices=[str(d) for d in jax.devices()])
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info():
    """NumPy's BLAS as NumPy reports it (and threadpoolctl's view if installed)."""
    info = {}
    try:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        if blas.get("openblas configuration"):
            info["numpy_blas_config"] = blas["openblas configuration"]
    except Exception as exc:
        info["numpy_blas"] = f"unknown ({type(exc).__name__})"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    keys = ("internal_api", "version", "num_threads", "architecture")
    info["threadpools"] = [{k: p.get(k) for k in keys} for p in threadpool_info()]
    return info
