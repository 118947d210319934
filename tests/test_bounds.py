"""Sizes and values a run cannot take are refused up front, in one line with exit status 2: flags
beyond their documented maximum (a run that would hang), runs that cannot fit in memory (with
the memory they would need), a command typed after a space; a SIGINT while a command is still
loading is one line and 130, never a traceback."""

import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import one_error_line

import minirtrl
from minirtrl import __main__ as listing
from minirtrl.drivers import cli, memory
from minirtrl.drivers import copy as copy_cmd
from minirtrl.drivers import ptb as ptb_cmd
from minirtrl.methods import INFLUENCE, leaves

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--progress-seconds", "1000"]


def copy(*argv):
    return copy_cmd.main([str(a) for a in argv])


# ---- flags beyond their maximum (issues 12, 13) -------------------------------------------
def bounded_child(argv):
    """``python -m`` ``argv`` in a child limited to 4 GiB of address space and 60 s."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                         timeout=60, preexec_fn=limit,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return out, time.perf_counter() - start


@pytest.mark.parametrize("argv, line", [
    (["--depth", "10000000"], "argument --depth: expected an integer from 1 to 100, not "
     "'10000000'"),
    (["--algo", "bptt", "--truncation", "1000000000", "--max-seconds", "3"],
     "argument --truncation: expected an integer from 1 to 10000, not '1000000000'"),
])
def test_the_runs_that_hung_end_at_once_with_one_line(argv, line):
    out, seconds = bounded_child(["minirtrl.copy", *argv])
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"python -m minirtrl.copy: error: {line} (see --help)\n"
    assert seconds < 20  # they ran over 60 s without a line; now the parser refuses them


@pytest.mark.parametrize("argv, flag, text", [
    (["--steps", str(2**62)], "--steps", f"expected an integer from 0 to 10^15, not '{2**62}'"),
    (["--rank", "1e9"], "--rank", "expected an integer from 1 to 256, not '1e9'"),
    (["--rank", "1000000000"], "--rank", "expected an integer from 1 to 256"),
    (["--batch", "1e12"], "--batch", "expected an integer from 1 to 16384, not '1e12'"),
    (["--batch", "1000000000000"], "--batch", "expected an integer from 1 to 16384"),
    (["--hidden", "100000"], "--hidden", "expected an integer from 1 to 65536"),
    (["--seed", str(2**64)], "--seed", "expected an integer from 0 to 18446744073709551615"),
    (["--checkpoint-every", str(10**16)], "--checkpoint-every", "from 0 to 10^15"),
    (["--lr", "1e400"], "--lr", "expected a finite number > 0, not '1e400'"),
    (["--lr", "nan"], "--lr", "expected a finite number > 0, not 'nan'"),
    (["--max-seconds", "inf"], "--max-seconds", "expected a finite number > 0, not 'inf'"),
    (["--gate-bias=-inf"], "--gate-bias", "expected a finite number, not '-inf'"),
])
def test_values_beyond_a_flags_range_are_one_line_at_once(argv, flag, text, capsys):
    start = time.perf_counter()
    assert copy(*argv) == 2
    line = one_error_line(capsys, f"argument {flag}: ", text)
    assert line.startswith("python -m minirtrl.copy: error: ")
    assert time.perf_counter() - start < 5  # no run started: the hang of issue 12 is gone


def test_the_largest_value_of_each_flag_is_accepted_and_named_in_its_help():
    helps = {a.option_strings[0]: a.help for a in copy_cmd.make_parser()._actions}
    for flag, high in [("--hidden", "65536"), ("--batch", "16384"), ("--rank", "256"),
                       ("--depth", "100"), ("--steps", "10^15"), ("--truncation", "10000")]:
        assert helps[flag].endswith(f", at most {high})"), (flag, helps[flag])
    args = cli.parse_training(copy_cmd.make_parser(), [
        "--algo", "ok", "--rank", "256", "--hidden", "65536", "--batch", "16384", "--depth",
        "100", "--steps", str(10**15), "--seed", str(2**64 - 1)])
    assert (args.rank, args.hidden, args.batch, args.depth, args.steps) == (
        256, 65536, 16384, 100, 10**15)
    args = cli.parse_training(copy_cmd.make_parser(), ["--algo", "bptt", "--truncation", "10000"])
    assert args.truncation == 10000


# ---- runs that cannot fit in memory (issue 10) ----------------------------------------------
def refused(capsys, *needles):
    line = one_error_line(capsys, "this run needs at least", "more than the", "choose smaller",
                          *needles)
    assert line.startswith("minirtrl.copy: error: ") or line.startswith("minirtrl.ptb: error: ")
    return line


def test_a_run_that_cannot_fit_is_refused_with_the_memory_it_needs(tmp_path, capsys):
    log, ck = tmp_path / "log.jsonl", tmp_path / "ck.npz"
    # rtrl, n = 65536: G is (16, n, 2n (n + 5)) float32, 32 PiB held twice: no machine has it
    assert copy("--algo", "rtrl", "--hidden", 65536, "--log", log, "--checkpoint", ck) == 2
    refused(capsys, "--hidden 65536 --depth 1 --batch 16 --algo rtrl --dtype float32",
            "(rtrl state, old and new 64 PiB)")
    assert not log.exists() and not ck.exists()


@pytest.fixture
def room_of_23_gib(monkeypatch):
    """A machine with 23.5 GiB available, whatever this one has."""
    monkeypatch.setattr(memory, "available",
                        lambda device: (int(23.5 * 2**30), "available (memory and swap)"))


def test_the_sizes_of_the_issue_are_refused_with_the_memory_they_need(room_of_23_gib, capsys):
    # ok rank 16: A is (16, 16, 20000, 40000) float32, 745 GiB, held twice (old and new)
    assert copy("--hidden", 20000) == 2
    line = refused(capsys)
    assert line == ("minirtrl.copy: error: --hidden 20000 --depth 1 --batch 16 --algo ok --rank "
                    "16 --dtype float32: this run needs at least 1.57 TiB (ok state, old and new "
                    "1.49 TiB), more than the 23.5 GiB available (memory and swap); choose "
                    "smaller sizes")
    # rtrl: G is (16, 1000, 2000 * 1005) float32, 120 GiB, held twice
    assert copy("--algo", "rtrl", "--hidden", 1000) == 2
    refused(capsys, "--algo rtrl", "(rtrl state, old and new 240 GiB)")
    # bptt: 10000 characters of 16384 streams, each keeping s (128) and a_1 (133)
    assert copy("--algo", "bptt", "--truncation", 10000, "--batch", 16384) == 2
    refused(capsys, "--truncation 10000", "(bptt window 159 GiB)")


def test_ptb_refuses_a_run_that_cannot_fit(room_of_23_gib, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "valid", "test"):
        (data / f"{name}.txt").write_text("the cat sat on the mat.\n" * 3, encoding="utf-8")
    assert ptb_cmd.main(["--data", str(data), "--format", "raw", "--algo", "rtrl",
                         "--hidden", "2000", *QUIET]) == 2
    refused(capsys, "--hidden 2000", "rtrl state")


def test_only_a_run_over_the_memory_available_is_refused(monkeypatch, capsys):
    # copy --algo kf --hidden 3 --batch 2, float64: what it holds, counted by hand
    # params: W1 (6, 4+3+1), V (4, 4) -> 64; state u (2, 1, 8), A (2, 1, 3, 6) -> 52, twice;
    # Jacobians H (2, 3, 3) and M (2, 3, 6) -> 54; inputs 2 x (4 + 3) plus signs (2, 1, 2) -> 18
    need = 8 * (4 * 64 + 2 * 52 + 54 + 18)
    argv = ["--algo", "kf", "--hidden", "3", "--batch", "2", "--dtype", "float64", "--steps", "2",
            *QUIET]
    monkeypatch.setattr(memory, "available", lambda device: (need, "available"))
    assert copy(*argv) == 0  # exactly enough
    capsys.readouterr()
    monkeypatch.setattr(memory, "available", lambda device: (need - 1, "available"))
    assert copy(*argv) == 2
    refused(capsys, f"needs at least {need / 1024:.3g} KiB", f"the {(need - 1) / 1024:.3g} KiB "
            "available")
    monkeypatch.setattr(memory, "available", lambda device: None)  # not known: never refused
    assert copy(*argv) == 0


def meminfo_kib(field):
    with open("/proc/meminfo", encoding="ascii") as f:
        return int(next(line for line in f if line.startswith(f"{field}:")).split()[1])


def test_the_memory_available_is_the_hosts_memory_and_swap():
    room, where = memory.available("cpu")
    expected = (meminfo_kib("MemAvailable") + meminfo_kib("SwapFree")) * 1024
    assert where == "available (memory and swap)"
    assert abs(room - expected) < 2**30  # what other processes took or freed meanwhile


CELLS = [minirtrl.RHN(3, 4, 5, depth=2), minirtrl.VanillaRNN(3, 4, 5)]


@pytest.mark.parametrize("cell", CELLS, ids=["rhn-2", "vanilla"])
@pytest.mark.parametrize("algo", list(INFLUENCE))
def test_the_estimate_counts_what_the_arrays_of_a_step_hold(cell, algo):
    if algo == "rflo" and not isinstance(cell, minirtrl.VanillaRNN):
        pytest.skip("rflo is defined for the leaky RNN only")
    B, r = 3, 2
    terms = memory.elements(cell, algo, B, r)
    params = cell.init(0)
    assert terms["parameters, gradient and Adam moments"] == 4 * sum(
        p.size for p in params.values())
    state = INFLUENCE[algo].init(cell, B, r, xp=np, dtype=np.float64)
    assert terms[f"{algo} state, old and new"] == 2 * sum(a.size for a in leaves(state))
    _s, cache = cell.step(params, np.zeros((B, 4)), np.zeros((B, 3)), xp=np)
    if algo == "uoro":
        assert "Jacobians" not in terms
    else:
        H, pieces = cell.influence_pieces(params, cache, xp=np)
        assert terms["Jacobians"] == H.size + sum(M.size for M in pieces)
    signs = INFLUENCE[algo].sign_shapes(cell, B, r)
    assert terms["inputs"] == B * (3 + 3) + sum(math.prod(v) for v in signs.values())


@pytest.mark.parametrize("cell", CELLS, ids=["rhn-2", "vanilla"])
def test_the_bptt_estimate_counts_a_windows_states_and_block_inputs(cell):
    B, K = 3, 7
    s, cache = cell.step(cell.init(0), np.zeros((B, 4)), np.zeros((B, 3)), xp=np)
    per_step = s.size + sum(c.a.size for c in cache)
    terms = memory.elements(cell, "bptt", B, truncation=K)
    assert terms["bptt window"] == K * per_step
    assert terms["inputs"] == K * B * (3 + 3)


def test_sizes_are_shown_in_binary_units():
    assert memory.size_text(512) == "512 bytes"
    assert memory.size_text(1536) == "1.5 KiB"
    assert memory.size_text(3 * 2**40) == "3 TiB"


# ---- python -m minirtrl COMMAND (issue 13) -------------------------------------------------------
def test_a_command_after_a_space_names_the_module_to_run(capsys):
    assert listing.main(["copy", "--steps", "3", "--log", "a b"]) == 2
    line = one_error_line(capsys, "did you mean python -m minirtrl.copy --steps 3 --log 'a b'?")
    assert line.startswith("python -m minirtrl: error: ")
    assert listing.main(["--bogus"]) == 2
    one_error_line(capsys, "unknown argument '--bogus'", "python -m minirtrl.COMMAND")
    assert listing.main([]) == 0 and "commands:" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "minirtrl", "ptb"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("python -m minirtrl: error: a command is a module of its own: did you "
                          "mean python -m minirtrl.ptb?\n")


# ---- a SIGINT while a command loads (issue 10) ---------------------------------------------------
#: runs ``python -m MODULE ARGS`` as ``-m`` does, sending itself a SIGINT when module TRIP starts
#: to load: the KeyboardInterrupt comes out of that import, at a known point every time
TRIPPED = r"""
import os, runpy, signal, sys

class Trip:
    def find_spec(self, name, path=None, target=None):
        if name == trip:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

trip, module, *args = sys.argv[1:]
sys.meta_path.insert(0, Trip())
sys.argv = [module, *args]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def tripped(trip, module, *args):
    def default_sigint():  # a background job starts with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.run([sys.executable, "-c", TRIPPED, trip, module, *args],
                          capture_output=True, text=True, timeout=120, preexec_fn=default_sigint,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("name, trip", [
    ("copy", "minirtrl.drivers.copy"), ("copy", "minirtrl.drivers.safety"),
    ("ptb", "minirtrl.drivers.corpus"), ("noise", "minirtrl.drivers.noise"),
    ("check", "minirtrl.drivers.cli"), ("plot", "minirtrl.drivers.plot"),
])
def test_sigint_while_the_command_imports_is_one_line_and_130(name, trip):
    out = tripped(trip, f"minirtrl.{name}", "--help")
    assert out.stderr == f"minirtrl.{name}: interrupted (SIGINT)\n"
    assert out.returncode == 130 and out.stdout == ""


def test_sigint_while_python_dash_m_minirtrl_runs_is_one_line_and_130():
    out = tripped("shlex", "minirtrl", "copy")
    assert out.stderr == "minirtrl: interrupted (SIGINT)\n"
    assert out.returncode == 130 and out.stdout == ""
