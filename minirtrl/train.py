"""The online training loop shared by the drivers (``python -m minirtrl.copy``, ``... .ptb``).

One optimiser step of the RTRL family (``rtrl``, ``uoro``, ``kf``, ``ok``, ``kf-avg``) reads
one character of every stream (SPEC §2 "online use", §4)::

    s, G     ← s ⊙ keep, G ⊙ keep            reset the streams that start a new sequence
    s, layers ← rhn.step(s, x_t)
    loss_t, ∂V, c_t ← readout                 c_t = ∂loss_t/∂s_t
    G        ← method.update(G, layers, signs)   (signs drawn on the host)
    g        ← (method.grads(G, c_t), ∂V) / B    gradient of the batch-mean loss
    g_W      ← clip(g_W, --clip)                 all W_l jointly, not V
    θ        ← Adam(θ, g)                        β = 0.9, 0.999, ε = 1e-8

and the influence estimate G is carried across parameter updates. ``bptt`` instead reads
windows of ``--truncation`` characters, back-propagates each to its start
(``bptt.window_gradient``, resets inside the window through ``keep``), carries the state
across windows and takes one Adam step per window on the window's summed batch-mean loss.
``step`` counts optimiser steps (windows for ``bptt``); ``data`` counts characters read
by all streams (steps × K × B).

A task (the copy curriculum, a text corpus) plugs in through the small ``Task`` protocol
below: it makes host-side batches, is told the loss, owns the figures it reports and the
state that goes into checkpoints. Everything else is here: the common command-line flags,
backend and dtype resolution with one-line errors, progress lines, the ``--log`` JSON
lines, atomic ``.npz`` checkpoints that make a resumed run continue exactly, Ctrl-C,
``--max-seconds``, and the guard that stops on a non-finite loss or gradient.

A driver is three lines (see ``minirtrl.copy``)::

    args = train.parse(train.make_parser(prog, text, algo=..., hidden=..., ...), argv)
    if isinstance(args, int): return args            # --help or a bad flag
    return train.run(args, MyTask(args.batch, ...), prog=prog, evaluate=..., eval_every=...)

Seeds: the parameters come from ``RHN.init(seed)``; the data and the random signs from
two children of ``numpy.random.SeedSequence(seed)``, so every algorithm sees the same data
stream for one seed. For ``bptt`` the task is told the window's mean loss once for its K
characters (``observe(bits, steps=K)``), after the whole window was drawn.

Checkpoints (``.npz``, ``allow_pickle=False``): ``W1``..``WL``, ``V``; ``adam/m/<name>``,
``adam/v/<name>``, ``adam/step``; ``est/<i>`` the arrays of the method's state in order;
``s``; ``step``, ``seconds``; ``rng/data``, ``rng/noise`` and ``config`` as JSON text;
``task/<key>`` the task's ``state_dict``; ``format``. A resumed run must have the same
``config`` (everything but backend, steps, time limit, paths and reporting); it may run on
another backend.

Host and device: a step's batch is built in NumPy and moved with one ``xp.asarray`` (inputs,
targets, mask and keep packed in one array); the only host read per step is one 3-element
stack (loss, gradient norms) that the curriculum and the non-finite guard need.

Notation: ``s`` s_t (B, n); ``est`` the influence method's state (its estimate of G_t);
``c`` c_t; ``K`` characters per optimiser step (1 online, ``--truncation`` for bptt);
``B`` streams. Cost per step: that of the method (see ``minirtrl``) plus O(B n_in) host work.
"""

import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import zipfile
from typing import NamedTuple, Protocol

import numpy as np

from . import bptt, rhn
from .api import METHODS, RANKED, influence_method, influence_step
from .backends import NAMES, BackendError, dtype_of, load, to_numpy
from .cli import Parser, nonnegative, nonnegative_float, positive, positive_float, real
from .influence import reset
from .optim import AdamState, adam_init, adam_step, clip_by_norm, global_norm
from .rng import draw_signs

CHECKPOINT_FORMAT = "minirtrl-checkpoint-1"
#: run settings a resumed run must share with its checkpoint (besides the task's own)
CONFIG_KEYS = ("algo", "rank", "truncation", "hidden", "depth", "batch", "lr", "clip", "seed",
               "dtype", "init_scale", "gate_bias")


# ---- the task interface ---------------------------------------------------------------
class Batch(NamedTuple):
    """One character of every stream, on the host (NumPy).

    ``x`` (B, n_in) real (one-hot) inputs, ``y`` (B,) integer targets in [0, n_out),
    ``mask`` (B,) 0/1 loss weights, ``keep`` (B,) 0/1: 0 where a stream starts a new
    sequence (its state and influence are zeroed before this character).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    keep: np.ndarray


class Task(Protocol):
    """What a driver's task provides to ``run`` (all host-side; see ``copytask.CopyTask``).

    ``next_batch`` is called once per character (K times per ``bptt`` window, before the
    window's loss is known), then ``observe`` once per optimiser step. ``figures`` go into
    progress and log lines; ``state_dict`` (a dict of NumPy arrays) into checkpoints, and
    ``load_state_dict`` must restore it so that a resumed run continues exactly;
    ``config`` holds the task's settings a resumed run must share.
    """

    name: str
    n_in: int
    n_out: int
    batch: int

    def next_batch(self, rng: np.random.Generator) -> Batch: ...

    def observe(self, bits: float, steps: int = 1) -> None:
        """Batch-mean loss in bits per character, averaged over the last ``steps`` characters."""

    def figures(self) -> dict: ...

    def config(self) -> dict: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Context(NamedTuple):
    """What an ``evaluate(ctx, params, final)`` hook gets: the model and where it lives."""

    cell: rhn.RHN
    xp: object
    device: object
    dtype: object


class Failure(Exception):
    """A run cannot go on: ``str(exc)`` is the one-line reason, ``status`` the exit status."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


# ---- command line -----------------------------------------------------------------------


def make_parser(prog, description, *, algo, hidden, batch, lr, rank, clip, steps, truncation=50):
    """An argument parser with every flag common to the drivers (SPEC §4).

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
    a("--gate-bias", type=real, default=0.0, help="initial transform-gate bias (default 0)")
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
    except SystemExit as exc:  # argparse's way to finish --help or to report an error
        return exc.code if isinstance(exc.code, int) else 0
    args.rank = (args.rank or args._rank_default) if args.algo in RANKED else None
    args.truncation = (args.truncation or args._truncation_default) if args.algo == "bptt" else None
    return args


def run_config(args, task):
    """The settings a checkpoint records and a resumed run must match."""
    config = {key: getattr(args, key) for key in CONFIG_KEYS}
    config.update(task.config())
    return config


# ---- checkpoints ------------------------------------------------------------------------
def _leaves(tree):
    """Arrays of a (nested) tuple / NamedTuple, depth first."""
    if isinstance(tree, tuple):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [] if tree is None else [tree]


def _rebuild(template, leaves):
    """``template``'s structure filled with ``leaves`` (consumed from the front)."""
    if isinstance(template, tuple):
        items = [_rebuild(item, leaves) for item in template]
        return type(template)(*items) if hasattr(template, "_fields") else tuple(items)
    return None if template is None else leaves.pop(0)


def _text(value):
    return np.asarray(json.dumps(value, sort_keys=True))


def save_checkpoint(path, arrays):
    """Write ``arrays`` (name -> NumPy array) to ``path`` atomically (temp file + rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path):
    """All arrays of a checkpoint (``allow_pickle=False``); ``Failure`` if unreadable."""
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise Failure(f"no checkpoint at {path} to resume from") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise Failure(f"cannot read checkpoint {path}: {exc}") from None
    if _get_text(arrays, "format", path) != CHECKPOINT_FORMAT:
        raise Failure(f"cannot read checkpoint {path}: not a {CHECKPOINT_FORMAT} file")
    return arrays


def _get_text(arrays, key, path):
    try:
        return json.loads(str(arrays[key][()]))
    except (KeyError, ValueError, IndexError) as exc:
        raise Failure(f"cannot read checkpoint {path}: bad or missing {key!r} ({exc})") from None


def _check_writable(path, what):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise Failure(f"{what} {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise Failure(f"{what} {path}: directory {folder} is not writable")


# ---- one optimiser step -------------------------------------------------------------------
class Run(NamedTuple):
    """Everything on the device that a step changes (replaced as a whole when a step commits)."""

    step: int
    params: dict
    adam: AdamState
    est: object  # influence-method state; None for bptt
    s: object  # (B, n)


class Setup(NamedTuple):
    cell: rhn.RHN
    xp: object
    device: object
    dtype: object
    module: object  # influence method module; None for bptt
    noise_shapes: dict
    K: int  # characters per optimiser step
    B: int
    lr: float
    clip: float


def pack(batches):
    """Host batches of K characters -> one (K, B, n_in + 3) float64 array [x | y | mask | keep]."""
    return np.stack([
        np.concatenate([b.x, b.y[:, None], b.mask[:, None], b.keep[:, None]], axis=1)
        for b in batches
    ])


def _unpack(packed, n_in, xp):
    x = packed[..., :n_in]
    y = xp.astype(packed[..., n_in], xp.int64)
    return x, y, packed[..., n_in + 1], packed[..., n_in + 2]


def online_step(setup, now, packed, noise, resets=True):
    """One character of the RTRL family; returns (loss (B,), grads, est, s) -- not yet applied.

    ``resets`` is False when the host knows that no stream starts a sequence here, which
    saves a pass over the influence state.
    """
    cell, xp = setup.cell, setup.xp
    x, y, mask, keep = _unpack(packed[0, ...], cell.n_in, xp)
    s, est = now.s, now.est
    if resets:
        s, est = s * keep[:, None], reset(est, keep)
    s, est, loss, grads = influence_step(setup.module, cell, now.params, s, est, x, y, mask, noise,
                                         xp=xp)
    return loss, grads, est, s


def window_step(setup, now, packed, noise=None, resets=True):
    """One bptt window of K characters; returns (loss (B,), grads, None, s)."""
    cell, xp = setup.cell, setup.xp
    x, y, mask, keep = _unpack(packed, cell.n_in, xp)
    keep = keep if resets else None
    loss, grads, s = bptt.window_gradient(cell, now.params, now.s, x, y, mask, xp=xp, keep=keep)
    return loss, grads, None, s


def apply_step(setup, now, loss, grads, est, s):
    """Batch-mean gradient, clip, guard, Adam. Returns (new Run, batch-mean bits per char)."""
    xp, B = setup.xp, setup.B
    grads = {k: g / B for k, g in grads.items()}
    grads, norm = clip_by_norm(grads, setup.clip, setup.cell.blocks, xp=xp)
    probe = xp.stack([xp.sum(loss) / B, norm, global_norm(grads, ("V",), xp=xp)])
    mean_loss, norm_w, norm_v = (float(v) for v in to_numpy(probe))  # the one host read
    step = now.step + 1
    if not all(map(math.isfinite, (mean_loss, norm_w, norm_v))):
        raise Failure(
            f"non-finite loss or gradient at step {step} (loss {mean_loss}, recurrent gradient "
            f"norm {norm_w}, readout gradient norm {norm_v}); stopped without saving this state",
            status=1,
        )
    params, adam = adam_step(now.params, grads, now.adam, lr=setup.lr, xp=xp)
    bits = mean_loss / math.log(2.0) / setup.K
    return Run(step, params, adam, est, s), bits


# ---- the run ----------------------------------------------------------------------------
class _Reporter:
    """Progress lines on ``out`` and JSON lines in the ``--log`` file."""

    def __init__(self, prog, total, max_seconds, log, out):
        self.prog, self.total, self.max_seconds = prog, total, max_seconds
        self.log, self.out = log, out

    def line(self, step, data, seconds, figures, *, final=False, extra=None):
        record = {"step": step, "data": data, "seconds": round(seconds, 3), **figures}
        record.update(extra or {})
        if final:
            record["final"] = True
        if self.log is not None:
            self.log.write(json.dumps(record) + "\n")
            self.log.flush()
        return record

    def progress(self, step, data, figures, *, rate, elapsed):
        left = (self.total - step) / rate if rate > 0 else math.inf
        if self.max_seconds is not None:
            left = min(left, max(self.max_seconds - elapsed, 0.0))
        shown = "  ".join(f"{k} {_fmt(v)}" for k, v in figures.items())
        print(f"step {step}/{self.total}  data {data}  {shown}  {rate:.1f} steps/s  "
              f"left {_duration(left)}", file=self.out, flush=True)


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def run(args, task, *, prog, evaluate=None, eval_every=0, out=None, err=None):
    """Train on ``task`` with the parsed common flags ``args``; returns the exit status.

    ``evaluate(ctx, params, final) -> dict`` (optional) is called every ``eval_every``
    steps and once at the end; its figures go into the log line that follows. Exit
    status: 0 done, 130 interrupted (checkpoint written if configured), 1 non-finite
    loss or gradient, 2 bad input (one line on ``err``, never a traceback). SIGTERM is
    handled like Ctrl-C while the run lasts.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    previous = _sigterm_as_interrupt()
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # we check ourselves
            return _run(args, task, prog, evaluate, eval_every, out)
    except Failure as exc:
        print(f"{prog}: error: {exc}", file=err, flush=True)
        return exc.status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err, flush=True)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _sigterm_as_interrupt():
    """Make SIGTERM (``kill``, a job scheduler) stop a run like Ctrl-C: checkpoint, exit 130.

    Returns the previous handler to restore, or None where handlers cannot be set (not the
    main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def _setup(args, task):
    try:
        xp, device = load(args.backend)
    except BackendError as exc:
        raise Failure(str(exc)) from None
    dtype = dtype_of(xp, args.dtype)
    cell = rhn.RHN(task.n_in, args.hidden, task.n_out, depth=args.depth)
    module, shapes = None, {}
    if args.algo != "bptt":
        try:
            module = influence_method(args.algo)
        except ImportError as exc:
            raise Failure(f"--algo {args.algo} is not available: {exc}") from None
        shapes = module.noise_shapes(cell, task.batch, args.rank)
    K = args.truncation if args.algo == "bptt" else 1
    return Setup(cell, xp, device, dtype, module, shapes, K, task.batch, args.lr, args.clip)


def _fresh(setup, args):
    cell, xp, device, dtype = setup.cell, setup.xp, setup.device, setup.dtype
    params = cell.init(args.seed, xp=xp, dtype=dtype, init_scale=args.init_scale,
                       gate_bias=args.gate_bias, device=device)
    est = None
    if setup.module is not None:
        est = setup.module.init(cell, setup.B, rank=args.rank, xp=xp, dtype=dtype, device=device)
    s = xp.zeros((setup.B, cell.n_hidden), dtype=dtype, device=device)
    return Run(0, params, adam_init(params, xp=xp), est, s)


def _rngs(seed):
    data_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(data_seq), np.random.default_rng(noise_seq)


def checkpoint_arrays(setup, run, rngs, task, config, seconds):
    """Everything a checkpoint holds, as NumPy arrays (parameters under SPEC §1 names)."""
    arrays = {k: to_numpy(v) for k, v in run.params.items()}
    for k in run.params:
        arrays[f"adam/m/{k}"] = to_numpy(run.adam.m[k])
        arrays[f"adam/v/{k}"] = to_numpy(run.adam.v[k])
    arrays["adam/step"] = np.asarray(run.adam.step, dtype=np.int64)
    for i, leaf in enumerate(_leaves(run.est)):
        arrays[f"est/{i}"] = to_numpy(leaf)
    arrays["s"] = to_numpy(run.s)
    arrays["step"] = np.asarray(run.step, dtype=np.int64)
    arrays["seconds"] = np.asarray(seconds, dtype=np.float64)
    arrays["rng/data"] = _text(rngs[0].bit_generator.state)
    arrays["rng/noise"] = _text(rngs[1].bit_generator.state)
    for k, v in task.state_dict().items():
        arrays[f"task/{k}"] = np.asarray(v)
    arrays["config"] = _text(config)
    arrays["format"] = _text(CHECKPOINT_FORMAT)
    return arrays


def restore(path, arrays, setup, template, rngs, task, config):
    """The ``Run`` and elapsed seconds stored in ``arrays``; sets ``rngs`` and ``task`` in place."""
    saved = _get_text(arrays, "config", path)
    if saved != config:
        keys = sorted(set(saved) | set(config))
        diff = ", ".join(f"{k} {saved.get(k)!r} (checkpoint) vs {config.get(k)!r} (now)"
                         for k in keys if saved.get(k) != config.get(k))
        raise Failure(f"checkpoint {path} was written with another configuration: {diff}")
    xp, device = setup.xp, setup.device

    def get(key, like):
        if key not in arrays:
            raise Failure(f"cannot read checkpoint {path}: {key!r} is missing")
        value = arrays[key]
        if tuple(value.shape) != tuple(like.shape):
            raise Failure(f"cannot read checkpoint {path}: {key!r} has shape {value.shape}, "
                          f"expected {tuple(like.shape)}")
        return xp.asarray(value, dtype=like.dtype, device=device)

    try:
        params = {k: get(k, p) for k, p in template.params.items()}
        m = {k: get(f"adam/m/{k}", p) for k, p in template.params.items()}
        v = {k: get(f"adam/v/{k}", p) for k, p in template.params.items()}
        leaves = [get(f"est/{i}", leaf) for i, leaf in enumerate(_leaves(template.est))]
        s = get("s", template.s)
        step, adam_t = int(arrays["step"]), int(arrays["adam/step"])
        seconds = float(arrays["seconds"])
        for rng, key in zip(rngs, ("rng/data", "rng/noise")):
            rng.bit_generator.state = _get_text(arrays, key, path)
        task.load_state_dict({k[5:]: a for k, a in arrays.items() if k.startswith("task/")})
    except Failure:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise Failure(f"cannot read checkpoint {path}: {exc}") from None
    est = _rebuild(template.est, leaves)
    return Run(step, params, AdamState(adam_t, m, v), est, s), seconds


def _run(args, task, prog, evaluate, eval_every, out):
    setup = _setup(args, task)
    config = run_config(args, task)
    rngs = _rngs(args.seed)
    run_ = _fresh(setup, args)
    seconds0 = 0.0
    if args.checkpoint:
        _check_writable(args.checkpoint, "--checkpoint")
        if args.resume:
            arrays = load_checkpoint(args.checkpoint)
            run_, seconds0 = restore(args.checkpoint, arrays, setup, run_, rngs, task, config)
        elif os.path.exists(args.checkpoint):
            raise Failure(f"checkpoint {args.checkpoint} exists; pass --resume to continue it "
                          "or remove it")
    log = None
    if args.log:
        _check_writable(args.log, "--log")
        log = open(args.log, "a" if args.resume else "w", encoding="utf-8")
    try:
        return _loop(args, task, prog, evaluate, eval_every, out, setup, config, rngs, run_,
                     seconds0, log)
    finally:
        if log is not None:
            log.close()


def _loop(args, task, prog, evaluate, eval_every, out, setup, config, rngs, run_, seconds0, log):
    xp, K, B = setup.xp, setup.K, setup.B
    step_fn = window_step if setup.module is None else online_step
    reporter = _Reporter(prog, args.steps, args.max_seconds, log, out)
    ctx = Context(setup.cell, xp, setup.device, setup.dtype)
    t0 = time.perf_counter()
    step0 = run_.step
    last_report = t0
    extra = {}

    def clock():
        elapsed = time.perf_counter() - t0
        rate = (run_.step - step0) / elapsed if elapsed > 0 else 0.0
        return elapsed, rate

    def save():
        if args.checkpoint:
            save_checkpoint(args.checkpoint, checkpoint_arrays(
                setup, run_, rngs, task, config, seconds0 + time.perf_counter() - t0))

    def report(final=False, **more):
        elapsed, rate = clock()
        figures = task.figures()
        data = run_.step * K * B
        record = reporter.line(run_.step, data, seconds0 + elapsed, figures, final=final,
                               extra={**extra, **more})
        extra.clear()
        if not final:
            reporter.progress(run_.step, data, figures, rate=rate, elapsed=elapsed)
        return record

    snapshot = None
    try:
        while run_.step < args.steps:
            if args.max_seconds is not None and time.perf_counter() - t0 >= args.max_seconds:
                break
            snapshot = (run_.step, rngs[0].bit_generator.state, rngs[1].bit_generator.state,
                        task.state_dict())
            batches = [task.next_batch(rngs[0]) for _ in range(K)]
            resets = not all(np.all(b.keep == 1) for b in batches)  # known on the host
            packed = xp.asarray(pack(batches), dtype=setup.dtype, device=setup.device)
            noise = draw_signs(rngs[1], setup.noise_shapes, xp=xp, dtype=setup.dtype,
                               device=setup.device)
            loss, grads, est, s = step_fn(setup, run_, packed, noise, resets)
            new, bits = apply_step(setup, run_, loss, grads, est, s)
            task.observe(bits, steps=K)
            run_ = new  # commit: from here host state and device state agree again
            if evaluate is not None and eval_every and run_.step % eval_every == 0:
                extra.update(evaluate(ctx, run_.params, False))
                report()
                last_report = time.perf_counter()
            elif (args.report_every and run_.step % args.report_every == 0) or (
                not args.report_every and time.perf_counter() - last_report >= args.progress_seconds
            ):
                report()
                last_report = time.perf_counter()
            if args.checkpoint_every and run_.step % args.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        if snapshot is not None and snapshot[0] == run_.step:  # stopped inside a step: undo it
            rngs[0].bit_generator.state, rngs[1].bit_generator.state = snapshot[1], snapshot[2]
            task.load_state_dict(snapshot[3])
        save()
        report(final=True, interrupted=True)
        where = f"; checkpoint written to {args.checkpoint}" if args.checkpoint else ""
        print(f"{prog}: interrupted at step {run_.step}{where}", file=out, flush=True)
        return 130
    except Failure as exc:
        if exc.status == 1:  # diverged: the log ends at the last good state
            report(final=True, diverged=run_.step + 1)
            if args.checkpoint and os.path.exists(args.checkpoint):
                exc.args = (f"{exc}; last good checkpoint kept at {args.checkpoint}",)
        raise
    save()
    if evaluate is not None:
        extra.update(evaluate(ctx, run_.params, True))
    record = report(final=True)
    elapsed, rate = clock()
    why = "steps done" if run_.step >= args.steps else "time limit"
    shown = "  ".join(f"{k} {_fmt(v)}" for k, v in record.items()
                      if k not in ("step", "data", "seconds", "final"))
    print(f"{prog}: {why} at step {run_.step}  data {record['data']}  {shown}  "
          f"({elapsed:.1f} s, {rate:.1f} steps/s)", file=out, flush=True)
    return 0
