"""``python -m minirtrl.plot``: copy, ptb and noise logs, a mix, the legend and titles from
the headers, and the errors; checked through matplotlib's objects, not pixels."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from minirtrl.drivers import copy as copy_cmd
from minirtrl.drivers import noise as noise_cmd
from minirtrl.drivers import plot
from minirtrl.drivers import ptb as ptb_cmd

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--progress-seconds", "1000"]


def copy_log(folder, algo, hidden=5, extra=()):
    log = folder / f"copy-{algo}-{hidden}.jsonl"
    argv = ["--algo", algo, *extra, "--hidden", hidden, "--batch", 2, "--steps", 30,
            "--report-every", 5, "--log", log, *QUIET]
    assert copy_cmd.main([str(a) for a in argv]) == 0
    return log


def ptb_log(folder, algo):
    data = folder / "data"
    data.mkdir(exist_ok=True)
    for split in ("train", "valid", "test"):
        (data / f"{split}.txt").write_text("the cat sat on the mat.\n" * 5)
    log = folder / f"ptb-{algo}.jsonl"
    argv = ["--data", data, "--format", "raw", "--algo", algo, "--hidden", 4, "--batch", 2,
            "--steps", 12, "--eval-every", 4, "--report-every", 2, "--log", log, *QUIET]
    assert ptb_cmd.main([str(a) for a in argv]) == 0
    return log


def noise_log(folder):
    out = folder / "noise.json"
    argv = ["--algo", "kf", "uoro", "--hidden", 4, "--at", 2, 5, "--sizes", 3, 4, "--size-at", 3,
            "--samples", 3, "--json", out]
    assert noise_cmd.main([str(a) for a in argv]) == 0
    return out


def lines_per_axis(fig):
    return [len(ax.get_lines()) for ax in fig.axes if ax.get_visible()]


def test_copy_logs_overlay_with_legends_and_a_title_from_their_headers(tmp_path):
    logs = [copy_log(tmp_path, "kf", hidden=16), copy_log(tmp_path, "uoro", hidden=16)]
    fig = plot.figure([plot.read(p) for p in logs])
    assert lines_per_axis(fig) == [2, 2]  # T_ against characters, and against time
    first = fig.axes[0]
    assert "n=16" in first.get_title(loc="left")  # from the headers, not a default
    assert [t.get_text() for t in first.get_legend().get_texts()] == ["kf", "uoro"]
    x, y = first.get_lines()[0].get_data()
    records = [r for r in plot.read(logs[0]).records if r["kind"] in ("progress", "final")]
    assert list(x) == [r["data"] for r in records] and list(y) == [r["T"] for r in records]
    plot.save(fig, tmp_path / "copy.png")
    assert (tmp_path / "copy.png").stat().st_size > 0


def test_legend_names_the_settings_that_differ(tmp_path):
    logs = [copy_log(tmp_path, "kf", hidden=4), copy_log(tmp_path, "kf", hidden=6),
            copy_log(tmp_path, "ok", hidden=4, extra=("--rank", 2))]
    labels, title = plot.labels_and_title([plot.read(p) for p in logs])
    assert labels == ["kf, n=4", "kf, n=6", "ok, rank 2, n=4"]
    assert "B=2" in title and "n=" not in title


def test_settings_that_do_not_apply_are_not_named(tmp_path):
    """A vanilla run names its alpha, not the RHN's depth; an LSTM neither; a title of runs
    without a ranked method names no rank."""
    logs = [copy_log(tmp_path, "kf", extra=("--cell", "vanilla", "--alpha", "0.5")),
            copy_log(tmp_path, "uoro", extra=("--cell", "lstm"))]
    labels, title = plot.labels_and_title([plot.read(p) for p in logs])
    assert labels == ["kf, vanilla, alpha 0.5", "uoro, lstm"]
    assert "depth" not in title and "rank" not in title and "B=2" in title


def test_ptb_logs_draw_validation_and_training_bpc(tmp_path):
    logs = [plot.read(ptb_log(tmp_path, "kf")), plot.read(ptb_log(tmp_path, "bptt"))]
    fig = plot.figure(logs)
    assert lines_per_axis(fig) == [2, 2, 2, 2]
    valid = fig.axes[0].get_lines()[0].get_ydata()
    evals = [r["valid_bpc"] for r in logs[0].records if r["kind"] == "eval"]
    assert list(valid) == evals  # one point per validation pass, at steps 4, 8, 12


def test_noise_json_draws_error_against_t_and_n(tmp_path):
    log = plot.read(noise_log(tmp_path))
    fig = plot.figure([log])
    assert lines_per_axis(fig) == [2, 2, 2, 2]  # kf and uoro in each of the four panels
    assert [ax.get_xlabel() for ax in fig.axes] == ["t", "t", "n", "n"]


def test_a_mix_of_logs_gets_one_row_each(tmp_path):
    paths = [copy_log(tmp_path, "kf"), ptb_log(tmp_path, "kf"), noise_log(tmp_path),
             copy_log(tmp_path, "uoro")]
    out = tmp_path / "mix.png"
    assert plot.main([*map(str, paths), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    fig = plot.figure([plot.read(p) for p in paths])
    assert lines_per_axis(fig) == [2, 2, 1, 1, 1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize("content, needle", [
    (None, "cannot read"), ("not json at all\nstill not\n", "not JSON"),
    ('{"step": 1}\n', "not a minirtrl log"),
    ('{"kind": "header", "command": "minirtrl.check"}\n', "does not draw"),
])
def test_bad_or_missing_logs_are_one_line_and_status_2(content, needle, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    assert plot.main([str(path), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and str(path) in err[0]
    assert not (tmp_path / "x.png").exists()


def test_bad_out_is_refused_before_reading(tmp_path, capsys):
    log = copy_log(tmp_path, "kf")
    assert plot.main([str(log), "--out", str(tmp_path / "x.xyz")]) == 2
    assert "matplotlib cannot write .xyz" in capsys.readouterr().err


def test_without_matplotlib_one_line_says_what_to_install(tmp_path):
    log = copy_log(tmp_path, "kf")
    fake = tmp_path / "site"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{ROOT}"}
    out = subprocess.run([sys.executable, "-m", "minirtrl.plot", str(log), "--out",
                          str(tmp_path / "x.png")], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "pip install 'minirtrl[plot]'" in out.stderr.strip()
