"""The noise-measurement tool: its error computation, the papers' ordering, its command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from minirtrl.drivers import noise
from minirtrl.testing import assert_close


def test_exact_rtrl_measured_as_an_estimator_has_zero_error():
    res = noise.measure("rtrl", n=6, report={2, 5}, samples=3, xp=np)
    for t in (2, 5):
        for kind in ("influence", "gradient"):
            mean, se = res[t][kind]
            assert mean < 1e-28 and se < 1e-28


def test_error_of_a_known_perturbation(monkeypatch):
    # Scale every estimate by 1.1: the relative squared error must be exactly 0.01.
    rtrl = noise.INFLUENCE["rtrl"]

    class Scaled:
        def __getattr__(self, name):
            return getattr(rtrl, name)

        def influence(self, cell, state, *, xp):
            return {k: 1.1 * v for k, v in rtrl.influence(cell, state, xp=xp).items()}

    monkeypatch.setitem(noise.INFLUENCE, "scaled", Scaled())
    res = noise.measure("scaled", n=5, report={4}, samples=2, xp=np)
    for kind in ("influence", "gradient"):
        assert_close(res[4][kind][0], 0.01, rtol=1e-9)


def test_noise_ordering_n32():
    """The papers' ordering (Mujika et al. 2018; Benzing et al. 2019): UORO ≫ KF-RTRL > 8-OK,
    and 8-OK < 8-KF-avg (n=32, depth 1, t=50)."""
    err = {}
    for algo in ("uoro", "kf", "ok", "kf-avg"):
        res = noise.measure(algo, n=32, report={50}, samples=24, rank=8, seed=3, xp=np)
        err[algo] = res[50]["gradient"]
    for worse, better in (("uoro", "kf"), ("kf", "ok"), ("kf-avg", "ok")):
        (m_w, se_w), (m_b, se_b) = err[worse], err[better]
        assert m_w - 3 * se_w > m_b + 3 * se_b, (worse, better, err)


def test_command_line_writes_json_lines_with_a_header(tmp_path):
    out = tmp_path / "noise.json"
    argv = ["--algo", "kf", "uoro", "--hidden", "6", "--at", "3", "7", "--sizes", "4", "6",
            "--size-at", "5", "--samples", "4", "--json", str(out)]
    assert noise.main(argv) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    head, rows, final = records[0], records[1:-1], records[-1]
    assert head["kind"] == "header" and head["command"] == "minirtrl.noise"
    assert head["config"]["samples"] == 4 and head["config"]["at"] == [3, 7]
    assert head["argv"] == ["minirtrl.noise", *argv] and "cpu" in head["machine"]
    assert final["kind"] == "final" and final["final"] and final["stopped"] == "done"
    over_time = [r for r in rows if r["table"] == "over_time"]
    over_n = [r for r in rows if r["table"] == "over_n"]
    assert all(r["kind"] == "noise" for r in rows) and len(rows) == 8
    want = [("kf", 3), ("kf", 7), ("uoro", 3), ("uoro", 7)]
    assert [(r["algo"], r["t"]) for r in over_time] == want
    assert [(r["algo"], r["n"]) for r in over_n] == [("kf", 4), ("kf", 6), ("uoro", 4), ("uoro", 6)]
    assert all(r["gradient"][0] > 0 for r in over_time)


def test_rank_is_refused_without_an_estimator_that_has_one(capsys):
    assert _status(["--algo", "kf", "uoro", "--rank", "4"]) == 2
    assert "--rank applies only" in capsys.readouterr().err


def _status(argv):
    try:
        return noise.main(argv)
    except SystemExit as exc:
        return exc.code


def test_plot_needs_matplotlib(tmp_path):
    png = tmp_path / "n.png"
    cmd = [sys.executable, "-m", "minirtrl.noise", "--algo", "kf", "--hidden", "4", "--at", "2",
           "--sizes", "--samples", "3", "--plot", str(png)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert out.returncode == 2 and "matplotlib" in out.stderr and "Traceback" not in out.stderr
    else:
        assert out.returncode == 0 and png.stat().st_size > 0


@pytest.mark.parametrize("argv", [["--algo", "sgd"], ["--samples", "1"], ["--backend", "mxnet"],
                                  ["--seed", "-1"], ["--init-scale", "nan"],
                                  ["--json", "/no/such/dir/x.json"]])
def test_bad_arguments(argv):
    out = subprocess.run([sys.executable, "-m", "minirtrl.noise", *argv], capture_output=True,
                         text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
