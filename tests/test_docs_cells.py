"""``docs/cells.md`` runs as written: a user-defined cell against the cell protocol, its
Jacobians by central differences, and every method on it (each block asserts what it shows)."""

from test_docs import ROOT, python_blocks, run_blocks

import minirtrl


def test_the_own_cell_guide_runs_in_order(capsys):
    path = ROOT / "docs" / "cells.md"
    blocks = python_blocks(path)
    assert len(blocks) == 3  # the cell, its Jacobians, every method
    namespace = run_blocks(path, blocks)
    out = capsys.readouterr().out
    assert "Jacobians: H, a ⊗ M and both products agree" in out
    for method in minirtrl.METHODS:
        if method != "rflo":
            assert f"\n{method}: " in "\n" + out, method
    for method in ("uoro", "kf", "ok", "kf-avg"):
        assert f"{method}: one step's mean over" in out
    assert isinstance(namespace["cell"], minirtrl.cells.Cell)
