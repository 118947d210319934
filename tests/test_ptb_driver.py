"""``python -m minirtrl.ptb`` via ``main([...])``: evaluation, smoke runs, resets, resume, errors,
learning, and a run on the real char-PTB files when they are present.

Expected values are derived independently in this file: the RHN forward pass and the
softmax are re-implemented in host NumPy from the model's equations, the corpus is encoded here
from its text (sorted characters), the stream offsets are ``b·N // B``, and gradients come
from BPTT (another algorithm than the one under test).
"""

import collections
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import one_error_line

from minirtrl import METHODS, RHN, sequence_gradient
from minirtrl.drivers.ptb import eval_streams, evaluate, main, parse
from minirtrl.testing import assert_close, to_numpy

PTB = Path(__file__).parents[1].parent / "shared" / "data" / "ptb"
EXTRA = {"bptt": ["--truncation", "3"], "ok": ["--rank", "2"], "kf-avg": ["--rank", "2"],
         "rflo": ["--cell", "vanilla"]}  # rflo: the leaky RNN only
QUIET = ["--progress-seconds", "1000"]

TRAIN = "the cat sat on the mat.\nthe dog sat on a log!\n" * 4
VALID = "a cat on a log.\nthe dog sat.\n"
TEST = "the mat sat on a dog!\n"


def write_raw(folder, train=TRAIN, valid=VALID, test=TEST):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_text(text, encoding="utf-8", newline="")
    return folder


def write_mikolov(folder, train=TRAIN, valid=VALID, test=TEST):
    """The generating rule of the PTB char files: every character followed by one space."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        spaced = "".join(c + " " for c in text.replace(" ", "_"))
        (folder / f"ptb.char.{name}.txt").write_text(spaced, encoding="utf-8", newline="")
    return folder


def encode(text, symbols):
    return np.array([symbols.index(c) for c in text], dtype=np.int64)


def read_log(path, kinds=("progress", "eval", "final")):
    """The records of ``kinds`` of a log, after checking its header and that all have a kind."""
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert records[0]["kind"] == "header" and records[0]["format"] == "minirtrl-log-1"
    assert all(r["kind"] in ("progress", "eval", "final", "resume") for r in records[1:])
    return [r for r in records if r["kind"] in kinds]


def run(*argv):
    return main([str(a) for a in argv])


def checkpoint(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ---- an independent host oracle: the RHN forward pass and softmax ---------------------------
def oracle_step(params, depth, s, x):
    """One RHN step for one sample, NumPy float64, straight from the equations
    (docs/algorithms.md (1)-(3))."""
    n = s.shape[0]
    for l in range(1, depth + 1):
        a = np.concatenate([x, s, [1.0]]) if l == 1 else np.concatenate([s, [1.0]])
        z = params[f"W{l}"] @ a
        h, tau = np.tanh(z[:n]), 1.0 / (1.0 + np.exp(-z[n:]))
        s = h * tau + s * (1.0 - tau)
    return s


def oracle_nll_bits(params, s, y):
    z = params["V"] @ np.concatenate([s, [1.0]])
    z = z - z.max()
    return (np.log(np.exp(z).sum()) - z[y]) / math.log(2.0)


def oracle_bits(params, depth, n, ids, S):
    """Σ over the N-1 predictions of ids, cut into S chunks, each run from a zero state."""
    m = len(ids) - 1
    V = params["V"].shape[0]
    total = 0.0
    for k in range(S):
        s = np.zeros(n)
        for i in range(k * m // S, (k + 1) * m // S):
            s = oracle_step(params, depth, s, np.eye(V)[ids[i]])
            total += oracle_nll_bits(params, s, ids[i + 1])
    return total


def oracle_states(params, depth, n, V, inputs, starts):
    """Final state per stream of host ids ``inputs`` (T, B), zeroed before steps in ``starts``."""
    T, B = inputs.shape
    out = []
    for b in range(B):
        s = np.zeros(n)
        for t in range(T):
            if t in starts:
                s = np.zeros(n)
            s = oracle_step(params, depth, s, np.eye(V)[inputs[t, b]])
        out.append(s)
    return np.stack(out)


def host_params(params):
    return {k: np.asarray(to_numpy(v), dtype=np.float64) for k, v in params.items()}


# ---- evaluation -------------------------------------------------------------------------------
def device_streams(ids, S, xp, device, dtype):
    inputs, targets, mask = eval_streams(ids, S)
    return (xp.asarray(inputs, dtype=xp.int64, device=device),
            xp.asarray(targets, dtype=xp.int64, device=device),
            xp.asarray(mask, dtype=dtype, device=device))


def test_untrained_model_gives_log2_vocabulary_and_leaves_parameters_alone(backend):
    """Logits of size ~init_scale make the softmax uniform up to O(init_scale):
    every prediction costs log2(V) bits. Float32, the training default."""
    xp, device = backend.xp, backend.device
    V, n, N = 7, 5, 301
    cell = RHN(V, n, V)
    params = cell.init(1, xp=xp, dtype=xp.float32, init_scale=1e-4, device=device)
    before = {k: to_numpy(p).copy() for k, p in params.items()}
    ids = np.random.default_rng(0).integers(0, V, size=N)
    bits, count = evaluate(cell, params, *device_streams(ids, 4, xp, device, xp.float32), xp=xp)
    assert count == N - 1
    assert abs(bits / count - math.log2(V)) < 1e-3
    for k, p in params.items():
        assert_close(to_numpy(p), before[k], rtol=0)


@pytest.mark.parametrize("S", [1, 3])
def test_evaluate_equals_a_per_position_loop(backend, S):
    """Random depth-2 model, float64; uneven stream lengths (padding) for S = 3."""
    xp, device = backend.xp, backend.device
    V, n, depth, N = 6, 4, 2, 38
    cell = RHN(V, n, V, depth=depth)
    params = cell.init(3, xp=xp, dtype=xp.float64, init_scale=0.7, gate_bias=-0.5, device=device)
    ids = np.random.default_rng(5).integers(0, V, size=N)
    bits, count = evaluate(cell, params, *device_streams(ids, S, xp, device, xp.float64), xp=xp)
    expect = oracle_bits(host_params(params), depth, n, ids, S)
    assert count == N - 1
    assert_close(bits, expect, rtol=1e-12)
    assert abs(bits / count - math.log2(V)) > 0.05  # a model that is not uniform


def test_evaluation_does_not_change_training(tmp_path):
    """Evaluating every step leaves parameters, Adam, RNG and task state exactly as without."""
    data = write_raw(tmp_path / "d")
    common = ["--data", data, "--format", "raw", "--algo", "kf", "--hidden", 4, "--batch", 3,
              "--steps", 6, "--dtype", "float64", *QUIET]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run(*common, "--eval-every", 1, "--checkpoint", a) == 0
    assert run(*common, "--eval-every", 0, "--checkpoint", b) == 0
    ca, cb = checkpoint(a), checkpoint(b)
    assert set(ca) == set(cb)
    for k in ca:
        if k not in ("seconds", "run"):  # the time taken, the run's identity
            assert_close(ca[k], cb[k], err_msg=k, rtol=0)


# ---- smoke runs -------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", METHODS)
def test_every_algorithm_runs_logs_and_evaluates(algo, driver_backend, tmp_path, capsys):
    name = driver_backend.name
    data = write_raw(tmp_path / "d")
    log = tmp_path / "log.jsonl"
    rc = run("--data", data, "--format", "raw", "--backend", name, "--algo", algo,
             *EXTRA.get(algo, []), "--hidden", 4, "--batch", 3, "--steps", 6, "--eval-every", 3,
             "--report-every", 2, "--eval-streams", 2, "--log", log, *QUIET)
    assert rc == 0
    K = 3 if algo == "bptt" else 1
    lines = read_log(log)
    assert [(r["kind"], r["step"], "valid_bpc" in r, "test_bpc" in r, r.get("final", False))
            for r in lines] == [
        ("progress", 2, False, False, False), ("progress", 3, False, False, False),
        ("eval", 3, True, False, False), ("progress", 4, False, False, False),
        ("progress", 6, False, False, False), ("eval", 6, True, False, False),
        ("final", 6, True, True, True)]
    V = len(set(TRAIN))
    for r in lines:
        assert r["data"] == r["step"] * 3 * K and r["seconds"] >= 0
        for key in ("train_bpc", "valid_bpc", "test_bpc"):
            if key in r:
                assert abs(r[key] - math.log2(V)) < 0.2  # barely trained
    assert lines[-1]["valid_bpc"] == lines[-2]["valid_bpc"]  # same parameters, not re-run
    out = capsys.readouterr().out
    assert "steps done at step 6" in out and "test_bpc" in out and "valid_bpc" in out
    assert out.count("valid_bpc") >= 3  # the two evaluation lines and the summary
    printed = out.splitlines()
    for step in (3, 6):  # an evaluation's line comes right after its step's line
        at = next(i for i, line in enumerate(printed) if line.startswith(f"step {step}/6"))
        assert printed[at + 1].startswith("valid_bpc ")


def test_mikolov_format_default_and_unknown_symbols(tmp_path, capsys):
    data = write_mikolov(tmp_path / "m", valid=VALID + "zebra\n")
    base = ["--data", data, "--algo", "rtrl", "--hidden", 3, "--batch", 2, "--steps", 2, *QUIET]
    assert run(*base) == 2  # 'z', 'e', 'r' and 'b' never occur in training
    one_error_line(capsys, "does not occur in the training split", "pass --unknown")
    log = tmp_path / "log.jsonl"
    assert run(*base, "--unknown", "--log", log, "--eval-streams", 1000) == 0
    out = capsys.readouterr().out
    symbols = set(TRAIN.replace(" ", "_"))
    assert f"vocabulary {len(symbols) + 1}" in out  # + the unknown symbol
    m = len(VALID + "zebra\n") - 1  # predictions; at most one stream each
    assert "valid_bpc" in out and f"({m} characters, {m} streams" in out
    assert "test_bpc" in read_log(log)[-1]


def test_help_and_defaults_follow_the_spec(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--data", "--format", "--unknown", "--reset-every", "--eval-every",
                 "--eval-streams", "--backend", "--dtype", "--algo", "--rank", "--hidden",
                 "--depth", "--batch", "--lr", "--clip", "--seed", "--steps", "--truncation",
                 "--log", "--checkpoint", "--resume", "--max-seconds"):
        assert flag in out
    args = parse(["--data", "x"])
    assert (args.backend, args.dtype, args.algo, args.rank, args.hidden, args.depth) == (
        "numpy", "float32", "ok", 8, 256, 1)
    assert (args.batch, args.clip, args.reset_every, args.format) == (32, 32.0, 100, "mikolov")
    assert_close(args.lr, 10**-3.5, rtol=1e-12)
    assert args.eval_every == 10000 and args.eval_streams == 8 and not args.unknown
    bptt = parse(["--data", "x", "--algo", "bptt"])
    assert (bptt.truncation, bptt.reset_every, bptt.rank) == (25, 0, None)


# ---- the reset schedule -----------------------------------------------------------------------
def test_online_rtrl_gradient_is_bptt_over_each_reset_segment(tmp_path):
    """lr = 1e-300 freezes the parameters, so Adam's moments are known sums of the per-step
    gradients. With --reset-every 5, the gradient of step t must be the exact gradient of
    that step's loss through characters 5⌊t/5⌋ .. t of each stream only (BPTT, here)."""
    seed, B, n, R, steps = 2, 3, 4, 5, 12
    data = write_raw(tmp_path / "d")
    ck = tmp_path / "ck.npz"
    assert run("--data", data, "--format", "raw", "--algo", "rtrl", "--hidden", n,
               "--batch", B, "--lr", 1e-300, "--clip", 1e30, "--gate-bias", 0.5,
               "--init-scale", 0.3, "--seed", seed, "--steps", steps, "--reset-every", R,
               "--dtype", "float64", "--eval-every", 0, "--checkpoint", ck, *QUIET) == 0
    symbols = sorted(set(TRAIN))
    V, ids = len(symbols), encode(TRAIN, symbols)
    N = len(ids)
    pos = (np.arange(B) * N // B)[None, :] + np.arange(steps + 1)[:, None]  # (steps+1, B)
    text = ids[pos % N]
    inputs, targets = text[:-1], text[1:]  # (steps, B)
    cell = RHN(V, n, V)
    params = cell.init(seed, xp=np, dtype=np.float64, init_scale=0.3, gate_bias=0.5)
    m = {k: np.zeros_like(p) for k, p in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t in range(steps):
        start = (t // R) * R
        xs = np.eye(V)[inputs[start : t + 1]]  # (t+1-start, B, V)
        mask = np.zeros((t + 1 - start, B))
        mask[-1, :] = 1.0
        _, g = sequence_gradient("bptt", cell, params, xs, targets[start : t + 1], mask)
        m = {k: 0.9 * m[k] + 0.1 * g[k] / B for k in m}
        v = {k: 0.999 * v[k] + 0.001 * (g[k] / B) ** 2 for k in v}
    saved = checkpoint(ck)
    assert int(saved["task/t"]) == steps
    for k, p in params.items():
        assert_close(saved[k], p, rtol=0)  # frozen
        assert_close(saved[f"adam/m/{k}"], m[k], rtol=1e-10, atol=1e-16)
        assert_close(saved[f"adam/v/{k}"], v[k], rtol=1e-10, atol=1e-20)
    # the state too was reset before character 10: it is the forward pass over 10, 11 only
    expect = oracle_states(host_params(params), 1, n, V, inputs, starts={0, 5, 10})
    assert_close(saved["s"], expect, rtol=1e-12, atol=1e-14)
    # and not at any other character (a reset at 11 would give another state)
    other = oracle_states(host_params(params), 1, n, V, inputs, starts={0, 5, 11})
    assert np.max(np.abs(saved["s"] - other)) > 1e-3


def test_bptt_carries_the_state_across_windows_without_resets(tmp_path):
    seed, B, n, K, windows = 1, 2, 4, 4, 3
    data = write_raw(tmp_path / "d")
    ck = tmp_path / "ck.npz"
    assert run("--data", data, "--format", "raw", "--algo", "bptt", "--truncation", K,
               "--hidden", n, "--batch", B, "--lr", 1e-300, "--init-scale", 0.3, "--seed", seed,
               "--steps", windows, "--dtype", "float64", "--eval-every", 0,
               "--checkpoint", ck, *QUIET) == 0
    symbols = sorted(set(TRAIN))
    V, ids = len(symbols), encode(TRAIN, symbols)
    pos = (np.arange(B) * len(ids) // B)[None, :] + np.arange(K * windows)[:, None]
    cell = RHN(V, n, V)
    params = host_params(cell.init(seed, xp=np, dtype=np.float64, init_scale=0.3))
    saved = checkpoint(ck)
    assert int(saved["task/t"]) == K * windows
    expect = oracle_states(params, 1, n, V, ids[pos % len(ids)], starts={0})
    assert_close(saved["s"], expect, rtol=1e-12, atol=1e-14)


# ---- checkpoints ------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["kf", "bptt"])
def test_resume_continues_exactly(algo, tmp_path):
    data = write_raw(tmp_path / "d")
    common = ["--data", data, "--format", "raw", "--algo", algo, *EXTRA.get(algo, []),
              "--hidden", 4, "--batch", 3, "--dtype", "float64", "--seed", 4,
              "--report-every", 3, "--eval-every", 0, *QUIET]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    la, lb = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run(*common, "--steps", 12, "--checkpoint", a, "--log", la) == 0
    assert run(*common, "--steps", 6, "--checkpoint", b, "--log", lb) == 0
    assert int(checkpoint(b)["step"]) == 6
    assert run(*common, "--steps", 12, "--checkpoint", b, "--log", lb, "--resume") == 0
    straight, split = checkpoint(a), checkpoint(b)
    assert set(straight) == set(split)
    assert {"task/t", "task/train_bpc", "s", "W1", "V", "config"} <= set(straight)
    for k in straight:
        if k not in ("seconds", "run"):  # the time taken, the run's identity
            assert_close(straight[k], split[k], err_msg=k, rtol=0)

    def figures(lines):
        return [(r["step"], r["data"], r["train_bpc"], r.get("final", False)) for r in lines]

    expect, got = figures(read_log(la)), figures(read_log(lb))
    assert got == expect[:2] + [expect[1][:3] + (True,)] + expect[2:]
    ends = [r for r in read_log(lb) if r.get("final")]
    assert ends[-1]["valid_bpc"] == read_log(la)[-1]["valid_bpc"]
    assert ends[-1]["test_bpc"] == read_log(la)[-1]["test_bpc"]


def test_resume_with_other_data_is_refused_and_left_alone(tmp_path, capsys):
    first = write_raw(tmp_path / "first")
    second = write_raw(tmp_path / "second", train=TRAIN.replace("cat", "act"))  # same vocabulary
    ck = tmp_path / "ck.npz"
    base = ["--format", "raw", "--algo", "kf", "--hidden", 3, "--batch", 2, *QUIET]
    assert run(*base, "--data", first, "--steps", 3, "--checkpoint", ck) == 0
    good = ck.read_bytes()
    capsys.readouterr()
    assert run(*base, "--data", second, "--steps", 6, "--checkpoint", ck, "--resume") == 2
    one_error_line(capsys, "another configuration", "data")
    assert ck.read_bytes() == good
    assert run(*base, "--data", first, "--steps", 6, "--checkpoint", ck, "--resume",
               "--reset-every", 7) == 2
    one_error_line(capsys, "reset_every 100 (checkpoint) vs 7 (now)")
    assert ck.read_bytes() == good


# ---- bad input --------------------------------------------------------------------------------
def test_bad_input_gives_one_line_and_status_2(tmp_path, capsys):
    raw = write_raw(tmp_path / "raw")
    small = ["--hidden", 3, "--batch", 2, "--steps", 2, "--algo", "kf", *QUIET]
    assert run(*small) == 2
    one_error_line(capsys, "--data")
    assert run(*small, "--data", tmp_path / "absent") == 2
    one_error_line(capsys, "no such directory", str(tmp_path / "absent"))
    assert run(*small, "--data", raw / "train.txt", "--format", "raw") == 2
    one_error_line(capsys, "not a directory")
    assert run(*small, "--data", raw) == 2  # raw files, mikolov expected
    one_error_line(capsys, "missing ptb.char.train.txt", "use --format 'raw'")
    assert run(*small, "--data", raw, "--format", "json") == 2
    one_error_line(capsys, "--format")
    not_mikolov = tmp_path / "words"
    not_mikolov.mkdir()
    for split in ("train", "valid", "test"):
        (not_mikolov / f"ptb.char.{split}.txt").write_text("the cat\n")
    assert run(*small, "--data", not_mikolov) == 2
    one_error_line(capsys, "is not one character", "--format 'raw'")
    empty = write_raw(tmp_path / "empty", test="")
    assert run(*small, "--data", empty, "--format", "raw") == 2
    one_error_line(capsys, "empty split", "test.txt")
    assert run(*small, "--data", raw, "--format", "raw", "--algo", "bptt",
               "--reset-every", 5) == 2
    one_error_line(capsys, "--reset-every")
    assert run(*small, "--data", raw, "--format", "raw", "--eval-streams", 0) == 2
    one_error_line(capsys, "--eval-streams")


# ---- learning ---------------------------------------------------------------------------------
def entropies(text):
    """Unigram entropy and bigram conditional entropy (bits per character) of ``text``."""
    n = len(text)
    unigram = -sum(c / n * math.log2(c / n) for c in collections.Counter(text).values())
    pairs = collections.Counter(itertools.pairwise(text))
    first = collections.Counter(text[:-1])
    bigram = -sum(c / (n - 1) * math.log2(c / first[a]) for (a, _), c in pairs.items())
    return unigram, bigram


def test_kf_learns_below_the_unigram_and_bigram_entropy(tmp_path):
    """Random words 'abc', 'bcd', 'cab', 'dd' between spaces: a word's first letter fixes the
    rest, so the entropy rate is 2 bits per word (≈ 0.53 bpc), below what a unigram (2.31)
    or bigram (1.23) model can do: beating the bigram entropy needs the recurrent memory."""
    rng = np.random.default_rng(1)
    words = ["abc", "bcd", "cab", "dd"]

    def text(count):
        return " ".join(words[i] for i in rng.integers(0, 4, size=count)) + "\n"

    valid = text(150)
    data = write_raw(tmp_path / "d", train=text(3000), valid=valid, test=text(150))
    unigram, bigram = entropies(valid)
    assert unigram > 2.2 and bigram > 1.15
    log = tmp_path / "log.jsonl"
    assert run("--data", data, "--format", "raw", "--algo", "kf", "--hidden", 12, "--batch", 8,
               "--lr", 0.01, "--reset-every", 20, "--steps", 400, "--eval-every", 100,
               "--dtype", "float64", "--seed", 0, "--log", log, *QUIET) == 0
    valid_bpc = [r["valid_bpc"] for r in read_log(log) if "valid_bpc" in r]
    assert valid_bpc[0] > bigram  # not learnt in the first 100 steps
    assert valid_bpc[-1] < bigram - 0.25 < unigram - 1.0


# ---- the real char-PTB files ------------------------------------------------------------------
@pytest.mark.skipif(not (PTB / "ptb.char.train.txt.gz").exists()
                    and not (PTB / "ptb.char.train.txt").exists(),
                    reason=f"char-PTB not found at {PTB}")
def test_real_ptb_three_steps_and_a_full_evaluation(tmp_path, capsys):
    """Reads the real files, trains 3 steps, evaluates the whole validation and test splits
    (many streams, tiny n, so it stays fast)."""
    log = tmp_path / "log.jsonl"
    assert run("--data", PTB, "--algo", "kf", "--hidden", 4, "--batch", 4, "--steps", 3,
               "--eval-every", 0, "--eval-streams", 1024, "--log", log, *QUIET) == 0
    out = capsys.readouterr().out
    assert "train 5,017,482, valid 393,042, test 442,423 symbols; vocabulary 50" in out
    assert "valid_bpc" in out and "(393,041 characters, 1024 streams" in out
    assert "(442,422 characters, 1024 streams" in out
    last = read_log(log)[-1]
    assert last["final"] and last["step"] == 3 and last["data"] == 12
    for key in ("valid_bpc", "test_bpc"):
        assert abs(last[key] - math.log2(50)) < 0.05  # essentially untrained


def test_every_log_line_has_train_bpc_even_before_the_first_step(tmp_path):
    data, log = write_raw(tmp_path / "data"), tmp_path / "log.jsonl"
    assert run("--data", data, "--format", "raw", "--hidden", 4, "--batch", 2, "--algo", "kf",
               "--steps", 0, "--log", log, *QUIET) == 0
    (last,) = read_log(log)
    assert last["final"] and "train_bpc" in last and last["train_bpc"] is None
    assert last["valid_bpc"] > 0 and last["test_bpc"] > 0
