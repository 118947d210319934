"""Numerics that fail loudly: overflow-safe norms, checked clipping, non-finite results where
linear algebra cannot go on, and arguments that are missing or of the wrong kind named."""

import numpy as np
import pytest

import minirtrl
from minirtrl import ok
from minirtrl.testing import assert_close, random_problem


def test_clip_by_norm_of_a_huge_float32_gradient_is_not_zero():
    g = {"W1": np.full((2, 2), 1e19, dtype=np.float32), "V": np.ones(3, dtype=np.float32)}
    clipped, norm = minirtrl.clip_by_norm(g, 1.0, ("W1",))
    assert norm.dtype == np.float32
    assert_close(norm, np.float32(2e19), rtol=1e-6)  # its squares overflow float32
    assert_close(clipped["W1"], np.full((2, 2), 0.5, dtype=np.float32), rtol=1e-6)
    assert_close(clipped["V"], g["V"], rtol=0)


def test_global_norm_is_exact_for_tiny_and_zero_and_non_finite_without_warnings():
    with np.errstate(all="raise"):  # no overflow, underflow or invalid operation inside
        assert_close(minirtrl.global_norm({"W1": np.array([3e-300, 4e-300])}, ("W1",)), 5e-300,
                     rtol=0)
        assert_close(minirtrl.global_norm({"W1": np.zeros(3)}, ("W1",)), 0.0, rtol=0)
        assert_close(minirtrl.global_norm({"W1": np.array([np.inf, 1.0])}, ("W1",)), np.inf,
                     rtol=0)
        assert np.isnan(minirtrl.global_norm({"W1": np.array([np.nan, 1.0])}, ("W1",)))
    two = {"W1": np.array([3.0, 4.0]), "W2": np.array([12.0])}
    assert_close(minirtrl.global_norm(two, ("W1", "W2")), 13.0, rtol=0)


@pytest.mark.parametrize("bad, error", [
    (0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
    (True, TypeError), ("1", TypeError)])
def test_clip_by_norm_checks_max_norm(bad, error):
    with pytest.raises(error, match="max_norm"):
        minirtrl.clip_by_norm({"W1": np.ones(2)}, bad, ("W1",))
    minirtrl.clip_by_norm({"W1": np.ones(2)}, np.float32(2.0), ("W1",))  # NumPy scalars do


@pytest.mark.parametrize("form", ["gram", "qr"])
@pytest.mark.parametrize("poison", [np.inf, np.nan])
def test_ok_gives_non_finite_values_where_linear_algebra_cannot_go_on(form, poison):
    """eigh and svd raise on non-finite input; ok returns NaN for the guard instead."""
    cell = minirtrl.RHN(3, 4, 3)
    params = cell.init(0, init_scale=0.5)
    xs, _, _ = random_problem(cell, 2, 2)
    state = ok.init(cell, 2, 2, xp=np, dtype=np.float64)
    noise = {"W1": np.ones((2, 3))}
    for t in range(2):
        _s, cache = cell.step(params, np.zeros((2, 4)), xs[t], xp=np)
        state = ok.update(cell, params, state, cache, noise, xp=np, form=form)
    poisoned = state._replace(A=(state.A[0] * np.array([1.0, poison])[:, None, None, None],))
    with np.errstate(all="ignore"):
        new = ok.update(cell, params, poisoned, cache, noise, xp=np, form=form)
    assert not np.all(np.isfinite(new.A[0][1])) and not np.all(np.isfinite(new.u[0][1]))
    assert np.all(np.isfinite(new.A[0][0])) and np.all(np.isfinite(new.u[0][0]))  # per sample


def test_sequence_gradient_of_exploding_parameters_is_non_finite_not_an_exception():
    cell = minirtrl.RHN(3, 4, 3)
    params = {k: np.full(v.shape, np.inf) for k, v in cell.init(0).items()}
    xs, ys, mask = random_problem(cell, 3, 2)
    with np.errstate(all="ignore"):
        for method in minirtrl.METHODS:
            if method == "rflo":  # defined for the leaky RNN only
                continue
            rank = 2 if method in ("ok", "kf-avg") else None
            loss, grads = minirtrl.sequence_gradient(method, cell, params, xs, ys, mask, rank=rank)
            assert not np.isfinite(float(loss)) or not np.all(np.isfinite(grads["W1"]))


def test_missing_arguments_are_named():
    cell = minirtrl.RHN(3, 4, 3)
    params = cell.init(0)
    xs, ys, _ = random_problem(cell, 2, 1)
    with pytest.raises(TypeError, match="ys is required"):
        minirtrl.sequence_gradient("rtrl", cell, params, xs, None)
    with pytest.raises(TypeError, match="xs is required"):
        minirtrl.sequence_gradient("rtrl", cell, params, None, ys)
    with pytest.raises(TypeError, match="xs is required"):
        minirtrl.exact_influence(cell, params, None)
    with pytest.raises(TypeError, match="params"):
        minirtrl.sequence_gradient("rtrl", cell, None, xs, ys)
    with pytest.raises(TypeError, match="cell"):
        minirtrl.sequence_gradient("rtrl", None, params, xs, ys)


def test_bool_is_refused_where_an_integer_is_meant_and_numpy_integers_are_taken():
    cell = minirtrl.RHN(3, 4, 3)
    params = cell.init(0)
    xs, ys, _ = random_problem(cell, 4, 1)
    for kwargs, name in ((dict(method="ok", rank=True), "rank"), (dict(seed=True), "seed"),
                         (dict(method="bptt", truncation=True), "truncation")):
        method = kwargs.pop("method", "kf")
        with pytest.raises((TypeError, ValueError), match=name):
            minirtrl.sequence_gradient(method, cell, params, xs, ys, **kwargs)
    with pytest.raises(ValueError, match="n_hidden"):
        minirtrl.RHN(3, True, 3)
    with pytest.raises(ValueError, match="seed"):
        cell.init(True)
    small = minirtrl.RHN(np.int64(3), np.int32(4), np.int16(3), depth=np.int8(1))
    assert small == cell and type(small.n_hidden) is int
    ref = minirtrl.sequence_gradient("ok", cell, params, xs, ys, rank=2, seed=3)
    got = minirtrl.sequence_gradient("ok", cell, cell.init(np.int64(0)), xs, ys, rank=np.int64(2),
                                     seed=np.uint8(3))
    assert_close(got[0], ref[0], rtol=0)
    trunc = minirtrl.sequence_gradient("bptt", cell, params, xs, ys, truncation=np.int32(2))
    windowed = minirtrl.sequence_gradient("bptt", cell, params, xs, ys, truncation=2)
    assert_close(trunc[0], windowed[0], rtol=0)
