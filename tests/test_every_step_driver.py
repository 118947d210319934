"""``--every-step`` in the drivers: one Adam step per character with every-step TBPTT over
``--truncation`` characters. Its gradients derived independently (frozen parameters: Adam's
moments are known sums of them), a window of one equal to bptt's windows of one, checkpoints
that resume bit for bit (the window is part of them), and refusals (one line, status 2)."""

import json
import math

import numpy as np
import pytest
from cli_helpers import one_error_line

from minirtrl import RHN, OnlineState, sequence_gradient
from minirtrl.drivers import copy as copy_cmd
from minirtrl.drivers import ptb as ptb_cmd
from minirtrl.drivers.copy import CopyTask
from minirtrl.testing import assert_close

SMALL = ["--hidden", "5", "--batch", "3", "--progress-seconds", "1000"]
EVERY = ["--algo", "bptt", "--every-step"]


def copy(*argv):
    return copy_cmd.main([str(a) for a in argv])


def records(path, kind=None):
    with open(path, encoding="utf-8") as f:
        out = [json.loads(line) for line in f]
    assert out[0]["kind"] == "header"
    return [r for r in out[1:] if kind is None or r["kind"] == kind]


def checkpoint(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_every_step_takes_one_step_per_character(tmp_path, capsys):
    log, ck = tmp_path / "l.jsonl", tmp_path / "c.npz"
    assert copy(*SMALL, *EVERY, "--truncation", 3, "--steps", 12, "--report-every", 4,
                "--log", log, "--checkpoint", ck) == 0
    lines = records(log)
    assert [(r["kind"], r["step"], r["data"]) for r in lines] == [
        ("progress", 4, 12), ("progress", 8, 24), ("progress", 12, 36), ("final", 12, 36)]
    assert all(math.isfinite(r["bits"]) for r in lines)
    assert "bptt window 3, a step every character" in capsys.readouterr().out
    saved = checkpoint(ck)
    assert saved["window/xs"].shape == (2, 3, 4) and saved["window/keep"].shape == (2, 3)
    assert int(saved["window/filled"]) == 2 and saved["window/s"].shape == (3, 5)
    assert json.loads(str(saved["config"]))["every_step"] is True
    assert not any(k.startswith("est/") for k in saved)


def test_each_update_is_the_gradient_of_one_characters_loss_through_the_last_K(tmp_path):
    """lr = 1e-300: the parameters never move, so Adam's first moment is a known sum of the
    per-character gradients. Each must be the gradient of that character's loss alone, by
    BPTT over the last K characters of its stream's current sequence (from the state entering
    them: a sequence start is the zero state), computed here with ``sequence_gradient``."""
    seed, B, n, T, K = 4, 2, 5, 11, 2
    ck = tmp_path / "ck.npz"
    assert copy(*EVERY, "--truncation", K, "--hidden", n, "--batch", B, "--lr", 1e-300,
                "--clip", 1e30, "--gate-bias", 0.5, "--seed", seed, "--steps", T,
                "--dtype", "float64", "--checkpoint", ck) == 0
    cell = RHN(4, n, 4)
    params = cell.init(seed, xp=np, dtype=np.float64, gate_bias=0.5)
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    task = CopyTask(B)
    batches = [task.next_batch(data_rng) for _ in range(T)]
    starts, states = [0] * B, []  # states[t][b]: the stream's state after character t
    s = np.zeros((B, n))
    m = {k: np.zeros_like(p) for k, p in params.items()}
    for t, batch in enumerate(batches):
        s, _ = cell.step(params, s * batch.keep[:, None], batch.x, xp=np)
        states.append(s)
        g = {k: np.zeros_like(p) for k, p in params.items()}
        for b in range(B):
            if batch.keep[b] == 0:
                starts[b] = t
            first = max(starts[b], t - K + 1)
            s0 = np.zeros((1, n)) if first == starts[b] else states[first - 1][b:b + 1]
            xs = np.stack([batches[i].x[b:b + 1] for i in range(first, t + 1)])
            ys = np.stack([batches[i].y[b:b + 1] for i in range(first, t + 1)])
            mask = np.zeros(ys.shape)
            mask[-1, :] = 1.0
            _, gb = sequence_gradient("bptt", cell, params, xs, ys, mask,
                                      start=OnlineState(s0, None))
            g = {k: g[k] + gb[k] / B for k in g}
        m = {k: 0.9 * m[k] + 0.1 * g[k] for k in m}
    assert any(t - starts[0] >= K for t in range(T))  # truncation cut some gradients short
    saved = checkpoint(ck)
    for k, p in params.items():
        assert_close(saved[k], p, rtol=0)  # frozen
        assert_close(saved[f"adam/m/{k}"], m[k], rtol=1e-10, atol=1e-16, err_msg=k)
    assert_close(saved["s"], states[-1], rtol=1e-12)


def test_a_window_of_one_is_bptt_with_windows_of_one(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    common = [*SMALL, "--algo", "bptt", "--truncation", 1, "--dtype", "float64", "--steps", 30,
              "--lr", 0.01]
    assert copy(*common, "--checkpoint", a) == 0
    assert copy(*common, "--every-step", "--checkpoint", b) == 0
    windows, every = checkpoint(a), checkpoint(b)
    for k in ("W1", "V", "adam/m/W1", "adam/v/V", "s"):
        assert_close(every[k], windows[k], rtol=1e-12, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("stop", [7, 10])
def test_resume_continues_exactly(stop, tmp_path):
    common = [*SMALL, *EVERY, "--truncation", 4, "--dtype", "float64", "--report-every", 3,
              "--seed", 5, "--lr", 0.01]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    la, lb = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert copy(*common, "--steps", 20, "--checkpoint", a, "--log", la) == 0
    assert copy(*common, "--steps", stop, "--checkpoint", b, "--log", lb) == 0
    assert int(checkpoint(b)["window/filled"]) == 3
    assert copy(*common, "--steps", 20, "--checkpoint", b, "--log", lb, "--resume") == 0
    straight, split = checkpoint(a), checkpoint(b)
    assert set(straight) == set(split)
    assert {"window/s", "window/xs", "window/keep", "window/filled"} <= set(straight)
    for k in straight:
        if k not in ("seconds", "run"):
            assert_close(split[k], straight[k], rtol=0, err_msg=k)

    def figures(path):
        return [(r["step"], r["T"], r["bits"]) for r in records(path, "progress")]

    assert figures(lb) == figures(la)


def test_ctrl_c_inside_a_step_resumes_exactly(tmp_path, monkeypatch, capsys):
    from minirtrl import readout

    common = [*SMALL, *EVERY, "--truncation", 3, "--dtype", "float64", "--seed", 2]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert copy(*common, "--steps", 12, "--checkpoint", a) == 0
    calls = {"n": 0}
    real = readout.loss_and_grad

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # inside step 8: its window has moved on only in the step's copy
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(readout, "loss_and_grad", interrupting)
    assert copy(*common, "--steps", 12, "--checkpoint", b) == 130
    assert "interrupted at step 7" in capsys.readouterr().out
    monkeypatch.setattr(readout, "loss_and_grad", real)
    assert copy(*common, "--steps", 12, "--checkpoint", b, "--resume") == 0
    straight, split = checkpoint(a), checkpoint(b)
    for k in straight:
        if k not in ("seconds", "run"):
            assert_close(split[k], straight[k], rtol=0, err_msg=k)


def test_ptb_takes_a_step_per_character(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    for name, text in (("train", "the cat sat on the mat.\n" * 5), ("valid", "a cat sat.\n"),
                       ("test", "the mat.\n")):
        (data / f"{name}.txt").write_text(text, encoding="utf-8")
    log = tmp_path / "l.jsonl"
    assert ptb_cmd.main([str(a) for a in (
        "--data", data, "--format", "raw", *SMALL, *EVERY, "--truncation", 5, "--steps", 8,
        "--eval-every", 4, "--eval-streams", 2, "--log", log)]) == 0
    final = records(log, "final")[-1]
    assert (final["step"], final["data"]) == (8, 24)
    assert math.isfinite(final["valid_bpc"]) and math.isfinite(final["train_bpc"])


def test_resuming_without_the_flag_is_another_configuration(tmp_path, capsys):
    ck = tmp_path / "c.npz"
    assert copy(*SMALL, *EVERY, "--steps", 3, "--checkpoint", ck) == 0
    capsys.readouterr()
    assert copy(*SMALL, "--algo", "bptt", "--steps", 6, "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "another configuration", "every_step True (checkpoint) vs False (now)")


def test_a_damaged_window_is_refused(tmp_path, capsys):
    ck, bad = tmp_path / "c.npz", tmp_path / "bad.npz"
    assert copy(*SMALL, *EVERY, "--truncation", 3, "--steps", 5, "--checkpoint", ck) == 0
    for change, needle in (({"window/filled": np.asarray(3, dtype=np.int64)},
                            "'window/filled' 3 must be from 0 to 2"),
                           ({"window/keep": np.full((2, 3), 0.5, dtype=np.float32)},
                            "'window/keep' must hold 0 and 1 only")):
        np.savez(bad, **{**checkpoint(ck), **change})
        capsys.readouterr()
        assert copy(*SMALL, *EVERY, "--truncation", 3, "--steps", 8, "--checkpoint", bad,
                    "--resume") == 2
        one_error_line(capsys, "cannot read checkpoint", needle)


@pytest.mark.parametrize("command", ["copy", "ptb"])
@pytest.mark.parametrize("algo", ["kf", "rtrl"])
def test_every_step_is_for_bptt_only(command, algo, tmp_path, capsys):
    main = copy_cmd.main if command == "copy" else ptb_cmd.main
    extra = ["--data", str(tmp_path)] if command == "ptb" else []
    assert main([*extra, "--algo", algo, "--every-step"]) == 2
    line = one_error_line(capsys, f"--every-step applies only to --algo bptt, not {algo}")
    assert line.startswith(f"python -m minirtrl.{command}: error: ")


def test_help_shows_the_flag(capsys):
    assert copy_cmd.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--every-step bptt: one Adam step per character" in out
