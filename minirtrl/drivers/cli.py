"""What every command line of minirtrl shares: one parser factory whose errors are one line
(exit status 2), the number types of its flags, one vocabulary of flags, and the flags and the
model of the training commands.
"""

import argparse
import math
import sys

from ..cells import GRU, LSTM, RHN, VanillaRNN
from ..methods import METHODS, RANKED
from .backends import NAMES, BackendError, keep_freed_memory, load, set_threads
from .safety import Failure

ALLOCATOR_NOTE = (
    "On Linux with glibc the command keeps the memory it frees for reuse (mallopt: trim "
    "threshold 1 GiB, mmap threshold 32 MiB), instead of returning it to the system after "
    "every step; the library itself never changes the allocator (see bench/README.md).")


class Parser(argparse.ArgumentParser):
    """``argparse`` parser whose errors are one line on stderr (exit status 2), no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(prog, description):
    """The parser of command ``prog`` (``python -m minirtrl.NAME``): every command's factory."""
    return Parser(prog=f"python -m {prog}", description=description, epilog=ALLOCATOR_NOTE)


def parse_args(p, argv, check=None):
    """``p.parse_args(argv)``, then ``check(args)`` (which may call ``p.error``), or the exit
    status argparse chose (0 after ``--help``, 2 after an error)."""
    try:
        args = p.parse_args(argv)
        if check is not None:
            check(args)
    except SystemExit as exc:  # argparse's way to finish --help or to report an error
        return exc.code if isinstance(exc.code, int) else 0
    args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    return args


#: the largest value of an integer flag without a maximum of its own (steps, intervals): far
#: beyond any run (30 years at a million steps a second), and below 2^53, so that a count is
#: exact in an int64 checkpoint and in a float64 alike (JSON readers)
MAX_COUNT = 10**15


def show_number(number):
    """``number`` as help texts and errors show it: ``10^15`` for a large power of ten."""
    digits = len(str(number)) - 1
    return f"10^{digits}" if number >= 10**6 and number == 10**digits else str(number)


class Integer:
    """The type of an integer flag: a whole number from ``low`` to ``high``, written in digits.

    Anything else (``1e9``, ``2.5``, a number out of range) is refused with one line naming the
    range; ``add`` shows ``high`` in the flag's help.
    """

    def __init__(self, low, high=MAX_COUNT):
        self.low, self.high = low, high

    def __call__(self, text):
        try:
            value = int(text)
        except ValueError:  # not an integer, or more digits than Python reads
            value = None
        if value is None or not self.low <= value <= self.high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {self.low} to {show_number(self.high)}, not {text!r}")
        return value

    def at_most(self, high):
        """The same type with maximum ``high``."""
        return Integer(self.low, high)


def _real(low, strict):
    """The type of a number flag: a finite float above ``low`` (``strict``) or at least it."""
    name = "a finite number"
    if low is not None:
        name += f" {'>' if strict else '>='} {low:g}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (
                low is not None and (value <= low if strict else value < low)):
            raise argparse.ArgumentTypeError(f"expected {name}, not {text!r}")
        return value

    return parse


positive = Integer(1)
nonnegative = Integer(0)
positive_float = _real(0.0, True)
nonnegative_float = _real(0.0, False)
real = _real(None, False)

#: the sizes a run can take at most (more would not fit any machine, or would make one step
#: run for minutes before its first line); ``--truncation`` has ``MAX_TRUNCATION``
MAXIMA = {"--hidden": 1 << 16, "--batch": 1 << 14, "--rank": 256, "--depth": 100,
          "--seed": 2**64 - 1}
#: the longest bptt window: one window is one step, read and differentiated as a whole
MAX_TRUNCATION = 10_000


def leak_rate(text):
    """A number in (0, 1] (the vanilla cell's alpha)."""
    try:
        value = positive_float(text)
    except argparse.ArgumentTypeError:
        value = None
    if value is None or value > 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], not {text!r}")
    return value


# ---- one vocabulary of flags ------------------------------------------------------------
#: what each flag means, in every command that has it (its help is this and the default)
HELP = {
    "--backend": "array library",
    "--device": ("where the arrays live: cpu, cuda, cuda:N or mps for torch; a GPU index (0, 1, "
                 "...) for cupy; CPU_DEVICE, device1 or device2 for array_api_strict"),
    "--threads": ("threads of torch's CPU operations (torch.set_num_threads); NumPy's BLAS "
                  "threads are set by OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before the start"),
    "--dtype": "floating-point type of parameters and states",
    "--algo": "gradient algorithm",
    "--rank": "r, the Kronecker products per block of ok and kf-avg (refused for the others)",
    "--hidden": "hidden units n",
    "--cell": ("rhn (recurrent highway network), vanilla (leaky tanh RNN), gru or lstm (the "
               "layouts of torch.nn.GRUCell and LSTMCell)"),
    "--alpha": "leak rate of --cell vanilla, 0 < alpha <= 1",
    "--depth": "RHN recurrence depth L",
    "--batch": "parallel streams B",
    "--seed": "seeds the parameters, the data and the random signs",
    "--samples": "independent estimates (chains of random signs) per estimator",
    "--steps": "total optimiser steps, counted from the start of training",
    "--json": "write the results as JSON lines (a header record first), atomically",
    "--log": "JSON lines, a header record then one record per report (a new file; continued "
             "with --resume)",
}
#: the cells a command can build
CELLS = ("rhn", "vanilla", "gru", "lstm")


def add(p, flag, default=None, *, shown=None, **kwargs):
    """``p.add_argument(flag, ...)`` with the vocabulary's help, its default shown and, for an
    integer flag, its maximum (``MAXIMA``, else ``MAX_COUNT``) enforced and shown."""
    text = shown if shown is not None else ("none" if default is None else f"{default}")
    kind = kwargs.get("type")
    if isinstance(kind, Integer):
        kind = kwargs["type"] = kind.at_most(MAXIMA.get(flag, kind.high))
        text = f"{text}, at most {show_number(kind.high)}"
    p.add_argument(flag, default=default, help=f"{HELP[flag]} (default {text})", **kwargs)


def add_backend_flags(p, *, dtype="float32"):
    """``--backend``, ``--device``, ``--threads`` and (unless ``dtype`` is None) ``--dtype``."""
    add(p, "--backend", "numpy", choices=NAMES)
    add(p, "--device", None, shown="the backend's default device")
    add(p, "--threads", None, type=positive, shown="1 for torch on the CPU, see bench/README.md")
    if dtype is not None:
        add(p, "--dtype", dtype, choices=("float32", "float64"))


def add_cell_flags(p, *, depth=1):
    """``--cell``, ``--alpha`` (vanilla) and ``--depth`` (rhn; ``depth`` its default)."""
    add(p, "--cell", "rhn", choices=CELLS)
    add(p, "--alpha", None, type=leak_rate, shown="1.0: no leak")
    add(p, "--depth", None, type=positive, shown=depth)
    p.set_defaults(_depth_default=depth)


def check_cell_flags(p, args):
    """``--alpha`` only with vanilla, ``--depth`` other than 1 only with rhn; fills defaults."""
    if args.alpha is not None and args.cell != "vanilla":
        p.error(f"--alpha applies only to --cell vanilla, not {args.cell}")
    if args.depth not in (None, 1) and args.cell != "rhn":
        p.error(f"--depth applies only to --cell rhn ({args.cell} has depth 1)")
    args.alpha = (1.0 if args.alpha is None else args.alpha) if args.cell == "vanilla" else None
    default = args._depth_default if args.cell == "rhn" else 1
    args.depth = default if args.depth is None else args.depth


def make_cell(args, n_in, n_out):
    """The cell the parsed flags ask for: ``RHN`` (``--depth``), ``VanillaRNN`` (``--alpha``),
    ``GRU`` or ``LSTM``."""
    return build_cell(args.cell, n_in, args.hidden, n_out, depth=args.depth, alpha=args.alpha)


def build_cell(name, n_in, n_hidden, n_out, *, depth=1, alpha=None):
    """The cell ``name`` (one of ``CELLS``) of these sizes; ``depth`` for rhn, ``alpha`` for
    vanilla (None: 1.0)."""
    if name == "vanilla":
        return VanillaRNN(n_in, n_hidden, n_out, alpha=1.0 if alpha is None else alpha)
    if name in ("gru", "lstm"):
        return (GRU if name == "gru" else LSTM)(n_in, n_hidden, n_out)
    return RHN(n_in, n_hidden, n_out, depth=depth)


def open_backend(args):
    """``(xp, device)`` for ``--backend`` and ``--device``, ``--threads`` applied; a library
    that is not installed or a device that does not exist is a ``Failure`` (exit 2)."""
    try:
        xp, device = load(args.backend, args.device)
        set_threads(args.backend, getattr(args, "threads", None))
    except BackendError as exc:
        raise Failure(str(exc)) from None
    keep_freed_memory()
    return xp, device


def settings_of(args):
    """Every setting of a parsed command line, defaults included (for headers)."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "argv"}


# ---- the training commands -------------------------------------------------------------------
#: run settings a resumed run must share with its checkpoint (besides the task's own)
CONFIG_KEYS = ("algo", "rank", "truncation", "hidden", "depth", "batch", "lr", "clip", "seed",
               "dtype", "init_scale", "gate_bias", "cell", "alpha", "every_step", "align")


def training_parser(prog, description, *, algo, hidden, batch, lr, rank, clip, steps,
                    truncation=50):
    """A parser with every flag of the training commands; the keywords are the defaults.

    ``rank`` applies to ``ok`` and ``kf-avg`` and ``truncation`` to ``bptt`` only (either with
    another algorithm is an error, ``parse_training``). Commands add their own flags.
    """
    p = parser(prog, description)
    a = p.add_argument
    add_backend_flags(p)
    add(p, "--algo", algo, choices=METHODS)
    add(p, "--rank", None, type=positive, shown=rank)
    add(p, "--hidden", hidden, type=positive)
    add_cell_flags(p)
    add(p, "--batch", batch, type=positive)
    a("--lr", type=positive_float, default=lr, help=f"Adam learning rate (default {lr:.4g})")
    a("--clip", type=positive_float, default=clip,
      help=f"max norm of the recurrent gradient, all W_l (default {clip:g})")
    add(p, "--seed", 0, type=nonnegative)
    add(p, "--steps", steps, type=nonnegative)
    a("--truncation", type=positive.at_most(MAX_TRUNCATION), default=None,
      help=f"bptt window K in characters (default {truncation}, at most "
           f"{show_number(MAX_TRUNCATION)})")
    a("--every-step", action="store_true",
      help="bptt: one Adam step per character, with the gradient of that character's loss "
           "back-propagated through the last --truncation characters (default: one step per "
           "window)")
    a("--align", type=positive, default=None, metavar="N",
      help="run exact RTRL beside the method on the states it visits and log, every N steps, "
           "the cosine and the relative error of the method's recurrent gradient against "
           "exact RTRL's, averaged over those steps (small --hidden only: exact RTRL's time "
           "and memory; default: off)")
    a("--shard", action="store_true",
      help="--backend jax: spread the --batch streams over all of JAX's devices (the batch "
           "axis sharded, one all-reduce of the gradients per step; --batch a multiple of the "
           "device count; default: one device)")
    a("--init-scale", type=nonnegative_float, default=0.01,
      help="std of the initial weights (default 0.01)")
    a("--gate-bias", type=real, default=None, help="initial RHN transform-gate bias (default 0)")
    add(p, "--log", None, metavar="FILE", shown="no log")
    a("--checkpoint", metavar="FILE", default=None,
      help="checkpoint file (.npz), written atomically (default: none)")
    a("--resume", action="store_true", help="continue from --checkpoint (default: start afresh)")
    a("--checkpoint-every", type=nonnegative, default=10000, metavar="STEPS",
      help="also checkpoint every STEPS steps (default 10000; 0 = only at the end)")
    a("--max-seconds", type=positive_float, default=None,
      help="stop after this many seconds of this invocation (default: no limit)")
    a("--progress-seconds", type=nonnegative_float, default=5.0,
      help="seconds between progress lines and log lines (default 5)")
    a("--report-every", type=nonnegative, default=0, metavar="STEPS",
      help="report every STEPS steps instead of by time (default 0 = by time)")
    p.set_defaults(_rank_default=rank, _truncation_default=truncation)
    return p


def parse_training(p, argv, check=None):
    """``parse_args`` with the checks across the training flags, then ``check(args)``."""
    def checks(args):
        if args.rank is not None and args.algo not in RANKED:
            p.error(f"--rank applies only to --algo {' or '.join(RANKED)}, not {args.algo}")
        if args.truncation is not None and args.algo != "bptt":
            p.error(f"--truncation applies only to --algo bptt, not {args.algo}")
        if args.every_step and args.algo != "bptt":
            p.error(f"--every-step applies only to --algo bptt, not {args.algo}")
        if args.algo == "rflo" and args.cell != "vanilla":
            p.error(f"--algo rflo applies only to --cell vanilla (the leaky RNN), not "
                    f"{args.cell}")
        if args.shard and args.backend != "jax":
            p.error(f"--shard applies only to --backend jax, not {args.backend}")
        if args.shard and (args.align or args.every_step):
            p.error(f"--shard does not combine with {'--align' if args.align else '--every-step'}"
                    " (their steps run eagerly, on one device)")
        if args.resume and not args.checkpoint:
            p.error("--resume needs --checkpoint FILE")
        if args.gate_bias is not None and args.cell != "rhn":
            p.error(f"--gate-bias applies only to --cell rhn, not {args.cell}")
        check_cell_flags(p, args)
        args.rank = (args.rank or args._rank_default) if args.algo in RANKED else None
        bptt = args.algo == "bptt"
        args.truncation = (args.truncation or args._truncation_default) if bptt else None
        bias = 0.0 if args.gate_bias is None else args.gate_bias
        args.gate_bias = bias if args.cell == "rhn" else None
        if check is not None:
            check(args)

    return parse_args(p, argv, checks)


def init_options(args):
    """The keyword arguments of the cell's ``init`` besides seed, namespace, dtype, device."""
    options = {"init_scale": args.init_scale}
    if args.cell == "rhn":
        options["gate_bias"] = args.gate_bias
    return options
