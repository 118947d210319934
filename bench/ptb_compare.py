"""Char-PTB race: validation bpc against characters seen, per algorithm, on one wall-time budget.

Runs ``python -m minirtrl.ptb`` (through its ``main``, in this process) once per algorithm --
by default ``bptt`` with truncation 25, ``kf`` and ``ok`` with rank 8 -- with the same network,
batch, learning rate, seed and ``--max-seconds``. A full validation pass costs the same for
every algorithm (it depends only on n, V and the number of evaluation streams); it is
measured first and each run's ``--eval-every`` (optimiser steps) is chosen from a short
speed calibration so that every run evaluates about ``--points`` times within its budget,
i.e. spends about the same share of it evaluating. The budget covers training and those
evaluations; the final validation and test passes come after it.

Writes, under ``--out``:

    <label>.jsonl    the driver's log of each run
    <label>.out      its progress lines
    summary.json     the settings, the machine, the measured costs and per run: final and best
                     valid bpc, test bpc, steps, characters seen, steps/s (overall and of the
                     training alone: the periodic validation passes, whose durations the
                     driver prints, taken out), the valid-bpc curve
    ptb.png          valid bpc against characters seen and against seconds (needs matplotlib)

(an existing file among these is refused before any work unless ``--force``, which replaces
them: re-running into ``bench/results/ptb``), and prints a Markdown table. ``--paper-steps
N`` also times N online steps at the paper's scale (the OK authors' setting: n=256, ``ok``
rank 8, batch 32; their 1M-step runs reach 1.74-1.75 valid bpc) and prints what 1M steps
would take here.

On a machine shared with other processes pin the BLAS threads (they must be set before
Python starts) and say so next to the figures::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/ptb_compare.py \\
        --data /path/to/ptb --seconds 420 --hidden 64 --out ptb-bench --paper-steps 10

A quick check that everything runs: ``--seconds 5 --calibrate 1 --hidden 8``. ``--summarize``
rebuilds ``summary.json``, the table and the plot from the logs already in ``--out`` (with
``--force`` where they exist); a file there that is not a ``minirtrl.ptb`` log is one line,
exit status 2.
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

from _common import (
    add_force_flag,
    add_training_flags,
    checked_output,
    damaged_log,
    draw_runs,
    fail,
    machine_info,
    nonnegative,
    open_backend,
    parser,
    positive,
    positive_float,
    replace_run_log,
    run_log,
    specs_or_exit,
    synthetic_corpus,
    write_json,
    write_text,
)

from minirtrl import RHN
from minirtrl.drivers import plot
from minirtrl.drivers.backends import load
from minirtrl.drivers.corpus import CorpusError, read_corpus, split_files
from minirtrl.drivers.ptb import eval_streams, evaluate
from minirtrl.drivers.ptb import main as ptb_main
from minirtrl.drivers.safety import Failure

DEFAULT_RUNS = "bptt:25,kf,ok:8"
SYNTHETIC = (("train", 20000), ("valid", 0), ("test", 0))  # the timing corpus: its splits' sizes


def driver_argv(algo, K, rank, args):
    argv = ["--algo", algo, "--hidden", args.hidden, "--batch", args.batch, "--lr", args.lr,
            "--clip", args.clip, "--seed", args.seed, "--backend", args.backend,
            "--dtype", args.dtype, "--eval-streams", args.eval_streams]
    if rank is not None:
        argv += ["--rank", rank]
    if K is not None:
        argv += ["--truncation", K]
    return argv


def quiet_main(argv, out_path=None):
    """The driver's ``main`` with its stdout captured (and written to ``out_path``)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = ptb_main([str(a) for a in argv])
    if out_path:
        write_text(out_path, buffer.getvalue())
    return status, buffer.getvalue()


def timed_steps(argv, folder, steps, warmup=2):
    """Seconds per optimiser step of the driver, from its log, after ``warmup`` steps."""
    log = os.path.join(folder, "timing.jsonl")
    status, _ = quiet_main([*argv, "--data", folder, "--format", "raw", "--steps", warmup + steps,
                            "--report-every", 1, "--eval-every", 0, "--log", log])
    if status != 0:
        raise RuntimeError(f"timing run failed (exit status {status})")
    seconds = {r["step"]: r["seconds"] for r in plot.read(log).records
               if r["kind"] == "progress"}
    os.remove(log)
    return (seconds[warmup + steps] - seconds[warmup]) / steps


def calibrate(argv, folder, seconds):
    """Optimiser steps per second of ``argv`` on the synthetic corpus, for ``seconds``."""
    log = os.path.join(folder, "calibrate.jsonl")
    status, _ = quiet_main([*argv, "--data", folder, "--format", "raw", "--steps", 10**12,
                            "--max-seconds", seconds, "--eval-every", 0, "--log", log])
    if status != 0:
        raise RuntimeError(f"calibration failed (exit status {status})")
    last = plot.read(log).records[-1]
    os.remove(log)
    return last["step"] / max(last["seconds"], 1e-9)


def validation_seconds(corpus, args):
    """Wall time of one full validation pass at this size (random parameters)."""
    xp, device = load(args.backend)
    dtype = getattr(xp, args.dtype)
    V = len(corpus.vocab)
    cell = RHN(V, args.hidden, V)
    params = cell.init(args.seed, xp=xp, dtype=getattr(xp, args.dtype), device=device)
    inputs, targets, mask = eval_streams(corpus.valid, args.eval_streams)
    arrays = (xp.asarray(inputs, dtype=xp.int64, device=device),
              xp.asarray(targets, dtype=xp.int64, device=device),
              xp.asarray(mask, dtype=dtype, device=device))
    start = time.perf_counter()
    evaluate(cell, params, *arrays, xp=xp)
    return time.perf_counter() - start


def run_one(label, algo, K, rank, args, rate, eval_s):
    """One driver run on the real data; returns its summary record."""
    train_s = max(args.seconds - args.points * eval_s, 0.2 * args.seconds)
    eval_every = max(1, int(rate * train_s / args.points))
    log = os.path.join(args.out, f"{label}.jsonl")
    argv = [*driver_argv(algo, K, rank, args), "--data", args.data, "--format", args.format,
            "--steps", args.steps or 10**12, "--max-seconds", args.seconds,
            "--eval-every", eval_every, "--progress-seconds", args.progress, "--log", log]
    print(f"== {label}: python -m minirtrl.ptb {' '.join(map(str, argv))}", flush=True)
    if args.force:
        try:
            replace_run_log(log)
        except Failure as exc:
            fail(exc)
    start = time.perf_counter()
    status, _printed = quiet_main(argv, os.path.join(args.out, f"{label}.out"))
    wall = time.perf_counter() - start
    if status != 0:
        print(f"   failed with exit status {status} (see {label}.out)", flush=True)
        return {"label": label, "algo": algo, "truncation": K, "rank": rank, "status": status}
    result = from_log(label, log)
    result.update(calibrated_steps_per_second=rate, wall_seconds=wall)
    if result["status"] == 0:
        print(f"   step {result['steps']}  data {result['data']}  valid {result['valid_bpc']:.4f}  "
              f"test {result['test_bpc']:.4f}  {result['steps_per_second']:.1f} steps/s",
              flush=True)
    return result


def from_log(label, log):
    """The summary record of one run from its ``--log`` file (settings from its header); a
    file that is not a complete ``minirtrl.ptb`` log exits with one line, status 2."""
    try:
        return _summary(label, log, *run_log(log, "minirtrl.ptb"))
    except (KeyError, TypeError) as exc:
        damaged_log(log, "minirtrl.ptb", exc)


def _summary(label, log, header, *records):
    config = header["config"]
    algo, K, rank = config["algo"], config.get("truncation"), config.get("rank")
    last = records[-1] if records else {}
    if last.get("kind") != "final" or "test_bpc" not in last:
        print(f"   {log} does not end with a final record", flush=True)
        return {"label": label, "algo": algo, "truncation": K, "rank": rank, "status": -1}
    evals = [r for r in records if r["kind"] == "eval"]  # the periodic validation passes
    curve = [(r["data"], r["seconds"], r["valid_bpc"]) for r in evals]
    if not curve or curve[-1][0] != last["data"]:
        curve.append((last["data"], last["seconds"], last["valid_bpc"]))
    chars_per_step = config["batch"] * (K or 1)
    steps_per_s = last["step"] / max(last["seconds"], 1e-9)
    eval_total = sum(r["eval_seconds"] for r in evals)  # the final passes came after the budget
    train_steps_per_s = last["step"] / max(last["seconds"] - eval_total, 1e-9)
    return {
        "label": label, "algo": algo, "truncation": K, "rank": rank, "status": 0,
        "log": os.path.basename(log), "hidden": config["hidden"], "batch": config["batch"],
        "eval_every": config["eval_every"],
        "steps": last["step"], "data": last["data"], "seconds": last["seconds"],
        "steps_per_second": steps_per_s,
        "evaluation_seconds": eval_total, "training_steps_per_second": train_steps_per_s,
        "chars_per_second": train_steps_per_s * chars_per_step,
        "train_bpc": last.get("train_bpc"), "valid_bpc": last["valid_bpc"],
        "best_valid_bpc": min(v for _, _, v in curve), "test_bpc": last["test_bpc"],
        "evaluations": len(curve), "curve": curve,
    }


def table(results):
    rows = ["| run | n, B | valid bpc (end) | best valid | test bpc | optimiser steps "
            "| characters seen | steps/s (training) | characters/s (training) | s evaluating |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        if r["status"] != 0:
            rows.append(f"| {r['label']} | | failed (exit status {r['status']}) ||||||||")
            continue
        rows.append(f"| {r['label']} | {r['hidden']}, {r['batch']} | {r['valid_bpc']:.3f} | "
                    f"{r['best_valid_bpc']:.3f} | {r['test_bpc']:.3f} | {r['steps']:,} | "
                    f"{r['data']:,} | "
                    f"{r['training_steps_per_second']:.1f} | {r['chars_per_second']:,.0f} | "
                    f"{r['evaluation_seconds']:.0f} |")
    return "\n".join(rows)


def make_parser():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data", help="char-PTB directory (see minirtrl.ptb --format); required "
                   "unless --summarize")
    p.add_argument("--format", default="mikolov", choices=("mikolov", "raw"),
                   help="the corpus format, as minirtrl.ptb --format")
    p.add_argument("--seconds", type=positive_float, default=420.0,
                   help="--max-seconds of every run: training plus periodic evaluations")
    p.add_argument("--steps", type=nonnegative, default=0,
                   help="also stop at this many steps (0 = no)")
    p.add_argument("--points", type=positive, default=8,
                   help="periodic validation passes per run, about")
    add_training_flags(p, runs=DEFAULT_RUNS, hidden=64, batch=32, rank=8, clip=32.0)
    p.add_argument("--eval-streams", type=positive, default=32,
                   help="evaluation streams (the driver's default is 8)")
    p.add_argument("--calibrate", type=positive_float, default=10.0,
                   help="seconds of the speed calibration per run")
    p.add_argument("--paper-steps", type=nonnegative, default=0,
                   help="also time this many steps at n=256, ok rank 8, batch 32 (0 = skip)")
    p.add_argument("--progress", type=positive_float, default=30.0,
                   help="seconds between progress lines")
    p.add_argument("--out", default="ptb-bench", help="output directory")
    p.add_argument("--summarize", action="store_true",
                   help="do not train: summarise every <label>.jsonl already in --out (and time "
                        "--paper-steps if asked)")
    add_force_flag(p)
    return p


def paper_scale(args, folder):
    """Seconds per step at the OK authors' PTB setting (n=256, ok rank 8, batch 32), here."""
    paper_args = argparse.Namespace(**{**vars(args), "hidden": 256, "batch": 32,
                                       "dtype": "float32"})
    paper = {"hidden": 256, "rank": 8, "batch": 32, "dtype": "float32",
             "backend": args.backend, "steps_timed": args.paper_steps}
    try:
        per_step = timed_steps(driver_argv("ok", None, 8, paper_args), folder, args.paper_steps)
    except (RuntimeError, KeyError, OSError) as exc:
        print(f"\npaper scale: not measured ({exc})", flush=True)
        return {**paper, "error": str(exc)}
    print(f"\npaper scale (n=256, ok rank 8, batch 32, float32, {args.backend}): "
          f"{per_step:.3f} s per step (mean over {args.paper_steps}), "
          f"1M steps = {per_step * 1e6 / 86400:.1f} days", flush=True)
    return {**paper, "seconds_per_step": per_step, "days_for_1M_steps": per_step * 1e6 / 86400}


def train_all(runs, args, folder):
    """Measure the validation pass, calibrate every run's speed, then run each; the records."""
    try:
        corpus = read_corpus(args.data, args.format)
    except CorpusError as exc:
        print(f"ptb_compare.py: error: --data: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"# {args.data}: {corpus.summary()}", flush=True)
    eval_s = validation_seconds(corpus, args)
    print(f"# one validation pass: {eval_s:.1f} s ({corpus.valid.shape[0] - 1:,} characters, "
          f"{args.eval_streams} streams, n={args.hidden})", flush=True)
    synthetic_corpus(folder, len(corpus.vocab), SYNTHETIC)
    rates = {}
    for label, algo, K, rank in runs:
        rates[label] = calibrate(driver_argv(algo, K, rank, args), folder, args.calibrate)
        print(f"# calibration {label}: {rates[label]:.1f} steps/s", flush=True)
    results = [run_one(label, algo, K, rank, args, rates[label], eval_s)
               for label, algo, K, rank in runs]
    return results, eval_s


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    if args.data is None and not args.summarize:
        p.error("the following arguments are required: --data (unless --summarize)")
    runs = [] if args.summarize else [
        (spec.label, spec.algo, spec.truncation, spec.rank)
        for spec in specs_or_exit(p, "--runs", args.runs, ranks=[args.rank], truncations=[25])]
    checked_output("--out", args.out, directory=True, replace=args.force,
                   files=[*(f"{label}.{ext}" for label, *_ in runs for ext in ("jsonl", "out")),
                          "summary.json", "ptb.png"])
    if not args.summarize:
        try:
            split_files(args.data, args.format)
        except CorpusError as exc:
            p.error(f"--data: {exc}")
    device = open_backend(args.backend)[1]
    os.makedirs(args.out, exist_ok=True)
    info = machine_info(args.backend, device)
    print(f"# {info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable), load "
          f"{info['loadavg_at_start']}, numpy {info['numpy']}, threads {info['thread_env']}",
          flush=True)
    settings = dict(vars(args)) if not args.summarize else {  # else each run's from its log
        key: getattr(args, key) for key in ("out", "summarize", "paper_steps", "backend")}
    summary = {"settings": settings, "machine": info}
    path = os.path.join(args.out, "summary.json")
    with tempfile.TemporaryDirectory() as folder:
        if args.summarize:
            logs = sorted(f for f in os.listdir(args.out) if f.endswith(".jsonl"))
            results = [from_log(f[: -len(".jsonl")], os.path.join(args.out, f)) for f in logs]
            synthetic_corpus(folder, 50, SYNTHETIC)
        else:
            results, summary["validation_pass_seconds"] = train_all(runs, args, folder)
        summary.update(runs=results, machine_at_end={"loadavg": list(os.getloadavg())})
        write_json(path, summary)  # before the paper-scale timing: nothing is lost if it fails
        print()
        print(table(results))
        draw_runs(results, args.out, os.path.join(args.out, "ptb.png"))
        if args.paper_steps > 0:
            summary["paper_scale"] = paper_scale(args, folder)
            write_json(path, summary)
    return 0 if all(r["status"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
