"""The ways a long training run dies, each reproduced as a user met it: the run ends with one
line and the status it promises, and no work, no checkpoint and no log record is lost.

(The numbers are those of the report these cases came from: outputs checked under their real
names, logs bound to their run, divergence named, signals and closed terminals, interrupted
evaluations, removed folders, empty paths, damaged and older checkpoints.)
"""

import json
import os
import shutil
import signal
import struct
import zipfile

import numpy as np
import pytest
from cli_helpers import one_error_line
from test_ptb_driver import write_mikolov
from test_reliability import SMALL, child, copy, load_checkpoint, read_log, resave

from minirtrl.drivers import checkpoint as ckpt
from minirtrl.drivers import ptb as ptb_cmd
from minirtrl.drivers.runfiles import Lock
from minirtrl.drivers.safety import Interrupted

ALGOS = ("bptt", "rtrl", "uoro", "kf", "ok", "kf-avg")


def ptb(*argv):
    return ptb_cmd.main([str(a) for a in argv])


def wait_for_line(proc, start):
    """Read the child's stdout until a line starting with ``start``; that line."""
    for line in proc.stdout:
        if line.startswith(start):
            return line
    raise AssertionError(f"no line starting with {start!r}; stderr: {proc.stderr.read()}")


# ---- 1. outputs checked under the names they are written under -----------------------------
@pytest.mark.parametrize("flag, length", [("--checkpoint", 245), ("--log", 300)])
def test_a_name_too_long_for_its_temporary_is_refused_before_training(flag, length, tmp_path,
                                                                      capsys):
    path = tmp_path / ("c" * length)  # fits NAME_MAX (255) or not; .NAME.tmp-XXXXXXXX never
    assert copy(*SMALL, "--steps", 10**6, flag, path) == 2
    one_error_line(capsys, flag, "cannot write in", "too long")
    assert os.listdir(tmp_path) == []


# ---- 2. a log belongs to its run -------------------------------------------------------------
def test_a_live_runs_log_cannot_be_taken_by_another_resume(tmp_path, capsys):
    la, ca, cb, lb = (tmp_path / n for n in ("a.jsonl", "a.npz", "b.npz", "b.jsonl"))
    assert copy(*SMALL, "--steps", 5, "--checkpoint", cb, "--log", lb) == 0
    run_a = child(["minirtrl.copy", *SMALL, "--steps", 10**7, "--report-every", 1,
                   "--checkpoint", ca, "--log", la], cwd=tmp_path)
    try:
        wait_for_line(run_a, "step 2/")
        assert copy(*SMALL, "--steps", 10, "--checkpoint", cb, "--log", la, "--resume") == 2
        one_error_line(capsys, f"--log {la}", "another run is using it")
        wait_for_line(run_a, "step 4/")  # A still writes to its own log
    finally:
        run_a.send_signal(signal.SIGTERM)
        run_a.communicate(timeout=30)
    assert run_a.returncode == 143
    records = read_log(la)
    assert records[0]["kind"] == "header" and records[-1]["stopped"] == "interrupted"
    assert [r["step"] for r in records if r["kind"] == "progress"][:4] == [1, 2, 3, 4]


def test_resume_refuses_the_log_of_another_run_and_leaves_it(tmp_path, capsys):
    la, ca, cb, lb = (tmp_path / n for n in ("a.jsonl", "a.npz", "b.npz", "b.jsonl"))
    for ck, log in ((ca, la), (cb, lb)):
        assert copy(*SMALL, "--steps", 5, "--report-every", 1, "--checkpoint", ck,
                    "--log", log) == 0
    before = la.read_bytes()
    assert copy(*SMALL, "--steps", 10, "--checkpoint", cb, "--log", la, "--resume") == 2
    one_error_line(capsys, f"--log {la}", "belongs to another run")
    assert la.read_bytes() == before
    assert load_checkpoint(cb)["step"] == 5  # nothing ran
    headers = [read_log(p)[0] for p in (la, lb)]
    assert headers[0]["run"] != headers[1]["run"]
    assert load_checkpoint(cb)["run"] == json.dumps(headers[1]["run"])


def test_a_log_held_by_a_live_run_is_refused_even_for_a_fresh_path_check(tmp_path, capsys):
    log = tmp_path / "a.jsonl"
    held = Lock("--log", os.path.realpath(log)).acquire()  # what a live run holds
    try:
        assert copy(*SMALL, "--steps", 3, "--log", log) == 2
        one_error_line(capsys, "--log", "another run is using it")
    finally:
        held.release()
    assert not log.exists()


# ---- 3. the last good checkpoint is good ---------------------------------------------------
def test_an_overflowing_update_is_divergence_and_never_saved(tmp_path, capsys):
    ck = tmp_path / "c.npz"
    argv = ["--hidden", 8, "--batch", 2, "--algo", "kf", "--steps", 5, "--checkpoint-every", 1,
            "--lr", "1e39", "--checkpoint", ck, "--progress-seconds", 1000]
    assert copy(*argv) == 1
    one_error_line(capsys, "diverged at step 1", "non-finite", "parameters")
    assert not ck.exists()  # step 0 was never a checkpoint; no bad state was written


def test_a_checkpoint_is_always_resumable(tmp_path, capsys):
    ck = tmp_path / "c.npz"
    assert copy(*SMALL, "--steps", 4, "--checkpoint-every", 1, "--lr", "3",
                "--checkpoint", ck) in (0, 1)
    capsys.readouterr()
    if ck.exists():  # whatever happened, what was written can be read back
        assert ckpt.problem(load_checkpoint(ck)) is None


@pytest.mark.parametrize("member, value", [("W1", np.inf), ("est/0", np.nan),
                                           ("adam/v/V", -1.0), ("s", 2.0)])
def test_a_state_that_cannot_be_resumed_is_not_a_checkpoint(member, value, tmp_path, capsys):
    good = tmp_path / "good.npz"
    assert copy(*SMALL, "--steps", 3, "--checkpoint", good) == 0
    arrays = load_checkpoint(good)
    bad = arrays[member].copy()
    bad.flat[0] = value
    assert ckpt.problem(arrays) is None
    assert ckpt.problem({**arrays, member: bad}) is not None
    resave(good, tmp_path / "bad.npz", **{member: bad})
    assert copy(*SMALL, "--steps", 6, "--checkpoint", tmp_path / "bad.npz", "--resume") == 2
    one_error_line(capsys, "cannot read checkpoint")


# ---- 4. divergence with finite numbers is named ---------------------------------------------
def test_copy_with_a_huge_learning_rate_diverges_by_name(tmp_path, capsys):
    ck, log = tmp_path / "c.npz", tmp_path / "l.jsonl"
    assert copy(*SMALL, "--steps", 200, "--lr", "1e30", "--checkpoint", ck, "--log", log,
                "--checkpoint-every", 1) == 1
    line = one_error_line(capsys, "diverged at step")
    last = read_log(log)[-1]
    assert last["stopped"] == "diverged" and f"at step {last['diverged']}:" in line
    if ck.exists():
        assert load_checkpoint(ck)["step"] == last["step"] == last["diverged"] - 1
        assert ckpt.problem(load_checkpoint(ck)) is None


@pytest.mark.parametrize("algo", ALGOS)
def test_ptb_with_a_huge_learning_rate_diverges_by_name(algo, tmp_path, capsys):
    data = write_mikolov(tmp_path / "d")
    flags = ["--truncation", 4] if algo == "bptt" else []
    rc = ptb("--data", data, "--algo", algo, *flags, "--hidden", 4, "--batch", 2, "--lr", "1e6",
             "--steps", 300, "--eval-every", 0, "--progress-seconds", 1000)
    assert rc == 1
    line = one_error_line(capsys, "diverged at step")
    assert "bits per character, over 100" in line or "non-finite" in line


# ---- 5. SIGHUP and a closed stdout -------------------------------------------------------------
def test_sighup_saves_like_sigterm(tmp_path):
    ck, log = tmp_path / "c.npz", tmp_path / "l.jsonl"
    proc = child(["minirtrl.copy", *SMALL, "--steps", 10**7, "--report-every", 1,
                  "--checkpoint", ck, "--log", log], cwd=tmp_path)
    wait_for_line(proc, "step 3/")
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 129
    assert err.strip().splitlines() == ["minirtrl.copy: interrupted (SIGHUP)"]
    last = read_log(log)[-1]
    assert last["stopped"] == "interrupted" and last["signal"] == "SIGHUP"
    assert load_checkpoint(ck)["step"] == last["step"] >= 3


def test_a_closed_stdout_loses_no_work(tmp_path):
    ck, log = tmp_path / "c.npz", tmp_path / "l.jsonl"
    proc = child(["minirtrl.copy", *SMALL, "--steps", 300, "--report-every", 1,
                  "--checkpoint", ck, "--log", log], cwd=tmp_path)
    for _ in range(3):  # `| head -3`
        proc.stdout.readline()
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(60) == 0
    assert err.strip().splitlines() == [
        "minirtrl.copy: stdout is closed (Broken pipe); going on without it (outputs are "
        "still written)"]
    assert load_checkpoint(ck)["step"] == 300
    assert read_log(log)[-1]["stopped"] == "steps"


# ---- 6. an interrupted evaluation is redone ---------------------------------------------------
def test_an_evaluation_cut_by_a_signal_is_redone_on_resume(tmp_path, capsys, monkeypatch):
    data = write_mikolov(tmp_path / "d")
    common = ["--data", data, "--hidden", 4, "--batch", 2, "--steps", 6, "--eval-every", 3,
              "--algo", "kf", "--progress-seconds", 1000]
    straight = tmp_path / "straight.jsonl"
    assert ptb(*common, "--log", straight) == 0
    ck, log = tmp_path / "c.npz", tmp_path / "l.jsonl"
    real, calls = ptb_cmd.evaluate, []

    def cut_first(*args, **kwargs):  # SIGTERM during the first validation pass
        calls.append(1)
        if len(calls) == 1:
            raise Interrupted(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(ptb_cmd, "evaluate", cut_first)
    assert ptb(*common, "--checkpoint", ck, "--log", log) == 143
    assert load_checkpoint(ck)["step"] == 2  # the step of the evaluation is undone
    monkeypatch.setattr(ptb_cmd, "evaluate", real)
    assert ptb(*common, "--checkpoint", ck, "--log", log, "--resume") == 0
    capsys.readouterr()

    def evals(path):
        return [(r["step"], r["valid_bpc"]) for r in read_log(path) if r["kind"] == "eval"]

    assert evals(log) == evals(straight) and [s for s, _ in evals(log)] == [3, 6]
    ends = [read_log(path)[-1] for path in (log, straight)]
    assert [(e["valid_bpc"], e["test_bpc"]) for e in ends] == [(ends[1]["valid_bpc"],
                                                                 ends[1]["test_bpc"])] * 2


# ---- 7. a removed log folder ------------------------------------------------------------------
def test_a_removed_log_folder_is_reported_and_the_checkpoint_kept(tmp_path):
    folder, ck = tmp_path / "logs", tmp_path / "c.npz"
    folder.mkdir()
    proc = child(["minirtrl.copy", *SMALL, "--steps", 10**7, "--report-every", 1,
                  "--checkpoint", ck, "--log", folder / "l.jsonl"], cwd=tmp_path)
    wait_for_line(proc, "step 2/")
    shutil.rmtree(folder)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    [line] = err.strip().splitlines()
    assert line.startswith(f"minirtrl.copy: error: --log {folder / 'l.jsonl'}: cannot write "
                           "(removed during the run, or its folder)")
    assert "checkpoint of step" in line
    assert load_checkpoint(ck)["step"] >= 2


def test_a_log_replaced_under_a_run_is_reported(tmp_path, capsys, monkeypatch):
    from minirtrl.drivers import report

    log, ck = tmp_path / "l.jsonl", tmp_path / "c.npz"
    real, count = report.Reporter.progress, []

    def replace_at_step_2(self, step, *args, **kwargs):
        count.append(step)
        if step == 2:
            os.replace(log, tmp_path / "moved.jsonl")
            log.write_text("")
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(report.Reporter, "progress", replace_at_step_2)
    assert copy(*SMALL, "--steps", 10, "--report-every", 1, "--log", log,
                "--checkpoint", ck) == 1
    one_error_line(capsys, "--log", "replaced by another file during the run")
    assert load_checkpoint(ck)["step"] == 3  # the first record that could not be written


# ---- 8. empty paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--log", "--checkpoint"])
def test_an_empty_path_is_refused(flag, tmp_path, capsys):
    assert copy(*SMALL, "--steps", 3, flag, "") == 2
    one_error_line(capsys, f"{flag}: an empty path")


# ---- 10. one line where a traceback was --------------------------------------------------------
def test_a_checkpoint_with_an_unknown_compression_is_refused(tmp_path, capsys):
    ck = tmp_path / "c.npz"
    assert copy(*SMALL, "--steps", 3, "--checkpoint", ck) == 0
    raw = bytearray(ck.read_bytes())
    with zipfile.ZipFile(ck) as archive:
        offset = archive.getinfo("W1.npy").header_offset
    struct.pack_into("<H", raw, offset + 8, 99)  # the local header's compression method
    central = raw.index(b"PK\x01\x02")  # ... and the central directory's
    while raw[central + 46:central + 52] != b"W1.npy":
        central = raw.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<H", raw, central + 10, 99)
    ck.write_bytes(bytes(raw))
    before = ck.read_bytes()
    assert copy(*SMALL, "--steps", 6, "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "cannot read checkpoint", "compression")
    assert ck.read_bytes() == before


@pytest.mark.parametrize("step", ['"7"', "null", "-1", "1.5"])
def test_a_resumed_log_with_a_bad_step_is_refused(step, tmp_path, capsys):
    ck, log = tmp_path / "c.npz", tmp_path / "l.jsonl"
    assert copy(*SMALL, "--steps", 4, "--report-every", 1, "--checkpoint", ck,
                "--log", log) == 0
    lines = log.read_text().splitlines()
    record = json.loads(lines[2])
    lines[2] = json.dumps(record).replace(f'"step": {record["step"]}', f'"step": {step}')
    log.write_text("\n".join(lines) + "\n")
    before = log.read_bytes()
    assert copy(*SMALL, "--steps", 8, "--checkpoint", ck, "--log", log, "--resume") == 2
    one_error_line(capsys, f"--log {log}: line 3: 'step' is", "not an integer >= 0")
    assert log.read_bytes() == before


# ---- 13. what a damaged or older checkpoint is called ----------------------------------------
def test_a_truncated_checkpoint_is_called_truncated(tmp_path, capsys):
    ck = tmp_path / "c.npz"
    assert copy(*SMALL, "--steps", 3, "--checkpoint", ck) == 0
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    assert copy(*SMALL, "--steps", 6, "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "cannot read checkpoint", "truncated or damaged")


def test_a_checkpoint_of_an_older_format_is_called_older(tmp_path, capsys):
    ck, old = tmp_path / "c.npz", tmp_path / "old.npz"
    assert copy(*SMALL, "--steps", 3, "--checkpoint", ck) == 0
    resave(ck, old, format=np.asarray(json.dumps("minirtrl-checkpoint-1")))
    assert copy(*SMALL, "--steps", 6, "--checkpoint", old, "--resume") == 2
    one_error_line(capsys, "written by an older version of minirtrl", "minirtrl-checkpoint-1")


def test_a_checkpoint_whose_settings_lack_keys_is_from_another_version(tmp_path, capsys):
    ck, old = tmp_path / "c.npz", tmp_path / "old.npz"
    assert copy(*SMALL, "--steps", 3, "--checkpoint", ck) == 0
    config = json.loads(str(load_checkpoint(ck)["config"]))
    del config["cell"], config["alpha"]  # what a version before the vanilla cell wrote
    resave(ck, old, config=np.asarray(json.dumps(config, sort_keys=True)))
    assert copy(*SMALL, "--steps", 6, "--checkpoint", old, "--resume") == 2
    one_error_line(capsys, "written by another version of minirtrl", "lack ['alpha', 'cell']")


def test_memory_that_runs_out_anyway_is_one_line(tmp_path, capsys, monkeypatch):
    from minirtrl.drivers import noise

    def exhausted(*args, **kwargs):  # what a size no estimate foresaw ends in
        raise MemoryError

    monkeypatch.setattr(noise, "measure", exhausted)
    assert noise.main(["--hidden", "8", "--samples", "2", "--json", str(tmp_path / "n.json")]) == 1
    one_error_line(capsys, "minirtrl.noise: error: out of memory; choose smaller sizes")
    assert not (tmp_path / "n.json").exists()
