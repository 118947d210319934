"""The layout converters of ``minirtrl.testing.layout``, on every backend: state-first and
input-first columns, and the influence flattened column-major (as ``kron(a, D)``) or
row-major."""

import numpy as np
import pytest

import minirtrl
from minirtrl.testing import layout, to_numpy

N_IN, N = 2, 3
K = N_IN + N + 1


def test_column_orders_are_each_others_inverse_on_any_leading_axes(to_xp):
    W = np.arange(4 * N * K, dtype=np.float64).reshape(4, N, K)
    moved = layout.state_first(to_xp(W), N_IN)
    assert np.array_equal(to_numpy(moved)[0, 0], np.r_[W[0, 0, N_IN:N_IN + N],
                                                       W[0, 0, :N_IN], W[0, 0, -1]])
    assert np.array_equal(to_numpy(layout.input_first(moved, N_IN)), W)


def test_column_major_flattening_is_kron_of_the_first_step(to_xp):
    """After one step from s_0 = 0 the influence is a ⊗ D, a = [x; 0; 1]: flattened
    column-major over the state-first W it is numpy's kron([0; x; 1], D)."""
    cell = minirtrl.VanillaRNN(N_IN, N, 2, alpha=0.7)
    params = cell.init(0, init_scale=0.5)
    x = np.random.default_rng(1).standard_normal((1, 1, N_IN))
    G = minirtrl.exact_influence(cell, params, x)["W1"]  # (1, n, n, K)
    flat = to_numpy(layout.flatten_influence(layout.state_first(to_xp(G), N_IN), "F"))[0]
    D = 0.7 * np.diag(1 - np.tanh(params["W1"][:, :N_IN] @ x[0, 0] + params["W1"][:, -1]) ** 2)
    assert np.abs(flat - np.kron(np.r_[np.zeros(N), x[0, 0], 1.0], D)).max() < 1e-15


@pytest.mark.parametrize("order", ["F", "C"])
def test_flattening_round_trips_and_matches_its_definition(to_xp, order):
    G = np.random.default_rng(2).standard_normal((2, N, 4, 5))  # (B, n, m, k)
    flat = to_numpy(layout.flatten_influence(to_xp(G), order))
    i, j = 3, 1  # entry W[i, j]
    assert np.array_equal(flat[..., j * 4 + i] if order == "F" else flat[..., i * 5 + j],
                          G[..., i, j])
    back = layout.unflatten_influence(to_xp(flat), 4, 5, order)
    assert np.array_equal(to_numpy(back), G)


def test_bad_arguments_are_named():
    G = np.zeros((1, N, 4, 5))
    with pytest.raises(ValueError, match="order must be 'F' or 'C', not 'A'"):
        layout.flatten_influence(G, "A")
    with pytest.raises(ValueError, match="not m·k = 4·4"):
        layout.unflatten_influence(np.zeros((1, N, 20)), 4, 4)
    with pytest.raises(ValueError, match="cannot hold n_in = 5"):
        layout.state_first(np.zeros((N, 6)), 5)
