"""A training driver's steps per second against the benchmark's online step of the same shape.

For each configuration, in separate processes run one after the other (``--rounds``
times, interleaved): ``python -m minirtrl.copy`` for ``--seconds`` seconds (steps/s from
its log, after a warm-up), and ``bench/step_time.py`` on the same algorithm, size, batch
and dtype (the online step: the signs, the cell, the method, the readout, the gradients;
no optimiser). The driver does more per step (Adam, clipping, the task's batch, one host
read), so its rate is at most the step's: the figure is step rate / driver rate.
The step is timed twice: as the benchmark runs it (glibc's default allocator settings)
and with the allocator settings the drivers use (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_`` in its environment, the same as the drivers' ``mallopt``).

    OPENBLAS_NUM_THREADS=1 python bench/driver_vs_step.py --algo kf ok:8 --sizes 64 128
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from minirtrl.drivers.backends import MMAP_THRESHOLD, TRIM_THRESHOLD

try:  # python -m bench.driver_vs_step
    from . import _common as C
except ImportError:  # python bench/driver_vs_step.py
    import _common as C

HERE = os.path.dirname(os.path.abspath(__file__))


def make_parser():
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--algo", nargs="+", type=C.run_tokens, default=["kf", "ok:8", "uoro", "rtrl"],
                   help="algorithms (ok:r picks a rank)")
    p.add_argument("--sizes", type=C.positive, nargs="+", default=[32, 64], help="hidden units n")
    p.add_argument("--batch", type=C.positive, default=16,
                   help="streams B (the copy driver's default)")
    p.add_argument("--dtype", default="float32", choices=C.DTYPES,
                   help="float type (the drivers' default)")
    p.add_argument("--seconds", type=C.positive_float, default=8.0,
                   help="seconds of each driver run")
    p.add_argument("--rounds", type=C.positive, default=2, help="interleaved repetitions")
    p.add_argument("--json", metavar="FILE", help="write every run and the machine as JSON")
    C.add_force_flag(p)
    return p


def driver_rate(spec, n, args, folder):
    log = os.path.join(folder, "driver.jsonl")
    if os.path.exists(log):
        os.remove(log)
    argv = [sys.executable, "-m", "minirtrl.copy", "--algo", spec.algo, "--hidden", str(n),
            "--batch", str(args.batch), "--dtype", args.dtype, "--steps", str(10**12),
            "--max-seconds", str(args.seconds), "--progress-seconds", "0.5", "--log", log]
    if spec.rank is not None:
        argv += ["--rank", str(spec.rank)]
    subprocess.run(argv, check=True, capture_output=True)
    warm = min(2.0, args.seconds / 3)
    rate = C.steps_per_second(C.log_records(log), warm_seconds=warm)
    if rate is None:
        sys.exit(f"driver_vs_step.py: {spec.label} n {n}: fewer than two progress records "
                 f"after {warm:g} s of warm-up; use a longer --seconds")
    return rate


def step_rate(spec, n, args, folder, allocator):
    out = os.path.join(folder, "step.json")
    token = spec.algo if spec.rank is None else f"{spec.algo}:{spec.rank}"
    argv = [sys.executable, os.path.join(HERE, "step_time.py"), "--algo", token, "--sizes",
            str(n), "--batch", str(args.batch), "--depth", "1", "--dtype", args.dtype,
            "--n-in", "4", "--n-out", "4", "--min-seconds", "2", "--json", out]
    env = dict(os.environ)
    if allocator:
        env.update(MALLOC_TRIM_THRESHOLD_=str(TRIM_THRESHOLD),
                   MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    subprocess.run(argv, check=True, capture_output=True, env=env)
    with open(out, encoding="utf-8") as f:
        row = json.load(f)["rows"][0]
    return 1.0 / row["step"]["median"]


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    specs = C.specs_or_exit(p, "--algo", args.algo, ranks=[8], truncations=[25])
    if args.json:
        C.checked_output("--json", args.json, replace=args.force)
    info = C.machine_info("numpy", "cpu")
    C.print_machine(info)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for n in args.sizes:
                for spec in specs:
                    row = {"label": spec.label, "n": n,
                           "driver": driver_rate(spec, n, args, folder),
                           "step": step_rate(spec, n, args, folder, allocator=False),
                           "step_allocator": step_rate(spec, n, args, folder, allocator=True)}
                    runs.append(row)
                    print(f"# {spec.label:8s} n {n:4d}  driver {row['driver']:8.1f}  step "
                          f"{row['step']:8.1f}  step (drivers' allocator) "
                          f"{row['step_allocator']:8.1f} steps/s", flush=True)
    print(f"\ncopy shape, B = {args.batch}, {args.dtype}; median of {args.rounds} rounds\n")
    print("| run | n | driver steps/s | online step /s | step / driver | online step /s, "
          "drivers' allocator | step / driver |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    table = []
    for n in args.sizes:
        for spec in specs:
            mine = [r for r in runs if r["n"] == n and r["label"] == spec.label]
            med = {k: statistics.median(r[k] for r in mine) for k in ("driver", "step",
                                                                       "step_allocator")}
            table.append({"label": spec.label, "n": n, **med})
            print(f"| {spec.label} | {n} | {med['driver']:.1f} | {med['step']:.1f} | "
                  f"{med['step'] / med['driver']:.2f} | {med['step_allocator']:.1f} | "
                  f"{med['step_allocator'] / med['driver']:.2f} |")
    if args.json:
        C.write_json(args.json, {"machine": info, "settings": vars(args), "runs": runs,
                                 "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
