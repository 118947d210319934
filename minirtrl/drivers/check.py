"""``python -m minirtrl.check``: check an installation or a backend against finite differences.

Builds a small random cell (``--cell``) on the chosen backend (float64), computes the gradient of a
random masked sequence with every available method, and prints for each the largest
relative difference from central finite differences of the summed loss. Exact methods
(``bptt``, ``rtrl``) must agree to ``--tol``; the exit status is 1 if one does not.
The estimators are unbiased but random: one estimate differs from the exact gradient by
its noise, so their line also shows the error of the mean of ``--samples`` estimates.
"""

import numpy as np

from .._compat import to_numpy
from ..methods import METHODS, RANKED, sequence_gradient
from ..testing import numerical_gradient, random_problem, relative_error
from . import cli
from .cli import add, nonnegative, positive, positive_float
from .safety import command

PROG = "minirtrl.check"
EXACT = ("bptt", "rtrl")


def make_parser():
    p = cli.parser(PROG, "Compare every gradient method with central finite differences "
                         "(float64).")
    a = p.add_argument
    cli.add_backend_flags(p, dtype=None)
    cli.add_cell_flags(p, depth=2)
    add(p, "--hidden", 5, type=positive)
    a("--length", type=positive, default=6, metavar="T", help="sequence length T (default 6)")
    add(p, "--batch", 2, type=positive)
    add(p, "--rank", 2, type=positive)
    add(p, "--samples", 100, type=positive)
    add(p, "--seed", 0, type=nonnegative)
    a("--tol", type=positive_float, default=1e-6,
      help="largest relative error allowed for the exact methods (default 1e-06)")
    return p


def main(argv=None):
    """Run the check with the command-line arguments ``argv``; returns the exit status."""
    return command(PROG, lambda: _main(argv))


def _main(argv):
    p = make_parser()
    args = cli.parse_args(p, argv, lambda args: cli.check_cell_flags(p, args))
    if isinstance(args, int):
        return args
    xp, device = cli.open_backend(args)
    cell = cli.make_cell(args, 3, 4)
    params = cell.init(args.seed, xp=xp, dtype=xp.float64, init_scale=0.5, device=device)
    xs_np, ys_np, mask_np = random_problem(cell, args.length, args.batch, seed=args.seed)
    xs = xp.asarray(xs_np, dtype=xp.float64, device=device)
    ys = xp.asarray(ys_np, dtype=xp.int64, device=device)
    mask = xp.asarray(mask_np, dtype=xp.float64, device=device)
    fd = numerical_gradient(cell, params, xs, ys, mask)

    model = f"alpha {args.alpha:g}" if args.cell == "vanilla" else f"depth {args.depth}"
    print(f"backend {args.backend} on {device}, {args.cell} {model}, n {args.hidden}, "
          f"T {args.length}, B {args.batch}")
    print(f"{'method':8s} {'max rel. error':>15s}  {'mean of %d':>12s}  verdict" % args.samples)
    failed = False
    for method in METHODS:
        rank = args.rank if method in RANKED else None
        _, grads = sequence_gradient(method, cell, params, xs, ys, mask, seed=args.seed, rank=rank)
        err = max(relative_error(grads[k], fd[k]) for k in fd)
        if method in EXACT:
            ok = err <= args.tol
            failed |= not ok
            verdict = f"{'ok' if ok else 'FAILED'} (exact, tol {args.tol:g})"
            print(f"{method:8s} {err:15.3e}  {'':>12s}  {verdict}")
            continue
        total = {k: np.zeros_like(v) for k, v in fd.items()}
        for seed in range(args.samples):
            _, g = sequence_gradient(method, cell, params, xs, ys, mask, seed=seed, rank=rank)
            total = {k: total[k] + to_numpy(g[k]) for k in total}
        err_mean = max(relative_error(total[k] / args.samples, fd[k]) for k in fd)
        print(f"{method:8s} {err:15.3e}  {err_mean:12.3e}  estimate (unbiased, not exact)")
    return 1 if failed else 0

