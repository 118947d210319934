"""Verify a GPU machine and measure the paper-scale runs there, in one command.

    python bench/gpu_check.py --backend cupy --out DIR
    python bench/gpu_check.py --backend torch --device cuda --out DIR
    python bench/gpu_check.py --backend numpy --quick --out DIR      # the CPU rehearsal (< 2 min)

Steps, in order; each runs in its own process with its own time limit, its result is
written to ``DIR/summary.json`` (and ``DIR/summary.md``) as soon as it is known, and a step
that fails or runs out of time is recorded and the next one runs:

    machine   GPU name and memory, driver, CUDA runtime, CuPy / torch and NumPy versions
    tests     the test suite with the backend made mandatory (MINIRTRL_BACKENDS=numpy,<b>):
              its summary line and every failure
    check     python -m minirtrl.check on the backend, depth 1 and 2 (float64)
    steps     bench/step_time.py on the backend, device synchronised, at the paper shapes:
              kf and ok rank 16 at n = 128, B = 16, 4 symbols (copy); kf, ok rank 8 and
              bptt(25) at n = 256, B = 32, 50 symbols (PTB); rtrl at n = 64; float32, float64
    copy      python -m minirtrl.copy at the OK authors' setting (n = 128, B = 16, ok rank 16,
              lr 10^-3.5) for --seconds: steps/s and the T_ reached
    ptb       python -m minirtrl.ptb at theirs (n = 256, B = 32, ok rank 8) for --seconds on
              --data (default: a generated 50-symbol corpus: a step costs the same):
              steps/s and the time 1M steps would take

``--quick`` uses tiny sizes and short limits everywhere (the rehearsal a test runs). The
tests step runs pytest: it needs the ``test`` extra (``pip install -e ".[test]"``); without
it the command stops at once (one line, exit status 2) unless ``--only`` leaves that step out.
Every file the chosen steps write in ``DIR`` is checked before any work: an existing one is
refused unless ``--force`` (which replaces them all).
"""

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

try:  # python -m bench.gpu_check
    from . import _common as C
except ImportError:  # python bench/gpu_check.py
    import _common as C

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def make_parser():
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["cupy", "torch", "numpy"], default="cupy",
                   help="the backend to verify (numpy: rehearse on the CPU)")
    p.add_argument("--device", default=None,
                   help="--device of the commands (torch: cuda, cuda:N; cupy: a GPU index)")
    p.add_argument("--out", required=True, help="folder for summary.json, summary.md and logs")
    p.add_argument("--quick", action="store_true", help="tiny sizes and short limits")
    p.add_argument("--seconds", type=C.positive_float, default=45.0,
                   help="training seconds of each driver run (quick: 3)")
    p.add_argument("--data", default=None,
                   help="char-PTB directory for the ptb step (None: a generated corpus)")
    p.add_argument("--only", nargs="+", default=None,
                   choices=["machine", "tests", "check", "steps", "copy", "ptb"],
                   help="run only these steps")
    C.add_force_flag(p)
    return p


#: the files each step writes in --out (besides summary.json and summary.md, rewritten after
#: every step)
FILES = {"machine": [], "tests": ["tests.log"],
         "check": ["check-depth1.log", "check-depth2.log"],
         "steps": [f"steps-{shape}.{ext}" for shape in ("copy", "ptb", "rtrl")
                   for ext in ("json", "log")],
         "copy": ["copy.jsonl", "copy.out"], "ptb": ["ptb.jsonl", "ptb.out"]}


LIMITS = {"machine": 60, "tests": 240, "check": 90, "steps": 150, "copy": 90, "ptb": 120}
QUICK_LIMITS = {"machine": 30, "tests": 60, "check": 30, "steps": 30, "copy": 20, "ptb": 30}


class Summary:
    """``DIR/summary.json`` and ``DIR/summary.md``, rewritten after every step."""

    def __init__(self, out, args):
        self.out, self.doc = out, {"command": ["bench/gpu_check.py", *sys.argv[1:]],
                                   "backend": args.backend, "device": args.device,
                                   "quick": args.quick, "steps": {}}

    def record(self, name, result):
        self.doc["steps"][name] = result
        C.write_json(os.path.join(self.out, "summary.json"), self.doc)
        C.write_text(os.path.join(self.out, "summary.md"), markdown(self.doc))
        status = result.get("status")
        print(f"# {name}: {status} ({result.get('seconds', 0):.1f} s)", flush=True)


def run(argv, limit, *, env=None, log=None):
    """A child process with a time limit: ``(status, output, seconds)``."""
    start = time.perf_counter()
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit,
                              env={**os.environ, "PYTHONPATH": path, **(env or {})}, cwd=ROOT)
        status, output = ("ok" if done.returncode == 0 else f"exit {done.returncode}",
                          done.stdout + done.stderr)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        output = out.decode() if isinstance(out, bytes) else out
        status = f"timed out after {limit} s"
    if log:
        C.write_text(log, output)
    return status, output, time.perf_counter() - start


def backend_flags(args):
    return ["--backend", args.backend] + (["--device", args.device] if args.device else [])


# ---- the steps --------------------------------------------------------------------------
def step_machine(args, limit):
    code = f"""
import json, sys
sys.path.insert(0, {HERE!r})
import _common as C
from minirtrl.drivers.backends import load
xp, device = load({args.backend!r}, {args.device!r})
info = C.machine_info({args.backend!r}, device)
try:
    if {args.backend!r} == "cupy":
        import cupy
        free, total = cupy.cuda.runtime.memGetInfo()
        info["gpu_memory_bytes"] = total
        info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    elif {args.backend!r} == "torch":
        import torch
        if torch.cuda.is_available():
            d = torch.device({args.device or 'cuda'!r})
            info["gpu"] = torch.cuda.get_device_name(d)
            info["gpu_memory_bytes"] = torch.cuda.get_device_properties(d).total_memory
            info["cuda_runtime"] = torch.version.cuda
except Exception as exc:  # noqa: BLE001 - a header field that cannot be read is noted
    info["gpu_error"] = repr(exc)
print(json.dumps(info))
"""
    status, output, seconds = run([sys.executable, "-c", code], limit)
    result = {"status": status, "seconds": seconds}
    if status == "ok":
        result["machine"] = json.loads(output.strip().splitlines()[-1])
    else:
        result["output"] = output[-4000:]
    return result


def step_tests(args, limit):
    env = {"MINIRTRL_BACKENDS": f"numpy,{args.backend}" if args.backend != "numpy" else "numpy"}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    if args.quick:  # the rehearsal: two fast files only
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "tests/test_backends.py", "tests/test_exact.py"]
    status, output, seconds = run(argv, limit, env=env,
                                  log=os.path.join(args.out, "tests.log"))
    lines = output.strip().splitlines()
    summary = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)),
                   "no summary line")
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return {"status": status, "seconds": seconds, "summary": summary, "failures": failures,
            "env": env}


def step_check(args, limit):
    results = {}
    for depth in ("1", "2"):
        argv = [sys.executable, "-m", "minirtrl.check", *backend_flags(args), "--depth", depth]
        if args.quick:
            argv += ["--samples", "5"]
        status, output, seconds = run(argv, limit / 2,
                                      log=os.path.join(args.out, f"check-depth{depth}.log"))
        results[f"depth {depth}"] = {"status": status, "seconds": seconds,
                                     "lines": output.strip().splitlines()[-8:]}
    status = "ok" if all(r["status"] == "ok" for r in results.values()) else "failed"
    return {"status": status, "seconds": sum(r["seconds"] for r in results.values()),
            **results}


def step_steps(args, limit):
    quick = args.quick
    common = [sys.executable, os.path.join(HERE, "step_time.py"), "--backend", args.backend,
              "--depth", "1", "--dtype", "float32", "float64", "--min-seconds",
              "0.05" if quick else "0.5", "--repeats", "3" if quick else "5"]
    shapes = [  # (label, algorithms, n, B, symbols)
        ("copy", ["kf", "ok:16"], 16 if quick else 128, 4 if quick else 16, 4),
        ("ptb", ["kf", "ok:8", "bptt:25"], 16 if quick else 256, 4 if quick else 32, 50),
        ("rtrl", ["rtrl"], 8 if quick else 64, 4 if quick else 16, 50),
    ]
    rows, statuses, seconds = [], [], 0.0
    for label, algos, n, B, symbols in shapes:
        out = os.path.join(args.out, f"steps-{label}.json")
        argv = [*common, "--algo", *algos, "--sizes", str(n), "--batch", str(B), "--n-in",
                str(symbols), "--n-out", str(symbols), "--json", out,
                *(["--force"] if args.force else [])]
        status, _, spent = run(argv, limit / len(shapes),
                               log=os.path.join(args.out, f"steps-{label}.log"))
        statuses.append(status)
        seconds += spent
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                for row in json.load(f)["rows"]:
                    rows.append({"shape": label, "label": row.get("label"), "n": row["n"],
                                 "batch": row["batch"], "dtype": row["dtype"],
                                 "ms": 1e3 * row["step"]["median"] if "step" in row else None,
                                 "status": row.get("status")})
    status = "ok" if all(s == "ok" for s in statuses) else "; ".join(statuses)
    return {"status": status, "seconds": seconds, "rows": rows}


def driver(args, name, extra, limit):
    log = os.path.join(args.out, f"{name}.jsonl")
    if args.force:
        C.replace_run_log(log)
    argv = [sys.executable, "-m", f"minirtrl.{name}", *backend_flags(args), *extra,
            "--steps", str(10**12), "--max-seconds", str(args.seconds), "--progress-seconds",
            "2", "--log", log]
    status, _, seconds = run(argv, limit, log=os.path.join(args.out, f"{name}.out"))
    result = {"status": status, "seconds": seconds, "argv": argv[1:]}
    progress = [r for r in C.log_records(log) if r.get("kind") in ("progress", "final")]
    if len(progress) >= 2:
        rate = C.steps_per_second(progress, kinds=("progress", "final"))
        result.update(steps=progress[-1]["step"], steps_per_second=rate,
                      days_for_1M_steps=1e6 / rate / 86400 if rate else None, last=progress[-1])
    return result


def step_copy(args, limit):
    n, B, rank = ("16", "4", "4") if args.quick else ("128", "16", "16")
    result = driver(args, "copy", ["--algo", "ok", "--rank", rank, "--hidden", n, "--batch", B,
                                   "--lr", str(10**-3.5)], limit)
    if "last" in result:
        result["T"] = result["last"].get("T")
    return result


def step_ptb(args, limit):
    n, B, rank = ("16", "4", "2") if args.quick else ("256", "32", "8")
    with tempfile.TemporaryDirectory() as folder:
        data = args.data or C.synthetic_corpus(folder)
        fmt = "mikolov" if args.data else "raw"
        return driver(args, "ptb", ["--data", data, "--format", fmt, "--algo", "ok", "--rank",
                                    rank, "--hidden", n, "--batch", B, "--eval-every", "0",
                                    "--eval-streams", "64"], limit)


STEPS = {"machine": step_machine, "tests": step_tests, "check": step_check, "steps": step_steps,
         "copy": step_copy, "ptb": step_ptb}


def markdown(doc):
    """The summary as a Markdown report."""
    device = f", device {doc['device']}" if doc["device"] else ""
    out = [f"# gpu_check: backend {doc['backend']}{device}" + (" (quick)" if doc["quick"] else ""),
           "", f"`{' '.join(doc['command'])}`", "", "| step | status | seconds | result |",
           "| --- | --- | ---: | --- |"]
    for name, r in doc["steps"].items():
        if name == "machine":
            m = r.get("machine", {})
            what = ", ".join(f"{k} {m[k]}" for k in ("gpu", "gpu_memory_bytes", "cuda_runtime",
                                                      "cuda_driver", "cupy", "torch", "numpy")
                             if k in m)
        elif name == "tests":
            what = r.get("summary", "") + (f"; {len(r['failures'])} failures" if r.get("failures")
                                           else "")
        elif name == "check":
            what = "; ".join(f"{k}: {v['status']}" for k, v in r.items() if k.startswith("depth"))
        elif name == "steps":
            what = f"{len(r.get('rows', []))} rows (below)"
        else:
            rate = r.get("steps_per_second")
            what = (f"{rate:.1f} steps/s, {r.get('steps')} steps" if rate else "no rate")
            if r.get("days_for_1M_steps"):
                what += f", 1M steps in {r['days_for_1M_steps'] * 24:.1f} h"
            if r.get("T") is not None:
                what += f", T_ {r['T']}"
        out.append(f"| {name} | {r.get('status')} | {r.get('seconds', 0):.1f} | {what} |")
    rows = doc["steps"].get("steps", {}).get("rows", [])
    if rows:
        out += ["", "| shape | run | n | B | dtype | ms per step |",
                "| --- | --- | ---: | ---: | --- | ---: |"]
        out += [f"| {r['shape']} | {r['label']} | {r['n']} | {r['batch']} | {r['dtype']} | "
                f"{r['ms']:.3f} |" if r["ms"] is not None else
                f"| {r['shape']} | {r['label']} | {r['n']} | {r['batch']} | {r['dtype']} | "
                f"{r['status']} |" for r in rows]
    return "\n".join(out) + "\n"


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    steps = [name for name in STEPS if not args.only or name in args.only]
    files = [name for step in steps for name in FILES[step]]
    C.checked_output("--out", args.out, directory=True, replace=args.force,
                     files=["summary.json", "summary.md", *files])
    if "tests" in steps:
        try:
            import pytest  # noqa: F401  (the tests step runs it in a child process)
        except ImportError:
            C.fail("the tests step needs pytest: pip install -e '.[test]' (or leave the step "
                   "out: --only machine check steps copy ptb)")
    if args.data is not None and (not args.only or "ptb" in args.only):
        from minirtrl.drivers.corpus import CorpusError, split_files

        try:
            split_files(args.data, "mikolov")  # the ptb step reads it in that format
        except CorpusError as exc:
            p.error(f"--data: {exc}")
    os.makedirs(args.out, exist_ok=True)
    if args.quick:
        args.seconds = min(args.seconds, 3.0)
    limits = QUICK_LIMITS if args.quick else LIMITS
    summary = Summary(args.out, args)
    print(f"# bench/gpu_check.py on {platform.node()}: backend {args.backend}, out {args.out}",
          flush=True)
    for name in steps:
        fn = STEPS[name]
        start = time.perf_counter()
        try:
            result = fn(args, limits[name])
        except Exception as exc:
            result = {"status": f"error: {type(exc).__name__}: {exc}",
                      "seconds": time.perf_counter() - start}
        summary.record(name, result)
    failed = [k for k, v in summary.doc["steps"].items() if v.get("status") != "ok"]
    print(f"# done: {len(summary.doc['steps'])} steps, {len(failed)} not ok "
          f"{failed if failed else ''}", flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
