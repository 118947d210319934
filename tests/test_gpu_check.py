"""The GPU check's rehearsal on the CPU: every step runs and is recorded (bench/gpu_check.py)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cpu_rehearsal_runs_and_records_every_step(tmp_path):
    out = tmp_path / "gpu"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--backend",
                           "numpy", "--quick", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    assert list(steps) == ["machine", "tests", "check", "steps", "copy", "ptb"]
    assert all(step["status"] == "ok" for step in steps.values()), steps
    assert "cpu" in steps["machine"]["machine"]
    assert "passed" in steps["tests"]["summary"] and steps["tests"]["failures"] == []
    assert {r["shape"] for r in steps["steps"]["rows"]} == {"copy", "ptb", "rtrl"}
    assert all(r["ms"] > 0 for r in steps["steps"]["rows"])
    assert steps["copy"]["steps_per_second"] > 0 and steps["copy"]["T"] >= 1
    assert steps["ptb"]["days_for_1M_steps"] > 0
    assert "| tests | ok |" in (out / "summary.md").read_text()
    print(f"rehearsal: {seconds:.1f} s")  # measured, not asserted: timings belong to bench/


def test_a_failing_step_is_recorded_and_the_next_one_runs(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--backend",
                           "numpy", "--device", "cuda", "--quick", "--out", str(out), "--only",
                           "machine", "check"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1  # numpy has no device 'cuda': both steps fail, both recorded
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert list(steps) == ["machine", "check"]
    assert all(step["status"] != "ok" for step in steps.values())


def test_without_pytest_one_line_says_what_to_install(tmp_path):
    fake = tmp_path / "site"  # a pytest that cannot be imported, ahead of the real one
    (fake / "pytest").mkdir(parents=True)
    (fake / "pytest" / "__init__.py").write_text("raise ImportError('not installed')\n")
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{ROOT}"}
    argv = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--backend", "numpy",
            "--quick", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "gpu_check.py: error: the tests step needs pytest: pip install -e '.[test]' (or leave "
        "the step out: --only machine check steps copy ptb)"]
    assert not out.exists()  # refused before any work
    done = subprocess.run([*argv, "--only", "machine"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr  # without the tests step pytest is not needed
    assert list(json.loads((out / "summary.json").read_text())["steps"]) == ["machine"]


def test_a_rerun_replaces_its_files_only_with_force(tmp_path):
    out = tmp_path / "gpu"
    argv = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--backend", "numpy",
            "--quick", "--out", str(out), "--only", "machine", "copy"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    before = (out / "copy.jsonl").read_bytes()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines() == [
        f"gpu_check.py: error: --out {out / 'summary.json'}: exists; remove it, choose another "
        "path or pass --force to replace it"]
    assert (out / "copy.jsonl").read_bytes() == before
    forced = subprocess.run([*argv, "--force"], capture_output=True, text=True, timeout=120,
                            env=env)
    assert forced.returncode == 0, forced.stderr
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert steps["copy"]["status"] == "ok" and steps["copy"]["steps_per_second"] > 0
    assert (out / "copy.jsonl").read_bytes() != before  # a new run's log
