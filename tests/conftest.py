"""Backend fixtures: every test taking ``backend`` (or ``xp``) runs on each usable backend.

``backend`` also runs the variants array-api-extra's test suite has:

    numpy                       plain NumPy
    numpy-readonly              NumPy, and every input ``to_xp`` makes is read-only
    array_api_strict            array-api-strict (2024.12), its default device
    array_api_strict-device1    on ``Device("device1")``: every result must stay there
    array_api_strict-noext      with no optional extensions (no ``linalg``): tests marked
                                ``linalg`` (they need it, e.g. for ``ok``) skip here
    torch, cupy                 where installed (cupy only with a working GPU)
    jax                         only where MINIRTRL_BACKENDS names it (``tox -e jax``), with
                                its 64-bit mode on: JAX in the suite's process makes every
                                later os.fork() warn, so it runs in a session of its own

``driver_backend`` has the plain backends only (a command line names a backend, not a
variant). ``MINIRTRL_BACKENDS=numpy,torch`` restricts both lists to those base names; a
backend named there that cannot run *fails* the test instead of skipping it (asking for it
means it must work).
"""

import functools
import os
from typing import NamedTuple

import numpy as np
import pytest

from minirtrl.drivers.backends import BackendError, load
from minirtrl.testing import to_numpy

PLAIN = ["numpy", "array_api_strict", "torch", pytest.param("cupy", marks=pytest.mark.gpu),
         "jax"]
VARIANTS = ["numpy", "numpy-readonly", "array_api_strict", "array_api_strict-device1",
            "array_api_strict-noext", "torch", pytest.param("cupy", marks=pytest.mark.gpu),
            "jax"]


class Backend(NamedTuple):
    name: str  # the backend's name, as --backend takes it
    xp: object
    device: object
    variant: str = ""  # "", "readonly", "device1" or "noext"


@functools.cache
def _probe(name):
    try:
        xp, device = load(name)
    except BackendError as exc:
        return None, str(exc)
    if name == "array_api_strict":
        xp.set_array_api_strict_flags(api_version="2024.12")
    return (xp, device), ""


def _backend(request, param):
    name, _, variant = param.partition("-")
    wanted = os.environ.get("MINIRTRL_BACKENDS")
    if wanted and name not in wanted.split(","):
        pytest.skip(f"{name} not in MINIRTRL_BACKENDS")
    if name == "jax" and not wanted:
        pytest.skip("jax runs only where MINIRTRL_BACKENDS names it (tox -e jax)")
    found, why = _probe(name)
    if found is None:
        (pytest.fail if wanted else pytest.skip)(why)
    xp, device = found
    if variant == "noext" and request.node.get_closest_marker("linalg"):
        pytest.skip("needs the linalg extension")
    if variant == "device1":
        device = xp.Device("device1")
    return Backend(name, xp, device, variant)


@pytest.fixture(params=VARIANTS)
def backend(request):
    """A ``Backend`` (name, xp, device, variant) for each usable backend and variant."""
    b = _backend(request, request.param)
    if b.variant == "noext":
        saved = b.xp.get_array_api_strict_flags()
        b.xp.set_array_api_strict_flags(enabled_extensions=())
        yield b
        b.xp.set_array_api_strict_flags(**saved)
    else:
        yield b


@pytest.fixture(params=PLAIN)
def driver_backend(request):
    """A ``Backend`` for each usable backend, default device, no variants."""
    return _backend(request, request.param)


@pytest.fixture
def xp(backend):
    return backend.xp


@pytest.fixture
def to_xp(backend):
    """Move a NumPy array to the backend under test (dtype kept; read-only for that variant)."""

    def move(a, dtype=None):
        a = np.asarray(a)
        if backend.variant == "readonly":
            a = np.array(a, dtype=dtype)
            a.flags.writeable = False
            return a
        return backend.xp.asarray(a, dtype=dtype, device=backend.device)

    return move


@pytest.fixture
def host():
    return to_numpy
