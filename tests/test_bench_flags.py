"""Every bench script refuses a bad flag before any work: one line on stderr that names the
flag, exit status 2, no traceback (bench/_common.py: ``parser``, the flag types)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/minirtrl-bench-flags"  # a folder that does not exist

#: (script, the flag the error must name, the command line); {out}: a folder under tmp_path
CASES = [
    ("step_time.py", "--backend", ["--backend", "bogus"]),
    ("step_time.py", "--dtype", ["--dtype", "float32,float16"]),
    ("step_time.py", "--sizes", ["--sizes", "32", "0"]),
    ("step_time.py", "--min-seconds", ["--min-seconds", "nan"]),
    ("step_time.py", "--algo", ["--algo", "kf-avg", "--ranks", "1"]),  # checked after parsing
    ("compare_torch.py", "--dtype", ["--dtype", "float16"]),
    ("compare_torch.py", "--batch", ["--batch", "1,-2"]),
    ("compare_torch.py", "--truncation", ["--truncation", "0"]),
    ("copy_curriculum.py", "--backend", ["--backend", "bogus", "--out", "{out}"]),
    ("copy_curriculum.py", "--dtype", ["--dtype", "float16", "--out", "{out}"]),
    ("copy_curriculum.py", "--runs", ["--runs", "kf,nope", "--out", "{out}"]),
    ("copy_curriculum.py", "--seconds", ["--seconds", "nan", "--out", "{out}"]),
    ("copy_curriculum.py", "--runs", ["--runs", "kf-avg", "--rank", "1", "--out", "{out}"]),
    ("ptb_compare.py", "--lr", ["--data", MISSING, "--lr", "-1", "--out", "{out}"]),
    ("ptb_compare.py", "--steps", ["--data", MISSING, "--steps", "-3", "--out", "{out}"]),
    ("ptb_compare.py", "--runs", ["--data", MISSING, "--runs", "ok:x", "--out", "{out}"]),
    ("ptb_compare.py", "--data", ["--data", MISSING, "--out", "{out}"]),  # after parsing
    ("corpus_memory.py", "--chars", ["--chars", "1"]),
    ("corpus_memory.py", "--dir", ["--dir", MISSING]),  # after parsing
    ("compare_vanilla_rtrl.py", "--peer", ["--peer", MISSING]),  # after parsing
    ("compare_vanilla_rtrl.py", "--alpha", ["--peer", MISSING, "--alpha", "1.5"]),
    ("compare_vanilla_rtrl.py", "--sizes", ["--peer", MISSING, "--sizes", "32", "0"]),
    ("compare_vanilla_rtrl.py", "--min-seconds", ["--peer", MISSING, "--min-seconds", "inf"]),
    ("driver_vs_step.py", "--dtype", ["--dtype", "float16"]),
    ("driver_vs_step.py", "--algo", ["--algo", "kf", "bogus"]),
    ("driver_vs_step.py", "--seconds", ["--seconds", "0"]),
    ("torch_threads.py", "--threads", ["--threads", "default", "0"]),
    ("torch_threads.py", "--algo", ["--algo", "nope"]),
    ("torch_threads.py", "--busy", ["--busy", "-1"]),
    ("scaling.py", "--batch", ["rows.json", "--batch", "0"]),
    ("scaling.py", "--dtype", ["rows.json", "--dtype", "float16"]),
    ("gpu_check.py", "--backend", ["--backend", "array_api_strict", "--out", "{out}"]),
    ("gpu_check.py", "--seconds", ["--seconds", "nan", "--out", "{out}"]),
    ("gpu_check.py", "--data", ["--data", MISSING, "--out", "{out}"]),  # after parsing
    ("alignment.py", "--runs", ["--runs", "kf,nope", "--out", "{out}"]),
    ("alignment.py", "--runs", ["--cell", "rhn", "--out", "{out}"]),  # rflo: vanilla only
    ("alignment.py", "--every", ["--every", "0", "--out", "{out}"]),
    ("alignment.py", "--alpha", ["--alpha", "1.5", "--out", "{out}"]),
]


def case_id(script, argv):
    text = f"{script[:-3]} {' '.join(argv)}"
    return text.replace("{out}", "OUT").replace(MISSING, "MISSING")


@pytest.mark.parametrize("script, flag, argv", CASES, ids=[case_id(s, a) for s, _, a in CASES])
def test_a_bad_flag_is_one_line_naming_it_and_exit_status_2(script, flag, argv, tmp_path):
    if script == "compare_torch.py":
        pytest.importorskip("torch")
    out = tmp_path / "out"
    argv = [a.replace("{out}", str(out)) for a in argv]
    done = subprocess.run([sys.executable, f"bench/{script}", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), done.stderr
    assert flag in lines[0] and "error" in lines[0], lines[0]
    assert not out.exists()  # refused before any work: no output folder made


def test_listed_values_take_commas_and_words_alike():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_step_time_flags",
                                                      ROOT / "bench" / "step_time.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    args = module.parse_args(["--sizes", "8,16", "32", "--dtype", "float64", "--algo", "kf,ok:2"])
    assert args.sizes == [8, 16, 32] and args.dtype == ["float64"]
    assert [a.label for a in args.algos] == ["kf", "ok-2"]
    defaults = module.parse_args([])  # the defaults, given as text, mean what they meant
    assert defaults.sizes == [32, 64, 128, 256] and defaults.batch == [1, 16]
    assert defaults.dtype == ["float32", "float64"] and defaults.depth == [1, 2]
