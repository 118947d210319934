"""``minirtrl.testing.assert_close`` checks what it promises, and fails when it should."""

import numpy as np
import pytest

from minirtrl.testing import assert_close


def test_passes_on_equal_arrays_and_within_tolerance():
    a = np.array([1.0, 2.0])
    assert_close(a, a.copy(), rtol=0)
    assert_close(a * (1 + 1e-9), a)  # default rtol 4·sqrt(eps) ≈ 6e-8
    three32 = np.float32(3.0) * np.ones(2, dtype=np.float32)
    assert_close(three32, np.full(2, 3.0), check_dtype=False)  # values only, when asked
    assert_close(np.ones(3), 1.0)  # a Python number is compared with every entry


@pytest.mark.parametrize("actual, desired, what", [
    (np.array([1.0, 2.0]), np.array([1.0, 2.1]), "Not equal to tolerance"),
    (np.ones(3), np.ones((3, 1)), "shape"),
    (np.ones(3, dtype=np.int64), np.ones(3), "dtype"),
    (np.ones(3, dtype=np.float32), np.ones(3, dtype=np.float64), "dtype"),  # a host reference
    (np.ones(3, dtype=np.float32), 1.0, "dtype"),  # a Python float stands for float64
])
def test_fails_on_value_shape_and_dtype(actual, desired, what):
    with pytest.raises(AssertionError, match=what):
        assert_close(actual, desired)


def test_values_still_checked_without_the_dtype():
    with pytest.raises(AssertionError, match="Not equal"):
        assert_close(np.ones(3, dtype=np.float32), np.ones(3) + 1e-2, check_dtype=False)


def test_fails_on_another_namespace_dtype_or_device():
    strict = pytest.importorskip("array_api_strict")
    x = strict.asarray([1.0, 2.0])
    with pytest.raises(AssertionError, match="expected an array of"):
        assert_close(np.asarray([1.0, 2.0]), x)  # NumPy result where strict is expected
    with pytest.raises(AssertionError, match="dtype"):
        assert_close(strict.asarray([1.0, 2.0], dtype=strict.float32), x)
    on_1 = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    with pytest.raises(AssertionError, match="device"):
        assert_close(on_1, x)  # same values, another device
    with pytest.raises(AssertionError, match="device"):
        assert_close(x, np.asarray([1.0, 2.0]), xp=strict, device=strict.Device("device1"))
    assert_close(on_1, np.asarray([1.0, 2.0]), xp=strict, device=strict.Device("device1"))
