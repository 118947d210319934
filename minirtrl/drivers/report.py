"""What a run shows: lines on the terminal and JSON records in ``--log``.

A log is JSON lines: a ``header`` record first, then records with a ``kind`` (``resume``,
``progress``, ``eval``, ``align``, ``final``), ``step``, ``data``, ``seconds`` and the task's
figures; ``docs/commands.md`` gives the schema field by field.
"""

import contextlib
import json
import math
import os

from .safety import io_failure

LOG_FORMAT = "minirtrl-log-1"
DAY = 86400.0


class Reporter:
    """Terminal lines on ``settings.out`` and JSON records in the ``--log`` file."""

    def __init__(self, settings, log, log_path=None):
        self.settings, self.log, self.log_path = settings, log, log_path
        self.warned = False  # the long-ETA note is printed once

    def write(self, record):
        """Append one record to the log (flushed); ``WriteFailed`` if it cannot be written,
        or if the log's path no longer names the file open (removed, or its folder)."""
        if self.log is None:
            return record
        try:
            self._check_still_there()
            self.log.write(json.dumps(record) + "\n")
            self.log.flush()
        except OSError as exc:
            with contextlib.suppress(OSError):  # closed even if its buffer cannot go out
                self.log.close()
            self.log = None  # nothing more goes there
            raise io_failure("--log", self.log_path, exc) from None
        return record

    def _check_still_there(self):
        """``FileNotFoundError`` unless ``log_path`` is still the file being written: records
        written to a removed file would be lost without a word."""
        if self.log_path is None:
            return
        try:
            there = os.stat(self.log_path)
        except FileNotFoundError:
            raise FileNotFoundError(0, "removed during the run, or its folder") from None
        open_ = os.fstat(self.log.fileno())
        if (there.st_dev, there.st_ino) != (open_.st_dev, open_.st_ino):
            raise FileNotFoundError(0, "replaced by another file during the run")

    def record(self, kind, step, data, seconds, figures, **extra):
        """A ``kind`` record: step, data, seconds, the task's figures, then ``extra``."""
        record = {"kind": kind, "step": step, "data": data, "seconds": round(seconds, 3),
                  **figures, **extra}
        return self.write(record)

    def say(self, text):
        print(text, file=self.settings.out, flush=True)

    def progress(self, step, data, figures, *, rate, elapsed):
        total, max_seconds = self.settings.steps, self.settings.max_seconds
        left = (total - step) / rate if rate > 0 else math.inf
        if max_seconds is not None:
            left = min(left, max(max_seconds - elapsed, 0.0))
        shown = "  ".join(f"{k} {fmt(v)}" for k, v in figures.items())
        self.say(f"step {step}/{total}  data {data}  {shown}  {rate:.1f} steps/s  "
                 f"left {duration(left)}")
        if left > DAY and math.isfinite(left) and not self.warned:
            self.warned = True
            self.say(f"note: at {rate:.1f} steps/s the remaining {total - step:,} steps take "
                     f"{duration(left)}; a smaller --hidden, or a GPU (--backend cupy, or "
                     "--backend torch --device cuda), would be faster")


def header(prog, args, *, device, threads, run=None):
    """The ``header`` record of a new log: what produced it, with what, and where; ``run``,
    the identity of the training run it belongs to (its checkpoints carry the same)."""
    from .. import __version__
    from .backends import machine_info
    from .cli import settings_of

    return {"kind": "header", "format": LOG_FORMAT, "minirtrl": __version__, "command": prog,
            "argv": [prog, *getattr(args, "argv", [])], "config": settings_of(args),
            "backend": args.backend, "device": str(device), "dtype": getattr(args, "dtype", None),
            "threads": threads, "machine": machine_info(args.backend, device),
            **({"run": run} if run else {})}


#: what a ``resume`` record repeats of the header (the invocation may differ in these)
RESUMED = ("minirtrl", "argv", "backend", "device", "threads", "machine")


def settings_line(prog, args, device, threads):
    """The one line a driver prints before its first progress line."""
    algo = args.algo
    if args.rank is not None:
        algo += f" rank {args.rank}"
    if args.truncation is not None:
        algo += f" window {args.truncation}"
    if getattr(args, "every_step", False):
        algo += ", a step every character"
    if getattr(args, "align", None):
        algo += f", aligned with exact RTRL every {args.align} steps"
    cell = getattr(args, "cell", "rhn")
    cell = "" if cell == "rhn" else (
        f"vanilla alpha {args.alpha:g}, " if cell == "vanilla" else f"{cell}, ")
    depth = f"depth {args.depth}, " if not cell else ""  # the RHN's micro-steps alone
    return (f"{prog}: {algo}, {cell}n {args.hidden}, {depth}B {args.batch}, "
            f"lr {args.lr:.4g}, clip {args.clip:g}, {args.dtype}, {args.backend} on {device}, "
            f"threads {threads}")


def fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    d, h, m, s = seconds // 86400, seconds // 3600 % 24, seconds // 60 % 60, seconds % 60
    if d:
        return f"{d}d{h:02d}h"
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
