"""``minirtrl.compiled`` on JAX: the jitted online step, the scan over K steps and the jitted
training step against the eager library (NumPy float64, the same signs); the copy driver on
``--backend jax`` (its compiled step) against NumPy's checkpoints; ``--shard`` over two
forced host devices against one device. Skipped where JAX is not installed, and where
MINIRTRL_BACKENDS is set without jax (``tox -e jax`` runs them in a process of their own)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if "jax" not in os.environ.get("MINIRTRL_BACKENDS", "").split(","):
    # JAX in this process would make every later os.fork() warn (tox -e jax runs these apart)
    pytest.skip("jax not in MINIRTRL_BACKENDS", allow_module_level=True)
jax = pytest.importorskip("jax", reason="JAX not installed (the jax extra)")
jax.config.update("jax_enable_x64", True)  # float64 means float64 (what backends.load does)
jnp = pytest.importorskip("jax.numpy")

import minirtrl  # noqa: E402
from minirtrl import compiled  # noqa: E402
from minirtrl.drivers import copy as copy_cmd  # noqa: E402
from minirtrl.testing import assert_close  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T, B = 10, 3
CASES = [("kf", "rhn2", None), ("uoro", "vanilla", None), ("rtrl", "gru", None),
         ("ok", "rhn1", 2), ("kf-avg", "lstm", 2), ("snap1", "lstm", None),
         ("rflo", "vanilla", None)]


def make(cell):
    return {"rhn1": lambda: minirtrl.RHN(4, 5, 4, depth=1),
            "rhn2": lambda: minirtrl.RHN(4, 5, 4, depth=2),
            "vanilla": lambda: minirtrl.VanillaRNN(4, 5, 4, alpha=0.7),
            "gru": lambda: minirtrl.GRU(4, 5, 4), "lstm": lambda: minirtrl.LSTM(4, 5, 4)}[cell]()


def problem(cell, seed=0):
    rng = np.random.default_rng(seed)
    params = cell.init(seed + 1, init_scale=0.5)
    xs = np.eye(4)[rng.integers(0, 4, (T, B))]
    ys = rng.integers(0, 4, (T, B))
    mask = (rng.random((T, B)) < 0.8).astype(float)
    return params, xs, ys, mask


def on_jax(tree):
    return {k: jnp.asarray(v) for k, v in tree.items()}


def close(got, want, tol=1e-12):
    for k in want:
        scale = np.max(np.abs(want[k]))
        assert_close(np.asarray(got[k]), want[k], rtol=0, atol=tol * scale, err_msg=k)


@pytest.mark.parametrize(("method", "name", "rank"), CASES)
def test_scanned_sequence_gradient_equals_numpys(method, name, rank):
    cell = make(name)
    params, xs, ys, mask = problem(cell)
    loss, grads = minirtrl.sequence_gradient(method, cell, params, xs, ys, mask, seed=4,
                                             rank=rank)
    loss_j, grads_j = compiled.sequence_gradient(method, cell, on_jax(params), jnp.asarray(xs),
                                                 jnp.asarray(ys), jnp.asarray(mask), seed=4,
                                                 rank=rank)
    assert abs(float(loss_j) - float(loss)) <= 1e-12 * abs(float(loss))
    close(grads_j, grads)


@pytest.mark.parametrize(("method", "name", "rank"), CASES[:4])
def test_jitted_online_step_equals_the_eager_step_and_donates_the_state(method, name, rank):
    cell = make(name)
    params, xs, ys, mask = problem(cell, seed=1)
    algo = minirtrl.online(method, cell, rank)
    step = compiled.online_step(algo)
    pj = on_jax(params)
    eager, jitted = algo.init(B), algo.init(B, xp=jnp)
    rng_e, rng_j = np.random.default_rng(7), np.random.default_rng(7)
    for t in range(T):
        eager, loss_e, grads_e = algo.step(params, eager, xs[t], ys[t], mask[t],
                                           signs=algo.draw_signs(rng_e, B))
        old = jitted
        jitted, loss_j, grads_j = step(pj, jitted, jnp.asarray(xs[t]), jnp.asarray(ys[t]),
                                       jnp.asarray(mask[t]), algo.draw_signs(rng_j, B, xp=jnp))
        assert old.s.is_deleted()  # donated: its buffer now holds the new state
        close(grads_j, grads_e)
        assert_close(np.asarray(loss_j), loss_e, rtol=1e-12, atol=0)
    close({"s": jitted.s}, {"s": eager.s})


def test_compiled_training_step_is_step_clip_adam():
    """Derived without ``train_step``: the eager step's gradient / B, the recurrent part
    clipped to the joint norm, one Adam step; ``report`` computed inside."""
    cell = make("rhn1")
    params, xs, ys, mask = problem(cell, seed=2)
    algo = minirtrl.online("kf", cell)
    clip, lr = 0.05, 0.01
    train = compiled.train_step(algo, lr=lr, clip=clip, scale=1 / B,
                                report=lambda loss, g, p, norm: jnp.stack([jnp.sum(loss), norm]))
    signs = algo.draw_signs(np.random.default_rng(3), B)
    state, loss, grads = algo.step(params, algo.init(B), xs[0], ys[0], mask[0], signs=signs)
    grads = {k: g / B for k, g in grads.items()}
    norm = np.sqrt(sum(np.sum(grads[k] ** 2) for k in cell.blocks))
    assert norm > clip
    clipped = {k: g * (clip / norm) if k in cell.blocks else g for k, g in grads.items()}
    want, _ = minirtrl.adam_step(params, clipped, minirtrl.adam_init(params), lr=lr)
    pj = on_jax(params)
    out = train(pj, minirtrl.adam_init(pj), algo.init(B, xp=jnp), jnp.asarray(xs[0]),
                jnp.asarray(ys[0]), jnp.asarray(mask[0]), {k: jnp.asarray(v)
                                                           for k, v in signs.items()})
    new_params, adam, new_state, _, norm_j, extra = out
    close(new_params, want)
    assert int(adam.step) == 1
    assert_close(np.asarray(extra), [np.sum(loss), norm], rtol=1e-12, atol=0)
    assert_close(float(norm_j), norm, rtol=1e-12, atol=0)
    close({"s": new_state.s}, {"s": state.s})


def test_compiled_steps_refuse_anything_but_an_online():
    with pytest.raises(TypeError, match="algo must be an Online"):
        compiled.online_step("kf")


def checkpoint(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize(("algo", "extra"), [("kf", []), ("ok", ["--rank", "2"]),
                                             ("bptt", ["--truncation", "4"])])
def test_copy_on_jax_checkpoints_equal_numpys(algo, extra, tmp_path):
    """The same run on NumPy (eager) and on JAX (one compiled program per step), float64:
    the checkpoints agree to roundoff after the same steps."""
    common = ["--algo", algo, *extra, "--hidden", "6", "--batch", "4", "--steps", "30",
              "--dtype", "float64", "--seed", "3", "--lr", "0.01", "--progress-seconds", "1000"]
    paths = {}
    for backend in ("numpy", "jax"):
        paths[backend] = tmp_path / f"{backend}.npz"
        assert copy_cmd.main([*common, "--backend", backend, "--checkpoint",
                              str(paths[backend])]) == 0
    a, b = checkpoint(paths["numpy"]), checkpoint(paths["jax"])
    assert set(a) == set(b)
    numeric = [k for k in a if a[k].dtype == np.float64 and k != "seconds"]
    assert "W1" in numeric and "adam/m/W1" in numeric
    for k in numeric:
        assert_close(b[k], a[k], rtol=1e-9, atol=1e-12, err_msg=k)
    for k in a:
        if a[k].dtype != np.float64 and k not in ("run", "config"):
            assert np.array_equal(a[k], b[k]), k
    assert json.loads(str(b["config"]))["algo"] == algo


SHARDED = """
import json, sys
import numpy as np
import jax
from minirtrl.drivers import copy as copy_cmd
assert len(jax.devices()) == 2, jax.devices()
common = ["--algo", sys.argv[1], "--hidden", "5", "--batch", "4", "--steps", "12",
          "--dtype", "float64", "--seed", "1", "--progress-seconds", "1000", "--backend", "jax"]
assert copy_cmd.main([*common, "--checkpoint", sys.argv[2]]) == 0
assert copy_cmd.main([*common, "--shard", "--checkpoint", sys.argv[3]]) == 0
print(copy_cmd.main([*common, "--shard", "--batch", "3"]))
"""


@pytest.mark.parametrize("algo", ["kf", "uoro"])
def test_sharded_copy_run_equals_one_device(algo, tmp_path):
    """Two forced host devices (XLA_FLAGS, set before JAX starts: a fresh interpreter): the
    streams split over both give the checkpoint of the run on one device, to roundoff; a
    batch that does not split is refused with one line."""
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SHARDED, algo, str(one), str(two)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "2"
    assert ("--batch 3: --shard spreads the streams over 2 devices, so --batch must be a "
            "multiple of 2") in out.stderr
    a, b = checkpoint(one), checkpoint(two)
    for k in a:
        if a[k].dtype == np.float64 and k != "seconds":
            assert_close(b[k], a[k], rtol=1e-12, atol=1e-14, err_msg=k)
