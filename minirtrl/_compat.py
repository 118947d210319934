"""The only place that imports array-api-compat, and the one host copy of an array.

A project that vendors minirtrl may put its own copy of array-api-compat beside it as
``_array_api_compat_vendor`` (the hook array-api-extra uses); otherwise the installed
package is used.
"""

import warnings

import numpy as np

try:  # pragma: no cover - depends on how the package is vendored
    from .._array_api_compat_vendor import (  # type: ignore[import-not-found]
        array_namespace,
        is_array_api_strict_namespace,
        is_jax_array,
        is_torch_array,
        to_device,
    )
    from .._array_api_compat_vendor import device as get_device  # type: ignore[import-not-found]
except ImportError:
    from array_api_compat import (
        array_namespace,
        is_array_api_strict_namespace,
        is_jax_array,
        is_torch_array,
        to_device,
    )
    from array_api_compat import device as get_device


def to_numpy(x):
    """A NumPy copy on the host of an array of any supported library (NumPy itself is returned).

    For printing, saving and tests: in the step of a method a copy to the host is a bug.
    """
    if isinstance(x, np.ndarray):
        return x
    xp = array_namespace(x)
    if is_array_api_strict_namespace(xp):
        return np.asarray(x.to_device(xp.Device("CPU_DEVICE")))
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    if is_jax_array(x):  # from any device; read-only, as the JAX array it shows
        return np.asarray(x)
    return np.asarray(to_device(x, "cpu"))


def made_dtype(xp, dtype):
    """The dtype of the arrays ``xp`` makes when asked for ``dtype``: ``dtype`` itself, except
    where a library narrows silently (JAX without its 64-bit mode makes float32 for float64,
    with a warning that the caller's error replaces). Cost: one empty array."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xp.empty(0, dtype=dtype).dtype


def index_dtype(xp):
    """The integer type ``xp`` indexes with: int64, or int32 on JAX without its 64-bit mode
    (asking JAX for int64 there would narrow with a warning)."""
    return xp.__array_namespace_info__().default_dtypes()["indexing"]


__all__ = ["array_namespace", "get_device", "index_dtype", "made_dtype", "to_device", "to_numpy"]
