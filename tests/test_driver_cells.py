"""The drivers' ``--cell rhn|vanilla`` and ``--alpha``: smoke runs of copy and ptb with the
vanilla cell for every algorithm, its first training step derived independently, the
checkpoint recording the cell, and refused combinations (one line, exit status 2)."""

import json
import math

import numpy as np
import pytest
from cli_helpers import one_error_line

from minirtrl import METHODS, VanillaRNN, sequence_gradient
from minirtrl.drivers import copy as copy_driver
from minirtrl.drivers import ptb as ptb_driver
from minirtrl.drivers.cli import parse_training as parse
from minirtrl.drivers.copy import CopyTask
from minirtrl.testing import assert_close

EXTRA = {"bptt": ["--truncation", "3"], "ok": ["--rank", "2"], "kf-avg": ["--rank", "2"]}
QUIET = ["--progress-seconds", "1000"]
TEXT = {"train": "the cat sat on the mat.\n" * 6, "valid": "a cat on a mat.\n",
        "test": "the mat.\n"}


def run(main, *argv):
    return main([str(a) for a in argv])


def read_log(path):
    """The records after the header line (which says which cell ran)."""
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert records[0]["kind"] == "header"
    return records[1:]


def checkpoint(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def corpus(folder):
    folder.mkdir()
    for name, text in TEXT.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8", newline="")
    return folder


# ---- smoke runs -------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", METHODS)
def test_copy_trains_the_vanilla_cell_with_every_algorithm(algo, tmp_path):
    log, ck = tmp_path / "log.jsonl", tmp_path / "ck.npz"
    rc = run(copy_driver.main, "--cell", "vanilla", "--alpha", 0.5, "--algo", algo,
             *EXTRA.get(algo, []), "--hidden", 6, "--batch", 3, "--steps", 12, "--report-every", 6,
             "--log", log, "--checkpoint", ck, *QUIET)
    assert rc == 0
    lines = read_log(log)
    assert [r["step"] for r in lines] == [6, 12, 12]
    assert all(math.isfinite(r["bits"]) for r in lines)
    saved = checkpoint(ck)
    assert saved["W1"].shape == (6, 4 + 6 + 1) and saved["V"].shape == (4, 7)  # vanilla layout
    config = json.loads(str(saved["config"]))
    assert (config["cell"], config["alpha"], config["gate_bias"]) == ("vanilla", 0.5, None)


@pytest.mark.parametrize("algo", METHODS)
def test_ptb_trains_the_vanilla_cell_with_every_algorithm(algo, tmp_path):
    data, log = corpus(tmp_path / "d"), tmp_path / "log.jsonl"
    rc = run(ptb_driver.main, "--data", data, "--format", "raw", "--cell", "vanilla",
             "--alpha", 0.8, "--algo", algo, *EXTRA.get(algo, []), "--hidden", 4, "--batch", 2,
             "--steps", 6,
             "--eval-every", 3, "--eval-streams", 2, "--log", log, *QUIET)
    assert rc == 0
    last = read_log(log)[-1]
    assert last["final"] and last["step"] == 6
    assert math.isfinite(last["valid_bpc"]) and math.isfinite(last["test_bpc"])


def test_first_vanilla_step_is_one_clipped_adam_step(tmp_path):
    """Derived without the driver: the exact gradient of the first character (bptt), / B,
    the recurrent part clipped, then Adam's first step p - lr g / (|g| + eps)."""
    seed, B, n, lr, clip, alpha = 3, 3, 5, 0.01, 1e-3, 0.4
    ck = tmp_path / "ck.npz"
    assert run(copy_driver.main, "--cell", "vanilla", "--alpha", alpha, "--algo", "kf",
               "--hidden", n, "--batch", B, "--lr", lr, "--clip", clip, "--seed", seed,
               "--steps", 1, "--dtype", "float64", "--checkpoint", ck) == 0
    cell = VanillaRNN(4, n, 4, alpha=alpha)
    params = cell.init(seed, xp=np, dtype=np.float64)
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    batch = CopyTask(B).next_batch(data_rng)
    _, grads = sequence_gradient("bptt", cell, params, batch.x[None], batch.y[None])
    g = {k: v / B for k, v in grads.items()}
    norm = math.sqrt(float(np.sum(g["W1"] ** 2)))
    assert norm > clip
    g["W1"] = g["W1"] * (clip / norm)
    saved = checkpoint(ck)
    for k, p in params.items():
        assert_close(saved[k], p - lr * g[k] / (np.abs(g[k]) + 1e-8), rtol=0, atol=1e-12)


# ---- flags, defaults, the checkpoint ----------------------------------------------------------
def test_defaults_and_help(capsys):
    args = parse(copy_driver.make_parser(), [])
    assert (args.cell, args.alpha, args.gate_bias, args.depth) == ("rhn", None, 0.0, 1)
    args = parse(copy_driver.make_parser(), ["--cell", "vanilla"])
    assert (args.cell, args.alpha, args.gate_bias) == ("vanilla", 1.0, None)
    assert copy_driver.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--cell {rhn,vanilla,gru,lstm}" in out and "(default rhn)" in out
    assert "--alpha" in out and "(default 1.0" in out


def test_checkpoint_records_the_cell(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    common = ["--algo", "rtrl", "--hidden", 5, "--batch", 2, "--dtype", "float64", *QUIET]
    assert run(copy_driver.main, *common, "--cell", "vanilla", "--alpha", 0.5, "--steps", 3,
               "--checkpoint", ck) == 0
    capsys.readouterr()
    assert run(copy_driver.main, *common, "--cell", "vanilla", "--alpha", 0.6, "--steps", 6,
               "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "another configuration", "alpha 0.5 (checkpoint) vs 0.6 (now)")
    assert run(copy_driver.main, *common, "--steps", 6, "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "cell 'vanilla' (checkpoint) vs 'rhn' (now)")
    # resumed with the same flags, the run continues exactly as an uninterrupted one
    straight = tmp_path / "straight.npz"
    assert run(copy_driver.main, *common, "--cell", "vanilla", "--alpha", 0.5, "--steps", 6,
               "--checkpoint", straight) == 0
    assert run(copy_driver.main, *common, "--cell", "vanilla", "--alpha", 0.5, "--steps", 6,
               "--checkpoint", ck, "--resume") == 0
    a, b = checkpoint(straight), checkpoint(ck)
    for k in ("W1", "V", "s", "adam/m/W1"):
        assert_close(b[k], a[k], rtol=0, err_msg=k)


@pytest.mark.parametrize("argv, needle", [
    (["--alpha", "0.5"], "--alpha applies only to --cell vanilla"),
    (["--cell", "rhn", "--alpha", "0.5"], "--alpha applies only to --cell vanilla"),
    (["--cell", "vanilla", "--gate-bias", "-1"], "--gate-bias applies only to --cell rhn"),
    (["--cell", "vanilla", "--depth", "2"], "--depth applies only to --cell rhn"),
    (["--cell", "vanilla", "--alpha", "0"], "--alpha"),
    (["--cell", "vanilla", "--alpha", "1.5"], "--alpha"),
    (["--cell", "vanilla", "--alpha", "nan"], "--alpha"),
    (["--cell", "transformer"], "--cell"),
])
@pytest.mark.parametrize("driver", ["copy", "ptb"])
def test_refused_combinations_give_one_line_and_status_2(driver, argv, needle, tmp_path, capsys):
    main = copy_driver.main if driver == "copy" else ptb_driver.main
    extra = ["--data", str(corpus(tmp_path / "d")), "--format", "raw"] if driver == "ptb" else []
    assert main([*extra, *argv]) == 2
    one_error_line(capsys, needle)
