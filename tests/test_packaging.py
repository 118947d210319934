"""Importing minirtrl pulls in no optional package; a renamed copy of the package works."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import minirtrl

PKG = Path(minirtrl.__file__).parent


def run(code, cwd=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_import_leaves_optional_backends_unimported():
    code = (
        "import sys, minirtrl, minirtrl.api, minirtrl.check\n"
        "bad = [m for m in ('cupy', 'torch', 'matplotlib', 'array_api_strict') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_renamed_copy_imports_and_runs(tmp_path):
    shutil.copytree(PKG, tmp_path / "vendored_rtrl", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import sys, numpy as np, vendored_rtrl as m\n"
        "assert 'minirtrl' not in sys.modules\n"
        "cell = m.RHN(2, 3, 2)\n"
        "p = cell.init(0)\n"
        "loss, g = m.sequence_gradient('rtrl', cell, p, np.ones((3, 1, 2)), np.zeros((3, 1), dtype=np.int64))\n"
        "print(sorted(g), float(loss) > 0, 'minirtrl' in sys.modules)"
    )
    out = run(code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['V', 'W1'] True False"


def test_no_absolute_self_imports():
    for path in PKG.glob("*.py"):
        bad = re.findall(r"^\s*(?:import|from)\s+minirtrl\b", path.read_text(), flags=re.M)
        assert not bad, path.name
