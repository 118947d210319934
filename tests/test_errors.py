"""Every bad argument of the public entry points raises ValueError or TypeError naming the
argument."""

import numpy as np
import pytest

import minirtrl
from minirtrl.testing import assert_close, random_problem

cell = minirtrl.RHN(n_in=3, n_hidden=4, n_out=5, depth=2)
params = cell.init(0)
xs, ys, mask = random_problem(cell, 4, 2)


def grad(method="rtrl", p=params, x=xs, y=ys, m=mask, **kw):
    return minirtrl.sequence_gradient(method, cell, p, x, y, m, **kw)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(method="sgd"), ValueError, "method"),
        (dict(method="bogus"), ValueError, "method"),
        (dict(x=xs[:, :, :2]), ValueError, "xs"),
        (dict(x=xs[0]), ValueError, "xs"),
        (dict(y=ys[:, :1]), ValueError, "ys"),
        (dict(y=ys.astype(np.float64)), TypeError, "ys"),
        (dict(y=ys + 5), ValueError, "ys"),
        (dict(y=ys * 0 - 1), ValueError, "ys"),
        (dict(m=mask[:2]), ValueError, "mask"),
        (dict(m=mask * 2), ValueError, "mask"),
        (dict(method="ok", rank=0), ValueError, "rank"),
        (dict(method="kf-avg", rank=-3), ValueError, "rank"),
        (dict(method="ok", rank=1.5), TypeError, "rank"),
        (dict(method="rtrl", rank=2), ValueError, "rank"),
        (dict(method="rtrl", truncation=3), ValueError, "truncation"),
        (dict(method="bptt", truncation=0), ValueError, "truncation"),
        (dict(p={k: v for k, v in params.items() if k != "W2"}), ValueError, "params"),
        (dict(p={**params, "W1": params["W1"][:, :3]}), ValueError, r"params\['W1'\]"),
        (dict(p={**params, "V": params["V"].astype(np.float32)}), TypeError, "params"),
        (dict(p=[1, 2]), TypeError, "params"),
    ],
)
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        grad(**kwargs)


def test_bad_cell():
    with pytest.raises(TypeError, match="cell"):
        minirtrl.sequence_gradient("rtrl", "rhn", params, xs, ys)
    with pytest.raises(ValueError, match="depth"):
        minirtrl.RHN(3, 4, 5, depth=0)
    with pytest.raises(ValueError, match="n_hidden"):
        minirtrl.RHN(3, -4, 5)
    with pytest.raises(ValueError, match="dtype"):
        cell.init(0, dtype=np.float16)
    with pytest.raises(TypeError, match="dtype"):  # a name where a dtype is expected
        cell.init(0, dtype="float32")


def test_mixed_array_libraries():
    strict = pytest.importorskip("array_api_strict")
    sx = strict.asarray(xs)
    with pytest.raises(TypeError, match="xs"):
        grad(x=sx)
    with pytest.raises(TypeError, match="ys"):
        grad(y=strict.asarray(ys))
    with pytest.raises(TypeError, match="params"):
        grad(p={**params, "V": strict.asarray(params["V"])})
    with pytest.raises(TypeError, match="xs"):
        minirtrl.exact_influence(cell, params, sx)


def test_narrow_integer_targets_give_the_same_loss():
    wide = minirtrl.RHN(n_in=3, n_hidden=4, n_out=300)
    p = wide.init(0, init_scale=0.5)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 3))
    y = rng.integers(0, 256, size=(3, 2))
    expected = minirtrl.sequence_gradient("rtrl", wide, p, x, y)
    for dtype in (np.uint8, np.int16, np.uint16):
        loss, grads = minirtrl.sequence_gradient("rtrl", wide, p, x, y.astype(dtype))
        assert_close(loss, expected[0], rtol=0)
        assert_close(grads["V"], expected[1]["V"], rtol=0)


def test_bad_seed_and_backend_name():
    for seed in (-1, 1.5, "0"):
        with pytest.raises(ValueError, match="seed"):
            grad(method="kf", seed=seed)
        with pytest.raises(ValueError, match="seed"):
            cell.init(seed)
    with pytest.raises(TypeError, match="not the string 'jax'"):  # a name, not a namespace
        cell.init(0, xp="jax")


@pytest.mark.parametrize("make", [lambda: minirtrl.RHN(3, 4, 5, depth=2),
                                  lambda: minirtrl.VanillaRNN(3, 4, 5)], ids=["rhn", "vanilla"])
@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -0.5, 10**400])
def test_init_refuses_a_scale_that_is_not_a_finite_number_at_least_zero(make, scale):
    with pytest.raises(ValueError, match=r"^init_scale must be a finite number >= 0"):
        make().init(0, init_scale=scale)


def test_init_refuses_a_gate_bias_that_is_not_finite():
    for bias in (float("nan"), float("-inf")):
        with pytest.raises(ValueError, match=r"^gate_bias must be a finite number"):
            cell.init(0, gate_bias=bias)
    with pytest.raises(TypeError, match="gate_bias"):
        cell.init(0, gate_bias="2")
    p = cell.init(0, init_scale=0.0, gate_bias=-2.0)  # both at their edges: fine
    assert np.all(p["W2"][4:, -1] == -2.0) and np.all(p["W2"][:4] == 0.0)


@pytest.mark.parametrize("method", ["ok", "kf", "rtrl", "uoro", "bptt"])
def test_float16_params_are_refused_up_front_naming_the_dtype(method):
    half = {k: v.astype(np.float16) for k, v in params.items()}
    rank = 1 if method == "ok" else None
    with pytest.raises(TypeError, match=r"params\['V'\] must be float32 or float64, not float16"):
        grad(method=method, p=half, rank=rank)
    algo = minirtrl.online("ok", cell)
    state = algo.init(2)
    with pytest.raises(TypeError, match="float16"):
        algo.step(half, state, xs[0], ys[0], mask[0], signs=algo.draw_signs(
            np.random.default_rng(0), 2))
