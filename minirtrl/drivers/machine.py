"""What a run or a table of timings must say about where it ran: the machine header.

``machine_info`` gathers the CPU and its cores, the load, Python, NumPy and its BLAS (and
threadpoolctl's view of the thread pools, if it is installed), the thread variables of
the environment, the backend's version, its threads (torch) and its GPU (CUDA). It runs
once, at the start of a command; nothing here runs at import.
"""

import os
import platform

import numpy as np

from .. import __version__

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info():
    """NumPy's BLAS as NumPy reports it (and threadpoolctl's view if installed)."""
    info = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        conf = blas.get("openblas configuration")
        if conf:
            info["numpy_blas_config"] = conf
    except Exception as exc:  # noqa: BLE001 - old NumPy: show_config has no mode
        info["numpy_blas"] = f"unknown ({type(exc).__name__})"
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    return info


def machine_info(backend_name, device):
    """Everything a table of timings must name: the machine, the libraries, the load."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "minirtrl": __version__,
        "backend": backend_name,
        "device": str(device),
        "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
    }
    info.update(blas_info())
    if backend_name == "torch":
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    elif backend_name == "cupy":
        import cupy

        info["cupy"] = cupy.__version__
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props.get("name", b"?")
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    elif backend_name == "array_api_strict":
        import array_api_strict

        info["array_api_strict"] = array_api_strict.__version__
    return info
