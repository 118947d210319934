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
targets, mask, keep and the step's random signs packed in one array: the only host-to-device
copy of a step); the only host read per step is one 3-element stack (loss, gradient norms)
that the curriculum and the non-finite guard need.

Notation: ``s`` s_t (B, n); ``est`` the influence method's state (its estimate of G_t);
``c`` c_t; ``K`` characters per optimiser step (1 online, ``--truncation`` for bptt);
``B`` streams. Cost per step: that of the method (see ``minirtrl``) plus O(B n_in) host work.
"""

import contextlib
import math
import os
import sys
import time
from typing import Callable, NamedTuple, Optional, TextIO

import numpy as np

from .. import bptt
from ..adam import adam_init, adam_step, clip_by_norm
from .backends import dtype_of, to_numpy
from ..methods import INFLUENCE, host_signs, influence_step
from . import checkpoint
from .checkpoint import Run
from .cli import CONFIG_KEYS, init_options, make_cell, open_backend, threads_of
from .errors import Diverged, WriteFailed, deferred
from .files import io_failure
from .outputs import Outputs
from .report import RESUMED, Reporter, fmt, header, settings_line
from .task import Context


class Setup(NamedTuple):
    """What does not change during a run: the model, where it lives, the method."""

    cell: object
    xp: object
    device: object
    dtype: object
    module: object  # influence method module; None for bptt
    sign_shapes: dict
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
def pack(batches, signs=None):
    """Host batches of K characters and a step's signs -> one (K, B, width) float64 array.

    Each row is ``[x | y | mask | keep | signs]``: the signs of the step (``rng.host_signs``,
    each (B, ...), flattened per stream) ride in the same transfer as the data, so a step
    moves one array to the device.
    """
    rows = np.stack([
        np.concatenate([b.x, b.y[:, None], b.mask[:, None], b.keep[:, None]], axis=1)
        for b in batches
    ])
    if signs:
        B = rows.shape[1]
        flat = np.concatenate([v.reshape(B, -1) for v in signs.values()], axis=1)
        rows = np.concatenate([rows, np.broadcast_to(flat, (rows.shape[0],) + flat.shape)],
                              axis=2)
    return rows


def _unpack(packed, n_in, xp):
    x = packed[..., :n_in]
    y = xp.astype(packed[..., n_in], xp.int64)
    return x, y, packed[..., n_in + 1], packed[..., n_in + 2]


def _signs(packed, n_in, shapes, xp):
    """The step's sign arrays from the columns after ``[x | y | mask | keep]``."""
    out, start = {}, n_in + 3
    for name, shape in shapes.items():
        size = math.prod(shape[1:])
        out[name] = xp.reshape(packed[:, start:start + size], shape)
        start += size
    return out


def online_step(setup, now, packed, resets=True):
    """One character of the RTRL family; returns (loss (B,), grads, est, s) -- not yet applied.

    ``resets`` is False when the host knows that no stream starts a sequence here, which
    saves a pass over the influence state.
    """
    cell, xp = setup.cell, setup.xp
    row = packed[0, ...]
    x, y, mask, keep = _unpack(row, cell.n_in, xp)
    signs = _signs(row, cell.n_in, setup.sign_shapes, xp)
    s, est, loss, grads = influence_step(setup.module, cell, now.params, now.s, now.est, x, y,
                                         mask, signs, xp=xp, keep=keep if resets else None)
    return loss, grads, est, s


def window_step(setup, now, packed, resets=True):
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
    grads, norm = clip_by_norm(grads, setup.clip, setup.cell.blocks)
    # the readout gradient is finite iff its sum is (up to an overflow of the sum, which
    # would stop a run that was about to diverge anyway)
    probe = xp.stack([xp.sum(loss) / B, norm, xp.sum(grads["V"])])
    mean_loss, norm_w, sum_v = (float(v) for v in to_numpy(probe))  # the one host read
    step = now.step + 1
    if not all(map(math.isfinite, (mean_loss, norm_w, sum_v))):
        raise Diverged(
            f"non-finite loss or gradient at step {step} (loss {mean_loss}, recurrent gradient "
            f"norm {norm_w}, readout gradient sum {sum_v}); stopped without saving this state",
            step,
        )
    params, adam = adam_step(now.params, grads, now.adam, lr=setup.lr)
    bits = mean_loss / math.log(2.0) / setup.K
    return Run(step, params, adam, est, s), bits


# ---- the run ----------------------------------------------------------------------------
def run(args, task, *, prog, evaluate=None, eval_every=0, outputs=None):
    """Train on ``task`` with the parsed common flags ``args``; returns 0 when done.

    ``evaluate(ctx, params, final) -> dict`` (optional) is called every ``eval_every``
    steps and once at the end; its figures go into the log line that follows.
    ``outputs``: the run's ``outputs.Outputs`` if the driver prepared them already (to
    refuse bad paths before loading its data), else they are prepared here. A non-finite
    loss or gradient, a write that failed during the run, bad input and SIGINT / SIGTERM
    (checkpoint written if configured) raise ``Failure`` or ``Interrupted``, which the
    driver's ``errors.command`` turns into one line and exit status 1, 2, 130 or 143.
    """
    settings = Settings(prog, args.steps, args.max_seconds, args.progress_seconds,
                        args.report_every, args.checkpoint, args.checkpoint_every, evaluate,
                        eval_every, sys.stdout)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # we check ourselves
        if outputs is not None:
            return _run(args, task, settings, outputs)
        with Outputs(args) as prepared:
            return _run(args, task, settings, prepared)


def _setup(args, task):
    xp, device = open_backend(args)
    dtype = dtype_of(xp, args.dtype)
    cell = make_cell(args, task.n_in, task.n_out)
    module, shapes = None, {}
    if args.algo != "bptt":
        module = INFLUENCE[args.algo]
        shapes = module.sign_shapes(cell, task.batch, args.rank or 1)
    K = args.truncation if args.algo == "bptt" else 1
    return Setup(cell, xp, device, dtype, module, shapes, K, task.batch, args.lr, args.clip)


def _fresh(setup, args):
    cell, xp, device, dtype = setup.cell, setup.xp, setup.device, setup.dtype
    params = cell.init(args.seed, xp=xp, dtype=dtype, device=device, **init_options(args))
    est = None
    if setup.module is not None:
        est = setup.module.init(cell, setup.B, args.rank or 1, xp=xp, dtype=dtype, device=device)
    s = xp.zeros((setup.B, cell.n_hidden), dtype=dtype, device=device)
    return Run(0, params, adam_init(params), est, s)


def _rngs(seed):
    data_seq, sign_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(data_seq), np.random.default_rng(sign_seq)


def run_config(args, task):
    """The settings a checkpoint records and a resumed run must match."""
    config = {key: getattr(args, key) for key in CONFIG_KEYS}
    config.update(task.config())
    return config


def _run(args, task, settings, outputs):
    setup = _setup(args, task)
    config = run_config(args, task)
    rngs = _rngs(args.seed)
    now = _fresh(setup, args)
    seconds0 = 0.0
    if outputs.checkpoint and args.resume:
        spec = checkpoint.expected(now, task, args.dtype)
        arrays = checkpoint.load(outputs.checkpoint, spec, task.MAX_WIDTH, config)
        now, seconds0 = checkpoint.restore(args.checkpoint, arrays, now, rngs, task,
                                           xp=setup.xp, device=setup.device)
    settings = settings._replace(checkpoint=outputs.checkpoint)
    log = outputs.open_log(now.step)
    threads = threads_of(args.backend)
    reporter = Reporter(settings, log, outputs.log_path)
    resumed = outputs.checkpoint and args.resume
    try:
        info = header(settings.prog, args, device=setup.device, threads=threads)
        if log is not None and log.tell() == 0:
            reporter.write(info)
        else:  # a log continued: where this invocation ran, at the step it starts from
            reporter.record("resume", now.step, now.step * setup.K * setup.B, seconds0,
                            task.figures(), **{k: info[k] for k in RESUMED})
        reporter.say(settings_line(settings.prog, args, setup.device, threads))
        if resumed:
            reporter.say(f"{settings.prog}: resumed from step {now.step} ({args.checkpoint})")
        return _loop(Session(settings, setup, task, config, rngs, reporter), now, seconds0)
    finally:
        if log is not None:  # every record was flushed and checked when it was written
            with contextlib.suppress(OSError):
                log.close()


class Session(NamedTuple):
    """One run's fixed parts: how it is driven, the model, the task, the RNGs, the log."""

    settings: Settings
    setup: Setup
    task: object
    config: dict  # what a checkpoint records and a resumed run must match
    rngs: tuple  # (data, signs) numpy Generators
    reporter: Reporter


def _loop(session, now, seconds0):
    """Train from ``now`` (a ``Run``) until the steps or the time are used up."""
    settings, setup, task, config, rngs, reporter = session
    xp, K, B = setup.xp, setup.K, setup.B
    step_fn = window_step if setup.module is None else online_step
    evaluate, eval_every = settings.evaluate, settings.eval_every
    ctx = Context(setup.cell, xp, setup.device, setup.dtype)
    t0 = time.perf_counter()
    step0 = now.step
    last_report = t0

    def clock():
        elapsed = time.perf_counter() - t0
        rate = (now.step - step0) / elapsed if elapsed > 0 else 0.0
        return elapsed, rate

    def save():
        if settings.checkpoint:
            arrays = checkpoint.arrays_of(now, rngs, task, config,
                                          seconds0 + time.perf_counter() - t0)
            try:
                checkpoint.save(settings.checkpoint, arrays)
            except OSError as exc:
                raise io_failure("--checkpoint", settings.checkpoint, exc) from None

    def record(kind, **extra):
        return reporter.record(kind, now.step, now.step * K * B,
                               seconds0 + time.perf_counter() - t0, task.figures(), **extra)

    def progress():
        elapsed, rate = clock()
        record("progress")
        reporter.progress(now.step, now.step * K * B, task.figures(), rate=rate, elapsed=elapsed)

    def evaluation(final):
        start = time.perf_counter()
        figures = evaluate(ctx, now.params, final)
        return {**figures, "eval_seconds": round(time.perf_counter() - start, 3)}

    snapshot = None
    try:
        while now.step < settings.steps:
            if settings.max_seconds is not None and time.perf_counter() - t0 >= settings.max_seconds:
                break
            snapshot = (now.step, rngs[0].bit_generator.state, rngs[1].bit_generator.state,
                        task.state_dict())
            batches = [task.next_batch(rngs[0]) for _ in range(K)]
            resets = not all(np.all(b.keep == 1) for b in batches)  # known on the host
            signs = host_signs(rngs[1], setup.sign_shapes)  # {} for rtrl and bptt
            packed = xp.asarray(pack(batches, signs), dtype=setup.dtype, device=setup.device)
            loss, grads, est, s = step_fn(setup, now, packed, resets)
            new, bits = apply_step(setup, now, loss, grads, est, s)
            task.observe(bits, steps=K)
            now = new  # commit: from here host state and device state agree again
            evaluating = evaluate is not None and eval_every and now.step % eval_every == 0
            if evaluating or (settings.report_every and now.step % settings.report_every == 0) or (
                not settings.report_every
                and time.perf_counter() - last_report >= settings.progress_seconds
            ):
                progress()
                if evaluating:  # its line comes after the step line it belongs to
                    record("eval", **evaluation(False))
                last_report = time.perf_counter()
            if settings.checkpoint_every and now.step % settings.checkpoint_every == 0:
                save()
    except KeyboardInterrupt as exc:
        if snapshot is not None and snapshot[0] == now.step:  # stopped inside a step: undo it
            rngs[0].bit_generator.state, rngs[1].bit_generator.state = snapshot[1], snapshot[2]
            task.load_state_dict(snapshot[3])
        with deferred():  # a second Ctrl-C must not cut the checkpoint short
            save()
            record("final", final=True, stopped="interrupted",
                   signal=exc.args[0] if exc.args else "SIGINT")
        where = f"; checkpoint written to {settings.checkpoint}" if settings.checkpoint else ""
        reporter.say(f"{settings.prog}: interrupted at step {now.step}{where}")
        raise
    except Diverged as exc:  # the log ends at the last good state
        record("final", final=True, stopped="diverged", diverged=exc.step)
        if settings.checkpoint and os.path.exists(settings.checkpoint):
            exc.args = (f"{exc}; last good checkpoint kept at {settings.checkpoint}",)
        raise
    except WriteFailed as exc:
        if exc.flag == "--log" and settings.checkpoint:  # the log is lost, not the work
            save()
            exc.args = (f"{exc}; checkpoint of step {now.step} written to "
                        f"{settings.checkpoint}",)
        raise
    save()
    why = "steps" if now.step >= settings.steps else "time"
    extra = evaluation(True) if evaluate is not None else {}
    final = record("final", final=True, stopped=why, **extra)
    elapsed, rate = clock()
    shown = "  ".join(f"{k} {fmt(v)}" for k, v in final.items()
                      if k not in ("kind", "step", "data", "seconds", "final", "stopped",
                                   "eval_seconds"))
    reporter.say(f"{settings.prog}: {'steps done' if why == 'steps' else 'time limit'} at step "
                 f"{now.step}  data {final['data']}  {shown}  ({elapsed:.1f} s, {rate:.1f} steps/s)")
    return 0
