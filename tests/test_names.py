"""Every backquoted dotted name in the package, docs/ and the READMEs resolves, so docstrings
and documentation cannot go stale: ``kf.update`` must be an attribute of a module ``kf`` of
minirtrl, ``xp.linalg.eigh`` must be in the array API namespace (array-api-strict), and a file
named like ``docs/algorithms.md`` must exist.

A name's first part is looked up, in order, as: a file (a known suffix); a module of minirtrl
(``minirtrl``, ``minirtrl.X``, ``minirtrl.cells.X``, ``minirtrl.drivers.X``,
``minirtrl.testing.X``); a class or function defined in one; an alias or a variable named
in ``ROOTS`` (``cell``, ``algo``, ..., standing for an object of the type given there); an
importable module (numpy, torch, ...). Libraries that are not installed here (cupy) are
skipped.
"""

import contextlib
import importlib
import importlib.util
import inspect
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minirtrl

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [*sorted((ROOT / "minirtrl").rglob("*.py")), *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "README.md", ROOT / "bench" / "README.md"]
NAME = re.compile(r"``?([A-Za-z_][\w/]*(?:\.[A-Za-z_]\w*)+)(?:\([^`]*\))?``?")
SUFFIXES = (".py", ".md", ".json", ".jsonl", ".sh", ".txt", ".png", ".svg", ".npz", ".gz", ".toml",
            ".ini")
#: files the code writes (so they need not exist in the checkout)
OUTPUTS = {"summary.md", "summary.json"}


def _array_api():
    import array_api_strict

    return array_api_strict


#: variables and aliases the texts use, and what they stand for
ROOTS = {
    "np": lambda: importlib.import_module("numpy"),
    "xp": _array_api,
    "cell": lambda: (minirtrl.RHN, minirtrl.VanillaRNN),
    "algo": lambda: minirtrl.Online,
    "online": lambda: minirtrl.Online,
    "rng": lambda: importlib.import_module("numpy").random.Generator,
    "p": lambda: importlib.import_module("argparse").ArgumentParser,
    "settings": lambda: importlib.import_module("minirtrl.drivers.loop").Settings,
    "nn": lambda: importlib.import_module("torch").nn,
}
NOT_INSTALLED_OK = ("cupy", "torch", "matplotlib", "jax")
#: names rooted in JAX, resolved in a child process: JAX imported here would make every later
#: os.fork() of the suite warn (JAX is multithreaded)
JAX_ROOTS = {"jax": "jax", "jnp": "jax.numpy", "lax": "jax.lax"}
CHILD = """
import importlib, json, sys
try:
    import jax
except ImportError:
    print("null"); sys.exit()
bad = []
for module, parts, name in json.loads(sys.argv[1]):
    found = importlib.import_module(module)
    for part in parts:
        if not hasattr(found, part):
            bad.append(name)
            break
        found = getattr(found, part)
print(json.dumps(bad))
"""


def unresolved_jax(found):
    """The names of ``found`` (``(name, path)`` rooted in ``JAX_ROOTS``) that do not resolve,
    checked in a child interpreter; none when JAX is not installed there."""
    if not found:
        return []
    args = [(JAX_ROOTS[n.split(".")[0]], n.split(".")[1:], n) for n, _ in found]
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    bad = json.loads(out.strip().splitlines()[-1]) or []
    return [f"{_show(path)}: {name}" for name, path in found if name in bad]


def modules():
    """Every module of minirtrl, imported."""
    out = [minirtrl]
    for info in pkgutil.walk_packages(minirtrl.__path__, "minirtrl."):
        out.append(importlib.import_module(info.name))
    return out


def names(texts):
    """``(name, file)`` for every backquoted dotted name of ``texts``."""
    for path in texts:
        for match in NAME.finditer(path.read_text(encoding="utf-8")):
            yield match.group(1), path


def _tracked_basenames():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=False).stdout.split()
    return {Path(f).name for f in files} or {p.name for p in ROOT.rglob("*") if p.is_file()}


def _chain(obj, parts):
    """True if ``obj.parts[0].parts[1]...`` exists (any of several objects for a tuple)."""
    for candidate in obj if isinstance(obj, tuple) else (obj,):
        found = candidate
        for part in parts:
            if not hasattr(found, part):
                break
            found = getattr(found, part)
        else:
            return True
    return False


def starts(root, mods):
    """The objects a name's first part ``root`` may stand for (empty: unknown; None: a library
    that is not installed here)."""
    objects = []
    packages = ("minirtrl.", "minirtrl.cells.", "minirtrl.drivers.", "minirtrl.testing.")
    for full in [root] if root == "minirtrl" else [package + root for package in packages]:
        with contextlib.suppress(ImportError):
            objects.append(importlib.import_module(full))
    objects += [getattr(m, root) for m in mods if inspect.isclass(getattr(m, root, None))
                or inspect.isfunction(getattr(m, root, None))]
    if root in ROOTS:
        try:
            objects.append(ROOTS[root]())
        except ImportError as exc:
            if exc.name in NOT_INSTALLED_OK:
                return None  # cannot be checked here
            raise
    if not objects:
        try:
            objects.append(importlib.import_module(root))
        except ImportError:
            if root in NOT_INSTALLED_OK:
                return None  # cannot be checked here
    return objects


def _show(path):
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def unresolved(texts=None):
    mods, tracked = modules(), _tracked_basenames()
    bad, jax_names = [], []
    for name, path in names(TEXTS if texts is None else texts):
        if name.endswith(SUFFIXES):
            if "/" in name:
                exists = (ROOT / name).exists() or (path.parent / name).exists()
            else:
                exists = name in tracked or name in OUTPUTS
            if not exists:
                bad.append(f"{_show(path)}: file {name}")
            continue
        root, *parts = name.split(".")
        if root in JAX_ROOTS:
            jax_names.append((name, path))
            continue
        objects = starts(root, mods)
        if objects is not None and not any(_chain(obj, parts) for obj in objects):
            bad.append(f"{_show(path)}: {name}")
    return bad + unresolved_jax(jax_names)


def test_every_backquoted_name_resolves():
    bad = unresolved()
    assert not bad, "names that do not resolve:\n" + "\n".join(sorted(set(bad)))


def test_the_resolver_catches_a_stale_name(tmp_path):
    stale = tmp_path / "stale.md"
    stale.write_text("``kf.no_such_function``, ``methods.influence_step``, ``docs/nope.md``, "
                     "``xp.not_in_the_standard``, ``cell.vjp``, ``cell.no_method``\n")
    bad = unresolved([stale])
    assert sorted(b.split(": ", 1)[1] for b in bad) == [
        "cell.no_method", "file docs/nope.md", "kf.no_such_function", "xp.not_in_the_standard"]


def test_jax_names_are_resolved_in_a_child(tmp_path):
    if importlib.util.find_spec("jax") is None:  # find_spec does not import it
        pytest.skip("JAX not installed: its names cannot be checked here")
    stale = tmp_path / "stale.md"
    stale.write_text("``jax.jit``, ``jnp.asarray``, ``lax.scan``, ``jax.no_such``, "
                     "``jnp.not_there``\n")
    imported = "jax" in sys.modules
    assert sorted(b.split(": ", 1)[1] for b in unresolved([stale])) == ["jax.no_such",
                                                                       "jnp.not_there"]
    assert ("jax" in sys.modules) == imported  # the child resolved them, not this process


def test_no_function_shadows_a_module():
    """``minirtrl.X`` is the module ``minirtrl/X.py`` whenever that module exists."""
    for info in pkgutil.iter_modules(minirtrl.__path__):
        module = importlib.import_module(f"minirtrl.{info.name}")
        assert getattr(minirtrl, info.name) is module, info.name
