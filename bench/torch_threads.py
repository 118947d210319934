"""Steps per second of the copy driver on the torch backend at each number of threads.

Torch's default threads against fixed numbers, at several sizes: the measurement behind
the drivers' ``--threads`` default.

Each configuration runs ``python -m minirtrl.copy --backend torch`` in its own process
(threads are process state) for ``--seconds`` seconds after a short warm-up and reads the
steps per second from its log; the configurations are interleaved, ``--rounds`` times,
and the median is reported.

    python bench/torch_threads.py --sizes 16 64 128 --threads default 1 --seconds 15
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

try:  # python -m bench.torch_threads
    from . import _common as C
except ImportError:  # python bench/torch_threads.py
    import _common as C


def thread_count(text):
    """A ``--threads`` item: ``default`` or an integer >= 1 (kept as the text given)."""
    if text != "default":
        try:
            C.positive(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected 'default' or an integer >= 1, not {text!r}") from None
    return text


def make_parser():
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=C.positive, nargs="+", default=[16, 64, 128],
                   help="hidden units n")
    p.add_argument("--threads", type=thread_count, nargs="+", default=["default", "1"],
                   help="thread counts to compare; 'default' is torch's own choice in a fresh "
                        "process (its number of cores)")
    p.add_argument("--algo", default="kf", choices=C.METHODS, help="the driver's --algo")
    p.add_argument("--batch", type=C.positive, default=16, help="the driver's --batch")
    p.add_argument("--seconds", type=C.positive_float, default=15.0,
                   help="measured seconds per run")
    p.add_argument("--rounds", type=C.positive, default=3, help="interleaved repetitions")
    p.add_argument("--busy", type=C.nonnegative, default=0,
                   help="keep this many other processes spinning on the CPU meanwhile (the "
                        "shared-machine case)")
    p.add_argument("--json", metavar="FILE", help="write every run and the machine as JSON")
    C.add_force_flag(p)
    return p


def torch_default():
    """torch's own thread count in a fresh process (what it uses unless told otherwise)."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         check=True, capture_output=True, text=True)
    return int(out.stdout)


def steps_per_second(n, threads, args, folder):
    """One driver run; steps/s between its first and last progress records."""
    log = os.path.join(folder, f"t-{n}-{threads}.jsonl")
    if os.path.exists(log):
        os.remove(log)
    argv = [sys.executable, "-m", "minirtrl.copy", "--backend", "torch", "--algo", args.algo,
            "--hidden", str(n), "--batch", str(args.batch), "--steps", str(10**12),
            "--max-seconds", str(args.seconds + 2), "--progress-seconds", "1", "--log", log]
    argv += ["--threads", str(torch_default() if threads == "default" else threads)]
    subprocess.run(argv, check=True, capture_output=True)
    records = C.log_records(log)
    rate = C.steps_per_second(records, warm_seconds=2.0)  # warmed up
    if rate is None:
        sys.exit(f"torch_threads.py: n {n}: fewer than two progress records after 2 s of "
                 "warm-up; use a longer --seconds")
    return rate, records[0]["threads"]


def measure(args):
    """Every (round, n, threads) run, interleaved: a list of records."""
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for n in args.sizes:
                for threads in args.threads:
                    rate, used = steps_per_second(n, threads, args, folder)
                    runs.append({"n": n, "threads": threads, "used": used,
                                 "steps_per_second": rate})
                    print(f"# n {n:4d}  threads {threads:>7s} ({used})  {rate:8.1f} steps/s",
                          flush=True)
    return runs


def table(args, runs):
    """The median steps/s of each (n, threads), printed as a Markdown table."""
    print(f"\n{args.busy} other busy process(es); median of {args.rounds} runs of "
          f"{args.seconds:g} s, --algo {args.algo} --batch {args.batch}\n")
    print(f"| n | {' | '.join(f'threads {t}' for t in args.threads)} | ratio (last / first) |")
    print("| ---: |" + " ---: |" * (len(args.threads) + 1))
    rows = []
    for n in args.sizes:
        med = [statistics.median(r["steps_per_second"] for r in runs
                                 if r["n"] == n and r["threads"] == t) for t in args.threads]
        rows.append({"n": n, **dict(zip(args.threads, med))})
        print(f"| {n} | {' | '.join(f'{m:.1f}' for m in med)} | {med[-1] / med[0]:.2f} |")
    return rows


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.json:
        C.checked_output("--json", args.json, replace=args.force)
    C.open_backend("torch")  # one line and exit status 2 when PyTorch is not installed
    info = C.machine_info("torch", "cpu")
    C.print_machine(info)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.busy)]
    try:
        runs = measure(args)
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    rows = table(args, runs)
    if args.json:
        C.write_json(args.json, {"machine": info, "settings": vars(args), "runs": runs,
                                 "table": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
