"""``python -m minirtrl.check``: check an installation or a backend against finite differences.

Builds a small random cell (``--cell``) on the chosen backend (float64), computes the gradient of a
random masked sequence with every available method, and prints for each the largest
relative difference from central finite differences of the summed loss. Exact methods
(``bptt``, ``rtrl``) must agree to ``--tol``. An estimator is random: one estimate differs
from the exact gradient by its noise, so its line also shows the error of the mean of
``--samples`` estimates (a figure, not a verdict), and its unbiasedness is *tested*: after
T − 1 steps of the sequence, the expectation of its last step over every one of its 2^P
sign patterns (``minirtrl.testing.expected_step``) must equal exact RTRL's step from the
same estimate, influence and gradient, to ``--tol``. Where P is over ``MAX_SIGNS`` the
line says it was not tested. The approximations (``snap1``, ``rflo``) are deterministic and
biased: their line shows their error, a figure and not a verdict; ``rflo`` runs on the
vanilla cell only. The exit status is 1 if an exact method or an unbiasedness test fails.
"""

import math

import numpy as np

from .. import _checks
from .._compat import to_numpy
from ..methods import APPROXIMATE, INFLUENCE, METHODS, RANKED, online, sequence_gradient
from ..testing import expected_step, numerical_gradient, random_problem, relative_error
from . import cli
from .cli import add, nonnegative, positive, positive_float
from .safety import command

PROG = "minirtrl.check"
EXACT = ("bptt", "rtrl")
#: the most signs per sample and step whose 2^P patterns the unbiasedness test enumerates
MAX_SIGNS = 12


def unbiasedness(method, rank, cell, params, xs, ys, mask, seed, *, xp, device):
    """``(error, P)``: the largest relative error of E[one step] against exact RTRL's step,
    and the number P of signs per sample of that step (error None where P > ``MAX_SIGNS``).

    Runs ``method`` (``minirtrl.online``) over the first T − 1 steps of ``xs`` (T, B, n_in),
    ``ys``, ``mask`` with signs from ``seed``, then takes the exact expectation of step T
    over its 2^P sign patterns (``expected_step``) and compares the influence and the
    gradient with ``H_T Ĝ + F_T`` from the same estimate Ĝ: equal for an unbiased step,
    whatever Ĝ is. Cost: T − 1 + 2^P steps.
    """
    algo = online(method, cell, rank)
    T, B = xs.shape[0], xs.shape[1]
    signs_per_sample = sum(math.prod(shape[1:]) for shape in algo.sign_shapes(B).values())
    if signs_per_sample > MAX_SIGNS:
        return None, signs_per_sample
    state, rng = algo.init(B, xp=xp, dtype=xs.dtype, device=device), np.random.default_rng(seed)
    for t in range(T - 1):
        signs = algo.draw_signs(rng, B, xp=xp, dtype=xs.dtype, device=device)
        state, _, _ = algo.step(params, state, xs[t, ...], ys[t, ...], mask[t, ...], signs=signs)
    e = expected_step(algo, params, state, xs[T - 1, ...], ys[T - 1, ...], mask[T - 1, ...])
    pairs = [(e.influence[k], e.exact[k]) for k in e.exact]
    pairs += [(e.grads[k], e.exact_grads[k]) for k in e.exact_grads]
    return max(relative_error(a, b) for a, b in pairs), signs_per_sample


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

    model = ""  # gru, lstm: the name says it all
    if args.cell in ("rhn", "vanilla"):
        model = f" depth {args.depth}" if args.cell == "rhn" else f" alpha {args.alpha:g}"
    print(f"backend {args.backend} on {device}, {args.cell}{model}, n {args.hidden}, "
          f"T {args.length}, B {args.batch}")
    print(f"{'method':8s} {'max rel. error':>15s}  {'mean of %d':>12s}  verdict" % args.samples)
    failed = False
    for method in METHODS:
        rank = args.rank if method in RANKED else None
        if method in INFLUENCE:
            try:
                _checks.defined_on(INFLUENCE[method], cell)
            except ValueError as exc:
                print(f"{method:8s} {'—':>15s}  {'':>12s}  not run: {exc}")
                continue
        _, grads = sequence_gradient(method, cell, params, xs, ys, mask, seed=args.seed, rank=rank)
        err = max(relative_error(grads[k], fd[k]) for k in fd)
        if method in EXACT:
            ok = err <= args.tol
            failed |= not ok
            verdict = f"{'ok' if ok else 'FAILED'} (exact, tol {args.tol:g})"
            print(f"{method:8s} {err:15.3e}  {'':>12s}  {verdict}")
            continue
        if method in APPROXIMATE:
            print(f"{method:8s} {err:15.3e}  {'':>12s}  approximation (deterministic, biased)")
            continue
        total = {k: np.zeros_like(v) for k, v in fd.items()}
        for seed in range(args.samples):
            _, g = sequence_gradient(method, cell, params, xs, ys, mask, seed=seed, rank=rank)
            total = {k: total[k] + to_numpy(g[k]) for k in total}
        err_mean = max(relative_error(total[k] / args.samples, fd[k]) for k in fd)
        bias, signs = unbiasedness(method, rank, cell, params, xs, ys, mask, args.seed, xp=xp,
                                   device=device)
        if bias is None:
            verdict = (f"estimate; unbiasedness not tested (2^{signs} sign patterns a step, "
                       f"over 2^{MAX_SIGNS})")
        else:
            ok = bias <= args.tol
            failed |= not ok
            verdict = (f"{'ok' if ok else 'FAILED'} (unbiased: E over 2^{signs} sign patterns "
                       f"= exact RTRL step to {bias:.1e}, tol {args.tol:g})")
        print(f"{method:8s} {err:15.3e}  {err_mean:12.3e}  {verdict}")
    return 1 if failed else 0

