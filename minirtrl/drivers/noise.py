"""``python -m minirtrl.noise``: how noisy each unbiased estimator is, against exact RTRL.

Protocol: a fixed random RHN and a fixed random one-hot input
and target stream; exact RTRL runs alongside. Each estimator runs as M independent chains
that see the same stream and differ only in their random signs (the chains are the batch
axis, so the M runs cost one batched run). At chosen steps t it reports, over the chains,

    influence:  E ‖Ĝ_t − G_t‖² / ‖G_t‖²          (all blocks W_1..W_L together)
    gradient:   E ‖ĝ_t − g_t‖² / ‖g_t‖²,   g_t = c_t · G_t,  c_t = ∂loss_t/∂s_t

with the standard error of each mean (std over chains / sqrt(M)); and the same at one step
against the number of hidden units n. Cost: the estimators' own cost with B = M, plus exact
RTRL with B = 1 (O(n⁴) per step) and, at report steps, the dense estimates in chunks.
"""

import json
import math
import sys
import time

import numpy as np

from .. import readout
from ..backends import NAMES, BackendError, dtype_of, load, to_numpy
from ..cells import RHN
from ..cells.rhn import Layer
from ..influence import select
from ..methods import RANKED, influence_method
from ..rng import draw_signs
from .cli import Parser, nonnegative, positive, positive_float
from .errors import Failure, command, deferred
from .files import check_output, io_failure, write_atomic

PROG = "minirtrl.noise"

ESTIMATORS = ("uoro", "kf", "ok", "kf-avg")


def label(algo, rank):
    return f"{rank}-{algo}" if algo in RANKED else algo


def measure(algo, *, n, report, samples, rank=8, depth=1, n_sym=8, seed=0, init_scale=None,
            xp, device=None, dtype=None, chunk=16):
    """Relative squared errors of one estimator at the steps in ``report``.

    Returns ``{t: {"influence": (mean, se), "gradient": (mean, se)}}`` over ``samples``
    chains, running up to the last step in ``report``. The network (``n`` units, depth,
    ``init_scale`` default ``1/sqrt(n)``) is drawn from ``seed``, the stream from
    ``seed + 1000`` and the signs from ``seed + 1``. All chains see the same stream and
    parameters, so they share one forward pass (broadcast over the M chains).
    """
    dtype = xp.float64 if dtype is None else dtype
    scale = 1.0 / math.sqrt(n) if init_scale is None else init_scale
    cell = RHN(n_in=n_sym, n_hidden=n, n_out=n_sym, depth=depth)
    params = cell.init(seed, xp=xp, dtype=dtype, init_scale=scale, device=device)
    stream = np.random.default_rng(seed + 1000)
    signs = np.random.default_rng(seed + 1)
    eye = np.eye(n_sym)
    exact, est = influence_method("rtrl"), influence_method(algo)
    r = rank if algo in RANKED else 1
    g_state = exact.init(cell, 1, xp=xp, dtype=dtype, device=device)
    e_state = est.init(cell, samples, r, xp=xp, dtype=dtype, device=device)
    shapes = est.noise_shapes(cell, samples, r)
    s1 = xp.zeros((1, n), dtype=dtype, device=device)
    out = {}
    for t in range(1, max(report) + 1):
        sym = stream.integers(0, n_sym, size=2)
        x1 = xp.asarray(eye[sym[:1]], dtype=dtype, device=device)  # (1, n_sym)
        s1, layers1 = cell.step(params, s1, x1, xp=xp)
        layersM = tuple(  # the same forward pass for every chain: (1, .) -> (M, .)
            Layer(*(xp.broadcast_to(f, (samples, f.shape[1])) for f in layer)) for layer in layers1
        )
        g_state = exact.update(cell, params, g_state, layers1, xp=xp)
        noise = draw_signs(signs, shapes, xp=xp, dtype=dtype, device=device)
        e_state = est.update(cell, params, e_state, layersM, noise, xp=xp)
        if t in report:
            y = xp.asarray(sym[1:], dtype=xp.int64, device=device)
            ones = xp.ones((1,), dtype=dtype, device=device)
            _, _, c = readout.loss_and_grad(params["V"], s1, y, ones, xp=xp)  # (1, n)
            out[t] = _errors(cell, exact, est, g_state, e_state, c, samples, chunk, xp=xp)
    return out


def _errors(cell, exact, est, g_state, e_state, c, samples, chunk, *, xp):
    """Per-chain relative squared errors of influence and gradient -> (mean, se) each."""
    G = exact.influence(cell, g_state, xp=xp)  # {W_l: (1, n, 2n, k_l)}
    c_np = to_numpy(c)[0]  # (n,)
    G_np = {k: to_numpy(v)[0] for k, v in G.items()}
    g_np = {k: np.tensordot(c_np, v, axes=(0, 0)) for k, v in G_np.items()}
    G_norm = sum(np.sum(v * v) for v in G_np.values())
    g_norm = sum(np.sum(v * v) for v in g_np.values())
    inf_err, grad_err = [], []
    for lo in range(0, samples, chunk):
        part = est.influence(cell, select(e_state, lo, min(lo + chunk, samples)), xp=xp)
        part = {k: to_numpy(v) for k, v in part.items()}  # (chunk, n, 2n, k_l)
        d_inf = sum(np.sum((v - G_np[k]) ** 2, axis=(1, 2, 3)) for k, v in part.items())
        d_grad = sum(
            np.sum((np.tensordot(v, c_np, axes=(1, 0)) - g_np[k]) ** 2, axis=(1, 2))
            for k, v in part.items()
        )
        inf_err.append(d_inf / G_norm)
        grad_err.append(d_grad / g_norm)
    return {name: _mean_se(np.concatenate(v)) for name, v in (("influence", inf_err), ("gradient", grad_err))}


def _mean_se(values):
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(len(values)))


# ---- command line ----------------------------------------------------------------------
def _parser():
    p = Parser(
        prog=f"python -m {PROG}",
        description="Relative squared error of UORO, KF-RTRL, r-OK and r-KF-avg against exact RTRL, "
        "over time and against the number of hidden units.",
    )
    p.add_argument("--backend", default="numpy", choices=NAMES, help="array library (default numpy)")
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"), help="default float64")
    p.add_argument("--algo", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS, help="estimators to measure")
    p.add_argument("--rank", type=positive, default=8, help="r for ok and kf-avg (default 8)")
    p.add_argument("--hidden", type=positive, default=32, help="n for the table over time (default 32)")
    p.add_argument("--depth", type=positive, default=1, help="RHN depth L (default 1)")
    p.add_argument("--steps", type=positive, nargs="+", default=[10, 100, 1000], help="report steps t")
    p.add_argument("--sizes", type=positive, nargs="*", default=[8, 16, 32, 64], help="n for the table over n")
    p.add_argument("--size-step", type=positive, default=100, help="the step t of the table over n (default 100)")
    p.add_argument("--samples", type=positive, default=100, help="independent chains M (default 100)")
    p.add_argument("--init-scale", type=positive_float, default=None, help="weight scale (default 1/sqrt(n))")
    p.add_argument("--seed", type=nonnegative, default=0, help="seed of network, stream and signs")
    p.add_argument("--json", metavar="FILE", help="write the tables as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw both tables (needs matplotlib: pip install 'minirtrl[plot]')")
    return p


def _row(name, t, n, res):
    (mi, si), (mg, sg) = res["influence"], res["gradient"]
    return f"{name:>9s} {n:5d} {t:6d}   {mi:10.4g} ± {si:<9.2g}  {mg:10.4g} ± {sg:<9.2g}"


def main(argv=None):
    """Run the noise tool with the command-line arguments ``argv``; returns the exit status.

    ``--json`` and ``--plot`` are checked before anything is measured. Ctrl-C or SIGTERM
    stops the measurement, writes what was measured so far and exits with 130 or 143.
    """
    return command(PROG, lambda: _main(argv))


def _main(argv):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("argument --samples: needs at least 2 chains for a standard error")
    json_path = check_output("--json", args.json) if args.json else None
    plot_path = check_output("--plot", args.plot, image=True) if args.plot else None
    try:
        xp, device = load(args.backend)
    except BackendError as exc:
        raise Failure(str(exc)) from None
    dtype = dtype_of(xp, args.dtype)
    common = dict(samples=args.samples, rank=args.rank, depth=args.depth, seed=args.seed,
                  init_scale=args.init_scale, xp=xp, device=device, dtype=dtype)
    results = {"over_time": [], "over_n": [], "config": vars(args)}
    start = time.time()
    stopped = None
    try:
        _measure_all(args, common, results)
    except KeyboardInterrupt as exc:
        stopped = exc
        print(f"{PROG}: interrupted: writing what was measured so far", file=sys.stderr, flush=True)
    results["seconds"] = time.time() - start
    with deferred():
        if json_path:
            text = json.dumps(results, indent=1).encode("utf-8")
            try:
                write_atomic(json_path, lambda f: f.write(text))
            except OSError as exc:
                raise io_failure("--json", args.json, exc) from None
        if plot_path:
            try:
                _plot(results, plot_path)
            except OSError as exc:
                raise io_failure("--plot", args.plot, exc) from None
    if stopped is not None:
        raise stopped
    return 0


def _measure_all(args, common, results):
    header = (f"{'algo':>9s} {'n':>5s} {'t':>6s}   {'influence rel. sq. error':>23s}  "
              f"{'gradient rel. sq. error':>23s}")
    print(f"# over time: n = {args.hidden}, depth {args.depth}, M = {args.samples} chains", flush=True)
    print(header)
    for algo in args.algo:
        res = measure(algo, n=args.hidden, report=set(args.steps), **common)
        for t in sorted(res):
            print(_row(label(algo, args.rank), t, args.hidden, res[t]), flush=True)
            results["over_time"].append({"algo": label(algo, args.rank), "n": args.hidden, "t": t,
                                         **res[t]})
    if args.sizes:
        print(f"\n# over n: t = {args.size_step}, depth {args.depth}, M = {args.samples} chains")
        print(header)
        for algo in args.algo:
            for n in args.sizes:
                res = measure(algo, n=n, report={args.size_step}, **common)[args.size_step]
                print(_row(label(algo, args.rank), args.size_step, n, res), flush=True)
                results["over_n"].append({"algo": label(algo, args.rank), "n": n,
                                          "t": args.size_step, **res})


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax, x in (("over_time", axes[0], "t"), ("over_n", axes[1], "n")):
        algos = sorted({r["algo"] for r in results[key]})
        for algo in algos:
            rows = sorted((r for r in results[key] if r["algo"] == algo), key=lambda r: r[x])
            ax.errorbar([r[x] for r in rows], [r["gradient"][0] for r in rows],
                        yerr=[r["gradient"][1] for r in rows], marker="o", label=algo)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel("E‖ĝ − g‖² / ‖g‖²")
        ax.legend()
    axes[0].set_title("gradient noise over time")
    axes[1].set_title("gradient noise against n")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
