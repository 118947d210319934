"""The reproduction scripts in bench/ run end to end at tiny sizes, and their summaries
describe the runs from the runs' own logs (never from the script's defaults)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(script, *argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *map(str, argv)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    return out.stdout


def tiny_corpus(folder):
    folder.mkdir()
    text = "the cat sat on the mat and the dog ate the hat\n" * 40
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


def test_ptb_compare_runs_times_the_paper_scale_and_summarizes_from_its_logs(tmp_path):
    data, out = tiny_corpus(tmp_path / "data"), tmp_path / "out"
    bench("ptb_compare.py", "--data", data, "--format", "raw", "--runs", "bptt:5,kf",
          "--seconds", 1.5, "--calibrate", 0.3, "--hidden", 6, "--batch", 3,
          "--eval-streams", 2, "--points", 2, "--paper-steps", 1, "--out", out)
    first = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in first["runs"]] == ["bptt-5", "kf"]
    for run in first["runs"]:
        assert run["status"] == 0 and (run["hidden"], run["batch"]) == (6, 3)
        assert math.isfinite(run["valid_bpc"]) and math.isfinite(run["test_bpc"])
        assert run["steps"] > 0 and run["data"] == run["steps"] * 3 * (run["truncation"] or 1)
    assert first["paper_scale"]["seconds_per_step"] > 0
    printed = bench("ptb_compare.py", "--summarize", "--force", "--out", out, "--hidden", 99)
    again = json.loads((out / "summary.json").read_text())
    keys = ("label", "hidden", "batch", "steps", "data", "valid_bpc", "test_bpc", "curve")
    assert [[r[k] for k in keys] for r in again["runs"]] == \
        [[json.loads(json.dumps(r[k])) for k in keys] for r in first["runs"]]
    assert "| kf | 6, 3 |" in printed


def test_copy_curriculum_summary_takes_each_runs_settings_from_its_log(tmp_path):
    out = tmp_path / "out"
    bench("copy_curriculum.py", "--data", 400, "--hidden", 6, "--batch", 4, "--runs", "kf,bptt:5",
          "--points", 2, "--out", out)
    bench("copy_curriculum.py", "--summarize", "--force", "--out", out)  # default n is 32
    runs = {r["label"]: r for r in json.loads((out / "summary.json").read_text())["runs"]}
    assert set(runs) == {"kf", "bptt-5"}
    for _label, run in runs.items():
        assert run["settings"]["hidden"] == 6 and run["settings"]["batch"] == 4
        assert run["data"] == 400 // (4 * (run["settings"]["truncation"] or 1)) * 4 * \
            (run["settings"]["truncation"] or 1)
    assert runs["bptt-5"]["settings"]["truncation"] == 5 and runs["kf"]["settings"]["algo"] == "kf"


def test_copy_curriculum_reruns_into_its_folder_only_with_force(tmp_path):
    out = tmp_path / "out"
    argv = ["--hidden", 4, "--batch", 2, "--runs", "kf", "--points", 2, "--out", out]
    bench("copy_curriculum.py", "--data", 40, *argv)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    again = subprocess.run([sys.executable, str(ROOT / "bench" / "copy_curriculum.py"),
                            "--data", "80", *map(str, argv)], capture_output=True, text=True,
                           timeout=300, env=env)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines() == [
        f"copy_curriculum.py: error: --out {out / 'kf.jsonl'}: exists; remove it, choose "
        "another path or pass --force to replace it"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing lost
    bench("copy_curriculum.py", "--data", 80, *argv, "--force")
    runs = json.loads((out / "summary.json").read_text())["runs"]
    assert [(r["label"], r["data"]) for r in runs] == [("kf", 80)]  # the new run's, not 40
    final = json.loads((out / "kf.jsonl").read_text().splitlines()[-1])
    assert final["kind"] == "final" and final["data"] == 80


def test_alignment_table_comes_from_the_runs_align_records(tmp_path):
    """Every-step bptt with a window longer than the run is exact RTRL while the parameters
    barely move (learning rate 1e-12; at the default rate the two differ by the drift, since
    RTRL carries its influence across updates): cosine 1, error 0. kf is not."""
    out = tmp_path / "al"
    stdout = bench("alignment.py", "--runs", "kf,bptt:50", "--steps", 40, "--every", 20,
                   "--hidden", 4, "--batch", 2, "--lr", 1e-12, "--out", out)
    summary = json.loads((out / "summary.json").read_text())
    runs = {r["label"]: r for r in summary["runs"]}
    assert set(runs) == {"kf", "bptt-50"}
    assert abs(runs["bptt-50"]["cos"] - 1) < 1e-9 and runs["bptt-50"]["rel"] < 1e-9
    assert runs["kf"]["rel"] > 1e-3 and -1 <= runs["kf"]["cos"] <= 1
    text = (out / "alignment.md").read_text()
    assert "| kf |" in text and "| bptt-50 |" in text
    assert "Command: `python bench/alignment.py" in text and "| kf |" in stdout


def test_step_time_times_every_cell_and_the_new_methods(tmp_path):
    """Every cell runs snap1, every-step TBPTT and the estimators; rflo only on the vanilla
    cell (a skipped row elsewhere); the every-step floor is K times bptt's products."""
    for cell in ("vanilla", "gru", "lstm"):
        out = tmp_path / f"{cell}.json"
        bench("step_time.py", "--cell", cell, "--algo", "every:3", "bptt:3", "snap1", "rflo",
              "kf", "--sizes", 4, "--batch", 2, "--dtype", "float64", "--min-seconds", 0.01,
              "--warmup-seconds", 0, "--repeats", 2, "--json", out)
        rows = {r["label"]: r for r in json.loads(out.read_text())["rows"]}
        assert set(rows) == {"every-3", "bptt-3", "snap1", "rflo", "kf"}
        for label, row in rows.items():
            if label == "rflo" and cell != "vanilla":
                assert row["status"].startswith("skipped (rflo is defined for --cell vanilla")
                continue
            assert row["status"] == "ok", (cell, label, row["status"])
            assert row["step"]["median"] > 0 and row["floor"]["median"] > 0
        assert rows["every-3"]["floor_ops"] == "K x bptt's: " + rows["bptt-3"]["floor_ops"]
        n_state = 8 if cell == "lstm" else 4
        assert f"H(2,{n_state},{n_state})" in rows["kf"]["floor_ops"]
