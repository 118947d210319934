"""Adam and clipping against properties derived from their definitions."""

import numpy as np
import pytest

import minirtrl
from minirtrl.testing import assert_close


def test_first_adam_step_moves_each_entry_by_lr_times_sign():
    # With m̂ = g and v̂ = g² after one step, the update is lr·g/(|g| + eps) ≈ lr·sign(g).
    rng = np.random.default_rng(0)
    p = {"W1": rng.standard_normal((3, 4))}
    g = {"W1": rng.standard_normal((3, 4))}
    new, state = minirtrl.adam_step(p, g, minirtrl.adam_init(p), lr=0.01)
    expected = p["W1"] - 0.01 * g["W1"] / (np.abs(g["W1"]) + 1e-8)
    assert_close(new["W1"], expected, rtol=1e-13)
    assert state.step == 1


def test_adam_matches_a_direct_loop():
    rng = np.random.default_rng(1)
    p = {"V": rng.standard_normal(5)}
    state = minirtrl.adam_init(p)
    w, m, v = p["V"].copy(), np.zeros(5), np.zeros(5)
    for t in range(1, 6):
        g = rng.standard_normal(5)
        p, state = minirtrl.adam_step(p, {"V": g}, state, lr=0.1, beta1=0.8, beta2=0.9, eps=1e-6)
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.1 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.9**t)) + 1e-6)
    assert_close(p["V"], w, rtol=1e-13)


def test_clip_by_norm_scales_only_the_named_keys():
    g = {"W1": np.full((2, 2), 3.0), "W2": np.full(1, 4.0), "V": np.full(3, 100.0)}
    clipped, norm = minirtrl.clip_by_norm(g, 5.0, ("W1", "W2"))
    # np.isclose's default tolerances
    assert_close(norm, np.sqrt(4 * 9 + 16), rtol=1e-5, atol=1e-8)  # 7.211
    assert_close(np.sqrt(np.sum(clipped["W1"] ** 2) + np.sum(clipped["W2"] ** 2)), 5.0,
                 rtol=1e-5, atol=1e-8)
    assert_close(clipped["V"], g["V"], rtol=0)
    same, _ = minirtrl.clip_by_norm(g, 10.0, ("W1", "W2"))  # under the limit: unchanged
    assert_close(same["W1"], g["W1"], rtol=0)


P = {"W1": np.ones((2, 3)), "V": np.ones(4)}
G = {"W1": np.full((2, 3), 0.5), "V": np.full(4, -0.5)}


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=float("inf")), ValueError, "lr"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=10**400), ValueError, "lr"),  # an int no float holds
    (dict(lr="0.1"), TypeError, "lr"),
    (dict(lr=0.1, beta1=1), ValueError, "beta1"),
    (dict(lr=0.1, beta1=-0.1), ValueError, "beta1"),
    (dict(lr=0.1, beta2=1.0), ValueError, "beta2"),
    (dict(lr=0.1, beta2=float("nan")), ValueError, "beta2"),
    (dict(lr=0.1, eps=0.0), ValueError, "eps"),
    (dict(lr=0.1, eps=float("nan")), ValueError, "eps"),
])
def test_adam_refuses_hyperparameters_that_would_give_nan_parameters(kwargs, error, name):
    with pytest.raises(error, match=rf"^{name} must be"):
        minirtrl.adam_step(P, G, minirtrl.adam_init(P), **kwargs)


def test_adam_at_the_edges_of_the_ranges_stays_finite():
    new, _ = minirtrl.adam_step(P, G, minirtrl.adam_init(P), lr=0.1, beta1=0.0, beta2=0.0)
    # beta = 0: m̂ = g, v̂ = g², the step is lr·sign(g) up to eps
    assert_close(new["W1"], P["W1"] - 0.1 * 0.5 / (0.5 + 1e-8), rtol=1e-14)


def test_adam_refuses_arrays_it_cannot_update():
    half = {k: v.astype(np.float16) for k, v in P.items()}
    with pytest.raises(TypeError, match=r"params\['W1'\] must be float32 or float64, not float16"):
        minirtrl.adam_step(half, G, minirtrl.adam_init(P), lr=0.1)
    with pytest.raises(TypeError, match="float16"):
        minirtrl.adam_init(half)
    with pytest.raises(TypeError, match=r"grads\['V'\] must be float32 or float64"):
        minirtrl.adam_step(P, {**G, "V": G["V"].astype(np.float16)}, minirtrl.adam_init(P),
                           lr=0.1)
    with pytest.raises(ValueError, match="grads must have the keys of params"):
        minirtrl.adam_step(P, {"W1": G["W1"]}, minirtrl.adam_init(P), lr=0.1)
    with pytest.raises(TypeError, match="state must be an AdamState"):
        minirtrl.adam_step(P, G, (0, P, P), lr=0.1)


def test_clip_by_norm_refuses_a_string_for_its_keys():
    # "W1" would be read as the keys "W" and "1" (a KeyError 'W' before)
    with pytest.raises(TypeError, match=r"keys must be a sequence of names.*not str 'W1'"):
        minirtrl.clip_by_norm(G, 1.0, "W1")
    with pytest.raises(TypeError, match="keys"):
        minirtrl.global_norm(G, "W1")
    with pytest.raises(ValueError, match="keys names 'W2', which is not one of"):
        minirtrl.clip_by_norm(G, 1.0, ("W1", "W2"))
    with pytest.raises(ValueError, match="keys must name at least one"):
        minirtrl.global_norm(G, [])
    with pytest.raises(TypeError, match="float16"):
        minirtrl.global_norm({"W1": G["W1"].astype(np.float16)}, ["W1"])
    clipped, norm = minirtrl.clip_by_norm(G, 1.0, iter(["W1"]))  # any iterable of names
    assert_close(norm, np.sqrt(6 * 0.25), rtol=1e-15)
    assert_close(clipped["W1"], G["W1"] / np.sqrt(1.5), rtol=1e-15)
    assert_close(clipped["V"], G["V"], rtol=0)
