"""How ``python -m minirtrl.NAME`` starts: import the command, run it, exit with its status.

A SIGINT (Ctrl-C) that arrives before the command's own handlers are in place
(``safety.command``) ends the command as one that arrives later does: ``prog: interrupted
(SIGINT)`` on stderr and exit status 130, no traceback. While the command's modules load, a
SIGINT is only noted and acted on once they are loaded: raised inside a library's import it
could come out as another error (NumPy turns it into an ``ImportError``). This module imports
nothing heavy, so that it is in place before those imports.
"""

import importlib
import signal
import sys


def _interrupted(prog):
    """The one line of a SIGINT, and its exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the line
    print(f"{prog}: interrupted (SIGINT)", file=sys.stderr, flush=True)
    return 130


def run(prog, main):
    """``sys.exit(main())``; a ``KeyboardInterrupt`` that ``main`` lets out (a SIGINT before its
    handlers were in place) is one line and exit status 130 instead of a traceback."""
    try:
        status = main()
    except KeyboardInterrupt:
        status = _interrupted(prog)
    sys.exit(status)


def start(name):
    """``python -m minirtrl.NAME`` for ``name``, e.g. ``copy`` (``minirtrl.drivers.copy.main``).

    A SIGINT while the command's modules load is noted and ends the command once they are
    loaded. A SIGINT that was ignored when the process started (a background job) stays so.
    """
    prog = f"minirtrl.{name}"
    held = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    noted = []
    if held:
        signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        module = importlib.import_module(f".{name}", __package__)
    finally:
        if held:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if noted:
        sys.exit(_interrupted(prog))
    run(prog, module.main)
