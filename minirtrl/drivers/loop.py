"""The online training loop shared by the drivers (``python -m minirtrl.copy``, ``... .ptb``).

One optimiser step of the RTRL family (``rtrl``, ``uoro``, ``kf``, ``ok``, ``kf-avg``) reads
one character of every stream (``docs/algorithms.md``, "Online training")::

    s, G     ← s ⊙ keep, G ⊙ keep            reset the streams that start a new sequence
    s, cache ← cell.step(s, x_t)
    loss_t, ∂V, c_t ← readout                 c_t = ∂loss_t/∂s_t
    G        ← method.update(G, cache, signs)   (signs drawn on the host)
    g        ← (method.grads(G, c_t), ∂V) / B    gradient of the batch-mean loss
    g_W      ← clip(g_W, --clip)                 all W_l jointly, not V
    θ        ← Adam(θ, g)                        β = 0.9, 0.999, ε = 1e-8

and the influence estimate G is carried across parameter updates. ``bptt`` instead reads
windows of ``--truncation`` characters, back-propagates each to its start
(``bptt.window_gradient``, resets inside the window through ``keep``), carries the state
across windows and takes one Adam step per window on the window's summed batch-mean loss.
``step`` counts optimiser steps (windows for ``bptt``); ``data`` counts characters read
by all streams (steps × K × B).

A task (``task.Task``: the copy curriculum, a text corpus) makes the batches and owns its
figures; ``checkpoint`` writes and validates checkpoints; the common flags are in ``cli``.
Everything else is here: backend and dtype resolution with one-line errors, progress
lines, the ``--log`` JSON lines, Ctrl-C and SIGTERM, ``--max-seconds``, and the guard that
stops on a non-finite loss or gradient. A driver is three lines (see ``drivers.copy``)::

    args = cli.parse(cli.make_parser(prog, text, algo=..., hidden=..., ...), argv)
    if isinstance(args, int): return args            # --help or a bad flag
    return loop.run(args, MyTask(args.batch, ...), prog=prog, evaluate=..., eval_every=...)

Seeds: the parameters come from ``cell.init(seed)``; the data and the random signs from
two children of ``numpy.random.SeedSequence(seed)``, so every algorithm sees the same data
stream for one seed. For ``bptt`` the task is told the window's mean loss once for its K
characters (``observe(bits, steps=K)``), after the whole window was drawn.

Host and device: a step's batch is built in NumPy and moved with one ``xp.asarray`` (inputs,
targets, mask and keep packed in one array); the only host read per step is one 3-element
stack (loss, gradient norms) that the curriculum and the non-finite guard need.

Notation: ``s`` s_t (B, n); ``est`` the influence method's state (its estimate of G_t);
``c`` c_t; ``K`` characters per optimiser step (1 online, ``--truncation`` for bptt);
``B`` streams. Cost per step: that of the method (see ``minirtrl``) plus O(B n_in) host work.
"""

import math
import os
import signal
import sys
import threading
import time
from typing import Callable, NamedTuple, Optional, TextIO

import numpy as np

from .. import bptt
from ..adam import adam_init, adam_step, clip_by_norm, global_norm
from ..api import influence_step
from ..backends import BackendError, dtype_of, load, to_numpy
from ..influence import reset
from ..methods import influence_method
from ..rng import draw_signs
from . import checkpoint
from .checkpoint import Failure, Run
from .cli import CONFIG_KEYS, init_options, make_cell
from .report import Reporter, fmt
from .task import Context


class Setup(NamedTuple):
    """What does not change during a run: the model, where it lives, the method."""

    cell: object
    xp: object
    device: object
    dtype: object
    module: object  # influence method module; None for bptt
    noise_shapes: dict
    K: int  # characters per optimiser step
    B: int
    lr: float
    clip: float


class Settings(NamedTuple):
    """How a run is driven and reported (the loop's settings, from the parsed flags)."""

    prog: str
    steps: int  # stop at this total of optimiser steps
    max_seconds: Optional[float]  # or after this long (this invocation)
    progress_seconds: float  # report by time ...
    report_every: int  # ... or every this many steps (0: by time)
    checkpoint: Optional[str]
    checkpoint_every: int
    evaluate: Optional[Callable]  # evaluate(ctx, params, final) -> figures
    eval_every: int
    out: TextIO


# ---- one optimiser step -------------------------------------------------------------------
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
    settings = Settings(prog, args.steps, args.max_seconds, args.progress_seconds,
                        args.report_every, args.checkpoint, args.checkpoint_every, evaluate,
                        eval_every, out)
    previous = _sigterm_as_interrupt()
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # we check ourselves
            return _run(args, task, settings)
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
    cell = make_cell(args, task.n_in, task.n_out)
    module, shapes = None, {}
    if args.algo != "bptt":
        module = influence_method(args.algo)
        shapes = module.noise_shapes(cell, task.batch, args.rank or 1)
    K = args.truncation if args.algo == "bptt" else 1
    return Setup(cell, xp, device, dtype, module, shapes, K, task.batch, args.lr, args.clip)


def _fresh(setup, args):
    cell, xp, device, dtype = setup.cell, setup.xp, setup.device, setup.dtype
    params = cell.init(args.seed, xp=xp, dtype=dtype, device=device, **init_options(args))
    est = None
    if setup.module is not None:
        est = setup.module.init(cell, setup.B, args.rank or 1, xp=xp, dtype=dtype, device=device)
    s = xp.zeros((setup.B, cell.n_hidden), dtype=dtype, device=device)
    return Run(0, params, adam_init(params, xp=xp), est, s)


def _rngs(seed):
    data_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(data_seq), np.random.default_rng(noise_seq)


def run_config(args, task):
    """The settings a checkpoint records and a resumed run must match."""
    config = {key: getattr(args, key) for key in CONFIG_KEYS}
    config.update(task.config())
    return config


def _check_writable(path, what):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise Failure(f"{what} {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise Failure(f"{what} {path}: directory {folder} is not writable")


def _run(args, task, settings):
    setup = _setup(args, task)
    config = run_config(args, task)
    rngs = _rngs(args.seed)
    now = _fresh(setup, args)
    seconds0 = 0.0
    if args.checkpoint:
        _check_writable(args.checkpoint, "--checkpoint")
        if args.resume:
            arrays = checkpoint.load(args.checkpoint)
            now, seconds0 = checkpoint.restore(args.checkpoint, arrays, now, rngs, task, config,
                                               xp=setup.xp, device=setup.device)
        elif os.path.exists(args.checkpoint):
            raise Failure(f"checkpoint {args.checkpoint} exists; pass --resume to continue it "
                          "or remove it")
    log = None
    if args.log:
        _check_writable(args.log, "--log")
        log = open(args.log, "a" if args.resume else "w", encoding="utf-8")
    try:
        return _loop(Session(settings, setup, task, config, rngs, log), now, seconds0)
    finally:
        if log is not None:
            log.close()


class Session(NamedTuple):
    """One run's fixed parts: how it is driven, the model, the task, the RNGs, the log."""

    settings: Settings
    setup: Setup
    task: object
    config: dict  # what a checkpoint records and a resumed run must match
    rngs: tuple  # (data, noise) numpy Generators
    log: Optional[TextIO]


def _loop(session, now, seconds0):
    """Train from ``now`` (a ``Run``) until the steps or the time are used up."""
    settings, setup, task, config, rngs, log = session
    xp, K, B = setup.xp, setup.K, setup.B
    step_fn = window_step if setup.module is None else online_step
    reporter = Reporter(settings, log)
    evaluate, eval_every = settings.evaluate, settings.eval_every
    ctx = Context(setup.cell, xp, setup.device, setup.dtype)
    t0 = time.perf_counter()
    step0 = now.step
    last_report = t0
    extra = {}

    def clock():
        elapsed = time.perf_counter() - t0
        rate = (now.step - step0) / elapsed if elapsed > 0 else 0.0
        return elapsed, rate

    def save():
        if settings.checkpoint:
            checkpoint.save(settings.checkpoint, checkpoint.arrays_of(
                now, rngs, task, config, seconds0 + time.perf_counter() - t0))

    def report(final=False, **more):
        elapsed, rate = clock()
        figures = task.figures()
        data = now.step * K * B
        record = reporter.line(now.step, data, seconds0 + elapsed, figures, final=final,
                               extra={**extra, **more})
        extra.clear()
        if not final:
            reporter.progress(now.step, data, figures, rate=rate, elapsed=elapsed)
        return record

    snapshot = None
    try:
        while now.step < settings.steps:
            if settings.max_seconds is not None and time.perf_counter() - t0 >= settings.max_seconds:
                break
            snapshot = (now.step, rngs[0].bit_generator.state, rngs[1].bit_generator.state,
                        task.state_dict())
            batches = [task.next_batch(rngs[0]) for _ in range(K)]
            resets = not all(np.all(b.keep == 1) for b in batches)  # known on the host
            packed = xp.asarray(pack(batches), dtype=setup.dtype, device=setup.device)
            noise = draw_signs(rngs[1], setup.noise_shapes, xp=xp, dtype=setup.dtype,
                               device=setup.device)
            loss, grads, est, s = step_fn(setup, now, packed, noise, resets)
            new, bits = apply_step(setup, now, loss, grads, est, s)
            task.observe(bits, steps=K)
            now = new  # commit: from here host state and device state agree again
            if evaluate is not None and eval_every and now.step % eval_every == 0:
                extra.update(evaluate(ctx, now.params, False))
                report()
                last_report = time.perf_counter()
            elif (settings.report_every and now.step % settings.report_every == 0) or (
                not settings.report_every
                and time.perf_counter() - last_report >= settings.progress_seconds
            ):
                report()
                last_report = time.perf_counter()
            if settings.checkpoint_every and now.step % settings.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        if snapshot is not None and snapshot[0] == now.step:  # stopped inside a step: undo it
            rngs[0].bit_generator.state, rngs[1].bit_generator.state = snapshot[1], snapshot[2]
            task.load_state_dict(snapshot[3])
        save()
        report(final=True, interrupted=True)
        where = f"; checkpoint written to {settings.checkpoint}" if settings.checkpoint else ""
        print(f"{settings.prog}: interrupted at step {now.step}{where}", file=settings.out,
              flush=True)
        return 130
    except Failure as exc:
        if exc.status == 1:  # diverged: the log ends at the last good state
            report(final=True, diverged=now.step + 1)
            if settings.checkpoint and os.path.exists(settings.checkpoint):
                exc.args = (f"{exc}; last good checkpoint kept at {settings.checkpoint}",)
        raise
    save()
    if evaluate is not None:
        extra.update(evaluate(ctx, now.params, True))
    record = report(final=True)
    elapsed, rate = clock()
    why = "steps done" if now.step >= settings.steps else "time limit"
    shown = "  ".join(f"{k} {fmt(v)}" for k, v in record.items()
                      if k not in ("step", "data", "seconds", "final"))
    print(f"{settings.prog}: {why} at step {now.step}  data {record['data']}  {shown}  "
          f"({elapsed:.1f} s, {rate:.1f} steps/s)", file=settings.out, flush=True)
    return 0
