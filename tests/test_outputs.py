"""Nothing lost by the commands that are not training runs (issue 19: cases 5, 9, 10, 12).

Every output of ``noise``, ``plot`` and the bench scripts refuses to replace an existing file
unless ``--force``, and never replaces its own input; ``noise | head`` still writes its JSON;
a malformed log given to ``plot`` (or to a bench summary) is one line naming the file and
the line, exit status 2; ``plot`` refuses a FIFO or a device instead of blocking on it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import one_error_line

from minirtrl.drivers import noise, plot

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
EXISTS = "exists; remove it, choose another path or pass --force to replace it"
TINY_NOISE = ["--algo", "kf", "--hidden", "3", "--at", "2", "--sizes", "--samples", "2"]


def run_module(module, *argv, timeout=60):
    return subprocess.run([sys.executable, "-m", module, *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def run_bench(script, *argv, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)


def only_line(done):
    """The one stderr line of a finished subprocess (asserting it is one, no traceback)."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def noise_records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# ---- case 9: no output replaces a file it did not write, nor its own input -------------------
def test_noise_refuses_to_replace_an_existing_file_and_replaces_it_with_force(tmp_path, capsys):
    target = tmp_path / "existing.txt"
    target.write_text("a week of notes\n")
    assert noise.main([*TINY_NOISE, "--json", str(target)]) == 2
    line = one_error_line(capsys, "--json", str(target), EXISTS)
    assert line.startswith("minirtrl.noise: error:")
    assert target.read_text() == "a week of notes\n"  # nothing lost
    assert noise.main([*TINY_NOISE, "--json", str(target), "--force"]) == 0
    records = noise_records(target)
    assert records[0]["kind"] == "header" and records[-1]["stopped"] == "done"


def test_noise_refuses_one_file_for_both_outputs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "n.png"
    assert noise.main([*TINY_NOISE, "--json", str(out), "--plot", str(out)]) == 2
    one_error_line(capsys, "--plot", "is also the --json file")
    assert not out.exists()


def test_plot_never_replaces_its_input_even_with_force(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    log = tmp_path / "X.svg"  # a noise log, named like a picture
    assert noise.main([*TINY_NOISE, "--json", str(log)]) == 0
    before = log.read_bytes()
    for extra in ([], ["--force"]):
        assert plot.main([str(log), "--out", str(log), *extra]) == 2
        one_error_line(capsys, "--out", str(log), "is also an input of this command")
        assert log.read_bytes() == before
    link = tmp_path / "link.svg"  # the same file under another name
    link.symlink_to(log)
    assert plot.main([str(log), "--out", str(link), "--force"]) == 2
    one_error_line(capsys, "is also an input")
    assert log.read_bytes() == before


def test_plot_refuses_an_existing_picture_unless_force(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    log, out = tmp_path / "n.json", tmp_path / "n.png"
    assert noise.main([*TINY_NOISE, "--json", str(log)]) == 0
    out.write_bytes(b"someone's picture")
    assert plot.main([str(log), "--out", str(out)]) == 2
    one_error_line(capsys, "--out", str(out), EXISTS)
    assert out.read_bytes() == b"someone's picture"
    assert plot.main([str(log), "--out", str(out), "--force"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary


#: (script, its output flag, the command line before that flag); every bench script that
#: writes a file refuses an existing one before any work
BENCH_OUTPUTS = [
    ("step_time.py", "--json", []),
    ("compare_torch.py", "--json", []),
    ("compare_vanilla_rtrl.py", "--json", ["--peer", "/nonexistent"]),
    ("driver_vs_step.py", "--json", []),
    ("torch_threads.py", "--json", []),
    ("scaling.py", "--json-out", ["{rows}"]),
    ("scaling.py", "--plot", ["{rows}"]),
]


@pytest.mark.parametrize("script, flag, argv", BENCH_OUTPUTS,
                         ids=[f"{s[:-3]} {f}" for s, f, _ in BENCH_OUTPUTS])
def test_bench_scripts_refuse_an_existing_output_file(script, flag, argv, tmp_path):
    if script == "compare_torch.py":  # it needs torch before it looks at its flags
        pytest.importorskip("torch")
    rows = tmp_path / "rows.json"
    rows.write_text('{"rows": []}')
    target = tmp_path / ("kept.png" if flag == "--plot" else "kept.json")
    target.write_text("kept")
    argv = [a.replace("{rows}", str(rows)) for a in argv]
    done = run_bench(script, *argv, flag, target)
    line = only_line(done)
    assert done.returncode == 2
    assert line.startswith(f"{script}: error: {flag} {target}: {EXISTS}"), line
    assert target.read_text() == "kept"


def test_bench_scaling_never_writes_over_its_input(tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text('{"rows": []}')
    done = run_bench("scaling.py", rows, "--json-out", rows, "--force")
    assert done.returncode == 2 and "is also an input of this command" in only_line(done)
    assert rows.read_text() == '{"rows": []}'


def test_bench_force_replaces_an_existing_output(tmp_path):
    out = tmp_path / "rows.json"
    out.write_text("old")
    done = run_bench("step_time.py", "--algo", "kf", "--sizes", 3, "--batch", 1, "--depth", 1,
                     "--dtype", "float64", "--n-in", 2, "--n-out", 2, "--repeats", 1,
                     "--min-seconds", 0, "--warmup", 0, "--warmup-seconds", 0, "--json", out,
                     "--force")
    assert done.returncode == 0, done.stderr
    assert [r["label"] for r in json.loads(out.read_text())["rows"]] == ["kf"]


@pytest.mark.parametrize("script, argv", [
    ("copy_curriculum.py", []),
    ("ptb_compare.py", ["--data", "/nonexistent"]),
    ("gpu_check.py", ["--only", "machine"]),
])
def test_bench_output_folders_refuse_an_existing_summary(script, argv, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("kept")
    done = run_bench(script, *argv, "--out", out)
    assert done.returncode == 2
    assert f"--out {out / 'summary.json'}: {EXISTS}" in only_line(done)
    assert (out / "summary.json").read_text() == "kept"
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


# ---- case 5: a closed stdout does not lose the JSON ---------------------------------------------
def test_noise_piped_into_head_still_writes_its_whole_json(tmp_path):
    out = tmp_path / "noise.json"
    argv = ["--algo", "kf", "uoro", "--hidden", "8", "--at", "5", "200", "--sizes", "4", "6",
            "--size-at", "20", "--samples", "20", "--json", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "minirtrl.noise", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    first = proc.stdout.readline()  # | head -1
    proc.stdout.close()
    status, err = proc.wait(timeout=120), proc.stderr.read()
    proc.stderr.close()
    assert first.startswith("# over time")
    assert status == 0, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "minirtrl.noise: stdout is closed (Broken pipe); going on without it (outputs are "
        "still written)"]
    records = noise_records(out)
    rows = [r for r in records if r["kind"] == "noise"]
    assert records[-1]["stopped"] == "done"
    assert [(r["algo"], r["table"], r["t"], r["n"]) for r in rows] == [
        ("kf", "over_time", 5, 8), ("kf", "over_time", 200, 8),
        ("uoro", "over_time", 5, 8), ("uoro", "over_time", 200, 8),
        ("kf", "over_n", 20, 4), ("kf", "over_n", 20, 6),
        ("uoro", "over_n", 20, 4), ("uoro", "over_n", 20, 6)]


# ---- case 10: malformed logs are one line naming the file and the line -----------------------
HEADER = {"kind": "header", "command": "minirtrl.copy", "config": {"algo": "kf", "hidden": 4,
                                                                  "lr": 0.01}}
PROGRESS = {"kind": "progress", "step": 5, "data": 10, "seconds": 0.5, "T": 2, "bits": 0.3}
NOISE_HEADER = {"kind": "header", "command": "minirtrl.noise", "config": {"samples": 2}}
NOISE_ROW = {"kind": "noise", "table": "over_time", "algo": "kf", "t": 2, "n": 3,
             "influence": [0.5, 0.1], "gradient": [0.4, 0.1]}


def write_log(path, *records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    return path


#: (what is wrong, the records, the line named, words of the message)
MALFORMED = [
    ("progress without data", [HEADER, {k: v for k, v in PROGRESS.items() if k != "data"}],
     2, "without 'data'"),
    ("T a string", [HEADER, PROGRESS, {**PROGRESS, "T": "2"}], 3, "'T' is not a number"),
    ("seconds a string", [HEADER, {**PROGRESS, "seconds": "x"}], 2, "'seconds' is not a"),
    ("seconds too large for a float", [HEADER, '{"kind": "final", "step": 5, "data": 10, '
                                               '"T": 2, "seconds": 1' + "0" * 400 + "}"],
     2, "'seconds' is not a number"),
    ("a record that is a list", [HEADER, [1, 2]], 2, "not a JSON object"),
    ("config a list", [{**HEADER, "config": [1]}], 1, "config is not a JSON object"),
    ("lr a string", [{**HEADER, "config": {"lr": "fast"}}], 1, "lr is not a number"),
    ("noise row without table", [NOISE_HEADER, {k: v for k, v in NOISE_ROW.items()
                                                if k != "table"}], 2, "without 'table'"),
    ("noise error not a pair", [NOISE_HEADER, NOISE_ROW, {**NOISE_ROW, "gradient": [1]}], 3,
     "'gradient' is not a pair of numbers"),
    ("noise t a bool", [NOISE_HEADER, {**NOISE_ROW, "t": True}], 2, "'t' is not a number"),
]


def test_the_well_formed_versions_of_the_malformed_logs_draw(tmp_path):
    pytest.importorskip("matplotlib")
    copy_log = write_log(tmp_path / "copy.jsonl", HEADER, PROGRESS, {**PROGRESS, "T": None})
    noise_log = write_log(tmp_path / "noise.json", NOISE_HEADER, NOISE_ROW)
    assert plot.main([str(copy_log), str(noise_log), "--out", str(tmp_path / "ok.png")]) == 0


@pytest.mark.parametrize("what, records, line, needle", MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_a_malformed_log_is_one_line_naming_its_line(what, records, line, needle, tmp_path,
                                                     capsys):
    pytest.importorskip("matplotlib")
    log = write_log(tmp_path / "bad.jsonl", *records)
    out = tmp_path / "x.png"
    assert plot.main([str(log), "--out", str(out)]) == 2
    one_error_line(capsys, f"minirtrl.plot: error: {log} line {line}: ", needle)
    assert not out.exists()


def test_an_unhashable_command_is_one_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # --out is checked first
    log = write_log(tmp_path / "bad.jsonl", {**HEADER, "command": ["minirtrl.copy"]})
    assert plot.main([str(log), "--out", str(tmp_path / "x.png")]) == 2
    one_error_line(capsys, str(log), "does not draw")


def test_a_line_longer_than_any_log_line_is_refused_without_reading_it_whole(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    log = write_log(tmp_path / "big.jsonl", HEADER, "x" * (plot.MAX_LINE + 10), PROGRESS)
    assert plot.main([str(log), "--out", str(tmp_path / "x.png")]) == 2
    one_error_line(capsys, f"{log} line 2: longer than {plot.MAX_LINE} characters")


def ptb_log_records(**config):
    header = {"kind": "header", "command": "minirtrl.ptb",
              "config": {"algo": "kf", "hidden": 4, "batch": 2, "eval_every": 2, **config}}
    final = {"kind": "final", "step": 4, "data": 8, "seconds": 1.0, "valid_bpc": 3.0,
             "test_bpc": 3.1, "train_bpc": 3.2}
    return header, final


@pytest.mark.parametrize("name, records, needle", [
    ("copy.jsonl", [HEADER, PROGRESS], "a log of minirtrl.copy, not of minirtrl.ptb"),
    ("notes.jsonl", ["my notes", "more"], "line 1: not JSON"),
    ("damaged.jsonl", [{**ptb_log_records()[0], "config": {"hidden": 4}}, ptb_log_records()[1]],
     "a damaged minirtrl.ptb log (a record without 'algo')"),
])
def test_ptb_compare_summarize_refuses_a_foreign_log_in_one_line(name, records, needle,
                                                                 tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_log(out / "kf.jsonl", *ptb_log_records())
    assert run_bench("ptb_compare.py", "--summarize", "--out", out).returncode == 0  # the base
    (out / "summary.json").unlink()
    (out / "ptb.png").unlink(missing_ok=True)
    write_log(out / name, *records)
    done = run_bench("ptb_compare.py", "--summarize", "--out", out)
    assert done.returncode == 2
    line = only_line(done)
    assert line.startswith(f"ptb_compare.py: error: {out / name}") and needle in line, line
    assert not (out / "summary.json").exists()


def test_copy_curriculum_summarize_refuses_a_foreign_log_in_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_log(out / "kf.jsonl", *ptb_log_records())
    done = run_bench("copy_curriculum.py", "--summarize", "--out", out)
    assert done.returncode == 2
    assert f"{out / 'kf.jsonl'}: a log of minirtrl.ptb, not of minirtrl.copy" in only_line(done)


# ---- case 12: plot refuses what is not a regular file, at once ---------------------------------
@pytest.mark.parametrize("kind", ["FIFO", "device", "directory"])
def test_plot_refuses_a_fifo_a_device_or_a_directory_without_blocking(kind, tmp_path):
    pytest.importorskip("matplotlib")
    path = {"FIFO": tmp_path / "log.fifo", "device": Path("/dev/zero"),
            "directory": tmp_path}[kind]
    if kind == "FIFO":
        os.mkfifo(path)
    out = tmp_path / "x.png"
    done = run_module("minirtrl.plot", path, "--out", out, timeout=60)  # hung: TimeoutExpired
    assert done.returncode == 2
    article = "a directory" if kind == "directory" else f"a {kind}"
    assert only_line(done) == f"minirtrl.plot: error: {path}: is {article}, not a log file"
    assert not out.exists()
