"""What every command line of minirtrl shares: one-line errors (exit status 2), the number
types of its flags, and the flags common to the training drivers.
"""

import argparse
import math

from ..backends import NAMES
from ..cells import RHN, VanillaRNN
from ..methods import METHODS, RANKED


class Parser(argparse.ArgumentParser):
    """``argparse`` parser whose errors are one line on stderr (exit status 2), no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def fail(self, message):
        """Stop with a one-line error about something other than the syntax (exit 2)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind, low, strict, name):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, not {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {name}, not {text!r}")
        if low is not None and (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(f"expected {name}, not {text!r}")
        return value

    return parse


positive = _number(int, 1, False, "an integer >= 1")
nonnegative = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a number > 0")
nonnegative_float = _number(float, 0.0, False, "a number >= 0")
real = _number(float, None, False, "a finite number")


def leak_rate(text):
    """A number in (0, 1] (the vanilla cell's alpha)."""
    value = positive_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], not {text!r}")
    return value


# ---- the flags of the training drivers ------------------------------------------------
#: run settings a resumed run must share with its checkpoint (besides the task's own)
CONFIG_KEYS = ("algo", "rank", "truncation", "hidden", "depth", "batch", "lr", "clip", "seed",
               "dtype", "init_scale", "gate_bias", "cell", "alpha")
#: the cells a driver can train
CELLS = ("rhn", "vanilla")


def make_parser(prog, description, *, algo, hidden, batch, lr, rank, clip, steps, truncation=50):
    """An argument parser with every flag common to the training drivers.

    The keyword arguments are the driver's defaults; ``rank`` applies to ``ok`` and
    ``kf-avg`` and ``truncation`` to ``bptt`` only (giving either with another algorithm is
    an error). Drivers add their own flags to the returned parser.
    """
    p = Parser(prog=prog, description=description)
    a = p.add_argument
    a("--backend", default="numpy", choices=NAMES, help="array library (default numpy)")
    a("--dtype", default="float32", choices=("float32", "float64"), help="default float32")
    a("--algo", default=algo, choices=METHODS, help=f"gradient algorithm (default {algo})")
    a("--rank", type=positive, default=None, help=f"r for ok and kf-avg (default {rank})")
    a("--hidden", type=positive, default=hidden, help=f"hidden units n (default {hidden})")
    a("--cell", default="rhn", choices=CELLS,
      help="rhn (recurrent highway network) or vanilla (leaky tanh RNN) (default rhn)")
    a("--alpha", type=leak_rate, default=None,
      help="leak rate of --cell vanilla, 0 < alpha <= 1 (default 1.0: no leak)")
    a("--depth", type=positive, default=1, help="RHN recurrence depth L (default 1)")
    a("--batch", type=positive, default=batch, help=f"parallel streams B (default {batch})")
    a("--lr", type=positive_float, default=lr, help=f"Adam learning rate (default {lr:.4g})")
    a("--clip", type=positive_float, default=clip,
      help=f"max norm of the recurrent gradient, all W_l (default {clip:g})")
    a("--seed", type=nonnegative, default=0, help="seeds parameters, data and signs (default 0)")
    a("--steps", type=nonnegative, default=steps,
      help=f"total optimiser steps, counted from the start of training (default {steps})")
    a("--truncation", type=positive, default=None,
      help=f"bptt window K in characters (default {truncation})")
    a("--init-scale", type=nonnegative_float, default=0.01, help="std of initial weights (0.01)")
    a("--gate-bias", type=real, default=None, help="initial RHN transform-gate bias (default 0)")
    a("--log", metavar="FILE",
      help="JSON lines, one per report (a new file, appended to with --resume)")
    a("--checkpoint", metavar="FILE", help="checkpoint file (.npz), written atomically")
    a("--resume", action="store_true", help="continue from --checkpoint")
    a("--checkpoint-every", type=nonnegative, default=10000, metavar="STEPS",
      help="also checkpoint every STEPS steps (default 10000; 0 = only at the end)")
    a("--max-seconds", type=positive_float, default=None,
      help="stop after this many seconds of this invocation")
    a("--progress-seconds", type=nonnegative_float, default=5.0,
      help="seconds between progress lines and log lines (default 5)")
    a("--report-every", type=nonnegative, default=0, metavar="STEPS",
      help="report every STEPS steps instead of by time (default 0 = by time)")
    p.set_defaults(_rank_default=rank, _truncation_default=truncation)
    return p


def parse(parser, argv):
    """``parser.parse_args(argv)`` checked across flags, or the exit status (error, --help)."""
    try:
        args = parser.parse_args(argv)
        if args.rank is not None and args.algo not in RANKED:
            parser.error(f"--rank applies only to --algo {' or '.join(RANKED)}, not {args.algo}")
        if args.truncation is not None and args.algo != "bptt":
            parser.error(f"--truncation applies only to --algo bptt, not {args.algo}")
        if args.resume and not args.checkpoint:
            parser.error("--resume needs --checkpoint FILE")
        if args.alpha is not None and args.cell != "vanilla":
            parser.error(f"--alpha applies only to --cell vanilla, not {args.cell}")
        if args.gate_bias is not None and args.cell != "rhn":
            parser.error(f"--gate-bias applies only to --cell rhn, not {args.cell}")
        if args.depth != 1 and args.cell != "rhn":
            parser.error(f"--depth applies only to --cell rhn ({args.cell} has depth 1)")
    except SystemExit as exc:  # argparse's way to finish --help or to report an error
        return exc.code if isinstance(exc.code, int) else 0
    args.rank = (args.rank or args._rank_default) if args.algo in RANKED else None
    args.truncation = (args.truncation or args._truncation_default) if args.algo == "bptt" else None
    args.alpha = (1.0 if args.alpha is None else args.alpha) if args.cell == "vanilla" else None
    bias = 0.0 if args.gate_bias is None else args.gate_bias
    args.gate_bias = bias if args.cell == "rhn" else None
    return args


def make_cell(args, n_in, n_out):
    """The cell the parsed flags ask for: ``RHN`` (``--depth``) or ``VanillaRNN`` (``--alpha``)."""
    if args.cell == "vanilla":
        return VanillaRNN(n_in, args.hidden, n_out, alpha=args.alpha)
    return RHN(n_in, args.hidden, n_out, depth=args.depth)


def init_options(args):
    """The keyword arguments of the cell's ``init`` besides seed, namespace, dtype, device."""
    options = {"init_scale": args.init_scale}
    if args.cell == "rhn":
        options["gate_bias"] = args.gate_bias
    return options
