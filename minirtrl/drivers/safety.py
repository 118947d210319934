"""Nothing lost, nothing half-done: how a command stops, and how it writes its files.

* Stopping. A ``Failure`` is one line and an exit status (2 bad input, 1 a failure during the
  run); SIGINT and SIGTERM raise ``Interrupted`` wherever the command is (exit 130, 143: 128 +
  the signal). ``command(prog, body)`` runs a command and turns both into one line on stderr;
  ``deferred()`` holds the signals back while something must not be cut (a checkpoint write).
* Outputs. ``check_output(flag, path)`` refuses, before any work, an output the command could not
  write (a missing or unwritable folder, a directory, FIFO, device or socket, an image format
  matplotlib cannot write; the folder is probed by creating a file, which also catches
  read-only and special file systems). ``write_atomic`` writes a temporary file beside the path,
  syncs it and renames it over the path; ``Lock`` is an exclusive ``flock`` for as long as a run
  lives (a dead run's lock is dropped by the kernel); ``Outputs`` does all of this for the
  ``--checkpoint`` and ``--log`` of a training run. A symbolic link given as an output is
  followed once, at the start: its target is checked, locked and replaced, the link kept.
"""

import contextlib
import fcntl
import json
import os
import signal
import stat
import sys
import tempfile
import threading

TEMP_PREFIX = ".tmp-"


# ---- how a command stops ------------------------------------------------------------------
class Failure(Exception):
    """A command cannot go on: ``str(exc)`` is the one-line reason, ``status`` the exit status."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


class Diverged(Failure):
    """A non-finite loss or gradient at ``step`` (status 1): the state before it is kept."""

    def __init__(self, message, step):
        super().__init__(message, status=1)
        self.step = step


class WriteFailed(Failure):
    """An output could not be written during a run (status 1); ``flag`` names which."""

    def __init__(self, message, flag):
        super().__init__(message, status=1)
        self.flag = flag


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``status`` is 128 + the signal number (130, 143)."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.status = 128 + int(signum)


class _Handlers:
    """The handlers while a command runs: raise ``Interrupted``, or hold it while deferred."""

    def __init__(self):
        self.depth = 0  # > 0 inside ``deferred``
        self.pending = None  # a signal that arrived while deferred

    def __call__(self, signum, frame):
        if self.depth:
            self.pending = self.pending or signum
            return
        raise Interrupted(signum)


#: the handlers of the command running now, if any (signal handlers are process-wide state)
_ACTIVE = threading.local()


@contextlib.contextmanager
def handled_signals():
    """Within the block SIGINT and SIGTERM raise ``Interrupted`` (restored afterwards).

    A SIGINT ignored when the command started (a background job, ``nohup``) stays ignored;
    outside the main thread, where handlers cannot be set, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers, previous = _Handlers(), {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signum == signal.SIGINT and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        previous[signum] = signal.signal(signum, handlers)
    _ACTIVE.handlers = handlers
    try:
        yield
    finally:
        _ACTIVE.handlers = None
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def deferred():
    """Hold SIGINT and SIGTERM back until the block ends, then raise ``Interrupted``."""
    handlers = getattr(_ACTIVE, "handlers", None)
    if handlers is None:
        yield
        return
    handlers.depth += 1
    try:
        yield
    finally:  # an error in the block wins over a signal that arrived meanwhile
        handlers.depth -= 1
    if not handlers.depth and handlers.pending is not None:
        signum, handlers.pending = handlers.pending, None
        raise Interrupted(signum)


def command(prog, body, *, err=None):
    """Run ``body()`` as a command; return its exit status, never a traceback for these.

    ``Failure``: ``prog: error: <reason>`` on stderr, its status. SIGINT, SIGTERM: ``prog:
    interrupted (SIGINT)``, 130 or 143. A broken pipe on stdout (``| head``): quietly 1.
    """
    err = sys.stderr if err is None else err
    with handled_signals():
        try:
            return body()
        except Failure as exc:
            with deferred():
                print(f"{prog}: error: {exc}", file=err, flush=True)
            return exc.status
        except KeyboardInterrupt as exc:
            with deferred():
                print(f"{prog}: interrupted ({exc.args[0] if exc.args else 'SIGINT'})",
                      file=err, flush=True)
            return getattr(exc, "status", 130)
        except BrokenPipeError:
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1


# ---- outputs -------------------------------------------------------------------------------
def _reason(exc):
    return exc.strerror or str(exc) or type(exc).__name__


def check_output(flag, path, *, image=False):
    """The real path ``path`` resolves to, or a ``Failure`` (status 2) naming ``flag``.

    ``path`` must be a regular file or not exist yet, in a folder where a file can be created;
    with ``image=True`` matplotlib (the ``plot`` extra) must write its format.
    """
    if not path:
        raise Failure(f"{flag}: an empty path")
    real = os.path.realpath(path)
    if os.path.lexists(path) and not os.path.exists(path):
        raise Failure(f"{flag} {path}: a symbolic link to {real}, which does not exist")
    if os.path.exists(real):
        mode = os.stat(real).st_mode
        kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                 (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                 (stat.S_ISSOCK, "a socket"))
        what = next((name for test, name in kinds if test(mode)), None)
        if what or not stat.S_ISREG(mode):
            raise Failure(f"{flag} {path}: is {what or 'not a regular file'}, not a file")
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise Failure(f"{flag} {path}: directory {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".minirtrl-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise Failure(f"{flag} {path}: cannot write in {folder} ({_reason(exc)})") from None
    if image:
        check_image_format(flag, path)
    return real


def check_image_format(flag, path):
    """``Failure`` unless matplotlib is installed and writes the format of ``path``'s suffix."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise Failure(f"{flag} needs matplotlib: pip install 'minirtrl[plot]'") from None
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in formats:
        what = f".{suffix} files" if suffix else "a file without a suffix"
        raise Failure(f"{flag} {path}: matplotlib cannot write {what}; use one of "
                      f"{', '.join('.' + f for f in sorted(formats))}")


def check_output_dir(flag, path):
    """An output folder: it exists and is writable, or its parent is (it is made later)."""
    check_output(flag, os.path.join(path, "probe") if os.path.isdir(path) else path)
    return path


def io_failure(flag, path, exc):
    """The ``WriteFailed`` (status 1) for an ``OSError`` while writing ``path`` during a run."""
    return WriteFailed(f"{flag} {path}: cannot write ({_reason(exc)})", flag)


def write_atomic(path, write):
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it to ``path``.

    Signals wait until the file is complete; any failure removes the temporary file, leaves
    ``path`` as it was and raises the ``OSError`` again.
    """
    folder, name = os.path.split(os.path.abspath(path))
    with deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}{TEMP_PREFIX}", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # cleaning up must not hide the failure
                os.remove(tmp)
            raise


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
                          f"({_reason(exc)})") from None
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
    locked and cleaned of a killed run's temporaries while the ``with`` block runs.

    An existing checkpoint or log is refused without ``--resume``; on resume, ``open_log(step)``
    first drops the records written after the checkpoint resumed from (and a last line cut off
    by a kill), so the steps of a log never go backwards.
    """

    def __init__(self, args):
        self.checkpoint = self.log_path = self.lock = None
        self.resume = bool(args.resume)
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
        """The log opened for appending (None without ``--log``), cut back to ``step`` first."""
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
