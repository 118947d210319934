"""The files of a training run, its ``--checkpoint`` and ``--log``: checked before any work,
locked while the run lives, continued only by the run they belong to.

``Lock`` is an exclusive ``flock`` for as long as a run lives (a dead run's lock is dropped by
the kernel); ``Outputs`` checks, locks and cleans both files and opens the log. A symbolic link
given as an output is followed once, at the start: its target is checked, locked and replaced,
the link kept.
"""

import contextlib
import fcntl
import json
import os

from .safety import TEMP_PREFIX, Failure, check_output, io_failure, reason, write_atomic


def remove_stale_temporaries(path):
    """Remove the temporary files a killed writer of ``path`` left behind; their number."""
    folder, name = os.path.split(os.path.abspath(path))
    removed = 0
    for entry in os.listdir(folder):
        if entry.startswith(f".{name}{TEMP_PREFIX}"):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, entry))
                removed += 1
    return removed


class Lock:
    """An exclusive lock on ``path`` for one run (``.NAME.lock`` beside it, ``flock``)."""

    def __init__(self, flag, path):
        folder, name = os.path.split(os.path.abspath(path))
        self.flag, self.path, self.file = flag, path, os.path.join(folder, f".{name}.lock")
        self.fd = None

    def acquire(self):
        """Take the lock, or a ``Failure`` naming the flag when a live run holds it."""
        try:
            self.fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise Failure(f"{self.flag} {self.path}: cannot create the lock {self.file} "
                          f"({reason(exc)})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise Failure(f"{self.flag} {self.path}: another run is using it (it holds "
                          f"{self.file}); stop that run first") from None
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


class Outputs:
    """The real paths of a run's ``--checkpoint`` and ``--log`` (or None), checked at once;
    both locked and cleaned of a killed run's temporaries while the ``with`` block runs.

    An existing checkpoint or log is refused without ``--resume``. A log belongs to one run:
    its header carries the run's identity (``run``, also in the checkpoint), and on resume
    ``open_log(step, run)`` refuses a log whose header names another run, then drops the
    records written after the checkpoint resumed from (and a last line cut off by a kill),
    so the steps of a log never go backwards.
    """

    def __init__(self, args):
        self.checkpoint = self.log_path = None
        self.locks = []
        self.resume = bool(args.resume)
        if args.checkpoint is not None:
            self.checkpoint = check_output("--checkpoint", args.checkpoint, replace=True)
            if not self.resume and os.path.exists(self.checkpoint):
                raise Failure(f"checkpoint {args.checkpoint} exists; pass --resume to continue "
                              "it or remove it")
        if args.log is not None:
            self.log_path = check_output("--log", args.log, replace=True)
            if self.log_path == self.checkpoint:
                raise Failure(f"--log {args.log}: the same file as --checkpoint")
            if not self.resume and os.path.exists(self.log_path):
                raise Failure(f"log {args.log} exists; pass --resume (with its --checkpoint) "
                              "to continue it, or remove it")

    def __enter__(self):
        try:
            for flag, path in (("--checkpoint", self.checkpoint), ("--log", self.log_path)):
                if path:
                    self.locks.append(Lock(flag, path).acquire())
                    remove_stale_temporaries(path)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for lock in self.locks:
            lock.release()
        self.locks = []

    def open_log(self, step, run):
        """The log opened for appending (None without ``--log``): on resume, first checked to
        be ``run``'s and cut back to ``step``; a new or empty log is opened empty."""
        if not self.log_path:
            return None
        try:
            if self.resume and os.path.exists(self.log_path):
                self._continue(step, run)
            return open(self.log_path, "a", encoding="utf-8")
        except OSError as exc:
            raise io_failure("--log", self.log_path, exc) from None

    def _continue(self, step, run):
        with open(self.log_path, "rb") as f:
            lines = f.read().split(b"\n")
        records = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
        kept = []
        for number, line in records:
            record = self._record(number, line, last=number == len(lines))
            if record is None:  # the last line, cut off by a kill: drop it
                break
            if not kept:  # the first record: this run's header
                self._check_header(record, run)
                kept.append(line)
            elif record.get("step", 0) <= step:
                kept.append(line)
        if len(kept) != len(records):
            write_atomic(self.log_path, lambda f: f.write(b"".join(k + b"\n" for k in kept)))

    def _record(self, number, line, last):
        """Line ``number`` as a record, None for a cut-off last line, or a ``Failure``."""
        where = f"--log {self.log_path}: line {number}"
        try:
            record = json.loads(line)
        except ValueError:
            if last:
                return None
            raise Failure(f"{where} is not JSON; not a minirtrl log, left as it is") from None
        if not isinstance(record, dict):
            raise Failure(f"{where} is not a record; not a minirtrl log, left as it is")
        step = record.get("step", 0)
        if record.get("kind") != "header" and (type(step) is not int or step < 0):
            raise Failure(f"{where}: 'step' is {step!r}, not an integer >= 0; not a minirtrl "
                          "log, left as it is")
        return record

    def _check_header(self, record, run):
        if record.get("kind") != "header":
            raise Failure(f"--log {self.log_path}: does not start with a header record; not a "
                          "minirtrl log, left as it is")
        if record.get("run") != run:
            raise Failure(f"--log {self.log_path}: belongs to another run (run "
                          f"{record.get('run')!r}, the checkpoint's is {run!r}); give the log "
                          "of this checkpoint's run or a new --log path")
