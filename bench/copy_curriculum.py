"""Copy-task curriculum race: how far ``T_`` gets per algorithm on the same budget.

Runs ``python -m minirtrl.copy`` (through its ``main``) once per algorithm -- by default
``bptt`` with truncation 10 and 50, ``uoro``, ``kf``, ``kf-avg`` and ``ok`` -- with the same
network, data stream (same seed) and either the same wall time (``--seconds``) or the same
number of characters seen (``--data``). Reads each run's JSON-lines log, and writes

    OUT/<label>.jsonl      the driver's log of each run
    OUT/summary.json       per run: final T_, bits, steps, data, seconds, steps/s, the
                           (data, T_) curve and the data needed to reach each level
    OUT/curriculum.png     T_ against characters seen (only if matplotlib is installed)

An existing file among these is refused before any work unless ``--force`` (which replaces
them: re-running into ``bench/results/copy``; ``--summarize`` rewrites the last two).

Example (a quick look; the OK authors' runs use n=128 for 2M steps)::

    python bench/copy_curriculum.py --seconds 600 --hidden 64 --out bench/out-copy
"""

import os
import sys

from _common import (
    add_force_flag,
    add_training_flags,
    checked_output,
    damaged_log,
    draw_runs,
    fail,
    open_backend,
    parser,
    positive,
    positive_float,
    replace_run_log,
    run_log,
    specs_or_exit,
    write_json,
)

from minirtrl.drivers.copy import main as copy_main
from minirtrl.drivers.safety import Failure

DEFAULT_RUNS = "bptt:10,bptt:50,uoro,kf,kf-avg,ok"


SETTINGS = ("cell", "algo", "rank", "truncation", "hidden", "depth", "batch", "lr", "clip",
            "seed", "backend", "dtype", "steps", "max_seconds")


def read_log(path):
    """The header's settings and the progress and final records of a ``minirtrl.copy``
    ``--log``; another file exits with one line naming it, status 2."""
    header, *records = run_log(path, "minirtrl.copy")
    config = header.get("config", {})
    settings = {key: config.get(key) for key in SETTINGS}
    records = [r for r in records if r.get("kind") in ("progress", "final")]
    if not records:
        fail(f"{path}: no progress record: a run cut off at its start")
    return settings, records


def reached(curve):
    """First data count at which each curriculum level was seen: {T: data}."""
    first = {}
    for data, T in curve:
        first.setdefault(T, data)
    return first


def run_one(spec, args):
    """One driver run of ``spec`` (a ``RunSpec``); returns its summary record."""
    label, algo, K = spec.label, spec.algo, spec.truncation
    log = os.path.join(args.out, f"{label}.jsonl")
    argv = ["--algo", algo, "--hidden", args.hidden, "--batch", args.batch, "--lr", args.lr,
            "--clip", args.clip, "--seed", args.seed, "--backend", args.backend,
            "--dtype", args.dtype, "--log", log]
    if spec.rank is not None:
        argv += ["--rank", spec.rank]
    if K is not None:
        argv += ["--truncation", K]
    if args.force:
        try:
            replace_run_log(log)
        except Failure as exc:
            fail(exc)
    chars_per_step = args.batch * (K or 1)
    if args.data is not None:
        steps = max(1, args.data // chars_per_step)
        argv += ["--steps", steps, "--report-every", max(1, steps // args.points)]
    else:
        argv += ["--steps", 10**12, "--max-seconds", args.seconds,
                 "--progress-seconds", args.seconds / args.points]
    print(f"== {label}: python -m minirtrl.copy {' '.join(map(str, argv))}", flush=True)
    status = copy_main([str(a) for a in argv])
    if status != 0:
        return {"label": label, "algo": algo, "truncation": K, "status": status}
    return from_log(label, log)


def from_log(label, log):
    """The summary of one run from its ``--log`` file (steps/s from the logged wall time)."""
    settings, records = read_log(log)
    last = records[-1]
    try:
        curve = [(0, 1)] + [(r["data"], r["T"]) for r in records]
        return {
            "label": label, "status": 0, "log": os.path.basename(log), "settings": settings,
            "T": last["T"], "bits": last["bits"], "steps": last["step"], "data": last["data"],
            "seconds": last["seconds"],
            "steps_per_second": last["step"] / max(last["seconds"], 1e-9),
            "curve": curve, "data_to_reach": reached(curve),
        }
    except (KeyError, TypeError) as exc:
        damaged_log(log, "minirtrl.copy", exc)


def make_parser():
    p = parser(__doc__.splitlines()[0])
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=positive_float, default=60.0, help="seconds per run")
    budget.add_argument("--data", type=positive, help="characters seen per run, all streams "
                        "(instead of --seconds)")
    add_training_flags(p, runs=DEFAULT_RUNS, hidden=32, batch=16, rank=16, clip=16.0)
    p.add_argument("--points", type=positive, default=100, help="log lines per run")
    p.add_argument("--out", default="copy-curriculum", help="output directory")
    p.add_argument("--summarize", action="store_true",
                   help="do not run: summarise every <label>.jsonl already in --out (runs made "
                        "separately, e.g. with different budgets)")
    add_force_flag(p)
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    specs = [] if args.summarize else specs_or_exit(p, "--runs", args.runs, ranks=[args.rank],
                                                     truncations=[50])
    checked_output("--out", args.out, directory=True, replace=args.force,
                   files=[*(f"{spec.label}.jsonl" for spec in specs), "summary.json",
                          "curriculum.png"])
    if not args.summarize:
        open_backend(args.backend)  # one line and exit status 2 when it is not installed
    os.makedirs(args.out, exist_ok=True)
    if args.summarize:
        logs = sorted(f for f in os.listdir(args.out) if f.endswith(".jsonl"))
        results = [from_log(f[: -len(".jsonl")], os.path.join(args.out, f)) for f in logs]
        budget_text = "as logged"
    else:
        results = [run_one(spec, args) for spec in specs]
        budget_text = f"{args.data} characters" if args.data is not None else f"{args.seconds:g} s"
    summary = {"budget": budget_text, "runs": results}  # each run's settings from its log header
    write_json(os.path.join(args.out, "summary.json"), summary)
    print(f"\n{'run':10s} {'T_':>4s} {'bits':>7s} {'steps':>9s} {'data':>10s} {'steps/s':>8s}")
    for r in results:
        if r["status"] == 0:
            print(f"{r['label']:10s} {r['T']:4d} {r['bits']:7.3f} {r['steps']:9d} "
                  f"{r['data']:10d} {r['steps_per_second']:8.1f}")
        else:
            print(f"{r['label']:10s} failed (exit status {r['status']})")
    draw_runs(results, args.out, os.path.join(args.out, "curriculum.png"))
    return 0 if all(r["status"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
