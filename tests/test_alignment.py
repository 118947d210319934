"""``--align N``: exact RTRL beside the learner and the ``align`` records of its log. The
figures derived independently for frozen parameters (every-step and window bptt against the
exact per-step gradients of ``sequence_gradient``), exact RTRL aligned with itself, the same
records after a resume, the memory refusal, and the plot's align_cos panel."""

import itertools
import json
import math

import numpy as np
import pytest
from cli_helpers import one_error_line

from minirtrl import RHN, OnlineState, sequence_gradient
from minirtrl.drivers import align, memory
from minirtrl.drivers import copy as copy_cmd
from minirtrl.drivers import ptb as ptb_cmd
from minirtrl.drivers.copy import CopyTask
from minirtrl.testing import assert_close

SMALL = ["--hidden", "4", "--batch", "3", "--progress-seconds", "1000"]


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


# ---- the figures, derived independently --------------------------------------------------------
def frozen_run(tmp_path, *flags, seed=3, B=2, n=4, steps=12, chars=12, N=4):
    """A copy run whose parameters never move (lr 1e-300): its align records, its cell and
    parameters, the ``chars`` characters it read (drawn again from its seed) and the states
    after each."""
    log = tmp_path / "l.jsonl"
    assert copy("--hidden", n, "--batch", B, "--lr", 1e-300, "--clip", 1e30, "--gate-bias", 0.5,
                "--seed", seed, "--steps", steps, "--dtype", "float64", "--align", N,
                "--log", log, *flags) == 0
    cell = RHN(4, n, 4)
    params = cell.init(seed, xp=np, dtype=np.float64, gate_bias=0.5)
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    task = CopyTask(B)
    batches = [task.next_batch(data_rng) for _ in range(chars)]
    s, states = np.zeros((B, n)), []
    for batch in batches:
        s, _ = cell.step(params, s * batch.keep[:, None], batch.x, xp=np)
        states.append(s)
    return records(log, "align"), cell, params, batches, states


def gradient(cell, params, batches, states, b, lo, hi, *, last_only):
    """Stream b's W1 gradient of the losses of characters lo .. hi - 1 (or of the last alone),
    back-propagated to lo, from the state entering it (zero at a sequence start)."""
    restart = lo == 0 or batches[lo].keep[b] == 0
    start = None if restart else OnlineState(states[lo - 1][b:b + 1], None)
    xs = np.stack([batch.x[b:b + 1] for batch in batches[lo:hi]])
    ys = np.stack([batch.y[b:b + 1] for batch in batches[lo:hi]])
    mask = np.ones(ys.shape)
    if last_only:
        mask[:-1] = 0.0
    return sequence_gradient("bptt", cell, params, xs, ys, mask, start=start)[1]["W1"]


def sequence_starts(batches, b, t):
    """The character at which stream b's sequence that holds character t started."""
    return max(i for i in range(t + 1) if batches[i].keep[b] == 0)


def exact(cell, params, batches, states, t):
    """Exact RTRL's W1 gradient of character t's loss, summed over the streams: BPTT of that
    loss alone through each stream's whole current sequence."""
    return sum(gradient(cell, params, batches, states, b, sequence_starts(batches, b, t), t + 1,
                        last_only=True) for b in range(batches[0].x.shape[0]))


def cos_rel(g, e):
    return (float(np.sum(g * e) / math.sqrt(np.sum(g * g) * np.sum(e * e))),
            float(math.sqrt(np.sum((g - e) ** 2) / np.sum(e * e))))


def assert_means(got, figures, N):
    """Each record holds the means of the next N figures."""
    assert len(got) * N == len(figures) and all(r["align_steps"] == N for r in got)
    for i, r in enumerate(got):
        chunk = figures[i * N:(i + 1) * N]
        assert_close(r["align_cos"], np.mean([c for c, _ in chunk]), rtol=1e-9)
        assert_close(r["align_rel"], np.mean([e for _, e in chunk]), rtol=1e-9)


def test_every_step_figures_are_the_means_of_each_characters_cosine_and_error(tmp_path):
    B, T, K, N = 2, 12, 2, 4
    got, cell, params, batches, states = frozen_run(
        tmp_path, "--algo", "bptt", "--every-step", "--truncation", K, B=B, steps=T, chars=T, N=N)
    figures = []
    for t in range(T):
        g = sum(gradient(cell, params, batches, states, b,
                         max(sequence_starts(batches, b, t), t - K + 1), t + 1, last_only=True)
                for b in range(B))
        figures.append(cos_rel(g, exact(cell, params, batches, states, t)))
    assert [r["step"] for r in got] == [4, 8, 12]
    assert_means(got, figures, N)
    assert min(c for c, _ in figures) < 0.999999  # truncation shows


def test_a_bptt_window_is_compared_with_the_exact_gradients_summed_over_it(tmp_path):
    """Window bptt (K = 3 characters a step): the window's gradient (its summed loss through
    the window, cut at the streams' resets) against the sum of the exact gradients of its
    characters."""
    B, K, W, N = 2, 3, 4, 2
    got, cell, params, batches, states = frozen_run(
        tmp_path, "--algo", "bptt", "--truncation", K, B=B, steps=W, chars=W * K, N=N)
    figures = []
    for w in range(W):
        lo, hi = w * K, (w + 1) * K
        g = 0.0
        for b in range(B):
            cuts = [lo, *(t for t in range(lo + 1, hi) if batches[t].keep[b] == 0), hi]
            g = g + sum(gradient(cell, params, batches, states, b, a, z, last_only=False)
                        for a, z in itertools.pairwise(cuts))
        e = sum(exact(cell, params, batches, states, t) for t in range(lo, hi))
        figures.append(cos_rel(g, e))
    assert [r["step"] for r in got] == [2, 4]
    assert_means(got, figures, N)
    assert min(c for c, _ in figures) < 0.999999


def test_exact_rtrl_is_aligned_with_itself(tmp_path):
    log = tmp_path / "l.jsonl"
    assert copy(*SMALL, "--algo", "rtrl", "--steps", 20, "--align", 5, "--log", log,
                "--dtype", "float64") == 0
    got = records(log, "align")
    assert [(r["step"], r["data"], r["align_steps"]) for r in got] == [
        (5, 15, 5), (10, 30, 5), (15, 45, 5), (20, 60, 5)]
    for r in got:
        assert_close(r["align_cos"], 1.0, rtol=1e-12)
        assert r["align_rel"] == 0.0  # the same operations on the same arrays


@pytest.mark.parametrize("flags", [["--algo", "kf"], ["--algo", "uoro"],
                                   ["--algo", "bptt", "--truncation", "2"]])
def test_an_estimate_is_not_aligned_exactly(flags, tmp_path, capsys):
    log = tmp_path / "l.jsonl"
    assert copy(*SMALL, *flags, "--steps", 40, "--align", 20, "--log", log) == 0
    got = records(log, "align")
    assert len(got) == 2
    for r in got:
        assert -1 <= r["align_cos"] < 0.9999 and r["align_rel"] > 1e-4
    out = capsys.readouterr().out
    assert f"align_cos {got[-1]['align_cos']:.4f}" in out.splitlines()[-1]  # the final line


# ---- resume -------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [["--algo", "kf"], ["--algo", "bptt", "--truncation", "3"],
                                   ["--algo", "bptt", "--every-step", "--truncation", "3"]])
def test_a_resumed_run_logs_the_same_figures(flags, tmp_path):
    common = [*SMALL, *flags, "--dtype", "float64", "--seed", 1, "--align", 4, "--lr", 0.01]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    la, lb = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert copy(*common, "--steps", 16, "--checkpoint", a, "--log", la) == 0
    assert copy(*common, "--steps", 10, "--checkpoint", b, "--log", lb) == 0  # 2 steps summed
    assert int(checkpoint(b)["align/count"]) == 2
    assert copy(*common, "--steps", 16, "--checkpoint", b, "--log", lb, "--resume") == 0

    def figures(path):
        return [(r["step"], r["align_cos"], r["align_rel"], r["align_steps"])
                for r in records(path, "align")]

    assert len(figures(la)) == 4 and figures(lb) == figures(la)
    straight, split = checkpoint(a), checkpoint(b)
    assert set(straight) == set(split) and "align/G/0" in straight
    for k in straight:
        if k not in ("seconds", "run"):
            assert_close(split[k], straight[k], rtol=0, err_msg=k)


def test_the_shadow_resets_with_the_streams(tmp_path):
    """ptb resets every stream every R characters: exact RTRL as the learner resets its
    influence there, so the shadow is aligned with it exactly only if it resets too."""
    data = tmp_path / "d"
    data.mkdir()
    for name, text in (("train", "the cat sat on the mat.\n" * 5), ("valid", "a cat.\n"),
                       ("test", "the mat.\n")):
        (data / f"{name}.txt").write_text(text, encoding="utf-8")
    log, ck = tmp_path / "l.jsonl", tmp_path / "c.npz"
    assert ptb_cmd.main([str(a) for a in (
        "--data", data, "--format", "raw", *SMALL, "--algo", "rtrl", "--reset-every", 3,
        "--steps", 9, "--align", 3, "--eval-every", 0, "--eval-streams", 2, "--log", log,
        "--checkpoint", ck, "--dtype", "float64", "--lr", 0.05)]) == 0
    got = records(log, "align")
    assert [r["step"] for r in got] == [3, 6, 9]
    assert all(r["align_rel"] == 0.0 for r in got)
    saved = checkpoint(ck)
    # G of the RHN block: (B, n, 2n (n_in + n + 1)); 12 symbols in "the cat sat on the mat.\n"
    assert saved["align/G/0"].shape == (3, 4, 8 * (12 + 4 + 1))
    assert_close(saved["align/G/0"], saved["est/0"], rtol=0)  # the learner's own influence


def test_a_first_step_after_a_reset_is_compared_with_its_immediate_influence():
    """``align.step`` on one character from a reset: exact RTRL's gradient is c · F (the
    immediate influence), so the method's own c · F is aligned exactly, and the shadow's
    influence of a stream that restarts is the immediate one whatever it was before."""
    from minirtrl import rtrl
    from minirtrl.methods import influence_step

    cell = RHN(3, 4, 5)
    params = cell.init(0, xp=np, dtype=np.float64, init_scale=0.5)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((1, 2, 3)), rng.integers(0, 5, (1, 2))
    mask, keep = np.ones((1, 2)), np.zeros((1, 2))
    shadow = align.start(cell, 2, xp=np, dtype=np.float64, device=None)
    noisy = shadow._replace(est=rtrl.State(tuple(rng.standard_normal(G.shape)
                                                 for G in shadow.est.G)))
    s = rng.uniform(-1, 1, (2, 4))
    _, _, _, exact = influence_step(rtrl, cell, params, np.zeros((2, 4)), shadow.est, x[0],
                                    y[0], mask[0], {}, xp=np)
    after = align.step(noisy, cell, params, s, x, y, mask, keep, exact, xp=np)
    assert (after.count, after.cos, after.rel) == (1, pytest.approx(1.0, abs=1e-12), 0.0)
    fresh = align.step(shadow, cell, params, np.zeros((2, 4)), x, y, mask, None, exact, xp=np)
    assert_close(after.est.G[0], fresh.est.G[0], rtol=0)


def test_figures_of_no_counted_step_are_null():
    zero = {"W1": np.zeros((2, 3))}
    assert align.compare(zero, zero, ("W1",), xp=np) == (None, None)
    assert align.compare({"W1": np.ones((2, 3))}, {"W1": np.full((2, 3), np.nan)}, ("W1",),
                         xp=np) == (None, None)
    cos, rel = align.compare({"W1": np.zeros((2, 3))}, {"W1": np.ones((2, 3))}, ("W1",), xp=np)
    assert (cos, rel) == (0.0, 1.0)
    fields, cleared = align.figures(align.Shadow(None, 0.0, 0.0, 0))
    assert fields == {"align_cos": None, "align_rel": None, "align_steps": 0}
    fields, cleared = align.figures(align.Shadow(None, 1.5, 0.5, 2))
    assert fields == {"align_cos": 0.75, "align_rel": 0.25, "align_steps": 2}
    assert (cleared.cos, cleared.rel, cleared.count) == (0.0, 0.0, 0)


def test_every_block_but_the_readout_is_compared():
    g = {"W1": np.array([[1.0, 0.0]]), "W2": np.array([[0.0, 1.0]]), "V": np.ones((2, 2))}
    e = {"W1": np.array([[1.0, 0.0]]), "W2": np.array([[0.0, -1.0]]), "V": -np.ones((2, 2))}
    cos, rel = align.compare(g, e, ("W1", "W2"), xp=np)  # concatenated: (1, 0, 0, 1).(1, 0, 0, -1)
    assert cos == pytest.approx(0.0, abs=1e-15) and rel == pytest.approx(math.sqrt(2.0))


# ---- refusals --------------------------------------------------------------------------------
def test_a_shadow_that_cannot_fit_is_refused(monkeypatch, tmp_path, capsys):
    from minirtrl.drivers.cli import make_cell

    cell = make_cell(type("Args", (), {"cell": "rhn", "hidden": 40, "depth": 1, "alpha": None}),
                     4, 4)
    itemsize = 4
    without = sum(memory.elements(cell, "kf", 16).values()) * itemsize
    with_shadow = sum(memory.elements(cell, "kf", 16, align=True).values()) * itemsize
    assert with_shadow > 10 * without
    monkeypatch.setattr(memory, "available", lambda device: (2 * without, "available"))
    ck = tmp_path / "c.npz"
    assert copy("--algo", "kf", "--hidden", 40, "--steps", 1, "--checkpoint", ck) == 0
    capsys.readouterr()
    assert copy("--algo", "kf", "--hidden", 40, "--align", 10, "--steps", 1) == 2
    one_error_line(capsys, "--hidden 40 --depth 1 --batch 16 --algo kf --dtype float32 --align 10:",
                   "(exact RTRL shadow of --align, old and new", "or leave out --align")


def test_a_damaged_shadow_is_refused(tmp_path, capsys):
    ck, bad = tmp_path / "c.npz", tmp_path / "bad.npz"
    common = [*SMALL, "--algo", "kf", "--align", 4]
    assert copy(*common, "--steps", 6, "--checkpoint", ck) == 0
    np.savez(bad, **{**checkpoint(ck), "align/sums": np.asarray([5.0, 0.1])})
    capsys.readouterr()
    assert copy(*common, "--steps", 8, "--checkpoint", bad, "--resume") == 2
    one_error_line(capsys, "cannot read checkpoint", "'align/sums'", "inconsistent")
    capsys.readouterr()
    assert copy(*SMALL, "--algo", "kf", "--steps", 8, "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "another configuration", "align 4 (checkpoint) vs None (now)")


def test_a_run_without_the_flag_has_no_shadow(tmp_path):
    ck = tmp_path / "c.npz"
    assert copy(*SMALL, "--algo", "kf", "--steps", 3, "--checkpoint", ck) == 0
    assert not any(k.startswith(("align/", "window/")) for k in checkpoint(ck))


def test_help_shows_the_flag(capsys):
    assert copy_cmd.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--align N run exact RTRL beside the method" in out


# ---- plot --------------------------------------------------------------------------------------
def test_plot_draws_align_cos_against_steps_when_a_log_has_it(tmp_path):
    pytest.importorskip("matplotlib")
    from minirtrl.drivers import plot

    aligned, plain = tmp_path / "a.jsonl", tmp_path / "p.jsonl"
    assert copy(*SMALL, "--algo", "kf", "--steps", 30, "--align", 10, "--report-every", 10,
                "--log", aligned) == 0
    assert copy(*SMALL, "--algo", "uoro", "--steps", 30, "--report-every", 10,
                "--log", plain) == 0
    fig = plot.figure([plot.read(aligned), plot.read(plain)])
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 3 and shown[2].get_xlabel() == "optimiser steps"
    assert "align_cos" in shown[2].get_ylabel()
    lines = {line.get_label(): line for line in shown[2].get_lines()}
    expected = [(r["step"], r["align_cos"]) for r in records(aligned, "align")]
    assert list(zip(*lines["kf"].get_data())) == expected and len(expected) == 3
    assert len(lines["uoro"].get_data()[0]) == 0  # a log without align records: no points
    fig = plot.figure([plot.read(plain)])  # without any: the copy panels alone
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    out = tmp_path / "a.png"
    assert plot.main([str(aligned), "--out", str(out)]) == 0 and out.stat().st_size > 0


def test_plot_names_an_align_record_it_cannot_draw(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from minirtrl.drivers import plot

    log = tmp_path / "a.jsonl"
    assert copy(*SMALL, "--algo", "kf", "--steps", 4, "--align", 2, "--log", log) == 0
    text = log.read_text().splitlines()
    number = next(i for i, line in enumerate(text) if '"kind": "align"' in line)
    text[number] = text[number].replace('"align_cos": ', '"align_cos": "x", "was": ')
    log.write_text("\n".join(text) + "\n")
    capsys.readouterr()
    assert plot.main([str(log), "--out", str(tmp_path / "a.png")]) == 2
    one_error_line(capsys, f"line {number + 1}: a align record whose 'align_cos' is not a "
                           "number or null")
