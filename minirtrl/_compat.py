"""The only place that imports array-api-compat, and the one host copy of an array.

A project that vendors minirtrl may put its own copy of array-api-compat beside it as
``_array_api_compat_vendor`` (the hook array-api-extra uses); otherwise the installed
package is used.
"""

import numpy as np

try:  # pragma: no cover - depends on how the package is vendored
    from .._array_api_compat_vendor import (  # type: ignore[import-not-found]
        array_namespace,
        is_array_api_strict_namespace,
        is_torch_array,
        to_device,
    )
    from .._array_api_compat_vendor import device as get_device  # type: ignore[import-not-found]
except ImportError:
    from array_api_compat import (
        array_namespace,
        is_array_api_strict_namespace,
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
    return np.asarray(to_device(x, "cpu"))


__all__ = ["array_namespace", "get_device", "to_device", "to_numpy"]
