"""The files a command writes: checked before any work, written atomically, one run each.

* ``check_output(flag, path)``: refuse, before training or measuring starts, an output the
  command could not write: a missing or unwritable directory, a path that is a directory,
  a FIFO, a device or a socket, an image format matplotlib cannot write. The directory is
  probed by creating (and removing) a file in it, which also catches read-only and
  special file systems (``/proc``) where ``os.access`` says yes.
* ``write_atomic(path, write)``: a temporary file beside ``path``, flushed and synced, then
  renamed over it; on any failure the temporary file is removed and ``path`` is untouched.
  ``remove_stale_temporaries(path)`` removes those a killed run left (call it while holding
  the path's lock).
* ``Lock(path)``: an exclusive ``flock`` on ``.NAME.lock`` beside ``path`` for as long as a
  run lives. A second run on the same path is refused; the kernel drops the lock of a run
  that died, so a dead run never blocks (the empty lock file stays).
* ``io_failure(what, path, exc)``: the one-line ``Failure`` for an ``OSError`` during a run.

Symbolic links: an output path that is a symbolic link is followed on purpose, once, when
the command starts (``os.path.realpath``): the file it points to is the one checked, locked
and atomically replaced, and the link itself is left as it is.
"""

import contextlib
import fcntl
import os
import stat
import tempfile

from .errors import Failure, WriteFailed, deferred

TEMP_PREFIX = ".tmp-"


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None if stat.S_ISREG(mode) else "not a regular file"


def _reason(exc):
    return exc.strerror or str(exc) or type(exc).__name__


def check_output(flag, path, *, image=False):
    """The real path ``path`` resolves to, or a ``Failure`` (status 2) naming ``flag``.

    Checks that ``path`` is a regular file or does not exist yet, that its directory
    exists and a file can be created there, and with ``image=True`` that matplotlib (the
    ``plot`` extra) is installed and can write the file's format.
    """
    if not path:
        raise Failure(f"{flag}: an empty path")
    real = os.path.realpath(path)
    if os.path.lexists(path) and not os.path.exists(path):
        raise Failure(f"{flag} {path}: a symbolic link to {real}, which does not exist")
    if os.path.exists(real):
        what = _kind(os.stat(real).st_mode)
        if what:
            raise Failure(f"{flag} {path}: is {what}, not a file")
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
    """An output directory: it exists and is writable, or its parent is (it is made later)."""
    if os.path.isdir(path):
        check_output(flag, os.path.join(path, "probe"))
    else:
        check_output(flag, path)
    return path


def io_failure(flag, path, exc):
    """The ``WriteFailed`` (status 1) for an ``OSError`` while writing ``path`` during a run."""
    return WriteFailed(f"{flag} {path}: cannot write ({_reason(exc)})", flag)


def write_atomic(path, write):
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it to ``path``.

    Signals are held back until the file is complete (``errors.deferred``), so an
    interruption never leaves half a file. Any failure removes the temporary file and
    leaves ``path`` as it was; the ``OSError`` is raised again.
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
    prefix = f".{name}{TEMP_PREFIX}"
    removed = 0
    for entry in os.listdir(folder):
        if entry.startswith(prefix):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, entry))
                removed += 1
    return removed


class Lock:
    """An exclusive lock on ``path`` for one run (``.NAME.lock`` beside it, ``flock``).

    ``acquire`` raises a ``Failure`` naming ``flag`` when another live process holds it.
    """

    def __init__(self, flag, path):
        folder, name = os.path.split(os.path.abspath(path))
        self.flag, self.path, self.file = flag, path, os.path.join(folder, f".{name}.lock")
        self.fd = None

    def acquire(self):
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

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
