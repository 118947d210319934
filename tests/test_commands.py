"""The command lines as a whole: one vocabulary of flags, defaults in every help text,
devices and threads, the start and resume lines, and ``python -m minirtrl``."""

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minirtrl.drivers import backends, check, cli, noise, plot, ptb
from minirtrl.drivers import copy as copy_cmd

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--hidden", "3", "--batch", "2", "--algo", "kf", "--steps", "4",
         "--progress-seconds", "1000"]


def parsers():
    return {"copy": copy_cmd.make_parser(), "ptb": ptb.make_parser(), "noise": noise.make_parser(),
            "check": check.make_parser(), "plot": plot.make_parser()}


def options(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def bench_parsers():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        for name in ("step_time", "compare_torch", "copy_curriculum", "ptb_compare",
                     "corpus_memory", "compare_vanilla_rtrl", "driver_vs_step", "torch_threads",
                     "scaling", "gpu_check"):
            if name == "compare_torch" and importlib.util.find_spec("torch") is None:
                continue
            path = ROOT / "bench" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            yield name, module.make_parser()
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_a_flag_means_the_same_in_every_command():
    seen = {}
    for command, parser in parsers().items():
        for action in options(parser):
            flag = action.option_strings[0]
            if flag in cli.HELP:
                assert action.help.startswith(cli.HELP[flag]), (command, flag, action.help)
                seen.setdefault(flag, []).append(command)
    assert set(seen["--seed"]) == {"copy", "ptb", "noise", "check"}
    assert set(seen["--backend"]) == set(seen["--device"]) == {"copy", "ptb", "noise", "check"}
    assert seen["--steps"] == ["copy", "ptb"]  # total optimiser steps, and nothing else


def test_every_flag_shows_its_default():
    for command, parser in parsers().items():
        for action in options(parser):
            if action.required or action.const is True:  # required values, on/off switches
                continue
            assert action.help and "default" in action.help, (command, action.option_strings)
    for script, parser in bench_parsers():  # their formatter appends "(default: ...)" itself
        assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), script
        formatter = parser._get_formatter()
        for action in options(parser):
            assert action.help, (script, action.option_strings)
            shown = formatter._get_help_string(action)  # a help that states one keeps it alone
            assert len(re.findall(r"\(default[ :]", shown)) == 1, (script, shown)
        assert parser.format_help().count("(default:") >= len(options(parser)) - 2, script


def test_python_dash_m_minirtrl_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "minirtrl"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0
    for command in ("copy", "ptb", "noise", "check", "plot"):
        assert any(line.split()[:1] == [command] for line in out.stdout.splitlines()), command
    for command in ("copy", "ptb", "noise", "check", "plot"):  # and each of them runs
        help_ = subprocess.run([sys.executable, "-m", f"minirtrl.{command}", "--help"],
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert help_.returncode == 0 and "usage:" in help_.stdout


def read(log):
    with open(log, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_device_on_the_cpu_backends(tmp_path, capsys):
    strict = pytest.importorskip("array_api_strict")
    log = tmp_path / "log.jsonl"
    assert copy_cmd.main([*SMALL, "--backend", "array_api_strict", "--device", "device1",
                          "--log", str(log)]) == 0  # strict refuses arrays of mixed devices
    head = read(log)[0]
    assert head["device"] == str(strict.Device("device1")) and head["backend"] == "array_api_strict"
    assert "array_api_strict on " in capsys.readouterr().out
    assert copy_cmd.main([*SMALL, "--device", "cpu"]) == 0


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "numpy", "--device", "cuda"], "no device 'cuda'"),
    (["--backend", "array_api_strict", "--device", "device9"], "no device 'device9'"),
    (["--backend", "numpy", "--threads", "2"], "--threads applies to --backend torch"),
])
def test_a_device_or_thread_setting_that_cannot_be_is_one_line(argv, needle, capsys):
    assert copy_cmd.main([*SMALL, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_torch_devices_and_threads(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        assert copy_cmd.main([*SMALL, "--backend", "torch", "--device", "cuda"]) == 2
        assert "no device 'cuda'" in capsys.readouterr().err
    before = torch.get_num_threads()
    try:
        log = tmp_path / "log.jsonl"
        assert copy_cmd.main([*SMALL, "--backend", "torch", "--log", str(log)]) == 0
        assert read(log)[0]["threads"] == f"torch {backends.TORCH_THREADS}"  # the measured default
        log2 = tmp_path / "log2.jsonl"
        argv = [*SMALL, "--backend", "torch", "--threads", "2", "--log", str(log2)]
        assert copy_cmd.main(argv) == 0
        assert read(log2)[0]["threads"] == "torch 2"
    finally:
        torch.set_num_threads(before)


def test_start_and_resume_are_visible(tmp_path, capsys):
    ck, log = tmp_path / "ck.npz", tmp_path / "log.jsonl"
    assert copy_cmd.main([*SMALL, "--checkpoint", str(ck), "--log", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("minirtrl.copy: kf, n 3, depth 1, B 2, lr 0.0003162, clip 16, "
                             "float32, numpy on cpu, threads ")
    assert copy_cmd.main([*SMALL[:-4], "--steps", "8", *SMALL[-2:], "--checkpoint", str(ck),
                          "--log", str(log), "--resume"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == f"minirtrl.copy: resumed from step 4 ({ck})"
    records = read(log)
    assert [r["kind"] for r in records] == ["header", "final", "resume", "final"]
    assert records[2]["step"] == 4 and records[2]["argv"][-1] == "--resume"
    assert [r["step"] for r in records[1:]] == [4, 4, 8]


def test_the_header_holds_every_setting(tmp_path):
    log = tmp_path / "log.jsonl"
    assert copy_cmd.main([*SMALL, "--log", str(log)]) == 0
    head = read(log)[0]
    args = cli.parse_training(copy_cmd.make_parser(), [*SMALL, "--log", str(log)])
    assert head["config"] == cli.settings_of(args)  # defaults included
    keys = {"format", "minirtrl", "argv", "backend", "device", "dtype", "threads", "machine"}
    assert keys <= set(head)
    assert {"cpu", "cores", "numpy", "numpy_blas"} <= set(head["machine"])


def test_a_long_eta_prints_one_note(tmp_path):
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "minirtrl.copy", "--hidden", "3", "--batch", "2", "--algo", "kf",
         "--steps", str(10**12), "--report-every", "20"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    with proc:
        try:
            while len([x for x in lines if x.startswith("step ")]) < 5:
                lines.append(proc.stdout.readline())
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 130 and "Traceback" not in err
    assert text.count("note: at ") == 1 and "a smaller --hidden, or a GPU" in text
