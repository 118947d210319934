"""``python -m minirtrl.plot LOG... --out FILE.png``: draw the logs of minirtrl's commands.

Whatever the logs are, read from their header records (``report.header``):

    command          one row of panels
    minirtrl.copy    curriculum level T_ against characters seen, and against wall time
    minirtrl.ptb     validation bpc and training bpc, each against characters and time
    minirtrl.noise   relative squared error of the influence and of the gradient,
                     against the step t and against the hidden units n

A copy or ptb row gains a panel of ``align_cos`` (the cosine between the method's recurrent
gradient and exact RTRL's, ``--align``) against optimiser steps when one of its logs has
``align`` records.

Several logs overlay, one line each (a noise log: one line per estimator); the legend
names what tells them apart (algorithm with its rank or window, n, seed, ...), the
title what they share, both taken from the headers. A file that is missing, unreadable,
not a regular file (a FIFO, a device: refused unread) or not a minirtrl log, or a record
without what is drawn, is one line naming the file (and the line), exit status 2. ``--out``
is written atomically; an existing file is refused unless ``--force``, one of the logs
always. matplotlib is optional (the ``plot`` extra): without it, one line says what to
install.
"""

import json
import os
import stat
import sys
from typing import NamedTuple

from ..methods import RANKED
from . import cli
from .safety import Failure, check_output, command, io_failure, write_atomic

PROG = "minirtrl.plot"
KINDS = {"minirtrl.copy": "copy", "minirtrl.ptb": "ptb", "minirtrl.noise": "noise"}
#: settings that tell runs apart, in the order a legend or a title names them
NAMED = (("algo", "{}"), ("rank", "rank {}"), ("truncation", "window {}"),
         ("every_step", "every step"), ("cell", "{}"),
         ("alpha", "alpha {:g}"), ("hidden", "n={}"),
         ("depth", "depth {}"), ("batch", "B={}"), ("lr", "lr {:.3g}"), ("clip", "clip {:g}"),
         ("dtype", "{}"), ("backend", "{}"), ("seed", "seed {}"), ("samples", "M={}"))
TITLES = {"copy": "copy task", "ptb": "character-level language model", "noise": "estimator noise"}


class Log(NamedTuple):
    """A log's path (for messages) and its records, the header first."""

    path: str
    records: list

    @property
    def header(self):
        return self.records[0]

    @property
    def kind(self):
        return KINDS[self.header["command"]]

    def of(self, kind):
        return [r for r in self.records[1:] if r.get("kind") == kind]


#: the longest line a log may have (a header is a few KB): reading a log is bounded
MAX_LINE = 1 << 20
#: the values each kind of log draws from its progress, eval and final records
DRAWN = {"copy": ("T",), "ptb": ("valid_bpc", "train_bpc")}
NOISE_FIELDS = (("table", str), ("algo", str), ("t", "number"), ("n", "number"),
                ("influence", "pair"), ("gradient", "pair"))


def _kind_of(mode):
    """What a file of ``st_mode`` ``mode`` is, for a message (None: a regular file)."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _open_log(path):
    """``path`` opened for reading, or a ``Failure`` unless it is a regular file.

    A FIFO would block until some writer comes and a device may never end: both are refused
    before they are read. The open file is checked again (``path`` may have changed in
    between), opened with ``O_NONBLOCK`` so that even that open never waits.
    """
    what = _kind_of(os.stat(path).st_mode)
    if what is None:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            what = _kind_of(os.fstat(fd).st_mode)
            if what is None:
                os.set_blocking(fd, True)
                return open(fd, encoding="utf-8")
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise Failure(f"{path}: is {what}, not a log file")


def _is_number(value):
    """A JSON number a plot can draw: not a bool, and an integer that fits a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _is(value, kind):
    if kind == "number":
        return _is_number(value)
    if kind == "number or null":
        return value is None or _is_number(value)
    if kind == "pair":
        return isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
    return isinstance(value, kind)


def _problem(log_kind, record):
    """What is wrong with a record of a ``log_kind`` log for drawing it, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    kind = record.get("kind")
    if kind == "header":
        config = record.get("config", {})
        if not isinstance(config, dict):
            return "the header's config is not a JSON object"
        for key, form in NAMED:
            if ":" in form and config.get(key) is not None and not _is_number(config[key]):
                return f"the header's {key} is not a number"
        return None
    if kind in ("progress", "eval", "final"):
        drawn = [key for key in DRAWN.get(log_kind, ()) if record.get(key) is not None]
        fields = [(key, "number") for key in (*drawn, "data", "seconds")] if drawn else []
    elif kind == "align" and log_kind in DRAWN:
        fields = [("step", "number"), ("align_cos", "number or null")]
    elif kind == "noise" and log_kind == "noise":
        fields = NOISE_FIELDS
    else:
        return None  # not drawn
    for key, want in fields:
        if key not in record:
            return f"a {kind} record without {key!r}"
        if not _is(record[key], want):
            what = {"number": "a number", "pair": "a pair of numbers",
                    "number or null": "a number or null"}.get(want, "a string")
            return f"a {kind} record whose {key!r} is not {what}"
    return None


def _records(path):
    """``[(line number, record)]`` of the JSON lines of ``path`` (blank lines skipped, a last
    line cut off by a kill dropped), or a ``Failure`` naming the line."""
    out, cut = [], None
    try:
        with _open_log(path) as f:
            for number, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), ""), 1):
                if len(line) > MAX_LINE:
                    raise Failure(f"{path} line {number}: longer than {MAX_LINE} characters; "
                                  "not a minirtrl log")
                if not line.strip():
                    continue
                if cut is not None:  # not the last line: not cut off by a kill
                    raise Failure(f"{path} line {cut}: not JSON; not a minirtrl log")
                try:
                    out.append((number, json.loads(line)))
                except ValueError:
                    cut = number
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    return out


def read(path):
    """The ``Log`` at ``path``, or a ``Failure`` naming it (and the line) and what is wrong.

    ``path`` must be a regular file. Every record is a JSON object, the first a header of a
    command this draws, and every record drawn carries the fields drawn, as numbers; a last
    line cut off by a kill is dropped. Cost: one pass over the file, lines of at most
    ``MAX_LINE`` characters.
    """
    numbered = _records(path)
    first = numbered[0][1] if numbered else None
    if not isinstance(first, dict) or first.get("kind") != "header":
        raise Failure(f"{path}: not a minirtrl log (its first line is not a header record)")
    command = first.get("command")
    if not isinstance(command, str) or command not in KINDS:
        raise Failure(f"{path}: a log of {command!r}, which this command does not draw (it "
                      f"draws {', '.join(KINDS)})")
    for number, record in numbered:
        problem = _problem(KINDS[command], record)
        if problem:
            raise Failure(f"{path} line {number}: {problem}; not a minirtrl log")
    return Log(str(path), [record for _, record in numbered])


def _settings(log):
    """The header's settings, less those that do not apply (depth off the RHN, alpha off the
    vanilla cell, rank without a ranked method)."""
    config = dict(log.header.get("config", {}))
    config.setdefault("backend", log.header.get("backend"))
    cell = config.get("cell", "rhn")
    algos = config.get("algo") or []
    algos = [algos] if isinstance(algos, str) else algos
    unused = [("depth", cell != "rhn"), ("alpha", cell != "vanilla"),
              ("rank", not set(algos) & set(RANKED))]
    for key, drop in unused:
        if drop:
            config.pop(key, None)
    return config


def _describe(config, keys):
    parts = []
    for key, form in NAMED:
        if key in keys and config.get(key) not in (None, False):
            value = config[key]
            value = " ".join(map(str, value)) if isinstance(value, list) else value
            parts.append(form.format(value))
    return ", ".join(parts)


def labels_and_title(logs):
    """Legend labels (what differs) and a title (what is shared) of logs of one kind."""
    configs = [_settings(log) for log in logs]
    keys = [key for key, _ in NAMED]
    differ = {k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1}
    shared = [k for k in keys if k not in differ]
    if logs[0].kind != "noise":
        method = ("algo", "rank", "truncation", "every_step")
        differ |= set(method)  # a run's line is always named by its method
        shared = [k for k in shared if k not in method]
    labels = [_describe(c, differ) or os.path.basename(log.path) for c, log in zip(configs, logs)]
    if len(set(labels)) < len(labels):  # the settings named do not tell them apart
        labels = [f"{name} ({os.path.basename(log.path)})" for name, log in zip(labels, logs)]
    title = f"{TITLES[logs[0].kind]}: {_describe(configs[0], shared)}".rstrip(": ")
    return labels, title


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise Failure("drawing needs matplotlib: pip install 'minirtrl[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(log, key, x):
    """(x, value) of the records that carry ``key``: ``x`` their ``data``, ``seconds`` or
    ``step`` (ptb: valid after each eval; align_cos from the align records)."""
    kinds = ("align",) if key == "align_cos" else ("progress", "eval", "final")
    rows = [r for r in log.records[1:] if r.get("kind") in kinds and r.get(key) is not None]
    if key == "valid_bpc":  # the final record repeats the last evaluation
        rows = [r for r in rows if r["kind"] == "eval"] or rows
    return [r[x] for r in rows], [r[key] for r in rows]


XLABELS = {"data": "characters seen (all streams)", "seconds": "wall seconds",
           "step": "optimiser steps"}


def _draw_runs(axes, logs, labels, panels):
    for (key, x, ylabel), ax in zip(panels, axes):
        for log, name in zip(logs, labels):
            xs, values = _series(log, key, x)
            ax.plot(xs, values, label=name, drawstyle="steps-post" if key == "T" else "default",
                    marker="" if key in ("T", "train_bpc") else "o", ms=3)
        ax.set_xlabel(XLABELS[x])
        ax.set_ylabel(ylabel)
        if x == "data":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)


def _draw_noise(axes, logs):
    panels = (("over_time", "t", "influence"), ("over_time", "t", "gradient"),
              ("over_n", "n", "influence"), ("over_n", "n", "gradient"))
    for (table, x, what), ax in zip(panels, axes):
        for log in logs:
            rows = [r for r in log.of("noise") if r["table"] == table]
            for algo in dict.fromkeys(r["algo"] for r in rows):
                mine = sorted((r for r in rows if r["algo"] == algo), key=lambda r: r[x])
                name = algo if len(logs) == 1 else f"{algo} ({os.path.basename(log.path)})"
                ax.errorbar([r[x] for r in mine], [r[what][0] for r in mine],
                            yerr=[r[what][1] for r in mine], marker="o", ms=3, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(f"E‖{'Ĝ − G' if what == 'influence' else 'ĝ − g'}‖² / "
                      f"‖{'G' if what == 'influence' else 'g'}‖²")
        ax.grid(alpha=0.3)


PANELS = {
    "copy": [("T", "data", "curriculum level T_"), ("T", "seconds", "curriculum level T_")],
    "ptb": [("valid_bpc", "data", "validation bpc"), ("valid_bpc", "seconds", "validation bpc"),
            ("train_bpc", "data", "training bpc"), ("train_bpc", "seconds", "training bpc")],
    "noise": [None] * 4,  # four panels of their own (``_draw_noise``)
}
#: the panel of ``--align`` runs, added where a log has align records
ALIGN_PANEL = ("align_cos", "step", "cosine with exact RTRL (align_cos)")


def panels(kind, logs):
    """The panels of a row of ``kind`` for ``logs``: the kind's, and ``align_cos`` when one
    of the logs has ``align`` records."""
    if kind != "noise" and any(log.of("align") for log in logs):
        return [*PANELS[kind], ALIGN_PANEL]
    return PANELS[kind]


def figure(logs):
    """A matplotlib ``Figure`` with one row of panels per kind of log in ``logs``."""
    plt = _pyplot()
    kinds = list(dict.fromkeys(log.kind for log in logs))
    rows = {k: panels(k, [log for log in logs if log.kind == k]) for k in kinds}
    cols = max(len(p) for p in rows.values())
    fig, grid = plt.subplots(len(kinds), cols, figsize=(4.2 * cols, 3.6 * len(kinds)),
                             squeeze=False)
    for row, kind in zip(grid, kinds):
        mine = [log for log in logs if log.kind == kind]
        labels, title = labels_and_title(mine)
        if kind == "noise":
            _draw_noise(row, mine)
        else:
            _draw_runs(row, mine, labels, rows[kind])
        for ax in row[len(rows[kind]):]:
            ax.set_visible(False)
        row[0].set_title(title, loc="left", fontsize=10)
        row[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def save(fig, path):
    """Write ``fig`` to ``path`` atomically (``write_atomic``: a failure leaves ``path`` as
    it was) in the format of its suffix, and close it (``OSError`` if it cannot be written)."""
    import matplotlib.pyplot as plt

    suffix = os.path.splitext(path)[1].lstrip(".").lower() or None
    try:
        write_atomic(path, lambda f: fig.savefig(f, format=suffix, dpi=110))
    finally:
        plt.close(fig)


def make_parser():
    p = cli.parser(PROG, __doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("logs", nargs="+", metavar="LOG",
                   help="--log files of minirtrl.copy or minirtrl.ptb, --json files of "
                        "minirtrl.noise (any mix)")
    p.add_argument("--out", required=True, metavar="FILE.png",
                   help="the image to write; its suffix picks the format (required)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output file (default: refuse)")
    return p


def main(argv=None):
    """Draw the logs named in ``argv``; returns the exit status."""
    def body():
        args = cli.parse_args(make_parser(), argv)
        if isinstance(args, int):
            return args
        out = check_output("--out", args.out, image=True, replace=args.force, inputs=args.logs)
        logs = [read(path) for path in args.logs]
        fig = figure(logs)
        try:
            save(fig, out)
        except OSError as exc:
            raise io_failure("--out", args.out, exc) from None
        print(f"{PROG}: wrote {args.out} ({len(logs)} log{'s' if len(logs) != 1 else ''})",
              file=sys.stdout, flush=True)
        return 0

    return command(PROG, body)
