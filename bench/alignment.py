"""Gradient alignment on the learner's trajectory: each method against exact RTRL on the copy task.

Runs ``python -m minirtrl.copy`` (through its ``main``) once per algorithm with ``--align``:
exact RTRL runs beside the learner on the states it visits, and every ``--every`` steps the
log gets the mean cosine and relative error of the method's recurrent gradient against exact
RTRL's of the same step. By default on the vanilla (tanh) cell, since ``rflo`` is defined for
it alone, with ``uoro``, ``kf``, ``ok``, ``snap1``, ``rflo`` and every-step ``bptt`` (one
update per character, the gradient of that character through the last K). Writes

    OUT/<label>.jsonl      the driver's log of each run
    OUT/summary.json       per run: its settings, final T_ and bits, the mean and the last
                           align_cos and align_rel
    OUT/alignment.md       the table, with the machine header and the command

An existing file among these is refused before any work unless ``--force``.

Example (the committed table, ``bench/results/alignment``)::

    python bench/alignment.py --steps 20000 --out bench/results/alignment
"""

import json
import os
import sys

from _common import (
    add_force_flag,
    add_training_flags,
    checked_output,
    damaged_log,
    fail,
    leak_rate,
    machine_info,
    open_backend,
    parser,
    positive,
    replace_run_log,
    run_log,
    specs_or_exit,
    write_json,
    write_text,
)

from minirtrl.drivers.copy import main as copy_main
from minirtrl.drivers.safety import Failure

DEFAULT_RUNS = "uoro,kf,ok:2,ok:8,snap1,rflo,bptt:10"


def run_one(spec, args):
    """One driver run of ``spec`` (a ``RunSpec``) with ``--align``; its summary record."""
    log = os.path.join(args.out, f"{spec.label}.jsonl")
    argv = ["--algo", spec.algo, "--cell", args.cell, "--hidden", args.hidden,
            "--batch", args.batch, "--lr", args.lr, "--clip", args.clip, "--seed", args.seed,
            "--backend", args.backend, "--dtype", args.dtype, "--steps", args.steps,
            "--align", args.every, "--report-every", args.every, "--log", log]
    if args.cell == "vanilla":
        argv += ["--alpha", args.alpha]
    if spec.rank is not None:
        argv += ["--rank", spec.rank]
    if spec.truncation is not None:
        argv += ["--truncation", spec.truncation, "--every-step"]
    if args.force:
        try:
            replace_run_log(log)
        except Failure as exc:
            fail(exc)
    command = " ".join(map(str, argv))
    print(f"== {spec.label}: python -m minirtrl.copy {command}", flush=True)
    status = copy_main([str(a) for a in argv])
    if status != 0:
        return {"label": spec.label, "status": status, "argv": command}
    return {**from_log(spec.label, log), "argv": command}


def from_log(label, log):
    """The summary of one run from its ``--log``: final T_ and bits, alignment means."""
    records = run_log(log, "minirtrl.copy")[1:]
    aligned = [r for r in records if r.get("kind") == "align"]
    final = [r for r in records if r.get("final")]
    if not aligned or not final:
        fail(f"{log}: no align record or no final record: a run cut off, or without --align")
    try:
        steps = [r["align_steps"] for r in aligned]

        def mean(key):  # over every compared step of the run
            return sum(r[key] * s for r, s in zip(aligned, steps)) / max(sum(steps), 1)

        return {"label": label, "status": 0, "log": os.path.basename(log),
                "T": final[-1]["T"], "bits": final[-1]["bits"], "steps": final[-1]["step"],
                "cos": mean("align_cos"), "rel": mean("align_rel"),
                "cos_last": aligned[-1]["align_cos"], "rel_last": aligned[-1]["align_rel"]}
    except (KeyError, TypeError) as exc:
        damaged_log(log, "minirtrl.copy", exc)


def table(results, args, info):
    head = (f"Alignment with exact RTRL on the learner's trajectory: copy task, {args.cell} "
            f"cell{f' (alpha {args.alpha:g})' if args.cell == 'vanilla' else ''}, n "
            f"{args.hidden}, batch {args.batch}, {args.steps} steps, {args.dtype}, seed "
            f"{args.seed}.\nMachine: {json.dumps(info)}\n\n"
            "| run | mean cosine | mean rel. error | last cosine | last rel. error | final T_ |"
            "\n| --- | --- | --- | --- | --- | --- |\n")
    rows = []
    for r in results:
        if r["status"] != 0:
            rows.append(f"| {r['label']} | failed (exit {r['status']}) | | | | |")
            continue
        rows.append(f"| {r['label']} | {r['cos']:.3f} | {r['rel']:.3f} | {r['cos_last']:.3f} | "
                    f"{r['rel_last']:.3f} | {r['T']} |")
    command = "python bench/alignment.py " + " ".join(sys.argv[1:])
    return head + "\n".join(rows) + f"\n\nCommand: `{command}`\n"


def make_parser():
    p = parser(__doc__.splitlines()[0])
    add_training_flags(p, runs=DEFAULT_RUNS, hidden=16, batch=16, rank=8, clip=16.0)
    p.set_defaults(dtype="float64")
    p.add_argument("--cell", default="vanilla", choices=("vanilla", "rhn"),
                   help="the cell (rflo needs vanilla)")
    p.add_argument("--alpha", type=leak_rate, default=1.0, help="leak rate of the vanilla cell")
    p.add_argument("--steps", type=positive, default=20000, help="optimiser steps per run")
    p.add_argument("--every", type=positive, default=1000,
                   help="steps per align record (--align)")
    p.add_argument("--out", default="alignment", help="output directory")
    add_force_flag(p)
    return p


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    specs = specs_or_exit(p, "--runs", args.runs, ranks=[args.rank], truncations=[10])
    if args.cell != "vanilla" and any(s.algo == "rflo" for s in specs):
        p.error(f"--runs: rflo is defined for --cell vanilla only, not {args.cell}")
    checked_output("--out", args.out, directory=True, replace=args.force,
                   files=[*(f"{s.label}.jsonl" for s in specs), "summary.json", "alignment.md"])
    _, device = open_backend(args.backend)  # one line and exit 2 when it is not installed
    os.makedirs(args.out, exist_ok=True)
    info = machine_info(args.backend, device)
    results = [run_one(spec, args) for spec in specs]
    write_json(os.path.join(args.out, "summary.json"), {"machine": info, "runs": results})
    text = table(results, args, info)
    write_text(os.path.join(args.out, "alignment.md"), text)
    print("\n" + text)
    return 0 if all(r["status"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
