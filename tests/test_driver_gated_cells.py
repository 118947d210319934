"""The drivers' ``--cell gru|lstm``: smoke runs of copy, ptb and noise with every algorithm
that is defined on them, the first training step derived independently, exact resume of an
LSTM run (its state [h; c] with c unbounded), the memory estimate of a state of 2n, and
``--algo rflo`` refused for any cell but the vanilla one (one line, exit status 2)."""

import json
import math

import numpy as np
import pytest
from cli_helpers import one_error_line

from minirtrl import METHODS, sequence_gradient
from minirtrl.cells import GRU, LSTM
from minirtrl.drivers import checkpoint as ckpt
from minirtrl.drivers import copy as copy_cmd
from minirtrl.drivers import memory
from minirtrl.drivers import noise as noise_cmd
from minirtrl.drivers import ptb as ptb_cmd
from minirtrl.drivers.copy import CopyTask
from minirtrl.methods import INFLUENCE, leaves
from minirtrl.testing import assert_close

CELLS = {"gru": GRU, "lstm": LSTM}
EXTRA = {"bptt": ["--truncation", "3"], "ok": ["--rank", "2"], "kf-avg": ["--rank", "2"]}
QUIET = ["--progress-seconds", "1000"]


def run(main, *argv):
    return main([str(a) for a in argv])


def records(path, kind=None):
    with open(path, encoding="utf-8") as f:
        out = [json.loads(line) for line in f]
    assert out[0]["kind"] == "header"
    return [r for r in out[1:] if kind is None or r["kind"] == kind]


def checkpoint(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def corpus(folder):
    folder.mkdir()
    for name, text in (("train", "the cat sat on the mat.\n" * 5), ("valid", "a cat sat.\n"),
                       ("test", "the mat.\n")):
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("algo", [a for a in METHODS if a != "rflo"])
@pytest.mark.parametrize("cell", CELLS)
def test_copy_trains_a_gated_cell_with_every_algorithm(cell, algo, tmp_path):
    log, ck = tmp_path / "l.jsonl", tmp_path / "c.npz"
    assert run(copy_cmd.main, "--cell", cell, "--algo", algo, *EXTRA.get(algo, []), "--hidden", 4,
               "--batch", 2, "--steps", 6, "--report-every", 3, "--log", log, "--checkpoint", ck,
               *QUIET) == 0
    lines = records(log)
    assert [r["step"] for r in lines] == [3, 6, 6]
    assert all(math.isfinite(r["bits"]) for r in lines)
    saved = checkpoint(ck)
    shapes = CELLS[cell](4, 4, 4).shapes()
    assert {k: saved[k].shape for k in shapes} == shapes
    n_state = 8 if cell == "lstm" else 4
    assert saved["s"].shape == (2, n_state)
    assert json.loads(str(saved["config"]))["cell"] == cell


@pytest.mark.parametrize("cell", CELLS)
def test_ptb_trains_a_gated_cell(cell, tmp_path):
    log = tmp_path / "l.jsonl"
    assert run(ptb_cmd.main, "--data", corpus(tmp_path / "d"), "--format", "raw", "--cell", cell,
               "--algo", "kf", "--hidden", 4, "--batch", 2, "--steps", 4, "--eval-every", 2,
               "--eval-streams", 2, "--log", log, *QUIET) == 0
    final = records(log, "final")[-1]
    assert math.isfinite(final["valid_bpc"]) and math.isfinite(final["test_bpc"])


@pytest.mark.parametrize("cell", CELLS)
def test_the_first_step_is_one_clipped_adam_step(cell, tmp_path):
    """Derived without the driver: the cell built and initialised from the seed and
    --init-scale, the exact gradient of the first character (bptt) / B, the recurrent part
    clipped, then Adam's first step p - lr g / (|g| + eps)."""
    seed, B, n, lr, clip, scale = 3, 3, 5, 0.01, 1e-3, 0.3
    ck = tmp_path / "ck.npz"
    assert run(copy_cmd.main, "--cell", cell, "--algo", "rtrl", "--hidden", n, "--batch", B,
               "--lr", lr, "--clip", clip, "--seed", seed, "--steps", 1, "--dtype", "float64",
               "--init-scale", scale, "--checkpoint", ck) == 0
    model = CELLS[cell](4, n, 4)
    params = model.init(seed, xp=np, dtype=np.float64, init_scale=scale)
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    batch = CopyTask(B).next_batch(data_rng)
    _, grads = sequence_gradient("bptt", model, params, batch.x[None], batch.y[None])
    g = {k: v / B for k, v in grads.items()}
    norm = math.sqrt(sum(float(np.sum(g[k] ** 2)) for k in model.blocks))
    assert norm > clip
    for k in model.blocks:
        g[k] = g[k] * (clip / norm)
    saved = checkpoint(ck)
    for k, p in params.items():
        assert_close(saved[k], p - lr * g[k] / (np.abs(g[k]) + 1e-8), rtol=0, atol=1e-12,
                     err_msg=k)


def test_an_lstm_run_resumes_exactly(tmp_path):
    common = ["--cell", "lstm", "--algo", "kf", "--hidden", 4, "--batch", 2, "--dtype",
              "float64", "--seed", 2, "--lr", 0.01, "--align", 3, *QUIET]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run(copy_cmd.main, *common, "--steps", 12, "--checkpoint", a) == 0
    assert run(copy_cmd.main, *common, "--steps", 7, "--checkpoint", b) == 0
    assert run(copy_cmd.main, *common, "--steps", 12, "--checkpoint", b, "--resume") == 0
    straight, split = checkpoint(a), checkpoint(b)
    for k in straight:
        if k not in ("seconds", "run"):
            assert_close(split[k], straight[k], rtol=0, err_msg=k)


def test_only_the_outputs_of_a_state_must_be_in_range():
    """An LSTM's state is [h; c]: c (the cell) is unbounded, h = o tanh(c) is not."""
    n = 3
    arrays = {"V": np.zeros((4, n + 1)), "s": np.zeros((2, 2 * n))}
    arrays["s"][:, n:] = 5.0  # c
    assert ckpt.problem(arrays) is None
    arrays["s"][0, 1] = 1.5  # h
    assert ckpt.problem(arrays) == "'s' holds outputs outside [-1, 1]"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("algo", ["rtrl", "kf", "bptt"])
def test_the_memory_estimate_counts_a_state_of_n_state(cell, algo):
    model = CELLS[cell](3, 4, 5)
    B = 3
    terms = memory.elements(model, algo, B, 1, truncation=2)
    params = model.init(0)
    s, cache = model.step(params, np.zeros((B, model.n_state)), np.zeros((B, 3)), xp=np)
    if algo == "bptt":
        assert terms["bptt window"] == 2 * (s.size + sum(c.a.size for c in cache))
        return
    state = INFLUENCE[algo].init(model, B, 1, xp=np, dtype=np.float64)
    assert terms[f"{algo} state, old and new"] == 2 * sum(a.size for a in leaves(state))
    H, pieces = model.influence_pieces(params, cache, xp=np)
    assert terms["Jacobians"] == H.size + sum(M.size for M in pieces)


@pytest.mark.parametrize("cell", CELLS)
def test_noise_measures_a_gated_cell(cell, tmp_path, capsys):
    out = tmp_path / "n.json"
    assert run(noise_cmd.main, "--cell", cell, "--algo", "kf", "uoro", "--hidden", 3, "--at", 2,
               3, "--sizes", "--samples", 3, "--json", out) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    noise = [r for r in rows if r["kind"] == "noise"]
    assert len(noise) == 4 and all(r["cell"] == cell for r in noise)
    assert all(math.isfinite(r["influence"][0]) and r["influence"][0] > 0 for r in noise)
    assert f"n = 3, {cell}, M = 3 chains" in capsys.readouterr().out


def test_help_and_settings_line_name_the_cells(tmp_path, capsys):
    assert copy_cmd.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--cell {rhn,vanilla,gru,lstm}" in out and "gru or lstm" in out
    assert run(copy_cmd.main, "--cell", "gru", "--algo", "kf", "--hidden", 3, "--batch", 2,
               "--steps", 1, *QUIET) == 0
    assert "minirtrl.copy: kf, gru, n 3, B 2," in capsys.readouterr().out  # no depth


@pytest.mark.parametrize("cell", ["rhn", "gru", "lstm"])
@pytest.mark.parametrize("command", ["copy", "ptb"])
def test_rflo_is_refused_for_any_cell_but_vanilla(command, cell, tmp_path, capsys):
    main = copy_cmd.main if command == "copy" else ptb_cmd.main
    extra = ["--data", str(tmp_path)] if command == "ptb" else []
    assert main([*extra, "--algo", "rflo", "--cell", cell]) == 2
    line = one_error_line(capsys)
    assert line == (f"python -m minirtrl.{command}: error: --algo rflo applies only to --cell "
                    f"vanilla (the leaky RNN), not {cell} (see --help)")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("flag", [["--alpha", "0.5"], ["--depth", "2"], ["--gate-bias", "1"]])
def test_flags_of_other_cells_are_refused(cell, flag, capsys):
    assert copy_cmd.main(["--cell", cell, *flag]) == 2
    one_error_line(capsys, flag[0], f"not {cell}" if flag[0] != "--depth" else f"{cell} has depth")


@pytest.mark.parametrize("cell", CELLS)
def test_check_runs_a_gated_cell(cell, capsys):
    from minirtrl.drivers import check

    assert check.main(["--cell", cell, "--samples", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"backend numpy on cpu, {cell}, n 5, T 6, B 2"
    assert any(line.startswith("rtrl") and "ok (exact" in line for line in out)
    assert any(line.startswith("rflo") and "not run" in line for line in out)


@pytest.mark.parametrize("algo", ["snap1", "rflo"])
def test_noise_measures_the_bias_of_a_deterministic_method(algo):
    """One chain, standard error 0; zero at t = 1 (G_1 is the immediate influence, which both
    keep whole); at t = 3 the figure equals ‖Ĝ − G‖²/‖G‖² computed here from the online API
    on the same network and stream (seed + 1000: two symbols per step, the first read)."""
    n, n_sym, seed, alpha = 4, 8, 5, 0.6
    res = noise_cmd.measure(algo, n=n, report={1, 3}, samples=7, cell="vanilla", alpha=alpha,
                            seed=seed, xp=np)
    assert res[1]["influence"] == (0.0, 0.0) and res[1]["gradient"] == (0.0, 0.0)
    from minirtrl import online
    from minirtrl.cells import VanillaRNN

    cell = VanillaRNN(n_sym, n, n_sym, alpha=alpha)
    params = cell.init(seed, xp=np, dtype=np.float64, init_scale=1 / math.sqrt(n))
    stream = np.random.default_rng(seed + 1000)
    runs = {a: (online(a, cell), online(a, cell).init(1)) for a in ("rtrl", algo)}
    for _ in range(3):
        x = np.eye(n_sym)[stream.integers(0, n_sym, size=2)[:1]]
        runs = {a: (o, o.step(params, st, x, None, signs={})[0]) for a, (o, st) in runs.items()}
    dense = {a: INFLUENCE[a].influence(cell, st.est, xp=np) for a, (o, st) in runs.items()}
    err = sum(np.sum((dense[algo][k] - dense["rtrl"][k]) ** 2) for k in cell.blocks)
    norm = sum(np.sum(dense["rtrl"][k] ** 2) for k in cell.blocks)
    assert err > 0
    assert res[3]["influence"][1] == 0.0
    assert_close(res[3]["influence"][0], err / norm, rtol=1e-12)


def test_noise_refuses_rflo_on_a_cell_other_than_vanilla(capsys):
    assert noise_cmd.main(["--algo", "rflo", "--cell", "gru"]) == 2
    one_error_line(capsys, "--algo rflo", "not gru")
