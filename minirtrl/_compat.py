"""The only place that imports array-api-compat.

A project that vendors minirtrl may put its own copy of array-api-compat beside it as
``_array_api_compat_vendor`` (the hook array-api-extra uses); otherwise the installed
package is used.
"""

try:  # pragma: no cover - depends on how the package is vendored
    from .._array_api_compat_vendor import (  # type: ignore[import-not-found]
        array_namespace,
        device as get_device,
        is_array_api_strict_namespace,
        is_cupy_namespace,
        is_numpy_namespace,
        is_torch_namespace,
        to_device,
    )
except ImportError:
    from array_api_compat import (
        array_namespace,
        device as get_device,
        is_array_api_strict_namespace,
        is_cupy_namespace,
        is_numpy_namespace,
        is_torch_namespace,
        to_device,
    )

__all__ = [
    "array_namespace",
    "get_device",
    "is_array_api_strict_namespace",
    "is_cupy_namespace",
    "is_numpy_namespace",
    "is_torch_namespace",
    "to_device",
]
