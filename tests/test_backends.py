"""Array type in = array type out; same numbers on every backend; float32; no mutation."""

import numpy as np
import pytest

import minirtrl
from minirtrl.backends import BackendError, load, to_numpy
from minirtrl.testing import assert_close, random_problem

T, B = 5, 3
EXACT = ("rtrl", "bptt")


def problem(depth=2):
    cell = minirtrl.RHN(n_in=3, n_hidden=4, n_out=5, depth=depth)
    xs, ys, mask = random_problem(cell, T, B, seed=2)
    return cell, xs, ys, mask


@pytest.mark.parametrize("method", EXACT)
def test_public_functions_match_numpy(backend, to_xp, method):
    _, xp, _ = backend
    cell, xs, ys, mask = problem()
    p_np = cell.init(4, xp="numpy", init_scale=0.5)
    params = cell.init(4, xp=xp, init_scale=0.5, device=backend[2])
    for k in params:  # init draws on the host: same parameters on every backend
        assert_close(params[k], p_np[k], rtol=0, xp=xp)
    loss_np, g_np = minirtrl.sequence_gradient(method, cell, p_np, xs, ys, mask)
    loss, g = minirtrl.sequence_gradient(method, cell, params, to_xp(xs), to_xp(ys), to_xp(mask))
    assert loss.ndim == 0
    assert_close(loss, loss_np, rtol=1e-12, xp=xp)
    for k in params:
        assert_close(g[k], g_np[k], rtol=1e-10, atol=1e-14, xp=xp)
    G_np = minirtrl.exact_influence(cell, p_np, xs)
    G = minirtrl.exact_influence(cell, params, to_xp(xs))
    for k in G_np:
        assert_close(G[k], G_np[k], rtol=1e-10, atol=1e-14, xp=xp)


def test_optimiser_matches_numpy(backend, to_xp):
    _, xp, _ = backend
    rng = np.random.default_rng(0)
    p_np = {"W1": rng.standard_normal((4, 3)), "V": rng.standard_normal((2, 3))}
    g_np = {k: rng.standard_normal(v.shape) for k, v in p_np.items()}
    params, grads = {k: to_xp(v) for k, v in p_np.items()}, {k: to_xp(v) for k, v in g_np.items()}
    clipped, norm = minirtrl.clip_by_norm(grads, 1.0, ("W1",), xp=xp)
    clipped_np, norm_np = minirtrl.clip_by_norm(g_np, 1.0, ("W1",), xp=np)
    assert_close(norm, norm_np, xp=xp)
    new, state = minirtrl.adam_step(params, clipped, minirtrl.adam_init(params, xp=xp), lr=0.1, xp=xp)
    new_np, _ = minirtrl.adam_step(p_np, clipped_np, minirtrl.adam_init(p_np, xp=np), lr=0.1, xp=np)
    for k in new:
        assert_close(new[k], new_np[k], rtol=1e-12, xp=xp)


def test_strict_results_stay_on_their_device():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    cell, xs, ys, mask = problem(depth=1)
    params = cell.init(0, xp=strict, device=dev)
    args = [strict.asarray(a, device=dev) for a in (xs, ys, mask)]
    loss, grads = minirtrl.sequence_gradient("rtrl", cell, params, *args)
    assert loss.device == dev and all(g.device == dev for g in grads.values())
    G = minirtrl.exact_influence(cell, params, args[0])
    assert all(g.device == dev for g in G.values())
    clipped, norm = minirtrl.clip_by_norm(grads, 1e-3, cell.blocks, xp=strict)
    new, _ = minirtrl.adam_step(params, clipped, minirtrl.adam_init(params, xp=strict), lr=0.1, xp=strict)
    assert norm.device == dev and all(v.device == dev for v in [*clipped.values(), *new.values()])


@pytest.mark.parametrize("method, rank", [("uoro", None), ("kf", None), ("kf-avg", 2), ("ok", 2)])
def test_estimators_need_only_the_2023_12_standard(method, rank):
    """No Python scalars where the 2023.12 standard wants arrays (e.g. in ``where``)."""
    strict = pytest.importorskip("array_api_strict")
    cell, xs, ys, mask = problem()
    p_np = cell.init(0, xp="numpy", init_scale=0.5)
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


@pytest.mark.parametrize("method", EXACT)
def test_float32_close_to_float64(backend, to_xp, method):
    _, xp, device = backend
    cell, xs, ys, mask = problem()
    p64 = cell.init(1, xp=xp, dtype="float64", init_scale=0.5, device=device)
    p32 = cell.init(1, xp=xp, dtype="float32", init_scale=0.5, device=device)
    _, g64 = minirtrl.sequence_gradient(method, cell, p64, to_xp(xs), to_xp(ys), to_xp(mask))
    _, g32 = minirtrl.sequence_gradient(method, cell, p32, to_xp(xs, xp.float32), to_xp(ys), to_xp(mask, xp.float32))
    for k in g64:
        assert g32[k].dtype == xp.float32
        a, b = to_numpy(g32[k]).astype(np.float64), to_numpy(g64[k])
        assert np.all(np.isfinite(a))
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(b))


def test_inputs_are_not_mutated():
    cell, xs, ys, mask = problem()
    params = cell.init(0, xp="numpy", init_scale=0.5)
    for a in [xs, ys, mask, *params.values()]:
        a.flags.writeable = False  # any in-place write would raise
    for method in EXACT:
        minirtrl.sequence_gradient(method, cell, params, xs, ys, mask)
    minirtrl.exact_influence(cell, params, xs)


def test_unknown_or_missing_backend_is_a_clear_error():
    with pytest.raises(BackendError, match="unknown backend 'jax'"):
        load("jax")
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
