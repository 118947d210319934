"""Nothing lost, nothing half-done: how a command stops, and how it writes its files.

* Stopping. A ``Failure`` is one line and an exit status (2 bad input, 1 a failure during the
  run); SIGINT, SIGTERM and SIGHUP (a closed terminal, a dropped ssh) raise ``Interrupted``
  wherever the command is (exit 130, 143, 129: 128 + the signal). ``command(prog, body)`` runs
  a command and turns both into one line on stderr; ``deferred()`` holds the signals back
  while something must not be cut (a checkpoint write). A terminal or pipe that goes away
  (``| head``, a hung-up terminal) only silences the command's lines: the work goes on.
* Outputs. ``check_output(flag, path)`` refuses, before any work, an output the command could not
  write (a missing or unwritable folder, a directory, FIFO, device or socket, an image format
  matplotlib cannot write; the folder is probed by creating a file, which also catches
  read-only and special file systems). ``write_atomic`` writes a temporary file beside the path,
  syncs it and renames it over the path. (A training run's checkpoint and log: ``runfiles``.)
"""

import contextlib
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
    """SIGINT, SIGTERM or SIGHUP arrived; ``status`` is 128 + the signal (130, 143, 129)."""

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
#: the signals a command turns into ``Interrupted``
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def handled_signals():
    """Within the block SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` (restored afterwards).

    A SIGINT or SIGHUP ignored when the command started (a background job, ``nohup``) stays
    ignored; outside the main thread, where handlers cannot be set, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers, previous = _Handlers(), {}
    for signum in SIGNALS:
        if signum != signal.SIGTERM and signal.getsignal(signum) == signal.SIG_IGN:
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
    """Hold the signals back until the block ends, then raise ``Interrupted``."""
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


class _Terminal:
    """``sys.stdout`` or ``sys.stderr`` while a command runs: once a write fails (the reader of
    a pipe went away, a terminal hung up) the stream's descriptor is pointed at ``/dev/null``,
    one note goes to the other stream, and everything later is dropped; the command goes on."""

    def __init__(self, stream, name, prog):
        self.stream, self.name, self.prog = stream, name, prog
        self.other = None  # the wrapper of the other stream, for the note
        self.lost = False

    def _guard(self, method, *args):
        if self.lost:
            return None
        try:
            return getattr(self.stream, method)(*args)
        except (OSError, ValueError) as exc:  # ValueError: a stream closed under us
            self._drop(exc)
            return None

    def _drop(self, exc):
        self.lost = True
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if self.other is not None:
            self.other.write(f"{self.prog}: {self.name} is closed ({why}); going on without "
                             f"it (outputs are still written)\n")
            self.other.flush()

    def write(self, text):
        self._guard("write", text)
        return len(text)

    def flush(self):
        self._guard("flush")

    def __getattr__(self, name):  # fileno, isatty, encoding, ...
        return getattr(self.stream, name)


@contextlib.contextmanager
def _terminals(prog):
    """Within the block ``sys.stdout`` and ``sys.stderr`` are ``_Terminal`` wrappers."""
    saved = sys.stdout, sys.stderr
    out, err = _Terminal(sys.stdout, "stdout", prog), _Terminal(sys.stderr, "stderr", prog)
    out.other, err.other = err, out
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def command(prog, body, *, err=None):
    """Run ``body()`` as a command; return its exit status, never a traceback for these.

    ``Failure``: ``prog: error: <reason>`` on stderr, its status. SIGINT, SIGTERM, SIGHUP:
    ``prog: interrupted (SIGINT)``, 130, 143 or 129. ``MemoryError``: one line, 1. A closed
    stdout or stderr (``| head``, a terminal gone) is not an error: lines to it are dropped
    and the command goes on.
    """
    with handled_signals(), _terminals(prog):
        err = sys.stderr if err is None else err
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
        except MemoryError:  # what an estimate up front (drivers.memory) did not foresee
            with deferred():
                print(f"{prog}: error: out of memory; choose smaller sizes", file=err,
                      flush=True)
            return 1


# ---- outputs -------------------------------------------------------------------------------
def reason(exc):
    return exc.strerror or str(exc) or type(exc).__name__


def check_output(flag, path, *, image=False, replace=False, inputs=()):
    """The real path ``path`` resolves to, or a ``Failure`` (status 2) naming ``flag``.

    ``path`` must be a regular file or not exist yet, in a folder where a file can be created
    under the names it will really be written under (the temporary ``.NAME.tmp-XXXXXXXX`` of
    ``write_atomic`` is probed, so a name too long for the file system fails here, not after
    the work). An existing file is refused unless ``replace`` (a command's ``--force``, or a
    run continuing its own output); one of ``inputs`` (the files the command reads) is refused
    always. With ``image=True`` matplotlib (the ``plot`` extra) must write its format.
    """
    if not path:
        raise Failure(f"{flag}: an empty path")
    real = os.path.realpath(path)
    if os.path.lexists(path) and not os.path.exists(path):
        raise Failure(f"{flag} {path}: a symbolic link to {real}, which does not exist")
    if any(os.path.realpath(i) == real for i in inputs if i):
        raise Failure(f"{flag} {path}: is also an input of this command; choose another path")
    if os.path.exists(real):
        mode = os.stat(real).st_mode
        kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                 (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                 (stat.S_ISSOCK, "a socket"))
        what = next((name for test, name in kinds if test(mode)), None)
        if what or not stat.S_ISREG(mode):
            raise Failure(f"{flag} {path}: is {what or 'not a regular file'}, not a file")
        if not replace:
            raise Failure(f"{flag} {path}: exists; remove it, choose another path or pass "
                          "--force to replace it")
    folder, name = os.path.split(real)
    if not os.path.isdir(folder):
        raise Failure(f"{flag} {path}: directory {folder} does not exist")
    try:  # the longest name the file is written under: write_atomic's temporary
        fd, probe = tempfile.mkstemp(prefix=f".{name}{TEMP_PREFIX}", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise Failure(f"{flag} {path}: cannot write in {folder} ({reason(exc)})") from None
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
    probe = os.path.join(path, "probe") if os.path.isdir(path) else path
    check_output(flag, probe, replace=os.path.isdir(path))
    return path


def io_failure(flag, path, exc):
    """The ``WriteFailed`` (status 1) for an ``OSError`` while writing ``path`` during a run."""
    return WriteFailed(f"{flag} {path}: cannot write ({reason(exc)})", flag)


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
