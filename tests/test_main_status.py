"""Every command's ``main(argv)`` returns its exit status (it never raises SystemExit): 0 after
``--help``, 2 with one line for a bad flag."""

import pytest

from minirtrl.drivers import check, copy, noise, plot, ptb

COMMANDS = {"copy": copy, "ptb": ptb, "noise": noise, "check": check, "plot": plot}
REQUIRED = {"ptb": ["--data", "nowhere"], "plot": ["log.jsonl", "--out", "x.png"]}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_main_returns_the_status(name, capsys):
    main = COMMANDS[name].main
    assert main(["--help"]) == 0
    assert "usage:" in capsys.readouterr().out
    assert main([*REQUIRED.get(name, []), "--bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bogus" in err[0] and err[0].startswith(f"python -m minirtrl.{name}")


@pytest.mark.parametrize("name", ["noise", "check"])
def test_noise_and_check_take_the_cell_flags(name, capsys):
    main = COMMANDS[name].main
    assert main(["--cell", "vanilla", "--depth", "2"]) == 2
    assert "--depth applies only to --cell rhn" in capsys.readouterr().err
    assert main(["--cell", "rhn", "--alpha", "0.5"]) == 2
    assert "--alpha applies only to --cell vanilla" in capsys.readouterr().err


def test_check_runs_the_vanilla_cell(capsys):
    assert check.main(["--cell", "vanilla", "--alpha", "0.7", "--hidden", "3", "--length", "3",
                       "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "vanilla alpha 0.7" in out and out.count("ok (exact") == 2
