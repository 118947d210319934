"""``python -m minirtrl.check``: passes on every backend, and fails when a method is wrong."""

import subprocess
import sys

import pytest

from minirtrl.drivers import check


def test_check_passes(driver_backend, capsys):
    assert check.main(["--backend", driver_backend.name, "--depth", "2", "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "rtrl" in out and "bptt" in out and "FAILED" not in out


def test_check_fails_when_an_exact_method_is_wrong(monkeypatch, capsys):
    real = check.sequence_gradient

    def broken(method, *args, **kwargs):
        loss, grads = real(method, *args, **kwargs)
        if method == "rtrl":
            grads = {**grads, "W1": grads["W1"] * 1.001}
        return loss, grads

    monkeypatch.setattr(check, "sequence_gradient", broken)
    assert check.main(["--samples", "2"]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--backend", "jax"], ["--depth", "0"], ["--hidden", "x"]])
def test_bad_arguments_exit_2_without_traceback(argv):
    out = subprocess.run([sys.executable, "-m", "minirtrl.check", *argv], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and argv[0] in lines[0]


def test_help():
    out = subprocess.run([sys.executable, "-m", "minirtrl.check", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "finite differences" in out.stdout
