"""Array type in = array type out, device in = device out; the same numbers on every backend
(every method, the estimators with the same seed); float32; no mutation of the inputs."""

import numpy as np
import pytest

import minirtrl
from minirtrl.drivers.backends import BackendError, load
from minirtrl.methods import RANKED
from minirtrl.testing import assert_close, random_problem, to_numpy

T, B = 5, 3
EXACT = ("rtrl", "bptt")
ESTIMATORS = ("uoro", "kf", "ok", "kf-avg")


def problem(depth=2):
    cell = minirtrl.RHN(n_in=3, n_hidden=4, n_out=5, depth=depth)
    xs, ys, mask = random_problem(cell, T, B, seed=2)
    return cell, xs, ys, mask


def linalg_for(method, backend):
    """ok needs the linalg extension, which the noext variant switches off."""
    if method == "ok" and backend.variant == "noext":
        pytest.skip("ok needs the linalg extension")


@pytest.mark.parametrize("method", EXACT + ESTIMATORS)
def test_public_functions_match_numpy(backend, to_xp, method):
    """Same parameters, loss, gradient (estimators: same seed, same estimate) and influence."""
    linalg_for(method, backend)
    xp, device = backend.xp, backend.device
    cell, xs, ys, mask = problem()
    rank = 2 if method in RANKED else None
    p_np = cell.init(4, xp=np, init_scale=0.5)
    params = cell.init(4, xp=xp, init_scale=0.5, device=backend.device)
    for k in params:  # init draws on the host: same parameters on every backend
        assert_close(params[k], p_np[k], xp=xp, device=device, rtol=0)
    loss_np, g_np = minirtrl.sequence_gradient(method, cell, p_np, xs, ys, mask, seed=3, rank=rank)
    loss, g = minirtrl.sequence_gradient(method, cell, params, to_xp(xs), to_xp(ys), to_xp(mask),
                                         seed=3, rank=rank)
    assert loss.ndim == 0
    assert_close(loss, loss_np, xp=xp, device=device, rtol=1e-12)
    for k in params:
        assert_close(g[k], g_np[k], xp=xp, device=device, rtol=1e-10, atol=1e-14)
    if method == "rtrl":
        G_np = minirtrl.exact_influence(cell, p_np, xs)
        G = minirtrl.exact_influence(cell, params, to_xp(xs))
        for k in G_np:
            assert_close(G[k], G_np[k], xp=xp, device=device, rtol=1e-10, atol=1e-14)


def test_optimiser_matches_numpy(backend, to_xp):
    xp, device = backend.xp, backend.device
    rng = np.random.default_rng(0)
    p_np = {"W1": rng.standard_normal((4, 3)), "V": rng.standard_normal((2, 3))}
    g_np = {k: rng.standard_normal(v.shape) for k, v in p_np.items()}
    params, grads = {k: to_xp(v) for k, v in p_np.items()}, {k: to_xp(v) for k, v in g_np.items()}
    clipped, norm = minirtrl.clip_by_norm(grads, 1.0, ("W1",))
    clipped_np, norm_np = minirtrl.clip_by_norm(g_np, 1.0, ("W1",))
    assert_close(norm, norm_np, xp=xp, device=device)
    new, _state = minirtrl.adam_step(params, clipped, minirtrl.adam_init(params), lr=0.1)
    new_np, _ = minirtrl.adam_step(p_np, clipped_np, minirtrl.adam_init(p_np), lr=0.1)
    for k in new:
        assert_close(new[k], new_np[k], xp=xp, device=device, rtol=1e-12)


@pytest.mark.parametrize("method, rank", [("uoro", None), ("kf", None), ("kf-avg", 2), ("ok", 2)])
def test_estimators_need_only_the_2023_12_standard(method, rank):
    """No Python scalars where the 2023.12 standard wants arrays (e.g. in ``where``)."""
    strict = pytest.importorskip("array_api_strict")
    cell, xs, ys, mask = problem()
    p_np = cell.init(0, xp=np, init_scale=0.5)
    _, expected = minirtrl.sequence_gradient(method, cell, p_np, xs, ys, mask, rank=rank, seed=3)
    saved = strict.get_array_api_strict_flags()
    strict.set_array_api_strict_flags(api_version="2023.12")
    try:
        params = {k: strict.asarray(v) for k, v in p_np.items()}
        args = [strict.asarray(a) for a in (xs, ys, mask)]
        _, grads = minirtrl.sequence_gradient(method, cell, params, *args, rank=rank, seed=3)
    finally:
        strict.set_array_api_strict_flags(**saved)
    for k in grads:
        assert_close(grads[k], expected[k], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("method", EXACT + ESTIMATORS)
def test_float32_close_to_float64(backend, to_xp, method):
    linalg_for(method, backend)
    xp, device = backend.xp, backend.device
    cell, xs, ys, mask = problem()
    rank = 2 if method in RANKED else None
    p64 = cell.init(1, xp=xp, dtype=xp.float64, init_scale=0.5, device=device)
    p32 = cell.init(1, xp=xp, dtype=xp.float32, init_scale=0.5, device=device)
    _, g64 = minirtrl.sequence_gradient(method, cell, p64, to_xp(xs), to_xp(ys), to_xp(mask),
                                        seed=1, rank=rank)
    _, g32 = minirtrl.sequence_gradient(method, cell, p32, to_xp(xs, xp.float32), to_xp(ys),
                                        to_xp(mask, xp.float32), seed=1, rank=rank)
    for k in g64:
        assert g32[k].dtype == xp.float32
        assert np.all(np.isfinite(to_numpy(g32[k])))
        # float32 against the float64 result: values only
        assert_close(g32[k], g64[k], rtol=0, atol=1e-5 * np.max(np.abs(to_numpy(g64[k]))),
                     check_dtype=False)


@pytest.mark.parametrize("method", EXACT + ESTIMATORS)
def test_inputs_are_not_mutated(method):
    cell, xs, ys, mask = problem()
    params = cell.init(0, xp=np, init_scale=0.5)
    for a in [xs, ys, mask, *params.values()]:
        a.flags.writeable = False  # any in-place write would raise
    rank = 2 if method in RANKED else None
    minirtrl.sequence_gradient(method, cell, params, xs, ys, mask, rank=rank)
    minirtrl.exact_influence(cell, params, xs)


def test_unknown_or_missing_backend_is_a_clear_error():
    with pytest.raises(BackendError, match="unknown backend 'mxnet'"):
        load("mxnet")
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match=r"pip install 'minirtrl\[cupy\]'"):
            load("cupy")
    else:  # installed: either usable, or a clear reason
        try:
            load("cupy")
        except BackendError as exc:
            assert "cupy" in str(exc)


def test_ok_without_linalg_is_a_clear_error():
    strict = pytest.importorskip("array_api_strict")
    cell, xs, ys, mask = problem(depth=1)
    saved = strict.get_array_api_strict_flags()
    strict.set_array_api_strict_flags(enabled_extensions=())
    try:
        params = cell.init(0, xp=strict)
        with pytest.raises(ValueError, match="linalg"):
            arrays = (strict.asarray(a) for a in (xs, ys, mask))
            minirtrl.sequence_gradient("ok", cell, params, *arrays)
    finally:
        strict.set_array_api_strict_flags(**saved)
