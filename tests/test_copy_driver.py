"""``python -m minirtrl.copy`` via ``main([...])``: smoke runs, exact resume, errors, learning."""

import json
import math

import numpy as np
import pytest
from cli_helpers import one_error_line

from minirtrl import METHODS, RHN, readout, sequence_gradient
from minirtrl.drivers.backends import BackendError
from minirtrl.drivers.copy import CopyTask, main
from minirtrl.testing import assert_close

EXTRA = {"bptt": ["--truncation", "4"], "ok": ["--rank", "2"], "kf-avg": ["--rank", "2"],
         "rflo": ["--cell", "vanilla"]}  # rflo: the leaky RNN only
SMALL = ["--hidden", "6", "--batch", "3", "--progress-seconds", "1000"]


def read_log(path, kinds=("progress", "eval", "final")):
    """The records of ``kinds`` of a log, after checking its header and that all have a kind."""
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert records[0]["kind"] == "header" and records[0]["format"] == "minirtrl-log-1"
    assert all(r["kind"] in ("progress", "eval", "final", "resume") for r in records[1:])
    return [r for r in records if r["kind"] in kinds]


def run(*argv):
    return main([str(a) for a in argv])


# ---- smoke runs -------------------------------------------------------------------------
@pytest.mark.parametrize("algo", METHODS)
def test_every_algorithm_runs_and_logs(algo, driver_backend, tmp_path, capsys):
    name = driver_backend.name
    log = tmp_path / "log.jsonl"
    rc = run("--backend", name, "--algo", algo, *SMALL, *EXTRA.get(algo, []),
             "--steps", 24, "--report-every", 8, "--log", log)
    assert rc == 0
    K = 4 if algo == "bptt" else 1
    lines = read_log(log)
    assert [r["step"] for r in lines] == [8, 16, 24, 24]
    assert [r.get("final", False) for r in lines] == [False, False, False, True]
    for r in lines:
        assert r["data"] == r["step"] * 3 * K
        assert r["T"] == 1 and math.isfinite(r["bits"]) and 0 < r["bits"] < 2.5
        assert r["seconds"] >= 0
    out = capsys.readouterr().out
    assert "steps done at step 24" in out and "steps/s" in out


def test_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--backend", "--dtype", "--algo", "--rank", "--hidden", "--depth", "--batch",
                 "--lr", "--clip", "--seed", "--steps", "--truncation", "--log", "--checkpoint",
                 "--resume", "--max-seconds", "--progress-seconds"):
        assert flag in out


def test_defaults_follow_spec():
    from minirtrl.drivers.cli import parse_training as parse
    from minirtrl.drivers.copy import make_parser

    args = parse(make_parser(), [])
    assert (args.backend, args.dtype, args.algo, args.rank, args.hidden, args.depth) == (
        "numpy", "float32", "ok", 16, 128, 1)
    assert (args.batch, args.clip, args.truncation) == (16, 16.0, None)
    assert_close(args.lr, 10**-3.5, rtol=1e-12)


# ---- the step is what the spec says -------------------------------------------------------
@pytest.mark.parametrize("algo", ["rtrl", "bptt", "kf", "kf-avg", "ok"])
def test_first_step_is_one_clipped_adam_step_on_the_batch_mean(algo, tmp_path):
    """From the zero state every method's first gradient is exact (no old term to mix)."""
    seed, B, n, lr, clip = 3, 3, 5, 0.01, 1e-3
    ck, log = tmp_path / "ck.npz", tmp_path / "log.jsonl"
    extra = ["--truncation", "1"] if algo == "bptt" else EXTRA.get(algo, [])
    rc = run("--algo", algo, "--hidden", n, "--batch", B, "--lr", lr, "--clip", clip,
             "--seed", seed, "--steps", 1, "--dtype", "float64", "--checkpoint", ck,
             "--log", log, *extra)
    assert rc == 0
    # independent: the same first character, the exact gradient of its summed loss
    cell = RHN(4, n, 4)
    params = cell.init(seed, xp=np, dtype=np.float64)
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    batch = CopyTask(B).next_batch(data_rng)
    loss, grads = sequence_gradient("bptt", cell, params, batch.x[None], batch.y[None])
    g = {k: v / B for k, v in grads.items()}
    norm = math.sqrt(float(np.sum(g["W1"] ** 2)))
    assert norm > clip  # clipping is active, and V is not clipped
    g["W1"] = g["W1"] * (clip / norm)
    with np.load(ck, allow_pickle=False) as saved:
        for k, p in params.items():  # Adam's first step: p - lr g / (|g| + eps)
            assert_close(saved[k], p - lr * g[k] / (np.abs(g[k]) + 1e-8),
                                       rtol=0, atol=1e-12)
    bits = float(loss) / B / math.log(2)
    assert_close(read_log(log)[-1]["bits"], 0.999 + 0.001 * bits, rtol=1e-12)


def test_online_rtrl_gradients_equal_per_step_bptt_since_each_reset(tmp_path):
    """With lr = 1e-300 the parameters never move, so Adam's moments are known sums of the
    per-step gradients; each must be the exact gradient of that step's loss through the
    stream's current sequence only (state and influence reset at each start), computed
    here independently by BPTT over that sequence."""
    seed, B, n, T = 4, 2, 5, 11
    ck = tmp_path / "ck.npz"
    assert run("--algo", "rtrl", "--hidden", n, "--batch", B, "--lr", 1e-300, "--clip", 1e30,
               "--gate-bias", 0.5, "--seed", seed, "--steps", T, "--dtype", "float64",
               "--checkpoint", ck) == 0
    cell = RHN(4, n, 4)
    params = cell.init(seed, xp=np, dtype=np.float64, gate_bias=0.5)
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    task = CopyTask(B)
    batches = [task.next_batch(data_rng) for _ in range(T)]
    starts = [0] * B
    m = {k: np.zeros_like(p) for k, p in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t, batch in enumerate(batches):
        g = {k: np.zeros_like(p) for k, p in params.items()}
        for b in range(B):
            if batch.keep[b] == 0:
                starts[b] = t
            xs = np.stack([batches[i].x[b : b + 1] for i in range(starts[b], t + 1)])
            ys = np.stack([batches[i].y[b : b + 1] for i in range(starts[b], t + 1)])
            mask = np.zeros(ys.shape)
            mask[-1, :] = 1.0
            _, gb = sequence_gradient("bptt", cell, params, xs, ys, mask)
            g = {k: g[k] + gb[k] / B for k in g}
        m = {k: 0.9 * m[k] + 0.1 * g[k] for k in m}
        v = {k: 0.999 * v[k] + 0.001 * g[k] ** 2 for k in v}
    assert any(b.keep[0] == 0 for b in batches[1:])  # resets happened inside the run
    saved = _checkpoint(ck)
    assert int(saved["adam/step"]) == T
    for k, p in params.items():
        assert_close(saved[k], p, rtol=0)  # frozen
        assert_close(saved[f"adam/m/{k}"], m[k], rtol=1e-10, atol=1e-16)
        assert_close(saved[f"adam/v/{k}"], v[k], rtol=1e-10, atol=1e-20)


def test_bptt_window_gradient_is_the_whole_sequence_when_windows_align(tmp_path):
    """At level 1 every sequence has 4 characters and all streams start together, so a
    window of 4 is one whole sequence from the zero state: its update must use the full
    BPTT gradient of the window's summed loss over the batch mean (frozen parameters again)."""
    seed, B, n, W = 6, 3, 4, 3
    ck = tmp_path / "ck.npz"
    assert run("--algo", "bptt", "--truncation", 4, "--hidden", n, "--batch", B, "--lr", 1e-300,
               "--clip", 1e30, "--gate-bias", 0.5, "--seed", seed, "--steps", W,
               "--dtype", "float64", "--checkpoint", ck) == 0
    cell = RHN(4, n, 4)
    params = cell.init(seed, xp=np, dtype=np.float64, gate_bias=0.5)
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    task = CopyTask(B)
    m = {k: np.zeros_like(p) for k, p in params.items()}
    for _ in range(W):
        batches = [task.next_batch(data_rng) for _ in range(4)]
        assert batches[0].keep.tolist() == [0.0] * B
        xs, ys = np.stack([b.x for b in batches]), np.stack([b.y for b in batches])
        _, g = sequence_gradient("bptt", cell, params, xs, ys)
        m = {k: 0.9 * m[k] + 0.1 * g[k] / B for k in m}
    saved = _checkpoint(ck)
    assert int(saved["step"]) == W
    for k in params:
        assert_close(saved[f"adam/m/{k}"], m[k], rtol=1e-10, atol=1e-16)


# ---- checkpoints ----------------------------------------------------------------------------
def _checkpoint(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _figures(lines):
    return [(r["step"], r["data"], r["T"], r["bits"], r.get("final", False)) for r in lines]


@pytest.mark.parametrize("algo", METHODS)
def test_resume_continues_exactly(algo, tmp_path):
    common = ["--algo", algo, *SMALL, *EXTRA.get(algo, []), "--dtype", "float64",
              "--report-every", 5, "--seed", 7]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    la, lb = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run(*common, "--steps", 20, "--checkpoint", a, "--log", la) == 0
    assert run(*common, "--steps", 10, "--checkpoint", b, "--log", lb) == 0
    assert _checkpoint(b)["step"] == 10
    assert run(*common, "--steps", 20, "--checkpoint", b, "--log", lb, "--resume") == 0
    straight, split = _checkpoint(a), _checkpoint(b)
    assert set(straight) == set(split)
    assert {"W1", "V", "adam/m/W1", "adam/step", "s", "rng/data", "config"} <= set(straight)
    for k in straight:
        if k not in ("seconds", "run"):  # the time taken, the run's identity
            assert_close(straight[k], split[k], err_msg=k, rtol=0)
    # the split log is the straight one with a final line at the stop in between
    expect = _figures(read_log(la))
    got = _figures(read_log(lb))
    assert got == expect[:2] + [(10,) + expect[1][1:4] + (True,)] + expect[2:]


@pytest.mark.parametrize("algo", ["rtrl", "bptt"])
def test_ctrl_c_mid_step_writes_a_checkpoint_that_resumes_exactly(algo, tmp_path, monkeypatch,
                                                                 capsys):
    common = ["--algo", algo, *SMALL, *EXTRA.get(algo, []), "--dtype", "float64", "--seed", 2]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run(*common, "--steps", 12, "--checkpoint", a) == 0
    calls = {"n": 0}
    real = readout.loss_and_grad
    K = 4 if algo == "bptt" else 1
    at = 7 * K + min(K, 2)  # inside step 8, after its batch was drawn

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(readout, "loss_and_grad", interrupting)
    assert run(*common, "--steps", 12, "--checkpoint", b) == 130
    assert "interrupted at step 7" in capsys.readouterr().out
    assert _checkpoint(b)["step"] == 7
    monkeypatch.setattr(readout, "loss_and_grad", real)
    assert run(*common, "--steps", 12, "--checkpoint", b, "--resume") == 0
    straight, split = _checkpoint(a), _checkpoint(b)
    for k in straight:
        if k not in ("seconds", "run"):  # the time taken, the run's identity
            assert_close(straight[k], split[k], err_msg=k, rtol=0)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_in_a_real_process_exits_cleanly_with_a_checkpoint(tmp_path, signame):
    import signal
    import subprocess
    import sys

    sig = getattr(signal, signame)
    ck = tmp_path / "ck.npz"

    def default_handlers():  # a background shell starts children with SIGINT ignored
        signal.signal(sig, signal.SIG_DFL)

    proc = subprocess.Popen(
        [sys.executable, "-m", "minirtrl.copy", *SMALL, "--algo", "rtrl", "--steps", "100000000",
         "--report-every", "50", "--checkpoint", str(ck)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        preexec_fn=default_handlers,
    )
    with proc:
        try:
            assert proc.stdout.readline().startswith("minirtrl.copy: rtrl, n 6")  # the settings
            assert proc.stdout.readline().startswith("step 50/")  # training is under way
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == {"SIGINT": 130, "SIGTERM": 143}[signame]  # 128 + the signal
    assert "Traceback" not in err + out and "interrupted at step" in out
    assert _checkpoint(ck)["step"] >= 50


def test_corrupt_checkpoint_is_refused_and_left_alone(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    assert run(*SMALL, "--algo", "rtrl", "--steps", 3, "--checkpoint", ck) == 0
    good = ck.read_bytes()
    for bad in (b"not a zip file at all", good[: len(good) // 2]):
        ck.write_bytes(bad)
        capsys.readouterr()
        assert run(*SMALL, "--algo", "rtrl", "--steps", 6, "--checkpoint", ck, "--resume") == 2
        one_error_line(capsys, "cannot read checkpoint", str(ck))
        assert ck.read_bytes() == bad


def test_checkpoint_of_another_kind_is_refused(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    np.savez(ck, W1=np.zeros(3))
    before = ck.read_bytes()
    assert run(*SMALL, "--algo", "rtrl", "--steps", 6, "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "cannot read checkpoint")
    assert ck.read_bytes() == before


def test_mismatched_config_is_refused_and_left_alone(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    assert run(*SMALL, "--algo", "rtrl", "--steps", 3, "--checkpoint", ck) == 0
    good = ck.read_bytes()
    capsys.readouterr()
    assert run("--hidden", 8, "--batch", 3, "--algo", "rtrl", "--steps", 6, "--checkpoint", ck,
               "--resume") == 2
    one_error_line(capsys, "another configuration", "hidden 6 (checkpoint) vs 8 (now)")
    assert run(*SMALL, "--algo", "kf", "--steps", 6, "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "algo 'rtrl' (checkpoint) vs 'kf' (now)")
    # an existing checkpoint is never overwritten by a fresh run
    assert run(*SMALL, "--algo", "rtrl", "--steps", 6, "--checkpoint", ck) == 2
    one_error_line(capsys, "exists", "--resume")
    assert ck.read_bytes() == good


# ---- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["--algo", "sgd"], "--algo"),
    (["--hidden", "-3"], "--hidden"),
    (["--hidden", "0"], "--hidden"),
    (["--batch", "two"], "--batch"),
    (["--depth", "1.5"], "--depth"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--clip", "0"], "--clip"),
    (["--steps", "-1"], "--steps"),
    (["--dtype", "float16"], "--dtype"),
    (["--backend", "mxnet"], "--backend"),
    (["--max-seconds", "0"], "--max-seconds"),
    (["--algo", "rtrl", "--rank", "4"], "--rank"),
    (["--algo", "kf", "--truncation", "5"], "--truncation"),
    (["--resume"], "--checkpoint"),
    (["--nonsense"], "--nonsense"),
])
def test_bad_arguments_give_one_line_and_status_2(argv, needle, capsys):
    assert main(argv) == 2
    one_error_line(capsys, needle)


def test_bad_paths_give_one_line_and_status_2(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "dir"
    base = [*SMALL, "--algo", "rtrl", "--steps", 2]
    assert run(*base, "--checkpoint", missing / "ck.npz") == 2
    one_error_line(capsys, "does not exist")
    assert run(*base, "--log", missing / "log.jsonl") == 2
    one_error_line(capsys, "does not exist")
    assert run(*base, "--checkpoint", tmp_path / "absent.npz", "--resume") == 2
    one_error_line(capsys, "no checkpoint")


def test_unusable_backend_gives_one_line_and_status_2(monkeypatch, capsys):
    import minirtrl.drivers.cli as train

    def no_gpu(name, device=None):
        raise BackendError("backend 'cupy': no usable CUDA device (no driver)")

    monkeypatch.setattr(train, "load", no_gpu)
    assert main(["--backend", "cupy", *SMALL, "--algo", "rtrl", "--steps", "2"]) == 2
    one_error_line(capsys, "no usable CUDA device")


# ---- stopping -----------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["rtrl", "bptt"])
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(algo, tmp_path,
                                                                        monkeypatch, capsys):
    ck, log = tmp_path / "ck.npz", tmp_path / "log.jsonl"
    real = readout.loss_and_grad
    K = 4 if algo == "bptt" else 1
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, dV, c = real(*args, **kwargs)
        if calls["n"] == 6 * K + 1:  # first character of step 7
            loss = loss * float("nan")
        return loss, dV, c

    monkeypatch.setattr(readout, "loss_and_grad", poisoned)
    rc = run(*SMALL, "--algo", algo, *EXTRA.get(algo, []), "--steps", 20, "--checkpoint", ck,
             "--checkpoint-every", 5, "--log", log)
    assert rc == 1
    one_error_line(capsys, "non-finite", "at step 7", "last good checkpoint kept")
    assert _checkpoint(ck)["step"] == 5
    last = read_log(log)[-1]
    assert last["final"] and last["step"] == 6 and last["diverged"] == 7


def test_diverging_initialisation_is_caught(capsys):
    assert main([*SMALL, "--algo", "rtrl", "--steps", "5", "--init-scale", "1e300",
                 "--dtype", "float64"]) == 1
    one_error_line(capsys, "diverged at step 1", "bits per character, over 100")


@pytest.mark.parametrize("flags", [["--init-scale", "1e300"], ["--gate-bias", "1e39"]])
def test_initial_parameters_beyond_the_dtype_are_refused(tmp_path, capsys, flags):
    ck = tmp_path / "c.npz"
    assert main([*SMALL, "--algo", "kf", "--steps", "5", "--checkpoint", str(ck), *flags]) == 2
    one_error_line(capsys, "initial parameters are not finite in float32", flags[0])
    assert not ck.exists()


def test_max_seconds_stops_the_run(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    assert run(*SMALL, "--algo", "rtrl", "--steps", 10**9, "--max-seconds", 0.3,
               "--log", log) == 0
    last = read_log(log)[-1]
    assert last["final"] and 0 < last["step"] < 10**9 and last["seconds"] < 5
    assert "time limit" in capsys.readouterr().out


def test_evaluate_hook_figures_go_into_an_eval_record_after_the_step(tmp_path):
    """The hook a second driver (ptb) uses: called every ``eval_every`` steps and at the end."""
    from minirtrl.drivers import cli, loop
    from minirtrl.drivers.copy import make_parser

    log = tmp_path / "log.jsonl"
    calls = []

    def evaluate(ctx, params, final):
        calls.append((final, sorted(params), ctx.cell.n_hidden))
        return {"test_bpc": 1.5} if final else {"valid_bpc": 2.5}

    args = cli.parse_training(make_parser(), [*SMALL, "--algo", "rtrl", "--steps", "10",
                                       "--report-every", "3", "--log", str(log)])
    assert loop.run(args, CopyTask(3), prog="t", evaluate=evaluate, eval_every=4) == 0
    lines = read_log(log)
    assert [(r["kind"], r["step"], "valid_bpc" in r, "test_bpc" in r) for r in lines] == [
        ("progress", 3, False, False), ("progress", 4, False, False), ("eval", 4, True, False),
        ("progress", 6, False, False), ("progress", 8, False, False), ("eval", 8, True, False),
        ("progress", 9, False, False), ("final", 10, False, True)]
    assert all(r["eval_seconds"] >= 0 for r in lines if r["kind"] in ("eval", "final"))
    assert lines[-1]["final"] and calls == [(False, ["V", "W1"], 6)] * 2 + [(True, ["V", "W1"], 6)]


# ---- learning ---------------------------------------------------------------------------------
def test_kf_learns_the_first_curriculum_level(tmp_path):
    """A small RHN trained online with KF-RTRL gets the running error below 0.15 bits (T_ > 1).

    The error starts at 1 and decays by 0.999 per step, so at least 1897 steps are needed
    even with zero loss; seed 0 gets there after about 2500 steps.
    """
    log = tmp_path / "log.jsonl"
    assert run("--algo", "kf", "--hidden", 8, "--batch", 4, "--lr", 0.01, "--seed", 0,
               "--dtype", "float64", "--steps", 4000, "--report-every", 500, "--log", log) == 0
    lines = read_log(log)
    assert lines[-1]["T"] >= 2
    assert lines[0]["T"] == 1  # not reached by luck at the start
