"""How a command stops early: a ``Failure`` (one line, an exit status) or a signal.

Every command catches both at its top: a ``Failure`` prints ``prog: error: <reason>`` on
stderr and exits with its status (2 bad input, 1 a failure during the run); Ctrl-C
(SIGINT) and SIGTERM raise ``Interrupted`` wherever the command is (parsing, data loading,
training, the final summary), which exits with 130 or 143, the shell's convention
(128 + the signal number). Where an interruption would leave something half-done that
must not be (a checkpoint write), ``deferred`` holds the signal back until the block ends.
"""

import contextlib
import os
import signal
import sys
import threading


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


def exit_status(exc):
    """130 for a plain ``KeyboardInterrupt``, else the ``Interrupted``'s own status."""
    return getattr(exc, "status", 130)


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

    A SIGINT that was ignored when the command started (a background job of a
    non-interactive shell, ``nohup``) stays ignored. Outside the main thread, where
    handlers cannot be set, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = _Handlers()
    previous = {}
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

    ``Failure``: ``prog: error: <reason>`` on ``err`` (stderr), its status. SIGINT, SIGTERM
    (``Interrupted``) at any moment: ``prog: interrupted (SIGINT)``, 130 or 143. A broken
    pipe on stdout (``| head``): quietly 1. ``SystemExit`` (argparse's ``--help`` and
    errors) passes through.
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
            return exit_status(exc)
        except BrokenPipeError:
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
