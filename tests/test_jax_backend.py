"""JAX as a named backend (``load("jax")``: its devices, its 64-bit mode, host copies, the
machine header), float64 refused with one line where JAX's 64-bit mode is off, and two
library properties a JAX run relies on, checked on every backend: ``ok``'s decompositions
keep any number of leading batch axes, and Adam's two moment dicts share no array.

The JAX tests run only where MINIRTRL_BACKENDS names jax (``tox -e jax``): JAX imported in
the suite's process would make its later os.fork() calls warn. Nothing here imports JAX at
module level."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minirtrl
from minirtrl import ok
from minirtrl._compat import array_namespace
from minirtrl.drivers import backends
from minirtrl.drivers import copy as copy_cmd
from minirtrl.testing import assert_close, to_numpy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def jax():
    """The ``jax`` module, its 64-bit mode on (``backends.load``); skipped unless
    MINIRTRL_BACKENDS names jax, failed there if JAX cannot be loaded."""
    if "jax" not in os.environ.get("MINIRTRL_BACKENDS", "").split(","):
        pytest.skip("jax runs only where MINIRTRL_BACKENDS names it (tox -e jax)")
    backends.load("jax")
    import jax

    return jax


# A fresh interpreter: JAX's 64-bit mode is off (nothing calls backends.load), and XLA makes
# two host devices. Every creation point of the library is asked for float64.
NARROWED = """
import jax, jax.numpy as jnp, numpy as np, minirtrl
cell = minirtrl.RHN(3, 4, 3)
algo = minirtrl.online("kf", cell)
print(cell.init(0, xp=jnp, dtype=jnp.float32)["V"].dtype)       # float32 is fine
print(algo.init(2, xp=jnp, dtype=jnp.float32).s.dtype)
for make in (lambda: cell.init(0, xp=jnp, dtype=jnp.float64),
             lambda: cell.init(0, xp=jnp),                          # the default, float64
             lambda: algo.init(2, xp=jnp, dtype=jnp.float64),
             lambda: algo.draw_signs(np.random.default_rng(0), 2, xp=jnp, dtype=jnp.float64),
             lambda: algo.random_start(2, 0, xp=jnp)):
    try:
        print("made", make())
    except ValueError as exc:
        print(exc)
from minirtrl.drivers import backends
xp, device = backends.load("jax", "cpu:1")                         # the mode on from here
params = cell.init(0, xp=xp, device=device)
print(params["V"].dtype, {str(d) for p in params.values() for d in p.devices()})
"""
REFUSED = ("dtype float64 was asked for but jax.numpy made float32 arrays (JAX's 64-bit mode "
           "is off? call jax.config.update('jax_enable_x64', True) before creating arrays)")


def test_float64_without_jaxs_64_bit_mode_is_refused_in_one_line(jax):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", NARROWED], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["float32", "float32", *[REFUSED] * 5,
                                       "float64 {'cpu:1'}"]


# A fresh interpreter, 64-bit mode off, every warning an error: float32 runs every method on
# every cell with no int64 asked for (JAX would narrow it to int32 with a warning), and gives
# NumPy's float32 gradient. Targets come in as uint8, a type the loss must not index with.
FLOAT32 = """
import warnings; warnings.simplefilter("error")
import jax.numpy as jnp, numpy as np, minirtrl
from minirtrl.testing import to_numpy
cells = {"rhn": minirtrl.RHN(4, 6, 4, depth=2), "vanilla": minirtrl.VanillaRNN(4, 6, 4, alpha=0.7),
         "gru": minirtrl.GRU(4, 6, 4), "lstm": minirtrl.LSTM(4, 6, 4)}
rng = np.random.default_rng(0)
xs = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(5, 3))]
ys = rng.integers(0, 4, size=(5, 3)).astype(np.uint8)
for name, cell in cells.items():
    for method in ("bptt", "rtrl", "kf", "uoro", "ok", "kf-avg", "snap1", "rflo"):
        if method == "rflo" and name != "vanilla":
            continue
        kw = {"rank": 2} if method in ("ok", "kf-avg") else {}
        kw.update(seed=1) if method not in ("bptt", "rtrl") else None
        out = {}
        for xp in (np, jnp):
            params = cell.init(0, xp=xp, dtype=xp.float32)
            loss, g = minirtrl.sequence_gradient(method, cell, params, xp.asarray(xs),
                                                 xp.asarray(ys), **kw)
            out[xp.__name__] = np.concatenate([to_numpy(g[k]).ravel() for k in sorted(g)])
        a, b = out["numpy"], out["jax.numpy"]
        assert b.dtype == np.float32, b.dtype
        print(name, method, float(np.abs(a - b).max() / np.abs(a).max()) < 1e-4)
"""


def test_float32_without_jaxs_64_bit_mode_asks_for_no_int64(jax):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", FLOAT32], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 4 * 7 + 1 and all(line.endswith(" True") for line in lines), lines


def test_load_switches_64_bit_mode_on_and_refuses_missing_devices(jax):
    xp, device = backends.load("jax")
    assert jax.config.jax_enable_x64
    assert xp is array_namespace(jax.numpy.zeros(1)) is jax.numpy
    assert xp.zeros(2, dtype=xp.float64).dtype == np.float64
    assert device == jax.devices()[0]
    assert backends.load("jax", "cpu")[1] == jax.devices("cpu")[0]
    count = len(jax.devices("cpu"))
    for bad, why in (("tpu", "not a device name"), ("cpu:x", "not a device name"),
                     ("cuda", "not a device name"), (f"cpu:{count}", f"{count} cpu device")):
        with pytest.raises(backends.BackendError) as err:
            backends.load("jax", bad)
        assert why in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(backends.BackendError, match="--threads applies to --backend torch"):
        backends.set_threads("jax", 2)


def test_host_copies_and_the_machine_header_name_jax(jax):
    xp, device = backends.load("jax")
    want = np.arange(6.0).reshape(2, 3)
    got = to_numpy(xp.asarray(want, device=device))
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    assert np.array_equal(got, want)
    info = backends.machine_info("jax", device)
    assert (info["backend"], info["jax"], info["device"]) == ("jax", jax.__version__, "cpu:0")
    assert info["jax_x64"] is True and info["jax_devices"] == [str(d) for d in jax.devices()]
    assert backends.threads_of("jax") == "XLA (its own threads)"


def test_a_missing_jax_device_is_one_line_from_a_command(jax, capsys):
    assert copy_cmd.main(["--backend", "jax", "--device", "gpu:7", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backend 'jax' has no device 'gpu:7'" in err[0], err


def test_a_jax_run_resumes_a_numpy_checkpoint(jax, tmp_path):
    """Checkpoints move between backends: 6 NumPy steps then 6 on JAX equal 12 on NumPy."""
    common = ["--algo", "kf", "--hidden", "4", "--batch", "2", "--dtype", "float64",
              "--seed", "5", "--lr", "0.01", "--progress-seconds", "1000"]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert copy_cmd.main([*common, "--steps", "12", "--checkpoint", str(a)]) == 0
    assert copy_cmd.main([*common, "--steps", "6", "--checkpoint", str(b)]) == 0
    assert copy_cmd.main([*common, "--steps", "12", "--checkpoint", str(b), "--resume",
                          "--backend", "jax"]) == 0
    with np.load(a) as x, np.load(b) as y:
        assert "W1" in x.files
        for k in x.files:
            if x[k].dtype == np.float64 and k != "seconds":
                assert_close(y[k], x[k], rtol=1e-12, atol=1e-15, err_msg=k)


# ---- on every backend ---------------------------------------------------------------------


@pytest.mark.linalg
def test_decompositions_keep_leading_batch_axes(backend, to_xp, host):
    """eigh_or_nan / svd_or_nan on a (G, B, m, m) stack equal those of each (m, m) matrix
    (NumPy's, computed apart), NaN exactly for the matrices with a non-finite entry; the
    stacked Gram bases of ``bases_from_grams`` are those of each Gram alone."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 3, 4, 4))
    M = A @ np.swapaxes(A, -1, -2) + np.eye(4)  # symmetric, eigenvalues >= 1
    M[1, 2, 0, 3] = np.inf
    lam, E = ok.eigh_or_nan(to_xp(M), xp=backend.xp)
    U, s, Vh = ok.svd_or_nan(to_xp(M), xp=backend.xp)
    for g in range(2):
        for b in range(3):
            bad = (g, b) == (1, 2)
            assert np.all(np.isnan(host(lam)[g, b])) == bad
            assert np.all(np.isnan(host(s)[g, b])) == bad
            assert np.all(np.isnan(host(E)[g, b])) == bad
            assert np.all(np.isnan(host(U)[g, b])) == bad
            assert np.all(np.isnan(host(Vh)[g, b])) == bad
            if not bad:
                scale = 1e-12 * np.abs(M[g, b]).max()
                assert_close(host(lam)[g, b], np.linalg.eigvalsh(M[g, b]), rtol=0, atol=scale)
                assert_close(host(s)[g, b], np.linalg.svd(M[g, b], compute_uv=False), rtol=0,
                             atol=scale)
                rebuilt = (host(E)[g, b] * host(lam)[g, b]) @ host(E)[g, b].T
                assert_close(rebuilt, M[g, b], rtol=0, atol=scale)
                rebuilt = (host(U)[g, b] * host(s)[g, b]) @ host(Vh)[g, b]
                assert_close(rebuilt, M[g, b], rtol=0, atol=scale)
    grams = [M[0], A[1] @ np.swapaxes(A[1], -1, -2)]  # two (B, m, m) Grams, full rank
    for gram, (L, W) in zip(grams, ok.bases_from_grams(*map(to_xp, grams), xp=backend.xp)):
        L, W = host(L), host(W)  # gram = L Lᵀ and W L = I, matrix by matrix
        assert_close(L @ np.swapaxes(L, -1, -2), gram, rtol=0, atol=1e-12 * np.abs(gram).max())
        assert_close(W @ L, np.broadcast_to(np.eye(4), L.shape), rtol=0, atol=1e-10)


def test_adam_moments_share_no_array(backend, to_xp):
    """Two dicts of distinct zero arrays: a donated or updated moment never aliases another."""
    params = {k: to_xp(v) for k, v in minirtrl.RHN(3, 4, 3, depth=2).init(0).items()}
    state = minirtrl.adam_init(params)
    arrays = [*state.m.values(), *state.v.values()]
    assert len({id(a) for a in arrays}) == len(arrays) == 2 * len(params)
    assert all(state.m[k] is not state.v[k] for k in params)
    assert all(np.array_equal(to_numpy(a), np.zeros(a.shape)) for a in arrays)
