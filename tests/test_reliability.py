"""The drivers under faults: bad output paths, writes that fail mid-run, existing logs, two
runs on one checkpoint, crafted checkpoints, signals at any moment, memory of the reader."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import one_error_line

from minirtrl.drivers import checkpoint as ckpt
from minirtrl.drivers import copy as copy_cmd
from minirtrl.drivers import noise as noise_cmd
from minirtrl.drivers import ptb as ptb_cmd

SMALL = ["--hidden", "3", "--batch", "2", "--algo", "kf", "--progress-seconds", "1000"]
ROOT = Path(__file__).resolve().parents[1]


def copy(*argv):
    return copy_cmd.main([str(a) for a in argv])


def read_log(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def load_checkpoint(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def child(argv, *, cwd, limit_bytes=None, **kw):
    """A driver in a child process with default signal handlers (and a file-size limit)."""

    def prepare():
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # background shells start it ignored
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if limit_bytes is not None:  # writes beyond it fail with EFBIG, like a full disk
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", *map(str, argv)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=prepare, **kw)


# ---- 1. every output checked before any work ---------------------------------------------
def special_paths(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return [("/proc/x.npz", "cannot write in /proc"), (str(tmp_path), "is a directory"),
            (str(fifo), "is a FIFO"), ("/dev/full", "is a device"),
            (str(tmp_path / "no" / "x"), "does not exist")]


@pytest.mark.parametrize("flag", ["--checkpoint", "--log"])
def test_copy_refuses_bad_outputs_before_training(flag, tmp_path, capsys):
    for path, why in special_paths(tmp_path):
        start = time.perf_counter()
        assert copy(*SMALL, "--steps", 10**9, flag, path) == 2
        one_error_line(capsys, flag, why)
        assert time.perf_counter() - start < 5  # refused at once, not after training


def test_ptb_refuses_bad_outputs_before_reading_the_corpus(tmp_path, capsys):
    missing_data = tmp_path / "no-corpus"  # never read: the output is refused first
    for flag in ("--checkpoint", "--log"):
        for path, why in [("/proc/x", "cannot write in /proc"), (str(tmp_path), "is a directory")]:
            assert ptb_cmd.main(["--data", str(missing_data), flag, path]) == 2
            one_error_line(capsys, flag, why)


def test_noise_refuses_bad_json_and_plot_before_measuring(tmp_path, capsys):
    cases = [("--json", "/proc/x.json", "cannot write in /proc"),
             ("--json", str(tmp_path), "is a directory"),
             ("--plot", str(tmp_path / "out.xyz"), "matplotlib cannot write .xyz"),
             ("--plot", "/proc/x.png", "cannot write in /proc")]
    if "matplotlib" not in sys.modules:
        pytest.importorskip("matplotlib")
    for flag, path, why in cases:
        argv = ["--hidden", "64", "--samples", "50", "--at", "1000", flag, path]
        assert noise_cmd.main(argv) == 2
        line = one_error_line(capsys, flag, why)
        assert "over time" not in line


@pytest.mark.parametrize("script, flag", [
    ("step_time.py", "--json"), ("compare_torch.py", "--json"), ("copy_curriculum.py", "--out"),
    ("ptb_compare.py", "--out"), ("compare_vanilla_rtrl.py", "--json"),
    ("driver_vs_step.py", "--json"), ("torch_threads.py", "--json"), ("scaling.py", "--json-out"),
    ("scaling.py", "--plot"), ("gpu_check.py", "--out"), ("corpus_memory.py", "--json")])
def test_bench_scripts_refuse_bad_outputs_first(script, flag, tmp_path):
    argv = [sys.executable, str(ROOT / "bench" / script), flag, "/proc/x"]
    if script == "ptb_compare.py":
        argv += ["--data", str(tmp_path)]
    if script == "compare_vanilla_rtrl.py":
        argv += ["--peer", str(tmp_path)]
    if script == "scaling.py":
        argv += [str(tmp_path / "rows.json")]
    if script == "scaling.py" and flag == "--plot":
        argv[-2] = "/proc/x.png"
    if script == "torch_threads.py":
        pytest.importorskip("torch")
    if script == "compare_torch.py":
        pytest.importorskip("torch")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and f"{flag} /proc/x" in out.stderr


# ---- 2. a write that fails during the run -------------------------------------------------
def test_log_write_failure_mid_run_ends_with_one_line_and_keeps_the_work(tmp_path):
    log, ck = tmp_path / "run.jsonl", tmp_path / "ck.npz"
    proc = child(["minirtrl.copy", *SMALL, "--steps", 10**9, "--report-every", 1, "--log", log,
                  "--checkpoint", ck, "--checkpoint-every", 0], cwd=tmp_path, limit_bytes=40_000)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"--log {log}" in lines[0] and "File too large" in lines[0]
    saved = load_checkpoint(ck)  # the work up to the failure is in the checkpoint
    assert int(saved["step"]) > 10
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_checkpoint_write_failure_keeps_the_last_good_checkpoint(tmp_path):
    ck = tmp_path / "ck.npz"
    assert copy(*SMALL, "--steps", 20, "--checkpoint", ck) == 0
    good = ck.read_bytes()
    proc = child(["minirtrl.copy", *SMALL, "--steps", 40, "--checkpoint", ck, "--resume",
                  "--checkpoint-every", 5], cwd=tmp_path, limit_bytes=len(good) // 2)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"--checkpoint {ck}" in lines[0] and "File too large" in lines[0]
    assert ck.read_bytes() == good  # untouched
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]  # no half-written file left


def test_a_killed_runs_temporary_files_are_removed_when_the_next_run_starts(tmp_path):
    ck = tmp_path / "ck.npz"
    stale = tmp_path / ".ck.npz.tmp-abc123.npz"
    stale.write_bytes(b"half a checkpoint")
    assert copy(*SMALL, "--steps", 3, "--checkpoint", ck) == 0
    assert not stale.exists() and ck.exists()


# ---- 3. --log never destroys data ---------------------------------------------------------
def test_existing_log_is_refused_without_resume(tmp_path, capsys):
    log = tmp_path / "run.jsonl"
    log.write_text('{"step": 1}\n')
    assert copy(*SMALL, "--steps", 3, "--log", log) == 2
    one_error_line(capsys, "exists", "--resume")
    assert log.read_text() == '{"step": 1}\n'


def test_resumed_log_never_goes_backwards(tmp_path):
    log, ck, old = tmp_path / "run.jsonl", tmp_path / "ck.npz", tmp_path / "old.npz"
    common = [*SMALL, "--report-every", 2, "--log", log, "--checkpoint", ck]
    assert copy(*common, "--steps", 10) == 0
    old.write_bytes(ck.read_bytes())  # the checkpoint of step 10
    assert copy(*common, "--steps", 20, "--resume") == 0
    ck.write_bytes(old.read_bytes())  # as if the run had died at step 20 with the step-10 file
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"step": 21, "dat')  # and a last line cut off by the kill
    assert copy(*common, "--steps", 30, "--resume") == 0
    records = read_log(log)
    assert records[0]["kind"] == "header" and [r["kind"] for r in records].count("resume") == 2
    steps = [r["step"] for r in records[1:]]
    assert steps == sorted(steps) and steps[-1] == 30
    assert steps.count(12) == 1  # step 12 was logged twice and is there once


# ---- 4. one run per checkpoint ------------------------------------------------------------
def test_second_run_on_a_live_checkpoint_is_refused_and_a_dead_lock_does_not_block(tmp_path,
                                                                                   capsys):
    ck = tmp_path / "ck.npz"
    proc = child(["minirtrl.copy", *SMALL, "--steps", 10**9, "--report-every", 100,
                  "--checkpoint", ck, "--checkpoint-every", 100], cwd=tmp_path)
    try:
        assert proc.stdout.readline().startswith("minirtrl.copy: kf")  # the settings line
        assert proc.stdout.readline().startswith("step 100/")
        assert copy(*SMALL, "--steps", 5, "--checkpoint", ck, "--resume") == 2
        one_error_line(capsys, "another run", str(ck))
        deadline = time.monotonic() + 60
        while not ck.exists() and time.monotonic() < deadline:  # its first checkpoint
            time.sleep(0.01)
    finally:
        proc.kill()  # kill -9: the lock is left behind by a dead process
        proc.communicate()
    assert copy(*SMALL, "--steps", 300, "--checkpoint", ck, "--resume") == 0


def test_symlinked_checkpoint_replaces_its_target_and_keeps_the_link(tmp_path):
    target_dir = tmp_path / "store"
    target_dir.mkdir()
    target, link = target_dir / "real.npz", tmp_path / "ck.npz"
    assert copy(*SMALL, "--steps", 3, "--checkpoint", target) == 0
    link.symlink_to(target)
    assert copy(*SMALL, "--steps", 6, "--checkpoint", link, "--resume") == 0
    assert link.is_symlink() and int(load_checkpoint(target)["step"]) == 6


# ---- 5. checkpoints validated before they are trusted -------------------------------------
def npy_bytes(shape, dtype="<f4", data=b""):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


def rewrite(src, dst, replace):
    """Copy the archive ``src`` to ``dst`` with some members' bytes replaced."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            name = info.filename[:-4]
            b.writestr(info.filename, replace.get(name, a.read(info.filename)))


def resave(src, dst, **changes):
    arrays = load_checkpoint(src)
    arrays.update(changes)
    np.savez(dst, **arrays)


@pytest.fixture
def good_checkpoint(tmp_path):
    ck = tmp_path / "good.npz"
    assert copy(*SMALL, "--steps", 20, "--checkpoint", ck) == 0
    return ck


@pytest.mark.parametrize("case, needle", [
    ("huge", "has shape"), ("object", "dtype"), ("int-for-float", "dtype"),
    ("level", "level"), ("pos", "out of range"), ("symbols", "symbols"), ("nan", "not finite"),
    ("extra", "unexpected"), ("steps", "'step'"), ("rng", "rng/data"), ("text", "task/inputs"),
])
def test_crafted_checkpoints_are_refused_in_bounded_time_and_left_alone(
        case, needle, good_checkpoint, tmp_path, capsys):
    bad = tmp_path / "ck.npz"
    arrays = load_checkpoint(good_checkpoint)
    if case == "huge":  # declares 16 EB of float32 and holds none of it
        rewrite(good_checkpoint, bad, {"W1": npy_bytes((2**31, 2**31))})
    elif case == "object":
        rewrite(good_checkpoint, bad, {"s": npy_bytes((2, 3), "|O")})
    elif case == "int-for-float":
        resave(good_checkpoint, bad, V=arrays["V"].astype(np.int64))
    elif case == "level":
        resave(good_checkpoint, bad, **{"task/level": np.asarray(-5)})
    elif case == "pos":
        resave(good_checkpoint, bad, **{"task/pos": np.asarray([10**12, 0])})
    elif case == "symbols":
        resave(good_checkpoint, bad, **{"task/inputs": arrays["task/inputs"] + 7})
    elif case == "nan":
        resave(good_checkpoint, bad, W1=arrays["W1"] * np.nan)
    elif case == "extra":
        resave(good_checkpoint, bad, surprise=np.zeros(3))
    elif case == "steps":
        resave(good_checkpoint, bad, step=np.asarray(-1))
    elif case == "rng":
        resave(good_checkpoint, bad, **{"rng/data": np.asarray('{"bit_generator": "MT19937"}')})
    elif case == "text":
        resave(good_checkpoint, bad, **{"task/inputs": np.zeros((2, 2**17), dtype=np.int64)})
    before = bad.read_bytes()
    start = time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert copy(*SMALL, "--steps", 30, "--checkpoint", bad, "--resume") == 2
    line = one_error_line(capsys, "cannot read checkpoint", needle)
    assert "pickle" not in line
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # KiB
    assert bad.read_bytes() == before


def test_a_file_that_is_not_a_checkpoint_never_suggests_pickles(tmp_path, capsys):
    bad = tmp_path / "ck.npz"
    np.save(bad.with_suffix(""), np.zeros(3))  # an .npy, not an .npz
    os.replace(bad.with_suffix(".npy"), bad)
    assert copy(*SMALL, "--steps", 3, "--checkpoint", bad, "--resume") == 2
    line = one_error_line(capsys, "not a minirtrl checkpoint")
    assert "pickle" not in line


# ---- 6. signals at any moment -------------------------------------------------------------
def big_corpus(folder, n=6_000_000):
    folder.mkdir()
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdefgh \n"), size=n))
    (folder / "train.txt").write_text(text)
    for split in ("valid", "test"):
        (folder / f"{split}.txt").write_text(text[:1000])
    return folder


def reading(proc, name):
    """True once the process ``proc`` has the file ``name`` open."""
    fds = Path(f"/proc/{proc.pid}/fd")
    try:
        return any(os.readlink(fd).endswith(name) for fd in fds.iterdir())
    except OSError:
        return False


@pytest.mark.parametrize("signame, status", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_signal_while_the_corpus_loads(signame, status, tmp_path):
    data = big_corpus(tmp_path / "data")
    proc = child(["minirtrl.ptb", "--data", data, "--format", "raw", "--hidden", 4],
                 cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not reading(proc, "train.txt") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    assert "Traceback" not in out + err and f"interrupted ({signame})" in err


@pytest.mark.parametrize("signame, status", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_signal_during_a_checkpoint_write_leaves_a_valid_checkpoint(signame, status, tmp_path,
                                                                    monkeypatch, capsys):
    ck = tmp_path / "ck.npz"
    real = ckpt.np.savez
    calls = []

    def savez_then_signal(f, **arrays):  # the signal arrives half way through the write
        calls.append(1)
        real(f, **{k: v for i, (k, v) in enumerate(arrays.items()) if i < len(arrays) // 2})
        os.kill(os.getpid(), getattr(signal, signame))
        f.seek(0)
        f.truncate()
        real(f, **arrays)

    monkeypatch.setattr(ckpt.np, "savez", savez_then_signal)
    assert copy(*SMALL, "--steps", 50, "--checkpoint", ck, "--checkpoint-every", 10) == status
    monkeypatch.setattr(ckpt.np, "savez", real)
    assert calls and int(load_checkpoint(ck)["step"]) == 10
    assert copy(*SMALL, "--steps", 15, "--checkpoint", ck, "--resume") == 0  # resumable


def test_sigint_ignored_at_start_stays_ignored(tmp_path):
    """A background job of a non-interactive shell: Ctrl-C is not for it."""
    code = ("import signal, os; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "from minirtrl.drivers.safety import handled_signals\n"
            "with handled_signals():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "print('still here')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "still here"


# ---- 7. bounded memory for data ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["raw", "mikolov"])
def test_reader_memory_stays_within_three_times_the_text(fmt, tmp_path):
    n = 8_000_000
    rng = np.random.default_rng(1)
    chars = rng.choice(list("abcdefghij_\n"), size=n)
    folder = tmp_path / "c"
    folder.mkdir()
    if fmt == "raw":
        names, text = "{}.txt", "".join(chars)
    else:
        names, text = "ptb.char.{}.txt", " ".join(chars).replace(" \n ", "\n")
    (folder / names.format("train")).write_text(text)
    for split in ("valid", "test"):
        (folder / names.format(split)).write_text(text[:2000])
    code = ("import tracemalloc, sys\n"
            "from minirtrl.drivers.corpus import read_corpus\n"
            "tracemalloc.start()\n"
            f"c = read_corpus({str(folder)!r}, {fmt!r})\n"
            "print(c.train.shape[0], c.train.dtype, tracemalloc.get_traced_memory()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == 0, out.stderr
    symbols, dtype, peak = out.stdout.split()
    assert dtype == "int8"
    assert int(peak) <= 3 * int(symbols)  # bytes: 3× the text's size in characters
