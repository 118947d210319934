"""Adam and clipping against properties derived from their definitions."""

import numpy as np

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
