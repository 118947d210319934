"""``python -m minirtrl.plot LOG... --out FILE.png``: draw the logs of minirtrl's commands.

Whatever the logs are, read from their header records (``report.header``):

    command          one row of panels
    minirtrl.copy    curriculum level T_ against characters seen, and against wall time
    minirtrl.ptb     validation bpc and training bpc, each against characters and time
    minirtrl.noise   relative squared error of the influence and of the gradient,
                     against the step t and against the hidden units n

Several logs overlay, one line each (a noise log: one line per estimator); the legend
names what tells them apart (algorithm with its rank or window, n, seed, ...), the
title what they share, both taken from the headers. A file that is missing, unreadable
or not a minirtrl log is one line, exit status 2. matplotlib is optional (the ``plot``
extra): without it, one line says what to install.
"""

import json
import os
import sys
from typing import NamedTuple

from . import cli
from .safety import Failure, check_output, command, io_failure

PROG = "minirtrl.plot"
KINDS = {"minirtrl.copy": "copy", "minirtrl.ptb": "ptb", "minirtrl.noise": "noise"}
#: settings that tell runs apart, in the order a legend or a title names them
NAMED = (("algo", "{}"), ("rank", "rank {}"), ("truncation", "window {}"), ("cell", "{}"),
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


def read(path):
    """The ``Log`` at ``path``, or a ``Failure`` naming it and what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # a last line cut off by a kill
                break
            raise Failure(f"{path} line {number}: not JSON; not a minirtrl log") from None
    if not records or not isinstance(records[0], dict) or records[0].get("kind") != "header":
        raise Failure(f"{path}: not a minirtrl log (its first line is not a header record)")
    if records[0].get("command") not in KINDS:
        raise Failure(f"{path}: a log of {records[0].get('command')!r}, which this command "
                      f"does not draw (it draws {', '.join(KINDS)})")
    return Log(str(path), records)


def _settings(log):
    config = dict(log.header.get("config", {}))
    config.setdefault("backend", log.header.get("backend"))
    return config


def _describe(config, keys):
    parts = []
    for key, form in NAMED:
        if key in keys and config.get(key) is not None:
            value = config[key]
            parts.append(form.format(" ".join(value) if isinstance(value, list) else value))
    return ", ".join(parts)


def labels_and_title(logs):
    """Legend labels (what differs) and a title (what is shared) of logs of one kind."""
    configs = [_settings(log) for log in logs]
    keys = [key for key, _ in NAMED]
    differ = {k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1}
    shared = [k for k in keys if k not in differ]
    if logs[0].kind != "noise":
        differ |= {"algo", "rank", "truncation"}  # a run's line is always named by its method
        shared = [k for k in shared if k not in ("algo", "rank", "truncation")]
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


def _series(log, key):
    """(data, seconds, value) of the records that carry ``key`` (ptb: valid after each eval)."""
    rows = [r for r in log.records[1:] if r.get("kind") in ("progress", "eval", "final")
            and r.get(key) is not None]
    if key == "valid_bpc":  # the final record repeats the last evaluation
        rows = [r for r in rows if r["kind"] == "eval"] or rows
    return [r["data"] for r in rows], [r["seconds"] for r in rows], [r[key] for r in rows]


def _draw_runs(axes, logs, labels, panels):
    for (key, x, ylabel), ax in zip(panels, axes):
        for log, name in zip(logs, labels):
            data, seconds, values = _series(log, key)
            ax.plot(data if x == "data" else seconds, values, label=name,
                    drawstyle="steps-post" if key == "T" else "default",
                    marker="" if key in ("T", "train_bpc") else "o", ms=3)
        ax.set_xlabel("characters seen (all streams)" if x == "data" else "wall seconds")
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
}


def figure(logs):
    """A matplotlib ``Figure`` with one row of panels per kind of log in ``logs``."""
    plt = _pyplot()
    kinds = list(dict.fromkeys(log.kind for log in logs))
    width = {"copy": 2, "ptb": 4, "noise": 4}
    cols = max(width[k] for k in kinds)
    fig, grid = plt.subplots(len(kinds), cols, figsize=(4.2 * cols, 3.6 * len(kinds)),
                             squeeze=False)
    for row, kind in zip(grid, kinds):
        mine = [log for log in logs if log.kind == kind]
        labels, title = labels_and_title(mine)
        if kind == "noise":
            _draw_noise(row, mine)
        else:
            _draw_runs(row, mine, labels, PANELS[kind])
        for ax in row[width[kind]:]:
            ax.set_visible(False)
        row[0].set_title(title, loc="left", fontsize=10)
        row[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def save(fig, path):
    """Write ``fig`` to ``path`` and close it (``OSError`` if the file cannot be written)."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def make_parser():
    p = cli.parser(PROG, __doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("logs", nargs="+", metavar="LOG",
                   help="--log files of minirtrl.copy or minirtrl.ptb, --json files of "
                        "minirtrl.noise (any mix)")
    p.add_argument("--out", required=True, metavar="FILE.png",
                   help="the image to write; its suffix picks the format (required)")
    return p


def main(argv=None):
    """Draw the logs named in ``argv``; returns the exit status."""
    def body():
        args = cli.parse_args(make_parser(), argv)
        if isinstance(args, int):
            return args
        out = check_output("--out", args.out, image=True)
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
