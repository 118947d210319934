"""``python -m minirtrl.noise``: how far each estimator is from exact RTRL (noise and bias).

A fixed random cell (RHN, vanilla, GRU or LSTM, ``--cell``) reads a fixed random one-hot
stream; exact RTRL runs alongside. Each estimator runs as M independent chains that see the
same stream and differ only in their signs (the chains are the batch axis: one batched run).
At chosen steps t it reports, over the chains, with the standard error of each mean (std / sqrt(M)),

    influence:  E ‖Ĝ_t − G_t‖² / ‖G_t‖²          (all blocks together)
    gradient:   E ‖ĝ_t − g_t‖² / ‖g_t‖²,   g_t = c_t · G_t,  c_t = ∂loss_t/∂s_t

and the same at one step against the number of hidden units n. The deterministic
approximations (``snap1``, ``rflo``; §11) have no signs: they run as one chain, and their
figure is their squared relative bias (standard error 0). Cost: the estimators' own with
B = M, plus exact RTRL with B = 1 (O(n⁴) per step) and, at report steps, the dense estimates.
"""

import json
import math
import sys
import time

import numpy as np

from .. import readout
from .._compat import to_numpy
from ..methods import APPROXIMATE, INFLUENCE, RANKED, host_signs, map_state
from . import cli, plot
from .backends import dtype_of, threads_of
from .cli import add, nonnegative, positive, positive_float
from .report import header
from .safety import Failure, check_output, command, deferred, io_failure, write_atomic

PROG = "minirtrl.noise"
DEFAULT_RANK = 8

ESTIMATORS = ("uoro", "kf", "ok", "kf-avg")
#: what ``--algo`` accepts: the unbiased estimators and the deterministic approximations
CHOICES = (*ESTIMATORS, *APPROXIMATE)


def label(algo, rank):
    return f"{rank}-{algo}" if algo in RANKED else algo


def measure(algo, *, n, report, samples, rank=8, depth=1, cell="rhn", alpha=1.0, n_sym=8,
            seed=0, init_scale=None, xp, device=None, dtype=None, chunk=16):
    """Relative squared errors of one estimator at the steps in ``report``.

    Returns ``{t: {"influence": (mean, se), "gradient": (mean, se)}}`` over ``samples``
    chains, running up to the last step in ``report``. The network (``cell`` "rhn" of
    ``depth``, "vanilla" of leak ``alpha``, "gru" or "lstm", ``n`` units, ``init_scale`` default
    ``1/sqrt(n)``) is drawn from ``seed``, the stream from ``seed + 1000`` and the signs from
    ``seed + 1``. All chains see the same stream and parameters, so they share one forward
    pass (broadcast over the M chains). A deterministic method (``APPROXIMATE``) runs one
    chain whatever ``samples`` is: every chain would be the same (standard error 0).
    """
    samples = 1 if algo in APPROXIMATE else samples
    dtype = xp.float64 if dtype is None else dtype
    scale = 1.0 / math.sqrt(n) if init_scale is None else init_scale
    cell = cli.build_cell(cell, n_sym, n, n_sym, depth=depth, alpha=alpha)
    params = cell.init(seed, xp=xp, dtype=dtype, init_scale=scale, device=device)
    stream = np.random.default_rng(seed + 1000)
    signs = np.random.default_rng(seed + 1)
    eye = np.eye(n_sym)
    exact, est = INFLUENCE["rtrl"], INFLUENCE[algo]
    r = rank if algo in RANKED else 1
    g_state = exact.init(cell, 1, xp=xp, dtype=dtype, device=device)
    e_state = est.init(cell, samples, r, xp=xp, dtype=dtype, device=device)
    shapes = est.sign_shapes(cell, samples, r)
    s1 = xp.zeros((1, cell.n_state), dtype=dtype, device=device)
    out = {}
    for t in range(1, max(report) + 1):
        sym = stream.integers(0, n_sym, size=2)
        x1 = xp.asarray(eye[sym[:1]], dtype=dtype, device=device)  # (1, n_sym)
        s1, cache1 = cell.step(params, s1, x1, xp=xp)
        cacheM = _repeat(cache1, samples, xp)  # the same forward pass for every chain
        g_state = exact.update(cell, params, g_state, cache1, xp=xp)
        signs_t = {k: xp.asarray(v, dtype=dtype, device=device)
                   for k, v in host_signs(signs, shapes).items()}
        e_state = est.update(cell, params, e_state, cacheM, signs_t, xp=xp)
        if t in report:
            y = xp.asarray(sym[1:], dtype=xp.int64, device=device)
            ones = xp.ones((1,), dtype=dtype, device=device)
            _, _, c = readout.SOFTMAX.loss_and_grad(params["V"], s1, y, ones, xp=xp)  # (1, n)
            out[t] = _errors(cell, exact, est, g_state, e_state, c, samples, chunk, xp=xp)
    return out


def _repeat(cache, samples, xp):
    """A step's cache of one sample as ``samples`` identical ones: every array (1, ...) of
    every entry broadcast to (samples, ...), anything else kept."""
    def repeat(value):
        if isinstance(value, tuple):
            items = [repeat(v) for v in value]
            return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        shape = getattr(value, "shape", None)
        if shape is None or len(shape) == 0 or shape[0] != 1:
            return value
        return xp.broadcast_to(value, (samples, *shape[1:]))

    return repeat(cache)


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
        part = est.influence(cell, map_state(lambda a, lo=lo: a[lo:lo + chunk, ...], e_state),
                             xp=xp)
        part = {k: to_numpy(v) for k, v in part.items()}  # (chunk, n, 2n, k_l)
        d_inf = sum(np.sum((v - G_np[k]) ** 2, axis=(1, 2, 3)) for k, v in part.items())
        d_grad = sum(
            np.sum((np.tensordot(v, c_np, axes=(1, 0)) - g_np[k]) ** 2, axis=(1, 2))
            for k, v in part.items()
        )
        inf_err.append(d_inf / G_norm)
        grad_err.append(d_grad / g_norm)
    pairs = (("influence", inf_err), ("gradient", grad_err))
    return {name: _mean_se(np.concatenate(v)) for name, v in pairs}


def _mean_se(values):
    if len(values) == 1:  # a deterministic method: no spread
        return float(values[0]), 0.0
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(len(values)))


# ---- the command --------------------------------------------------------------------------
def make_parser():
    p = cli.parser(PROG, "Relative squared error of UORO, KF-RTRL, r-OK and r-KF-avg (and of "
                         "SnAp-1 and RFLO: their bias) against exact RTRL, over time and "
                         "against the number of hidden units.")
    a = p.add_argument
    cli.add_backend_flags(p, dtype="float64")
    a("--algo", nargs="+", default=list(ESTIMATORS), choices=CHOICES,
      help=f"gradient algorithm: the methods to measure; snap1 and rflo (rflo: --cell vanilla "
           f"only) are deterministic, one chain each (default {' '.join(ESTIMATORS)})")
    add(p, "--rank", None, type=positive, shown=DEFAULT_RANK)
    add(p, "--hidden", 32, type=positive, shown="32, for the table over time")
    cli.add_cell_flags(p)
    a("--at", type=positive, nargs="+", default=[10, 100, 1000], metavar="T",
      help="steps t at which the table over time is reported (default 10 100 1000)")
    a("--sizes", type=positive, nargs="*", default=[8, 16, 32, 64], metavar="N",
      help="hidden units n of the table over n (default 8 16 32 64; none: no table)")
    a("--size-at", type=positive, default=100, metavar="T",
      help="the step t of the table over n (default 100)")
    add(p, "--samples", 100, type=positive)
    a("--init-scale", type=positive_float, default=None,
      help="std of the random weights (default 1/sqrt(n))")
    add(p, "--seed", 0, type=nonnegative, shown="0; here the network, the stream and the signs")
    add(p, "--json", None, metavar="FILE", shown="none")
    a("--plot", metavar="FILE.png", default=None,
      help="draw both tables, as python -m minirtrl.plot does (needs matplotlib: "
           "pip install 'minirtrl[plot]'; default: none)")
    a("--force", action="store_true", help="replace an existing output file (default: refuse)")
    return p


def parse(argv):
    """Parsed and checked arguments, or the exit status (``--help``, a bad flag)."""
    p = make_parser()

    def check(args):
        if args.samples < 2:
            p.error("argument --samples: needs at least 2 chains for a standard error")
        if args.rank is not None and not set(args.algo) & set(RANKED):
            p.error(f"--rank applies only to --algo {' or '.join(RANKED)}, not "
                    f"{' '.join(args.algo)}")
        cli.check_cell_flags(p, args)
        if "rflo" in args.algo and args.cell != "vanilla":
            p.error(f"--algo rflo applies only to --cell vanilla (the leaky RNN), not {args.cell}")
        args.rank = DEFAULT_RANK if args.rank is None else args.rank

    return cli.parse_args(p, argv, check)


def _row(name, t, n, res):
    (mi, si), (mg, sg) = res["influence"], res["gradient"]
    return f"{name:>9s} {n:5d} {t:6d}   {mi:10.4g} ± {si:<9.2g}  {mg:10.4g} ± {sg:<9.2g}"


def main(argv=None):
    """Run the noise tool with the command-line arguments ``argv``; returns the exit status.

    ``--json`` and ``--plot`` are checked before anything is measured (an existing file is
    refused without ``--force``). Ctrl-C, SIGTERM or SIGHUP stops the measurement, writes
    what was measured so far and exits with 130, 143 or 129; a closed stdout (``| head``)
    only drops the printed rows: the outputs are still written.
    """
    return command(PROG, lambda: _main(argv))


def _main(argv):
    args = parse(argv)
    if isinstance(args, int):
        return args
    json_path, plot_path = _outputs(args)
    xp, device = cli.open_backend(args)
    dtype = dtype_of(xp, args.dtype)
    head = header(PROG, args, device=device, threads=threads_of(args.backend))
    common = dict(samples=args.samples, rank=args.rank, depth=args.depth, cell=args.cell,
                  alpha=args.alpha, seed=args.seed, init_scale=args.init_scale, xp=xp,
                  device=device, dtype=dtype)
    rows = []
    start = time.time()
    stopped = None
    try:
        _measure_all(args, common, rows)
    except KeyboardInterrupt as exc:
        stopped = exc
        print(f"{PROG}: interrupted: writing what was measured so far", file=sys.stderr, flush=True)
    final = {"kind": "final", "final": True, "seconds": round(time.time() - start, 3),
             "stopped": "interrupted" if stopped is not None else "done"}
    records = [head, *rows, final]
    with deferred():
        if json_path:
            text = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
            try:
                write_atomic(json_path, lambda f: f.write(text))
            except OSError as exc:
                raise io_failure("--json", args.json, exc) from None
        if plot_path:
            try:
                plot.save(plot.figure([plot.Log(args.json or "noise", records)]), plot_path)
            except OSError as exc:
                raise io_failure("--plot", args.plot, exc) from None
    if stopped is not None:
        raise stopped
    return 0


def _outputs(args):
    """The real paths of ``--json`` and ``--plot`` (None when not given), checked before any
    work: an existing file only with ``--force``, and never both flags on one file."""
    json_path = check_output("--json", args.json, replace=args.force) if args.json else None
    plot_path = (check_output("--plot", args.plot, image=True, replace=args.force)
                 if args.plot else None)
    if json_path and json_path == plot_path:
        raise Failure(f"--plot {args.plot}: is also the --json file; choose another path")
    return json_path, plot_path


def _measure_all(args, common, rows):
    """Measure both tables, printing each row as it comes and appending its record."""
    header = (f"{'algo':>9s} {'n':>5s} {'t':>6s}   {'influence rel. sq. error':>23s}  "
              f"{'gradient rel. sq. error':>23s}")

    def row(table, algo, n, t, res):
        name = label(algo, args.rank)
        print(_row(name, t, n, res), flush=True)
        rows.append({"kind": "noise", "table": table, "algo": name, "method": algo,
                     "rank": args.rank if algo in RANKED else None, "n": n, "t": t,
                     "cell": args.cell, "depth": args.depth,
                     "samples": 1 if algo in APPROXIMATE else args.samples,
                     "influence": list(res["influence"]), "gradient": list(res["gradient"])})

    model = args.cell  # gru, lstm
    if args.cell in ("rhn", "vanilla"):
        model = f"depth {args.depth}" if args.cell == "rhn" else f"vanilla alpha {args.alpha:g}"
    print(f"# over time: n = {args.hidden}, {model}, M = {args.samples} chains", flush=True)
    print(header)
    for algo in args.algo:
        res = measure(algo, n=args.hidden, report=set(args.at), **common)
        for t in sorted(res):
            row("over_time", algo, args.hidden, t, res[t])
    if args.sizes:
        print(f"\n# over n: t = {args.size_at}, {model}, M = {args.samples} chains")
        print(header)
        for algo in args.algo:
            for n in args.sizes:
                row("over_n", algo, n, args.size_at, measure(algo, n=n, report={args.size_at},
                                                              **common)[args.size_at])

