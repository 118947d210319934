"""Packaging and vendoring: what ``import minirtrl`` pulls in, the core without the drivers,
the array-api-compat vendoring hook, relative imports only."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import minirtrl

PKG = Path(minirtrl.__file__).parent
#: modules the core (the package without drivers/ and the command modules) must not import
NOT_IN_CORE = ("argparse", "signal", "tempfile", "threading")
COMMANDS = ("copy.py", "ptb.py", "noise.py", "check.py", "plot.py", "__main__.py")


def run(code, cwd=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def core_files():
    """The core's modules: everything but drivers/ and the thin command modules."""
    return [p for p in PKG.rglob("*.py")
            if "drivers" not in p.relative_to(PKG).parts and p.name not in COMMANDS]


def imported_modules(path):
    """(module, level) of every import statement in a file."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield (node.module or "", node.level)
            if node.level and not node.module:  # from . import x, y
                yield from ((alias.name, node.level) for alias in node.names)


def test_import_leaves_optional_backends_unimported():
    code = (
        "import sys, minirtrl, minirtrl.methods, minirtrl.drivers.check\n"
        "optional = ('cupy', 'torch', 'matplotlib', 'array_api_strict')\n"
        "bad = [m for m in optional if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_core_never_imports_the_drivers_or_process_machinery():
    files = core_files()
    assert len(files) >= 15  # the walk found the core
    for path in files:
        for module, _level in imported_modules(path):
            top = module.split(".")[0]
            assert top not in NOT_IN_CORE, f"{path.name} imports {module}"
            assert "drivers" not in module.split("."), f"{path.name} imports {module}"
            assert top != "importlib", f"{path.name} imports importlib"


def test_core_alone_copied_under_another_name_computes_every_method(tmp_path):
    """Copy the package without drivers/ and the command modules: every method still runs."""
    ignore = shutil.ignore_patterns("__pycache__", "drivers", *COMMANDS)
    shutil.copytree(PKG, tmp_path / "vendored_rtrl", ignore=ignore)
    assert not (tmp_path / "vendored_rtrl" / "drivers").exists()
    code = (
        "import sys, numpy as np, vendored_rtrl as m\n"
        "from vendored_rtrl.testing import random_problem\n"
        "assert 'minirtrl' not in sys.modules\n"
        "cell = m.RHN(3, 4, 3, depth=2)\n"
        "p = cell.init(0, init_scale=0.5)\n"
        "xs, ys, mask = random_problem(cell, 5, 2)\n"
        "ref = m.sequence_gradient('bptt', cell, p, xs, ys, mask)[1]\n"
        "out = []\n"
        "for method in [m for m in m.METHODS if m != 'rflo']:  # rflo: the leaky RNN only\n"
        "    rank = 2 if method in ('ok', 'kf-avg') else None\n"
        "    loss, g = m.sequence_gradient(method, cell, p, xs, ys, mask, rank=rank, seed=1)\n"
        "    err = max(float(np.abs(g[k] - ref[k]).max()) for k in ref)\n"
        "    keys, finite = sorted(g) == sorted(ref), np.isfinite(float(loss))\n"
        "    out.append(f'{method}:{keys}:{finite}:{err < 1e-12}')\n"
        "G = m.exact_influence(cell, p, xs)\n"
        "print(' '.join(out), sorted(G), 'minirtrl' in sys.modules)"
    )
    out = run(code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # exact methods agree with bptt; the estimators do not (they are random estimates)
    assert out.stdout.split() == [
        "bptt:True:True:True", "rtrl:True:True:True", "uoro:True:True:False",
        "kf:True:True:False", "ok:True:True:False", "kf-avg:True:True:False",
        "snap1:True:True:False",
        "['W1',", "'W2']", "False"]


def test_vendoring_hook_is_used_when_present(tmp_path):
    """A project that vendors array-api-compat as ``_array_api_compat_vendor`` beside the copy."""
    root = tmp_path / "project"
    shutil.copytree(PKG, root / "vendored_rtrl", ignore=shutil.ignore_patterns("__pycache__"))
    hook = root / "_array_api_compat_vendor"
    hook.mkdir()
    (hook / "__init__.py").write_text(
        "from array_api_compat import *  # noqa: F403\n"
        "from array_api_compat import array_namespace as _real, device, to_device\n"
        "CALLS = []\n"
        "def array_namespace(*xs, **kw):\n"
        "    CALLS.append(len(xs))\n"
        "    return _real(*xs, **kw)\n"
    )
    (root / "__init__.py").write_text("")
    code = (
        "import numpy as np\n"
        "import project._array_api_compat_vendor as hook\n"
        "import project.vendored_rtrl as m\n"
        "cell = m.RHN(2, 3, 2)\n"
        "p = cell.init(0)\n"
        "ys = np.zeros((3, 1), dtype=np.int64)\n"
        "m.sequence_gradient('rtrl', cell, p, np.ones((3, 1, 2)), ys)\n"
        "print(len(hook.CALLS) > 0)"
    )
    out = run(code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_no_absolute_self_imports():
    for path in PKG.rglob("*.py"):
        bad = re.findall(r"^\s*(?:import|from)\s+minirtrl\b", path.read_text(), flags=re.M)
        assert not bad, path.name


def test_no_module_is_over_400_lines():
    for path in PKG.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_no_reference_to_files_that_do_not_ship():
    """The package, docs and README cite papers and docs/, never the developers' notes."""
    root = Path(__file__).parents[1]  # the checkout: README and docs are not installed with PKG
    texts = [*PKG.rglob("*.py"), root / "README.md", *(root / "docs").glob("*.md")]
    assert (root / "README.md").is_file() and list((root / "docs").glob("*.md"))
    for path in texts:
        text = path.read_text()
        for needle in ("SPEC", "papers.md", "../shared", "§7", "issue 4"):
            assert needle not in text, f"{path.name} mentions {needle!r}"
