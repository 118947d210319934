"""The online training loop of ``python -m minirtrl.copy`` and ``python -m minirtrl.ptb``.

One optimiser step of the RTRL family reads one character of every stream
(``docs/algorithms.md``, "Online training"): ``methods.influence_step`` (streams that start
a new sequence are reset inside it), the gradient of the batch-mean loss, the recurrent
gradient (all W_l, not V) clipped to ``--clip``, one Adam step, checked (``steps.apply_step``:
divergence is named, never saved); the influence estimate is
carried across updates. ``bptt`` reads windows of ``--truncation`` characters
(``bptt.window_gradient``), carries the state across windows and takes one Adam step per
window; with ``--every-step`` it takes one per character, the gradient of that character's
loss through the last ``--truncation`` characters (``bptt.every_step``; its ``Window`` is the
run's ``est``). ``--align N`` runs exact RTRL beside any of them (``align``) and logs an
``align`` record every N steps. ``step`` counts optimiser steps; ``data`` the characters read
by all streams.

A task (``copy.CopyTask``, ``ptb.TextTask``) is host-side and provides ``name``, ``n_in``,
``n_out``, ``batch``; ``next_batch(rng) -> Batch`` once per character (K times per bptt
window), then ``observe(bits, steps=K)`` once per step with the batch-mean loss in bits per
character; ``figures()`` for progress and log lines; ``config()`` the settings a resumed run
must share; ``state_dict()`` (NumPy arrays) for checkpoints, restored by ``load_state_dict``
(``ValueError`` for a state it cannot take), and ``state_spec()``, every array's dtype and
shape (None: any width up to ``MAX_WIDTH``), checked before a checkpoint is read. An
``evaluate(setup, params, final) -> figures`` hook (ptb) runs every ``eval_every`` steps and
at the end. Seeds: the parameters from ``cell.init(seed)``; the data and the signs from two
children of ``numpy.random.SeedSequence(seed)``. Host and device: a step's batch and signs go
to the device in one packed array; the one host read per step is a 3-element stack (loss,
gradient norms) for the curriculum and the non-finite guard.
"""

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple, TextIO

import numpy as np

from .. import bptt
from ..adam import adam_init
from ..methods import INFLUENCE, host_signs
from . import align, checkpoint, memory
from .backends import dtype_of, threads_of
from .checkpoint import Run
from .cli import CONFIG_KEYS, init_options, make_cell, open_backend
from .report import RESUMED, Reporter, fmt, header, settings_line
from .runfiles import Outputs
from .safety import Diverged, Failure, WriteFailed, deferred, io_failure
from .steps import (
    Setup,
    apply_step,
    every_step,
    fused_step,
    online_step,
    pack,
    shadow_step,
    window_step,
)


# ---- what a task provides ------------------------------------------------------------------
class Batch(NamedTuple):
    """One character of every stream, on the host: ``x`` (B, n_in) one-hot inputs, ``y`` (B,)
    targets, ``mask`` (B,) 0/1 loss weights, ``keep`` (B,) 0 where a stream starts a new
    sequence (its state and influence are zeroed before this character)."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    keep: np.ndarray


# ---- the run ----------------------------------------------------------------------------
class Settings(NamedTuple):
    """How a run is driven and reported (from the parsed flags)."""

    prog: str
    steps: int  # stop at this total of optimiser steps
    max_seconds: float | None  # or after this long (this invocation)
    progress_seconds: float  # report by time ...
    report_every: int  # ... or every this many steps (0: by time)
    checkpoint: str | None
    checkpoint_every: int
    evaluate: Callable | None  # evaluate(setup, params, final) -> figures
    eval_every: int
    out: TextIO


class Session(NamedTuple):
    """One run's fixed parts: how it is driven, the model, the task, the RNGs, the log."""

    settings: Settings
    setup: Setup
    task: object
    config: dict  # what a checkpoint records and a resumed run must match
    rngs: tuple  # (data, signs) numpy Generators
    reporter: Reporter
    identity: str  # the run's identity, in its checkpoints and its log's header


def run(args, task, *, prog, evaluate=None, eval_every=0, outputs=None):
    """Train on ``task`` with the parsed training flags ``args``; returns 0 when done.

    ``evaluate(setup, params, final) -> dict`` (optional) runs every ``eval_every`` steps and
    at the end; its figures go into the log. ``outputs``: the run's ``Outputs`` if the command
    prepared them already. Divergence, a failed write, bad input and SIGINT / SIGTERM
    (checkpoint written if configured) raise ``Failure`` or ``Interrupted``.
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
    memory.refuse_oversized(args, task, device)  # before anything of the run's size exists
    cell = make_cell(args, task.n_in, task.n_out)
    module, shapes = None, {}
    if args.algo != "bptt":
        module = INFLUENCE[args.algo]
        shapes = module.sign_shapes(cell, task.batch, args.rank or 1)
    K = args.truncation if args.algo == "bptt" and not args.every_step else 1
    fused = args.backend == "jax" and not args.align and not args.every_step
    return Setup(cell, xp, device, dtype_of(xp, args.dtype), module, shapes, K, task.batch,
                 args.lr, args.clip, bool(args.every_step), args.align or 0, fused,
                 _spread(args, task) if getattr(args, "shard", False) else None)


def _spread(args, task):
    """``--shard``: the streams spread over JAX's devices, B a multiple of their count."""
    from .. import compiled

    spread = compiled.spread()
    if task.batch % spread.count:
        raise Failure(f"--batch {task.batch}: --shard spreads the streams over {spread.count} "
                      f"devices, so --batch must be a multiple of {spread.count}")
    return spread


def _placed(setup, now):
    """``now`` on the devices of ``--shard``: parameters and moments on every device, the
    state and the estimate (batch first) split over them."""
    if setup.spread is None:
        return now
    sp = setup.spread
    return now._replace(params=sp.replicate(now.params), adam=sp.replicate(now.adam),
                        est=sp.split(now.est), s=sp.split(now.s))


def _fresh(setup, args):
    cell, xp, device, dtype = setup.cell, setup.xp, setup.device, setup.dtype
    options = init_options(args)
    params = cell.init(args.seed, xp=xp, dtype=dtype, device=device, **options)
    if not all(bool(xp.all(xp.isfinite(p))) for p in params.values()):
        flags = ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in options.items())
        raise Failure(f"the initial parameters are not finite in {args.dtype} ({flags}): a "
                      "value too large for that type")
    est = None
    if setup.module is not None:
        est = setup.module.init(cell, setup.B, args.rank or 1, xp=xp, dtype=dtype, device=device)
    elif setup.every_step:
        est = bptt.start_window(cell, setup.B, args.truncation, xp=xp, dtype=dtype, device=device)
    s = xp.zeros((setup.B, cell.n_state), dtype=dtype, device=device)
    shadow = align.start(cell, setup.B, xp=xp, dtype=dtype, device=device) if setup.align else None
    return Run(0, params, adam_init(params), est, s, shadow)


def run_config(args, task):
    """The settings a checkpoint records and a resumed run must match."""
    return {**{key: getattr(args, key) for key in CONFIG_KEYS}, **task.config()}


def _run(args, task, settings, outputs):
    setup = _setup(args, task)
    config = run_config(args, task)
    rngs = tuple(np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(2))
    now, seconds0, identity = _fresh(setup, args), 0.0, uuid.uuid4().hex
    resumed = bool(outputs.checkpoint and args.resume)
    if resumed:
        spec = checkpoint.expected(now, task, args.dtype)
        arrays = checkpoint.load(outputs.checkpoint, spec, task.MAX_WIDTH, config)
        now, seconds0, identity = checkpoint.restore(args.checkpoint, arrays, now, rngs, task,
                                                     xp=setup.xp, device=setup.device)
    now = _placed(setup, now)
    settings = settings._replace(checkpoint=outputs.checkpoint)
    log = outputs.open_log(now.step, identity)
    threads = threads_of(args.backend)
    reporter = Reporter(settings, log, outputs.log_path)
    try:
        info = header(settings.prog, args, device=setup.device, threads=threads, run=identity)
        if log is not None and log.tell() == 0:
            reporter.write(info)
        else:  # a log continued: where this invocation ran, at the step it starts from
            reporter.record("resume", now.step, now.step * setup.K * setup.B, seconds0,
                            task.figures(), **{k: info[k] for k in RESUMED})
        reporter.say(settings_line(settings.prog, args, setup.device, threads))
        if resumed:
            reporter.say(f"{settings.prog}: resumed from step {now.step} ({args.checkpoint})")
        session = Session(settings, setup, task, config, rngs, reporter, identity)
        return _loop(session, now, seconds0)
    finally:
        if log is not None:  # every record was flushed and checked when it was written
            with contextlib.suppress(OSError):
                log.close()


def _loop(session, now, seconds0):
    """Train from ``now`` (a ``Run``) until the steps or the time are used up."""
    settings, setup, task, config, rngs, reporter, identity = session
    xp, K, B = setup.xp, setup.K, setup.B
    step_fn = online_step if setup.module is not None else (
        every_step if setup.every_step else window_step)
    fused = fused_step(setup, step_fn) if setup.fused else None
    evaluate, eval_every = settings.evaluate, settings.eval_every
    t0 = last_report = time.perf_counter()
    step0 = now.step

    def clock():
        elapsed = time.perf_counter() - t0
        return elapsed, (now.step - step0) / elapsed if elapsed > 0 else 0.0

    def save():
        if settings.checkpoint:
            arrays = checkpoint.arrays_of(now, rngs, task, config,
                                          seconds0 + time.perf_counter() - t0, identity)
            why = checkpoint.problem(arrays)
            if why is not None:  # never a checkpoint that cannot be resumed
                raise Diverged(f"diverged at step {now.step}: its state cannot be saved "
                               f"({why}); stopped without saving it", now.step)
            try:
                checkpoint.save(settings.checkpoint, arrays)
            except OSError as exc:
                raise io_failure("--checkpoint", settings.checkpoint, exc) from None

    def record(kind, **extra):
        return reporter.record(kind, now.step, now.step * K * B,
                               seconds0 + time.perf_counter() - t0, task.figures(), **extra)

    aligned = {}  # the last align record's figures, shown on the terminal

    def progress_line():
        elapsed, rate = clock()
        reporter.progress(now.step, now.step * K * B, {**task.figures(), **aligned}, rate=rate,
                          elapsed=elapsed)

    def evaluation(final):
        start = time.perf_counter()
        figures = evaluate(setup, now.params, final)
        return {**figures, "eval_seconds": round(time.perf_counter() - start, 3)}

    snapshot = None  # while a step is open: the run, RNGs and task state before it
    try:
        while now.step < settings.steps:
            limit = settings.max_seconds
            if limit is not None and time.perf_counter() - t0 >= limit:
                break
            snapshot = (now, rngs[0].bit_generator.state, rngs[1].bit_generator.state,
                        task.state_dict())
            batches = [task.next_batch(rngs[0]) for _ in range(K)]
            resets = not all(np.all(b.keep == 1) for b in batches)  # known on the host
            signs = host_signs(rngs[1], setup.sign_shapes)  # {} for rtrl and bptt
            packed = pack(batches, signs)  # (K, B, width) float64 on the host
            if fused is not None:  # moved by the compiled call (--shard: B split first)
                packed = np.asarray(packed, np.dtype(setup.dtype))
                if setup.spread is not None:
                    packed = setup.spread.split(packed, axis=1)
                now, bits = fused(now, packed, resets)
            else:
                packed = xp.asarray(packed, dtype=setup.dtype, device=setup.device)
                loss, grads, est, s = step_fn(setup, now, packed, resets)
                shadow = shadow_step(setup, now, packed, resets, grads) if setup.align else None
                now, bits = apply_step(setup, now, loss, grads, est, s, shadow)
            task.observe(bits, steps=K)
            alignment = None
            if setup.align and now.step % setup.align == 0:  # the sums start again
                alignment, shadow = align.figures(now.shadow)
                now = now._replace(shadow=shadow)
            evaluating = evaluate is not None and eval_every and now.step % eval_every == 0
            reporting = evaluating or (
                settings.report_every and now.step % settings.report_every == 0) or (
                not settings.report_every
                and time.perf_counter() - last_report >= settings.progress_seconds)
            figures = None
            if evaluating:  # part of the step (its line after the step's): an interrupted
                progress_line()  # evaluation undoes the step, and the resumed run redoes it
                figures = evaluation(False)
            snapshot = None  # the step is complete: from here it is kept
            if alignment is not None:
                record("align", **alignment)
                aligned = {k: v for k, v in alignment.items() if k != "align_steps"}
            if reporting:
                record("progress")
                if evaluating:
                    record("eval", **figures)
                else:
                    progress_line()
                last_report = time.perf_counter()
            if settings.checkpoint_every and now.step % settings.checkpoint_every == 0:
                save()
    except KeyboardInterrupt as exc:
        if snapshot is not None:  # stopped inside a step (its evaluation included): undo it
            now, rngs[0].bit_generator.state, rngs[1].bit_generator.state = snapshot[:3]
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
    shown = "  ".join(f"{k} {fmt(v)}" for k, v in {**final, **aligned}.items()
                      if k not in ("kind", "step", "data", "seconds", "final", "stopped",
                                   "eval_seconds"))
    reporter.say(f"{settings.prog}: {'steps done' if why == 'steps' else 'time limit'} at step "
                 f"{now.step}  data {final['data']}  {shown}  "
                 f"({elapsed:.1f} s, {rate:.1f} steps/s)")
    return 0
