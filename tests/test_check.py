"""``python -m minirtrl.check``: passes on every backend, and fails when a method is wrong."""

import subprocess
import sys

import pytest

from minirtrl.drivers import check
from minirtrl.methods import INFLUENCE, map_state


def test_check_passes(driver_backend, capsys):
    assert check.main(["--backend", driver_backend.name, "--depth", "2", "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "rtrl" in out and "bptt" in out and "FAILED" not in out
    # each estimator's unbiasedness is tested (one step's expectation over all its sign
    # patterns against exact RTRL's step), not asserted: kf has 2 signs per layer (depth 2)
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(lines) == set(check.METHODS)
    for method in ("uoro", "kf", "ok", "kf-avg"):
        assert "ok (unbiased: E over 2^" in lines[method], lines[method]
    assert "E over 2^4 sign patterns" in lines["kf"]


def test_a_biased_estimator_fails_the_check(monkeypatch, capsys):
    kf = INFLUENCE["kf"]

    class Biased:  # kf whose every update is 1 % too large in each factor
        def __getattr__(self, name):
            return getattr(kf, name)

        def update(self, *args, **kwargs):
            return map_state(lambda a: 1.01 * a, kf.update(*args, **kwargs))

    monkeypatch.setitem(INFLUENCE, "kf", Biased())
    assert check.main(["--samples", "2"]) == 1
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "FAILED (unbiased: E over 2^4 sign patterns" in lines["kf"], lines["kf"]
    assert "FAILED" not in lines["ok"] + lines["uoro"] + lines["rtrl"]


def test_an_estimator_with_too_many_sign_patterns_is_labelled_untested(capsys):
    # a vanilla RNN of 13 units: uoro draws 13 signs a step, 2^13 patterns (over 2^12)
    assert check.main(["--cell", "vanilla", "--hidden", "13", "--samples", "2"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "unbiasedness not tested (2^13 sign patterns a step" in lines["uoro"]
    assert "unbiased" not in lines["uoro"].replace("unbiasedness not tested", "")
    assert "ok (unbiased" in lines["kf"]


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


@pytest.mark.parametrize("argv", [["--backend", "mxnet"], ["--depth", "0"], ["--hidden", "x"]])
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
