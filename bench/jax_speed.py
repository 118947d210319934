"""The compiled JAX paths (``minirtrl.compiled``) against NumPy's eager step, side by side.

Two tables, every figure the median CPU time (``time.process_time``: all of the process's
threads, so JAX's own threads count) of interleaved rounds in one process, JAX's results
waited for (``block_until_ready``) inside the timed call:

    per step, batch 1     for each method and n: NumPy's online step (``methods.advance``,
                          the signs drawn on the host), the jitted step
                          (``compiled.online_step``, the host's signs moved by the call), and
                          ``compiled.scan_steps`` over ``--scan`` steps per call (their signs
                          drawn at once), divided by them
    training step         the drivers' whole step at the copy and PTB shapes: NumPy's
                          (``steps.online_step`` + ``steps.apply_step``: step, batch mean,
                          clip, Adam, the one host read) against the same compiled as one
                          program (``steps.fused_step``), the host read outside

The ratios are NumPy's time over JAX's (above 1: JAX is faster). JAX is float64 only with
its x64 mode, which this script switches on. Pin one core, as JAX's flags alone do not:

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python bench/jax_speed.py --json out.json
"""

import statistics
import sys

import numpy as np

try:  # python -m bench.jax_speed
    from . import _common as C
except ImportError:  # python bench/jax_speed.py
    import _common as C

import minirtrl
from minirtrl.adam import adam_init
from minirtrl.drivers.checkpoint import Run
from minirtrl.drivers.steps import Setup, apply_step, fused_step, online_step
from minirtrl.methods import INFLUENCE, advance, draw_sign_steps, host_signs

#: the drivers' shapes: (name, method, rank, n, B, n_in, dtype)
SHAPES = (("copy", "ok", 16, 128, 16, 4, "float32"), ("copy", "kf", None, 128, 16, 4, "float32"),
          ("ptb", "ok", 8, 256, 32, 50, "float32"), ("ptb", "kf", None, 256, 32, 50, "float32"))


def make_parser():
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=C.positive, nargs="+", default=[32, 64, 128],
                   help="hidden units n of the batch-1 table")
    p.add_argument("--methods", nargs="+", default=["kf", "uoro", "rtrl", "ok"],
                   choices=["kf", "uoro", "rtrl", "ok", "kf-avg", "snap1"],
                   help="methods of the batch-1 table (ok and kf-avg with --rank)")
    p.add_argument("--rank", type=C.positive, default=4, help="r of ok in the batch-1 table")
    p.add_argument("--dtype", default="float64", choices=C.DTYPES,
                   help="float type of the batch-1 table")
    p.add_argument("--n-in", type=C.positive, default=8, help="input size of the batch-1 table")
    p.add_argument("--scan", type=C.positive, default=32, help="steps per scanned call")
    p.add_argument("--shapes", nargs="*", default=["copy", "ptb"], choices=["copy", "ptb"],
                   help="the training-step table's shapes (none: no table)")
    p.add_argument("--rounds", type=C.positive, default=5, help="interleaved timed rounds")
    p.add_argument("--min-seconds", type=C.positive_float, default=0.2,
                   help="CPU seconds of each contestant per round, about")
    p.add_argument("--json", metavar="FILE", help="write every row and the machine as JSON")
    C.add_force_flag(p)
    return p


def race(contestants, args):
    """``{name: median seconds per step}`` of ``{name: (fn, steps per call)}``, interleaved."""
    for fn, _ in contestants.values():  # warm up: compile
        fn()
        fn()
    times = {name: [] for name in contestants}
    for _ in range(args.rounds):
        for name, (fn, per) in contestants.items():
            times[name].append(C.cpu_per_call(fn, args.min_seconds) / per)
    return {name: statistics.median(v) for name, v in times.items()}


# ---- batch 1 ------------------------------------------------------------------------------
def batch_one(method, n, args, jax, jnp):
    """``{name: (fn, steps per call)}``: NumPy's step, the jitted one, the scanned one."""
    cell = minirtrl.RHN(args.n_in, n, args.n_in)
    algo = minirtrl.online(method, cell, args.rank if method in ("ok", "kf-avg") else None)
    rng = np.random.default_rng(n)
    xs = np.eye(args.n_in)[rng.integers(0, args.n_in, size=(64, 1))]
    ys = rng.integers(0, args.n_in, size=(64, 1))
    return {"numpy": (numpy_step(algo, xs, ys, args), 1),
            "jit": (jitted_step(algo, xs, ys, args, jax, jnp), 1),
            "scan": (scanned_steps(algo, xs, ys, args, jax, jnp), args.scan)}


def numpy_step(algo, xs, ys, args):
    dtype = getattr(np, args.dtype)
    params = algo.cell.init(0, dtype=dtype, init_scale=1 / np.sqrt(algo.cell.n_hidden))
    xs, mask, rng = xs.astype(dtype), np.ones((1,), dtype=dtype), np.random.default_rng(1)
    carried = {"state": algo.init(1, dtype=dtype), "t": 0}

    def call():
        t = carried["t"] % xs.shape[0]
        signs = algo.draw_signs(rng, 1, dtype=dtype)
        carried["state"], _, _ = advance(algo, params, carried["state"], xs[t], ys[t], mask,
                                         signs, xp=np)
        carried["t"] += 1

    return call


def jitted_step(algo, xs, ys, args, jax, jnp):
    from minirtrl import compiled

    dtype = getattr(jnp, args.dtype)
    params = algo.cell.init(0, xp=jnp, dtype=dtype, init_scale=1 / np.sqrt(algo.cell.n_hidden))
    x = [jnp.asarray(v, dtype=dtype) for v in xs]
    y = [jnp.asarray(v) for v in ys]
    mask, rng, step = jnp.ones((1,), dtype=dtype), np.random.default_rng(1), \
        compiled.online_step(algo)
    carried = {"state": algo.init(1, xp=jnp, dtype=dtype), "t": 0}

    def call():
        t = carried["t"] % len(x)
        signs = algo.draw_signs(rng, 1, dtype=getattr(np, args.dtype))  # moved by the call
        carried["state"], _, g = step(params, carried["state"], x[t], y[t], mask, signs)
        carried["t"] += 1
        jax.block_until_ready(g)

    return call


def scanned_steps(algo, xs, ys, args, jax, jnp):
    from minirtrl import compiled

    dtype, K = getattr(jnp, args.dtype), args.scan
    params = algo.cell.init(0, xp=jnp, dtype=dtype, init_scale=1 / np.sqrt(algo.cell.n_hidden))
    xk, yk = jnp.asarray(xs[:K], dtype=dtype), jnp.asarray(ys[:K])
    mk, rng, scan = jnp.ones((K, 1), dtype=dtype), np.random.default_rng(2), \
        compiled.scan_steps(algo)
    carried = {"state": algo.init(1, xp=jnp, dtype=dtype)}

    def call():
        signs = draw_sign_steps(rng, algo.sign_shapes(1), K, xp=np, dtype=getattr(np, args.dtype))
        carried["state"], _, g = scan(params, carried["state"], xk, yk, mk, signs)
        jax.block_until_ready(g)

    return call


# ---- the drivers' training step ---------------------------------------------------------------
def training(shape, jax, jnp):
    _, method, rank, n, B, n_in, dtype_name = shape
    cell = minirtrl.RHN(n_in, n, n_in)
    module = INFLUENCE[method]
    shapes = module.sign_shapes(cell, B, rank or 1)
    rng = np.random.default_rng(0)
    width = n_in + 3 + sum(int(np.prod(s[1:])) for s in shapes.values())
    out = {}
    for lib, xp in (("numpy", np), ("jax", jnp)):
        dtype = getattr(xp, dtype_name)
        setup = Setup(cell, xp, None, dtype, module, shapes, 1, B, 10**-3.5, 16.0,
                      fused=lib == "jax")
        params = cell.init(0, xp=xp, dtype=dtype)
        est = module.init(cell, B, rank or 1, xp=xp, dtype=dtype)
        run = {"now": Run(0, params, adam_init(params), est, xp.zeros((B, cell.n_state),
                                                                       dtype=dtype))}
        packed = []
        for _ in range(8):
            rows = np.zeros((1, B, width))
            rows[0, np.arange(B), rng.integers(0, n_in, B)] = 1.0
            rows[0, :, n_in] = rng.integers(0, n_in, B)
            rows[0, :, n_in + 1:n_in + 3] = 1.0  # mask, keep
            flat = np.concatenate([v.reshape(B, -1) for v in host_signs(rng, shapes).values()],
                                  axis=1)
            rows[0, :, n_in + 3:] = flat
            packed.append(xp.asarray(rows, dtype=dtype))
        if lib == "numpy":
            def call(setup=setup, run=run, packed=packed):
                now = run["now"]
                loss, grads, est, s = online_step(setup, now, packed[now.step % 8], False)
                run["now"], _ = apply_step(setup, now, loss, grads, est, s)
            out["numpy"] = (call, 1)
        else:
            fused = fused_step(setup, online_step)

            def fcall(run=run, packed=packed, fused=fused):
                now = run["now"]
                run["now"], _ = fused(now, packed[now.step % 8], False)  # reads back: waits
            out["jit"] = (fcall, 1)
    return out


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.json:
        C.checked_output("--json", args.json, replace=args.force)
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    info = C.machine_info("numpy", "cpu")
    info["jax"] = jax.__version__
    info["jax_devices"] = [str(d) for d in jax.devices()]
    print("# bench/jax_speed.py  " + " ".join(sys.argv[1:]))
    C.print_machine(info)
    print(f"# jax {jax.__version__} on {jax.devices()}; CPU clock, median of {args.rounds} "
          "interleaved rounds; ratio = NumPy's time / JAX's", flush=True)
    rows = []
    print(f"# batch 1, RHN depth 1, n_in {args.n_in}, {args.dtype}, ok rank {args.rank}")
    print(f"{'method':8s} {'n':>4s} {'numpy ms':>9s} {'jit ms':>8s} {'scan ms':>8s} "
          f"{'np/jit':>7s} {'np/scan':>8s}", flush=True)
    for n in args.sizes:
        for method in args.methods:
            t = race(batch_one(method, n, args, jax, jnp), args)
            scan = t["scan"]
            rows.append({"table": "batch 1", "method": method, "n": n, "dtype": args.dtype,
                         "numpy_ms": t["numpy"] * 1e3, "jit_ms": t["jit"] * 1e3,
                         "scan_ms": scan * 1e3, "scan_steps": args.scan,
                         "numpy_over_jit": t["numpy"] / t["jit"],
                         "numpy_over_scan": t["numpy"] / scan})
            print(f"{method:8s} {n:4d} {t['numpy'] * 1e3:9.4f} {t['jit'] * 1e3:8.4f} "
                  f"{scan * 1e3:8.4f} {t['numpy'] / t['jit']:7.2f} {t['numpy'] / scan:8.2f}",
                  flush=True)
    chosen = [s for s in SHAPES if s[0] in args.shapes]
    if chosen:
        print("# the drivers' training step (RHN depth 1)")
        print(f"{'shape':6s} {'method':8s} {'n':>4s} {'B':>3s} {'dtype':8s} {'numpy ms':>9s} "
              f"{'fused ms':>9s} {'np/fused':>9s}", flush=True)
    for shape in chosen:
        t = race(training(shape, jax, jnp), args)
        name, method, rank, n, B, _, dtype = shape
        label = f"{method}-{rank}" if rank else method
        rows.append({"table": "training step", "shape": name, "method": label, "n": n,
                     "batch": B, "dtype": dtype, "numpy_ms": t["numpy"] * 1e3,
                     "fused_ms": t["jit"] * 1e3, "numpy_over_fused": t["numpy"] / t["jit"]})
        print(f"{name:6s} {label:8s} {n:4d} {B:3d} {dtype:8s} {t['numpy'] * 1e3:9.3f} "
              f"{t['jit'] * 1e3:9.3f} {t['numpy'] / t['jit']:9.2f}", flush=True)
    if args.json:
        C.write_json(args.json, {"machine": info, "settings": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
