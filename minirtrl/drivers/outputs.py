"""The checkpoint and the log of one training run, made safe before any work starts.

``Outputs(args)`` (a context manager) checks ``--checkpoint`` and ``--log`` with
``files.check_output``, refuses an existing checkpoint or log without ``--resume``, takes
the checkpoint's lock (one run per checkpoint) and removes the temporary files a killed run
left beside it. On ``--resume``, ``open_log(step)`` first drops from the log every record
written after the checkpoint that is resumed from (step > ``step``, and a last line cut off
by a kill), so a reader never sees the steps go backwards; then the log is appended to.
"""

import json
import os

from .errors import Failure
from .files import Lock, check_output, io_failure, remove_stale_temporaries, write_atomic


class Outputs:
    """The real paths of ``--checkpoint`` and ``--log`` (or None), checked and locked."""

    def __init__(self, args):
        self.checkpoint = self.log_path = None
        self.resume = bool(args.resume)
        self.lock = None
        if args.checkpoint:
            self.checkpoint = check_output("--checkpoint", args.checkpoint)
            if not self.resume and os.path.exists(self.checkpoint):
                raise Failure(f"checkpoint {args.checkpoint} exists; pass --resume to continue "
                              "it or remove it")
        if args.log:
            self.log_path = check_output("--log", args.log)
            if self.log_path == self.checkpoint:
                raise Failure(f"--log {args.log}: the same file as --checkpoint")
            if not self.resume and os.path.exists(self.log_path):
                raise Failure(f"log {args.log} exists; pass --resume (with its --checkpoint) "
                              "to continue it, or remove it")

    def __enter__(self):
        if self.checkpoint:
            self.lock = Lock("--checkpoint", self.checkpoint).acquire()
            remove_stale_temporaries(self.checkpoint)
        if self.log_path:
            remove_stale_temporaries(self.log_path)
        return self

    def __exit__(self, *exc):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def open_log(self, step):
        """The log opened for appending (None without ``--log``); on resume, records of
        steps after ``step`` are dropped first."""
        if not self.log_path:
            return None
        try:
            if self.resume and os.path.exists(self.log_path):
                self._truncate_after(step)
            return open(self.log_path, "a", encoding="utf-8")
        except OSError as exc:
            raise io_failure("--log", self.log_path, exc) from None

    def _truncate_after(self, step):
        with open(self.log_path, "rb") as f:
            lines = f.read().split(b"\n")
        kept = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines):  # the last line, cut off by a kill: drop it
                    break
                raise Failure(f"--log {self.log_path}: line {number} is not JSON; not a "
                              "minirtrl log, left as it is") from None
            if not isinstance(record, dict):
                raise Failure(f"--log {self.log_path}: line {number} is not a record")
            if record.get("step", 0) <= step:
                kept.append(line)
        if len(kept) != sum(1 for line in lines if line.strip()):
            write_atomic(self.log_path, lambda f: f.write(b"".join(k + b"\n" for k in kept)))
