"""Backend fixtures: every test taking ``xp`` runs on each usable backend.

``MINIRTRL_BACKENDS=numpy,torch`` restricts the list; a backend named there that cannot
run *fails* the test instead of skipping it (asking for it means it must work).
"""

import functools
import importlib
import os

import numpy as np
import pytest

from minirtrl.backends import BackendError, load, to_numpy

BACKENDS = ["numpy", "array_api_strict", "torch", pytest.param("cupy", marks=pytest.mark.gpu)]


@functools.cache
def _probe(name):
    try:
        if name == "array_api_strict":
            importlib.import_module(name).set_array_api_strict_flags(api_version="2024.12")
        xp, device = load(name)
    except BackendError as exc:
        return None, str(exc)
    return (xp, device), ""


def _backend(name):
    wanted = os.environ.get("MINIRTRL_BACKENDS")
    if wanted and name not in wanted.split(","):
        pytest.skip(f"{name} not in MINIRTRL_BACKENDS")
    found, why = _probe(name)
    if found is None:
        (pytest.fail if wanted else pytest.skip)(why)
    return found


@pytest.fixture(params=BACKENDS)
def backend(request):
    """``(name, xp, device)`` for each usable backend."""
    xp, device = _backend(request.param)
    return request.param, xp, device


@pytest.fixture
def xp(backend):
    return backend[1]


@pytest.fixture
def to_xp(backend):
    """Move a NumPy array to the backend under test (dtype kept)."""
    _, xp, device = backend

    def move(a, dtype=None):
        a = np.asarray(a)
        return xp.asarray(a, dtype=dtype, device=device)

    return move


@pytest.fixture
def host():
    return to_numpy
