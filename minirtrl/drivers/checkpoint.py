"""Checkpoints of a training run: written atomically, validated before anything in them is
used, read in bounded time and memory.

Layout (``.npz``, written with ``numpy.savez``): ``W1``..``WL``, ``V``; ``adam/m/<name>``,
``adam/v/<name>``, ``adam/step``; ``est/<i>`` the arrays of the method's state in order
(``methods.leaves``), or for ``bptt --every-step`` its window: ``window/s``, ``window/xs``,
``window/keep`` and ``window/filled``; with ``--align`` the shadow's influence
``align/G/<i>``, its sums ``align/sums`` (cosines, relative errors) and ``align/count``;
``s``; ``step``, ``seconds``; ``rng/data``, ``rng/noise`` and ``config`` as JSON text;
``run``, the run's identity (also in its log's header); ``task/<key>`` the task's
``state_dict``; ``format``. A resumed run must have the same
``config`` (everything but backend, device, steps, time limit, paths and reporting); it may
run on another backend. A state that is not finite or not in range (``problem``) is never
written, so the last checkpoint of a run can always be resumed.

Reading (``load``) trusts nothing: the archive's member list, then every member's declared
dtype, shape and stored size (read from its ``.npy`` header, before any data) are checked
against what this run expects, so a crafted file that declares a huge array is refused
without allocating it; then the values are checked (finite, in range, consistent) before
any is used. A bad file is one ``Failure`` line (exit status 2) and is left untouched.
"""

import json
import math
import zipfile
from typing import NamedTuple

import numpy as np

from .._compat import to_numpy
from ..adam import AdamState
from ..bptt import Window
from ..methods import leaves, rebuild
from .align import Shadow
from .safety import Failure, write_atomic

FORMAT = "minirtrl-checkpoint-2"
FORMAT_STEM = "minirtrl-checkpoint-"
TEXT_LIMIT = 1 << 16  # characters of a JSON member
HEADER_LIMIT = 1 << 12  # bytes of a member's .npy header


class Run(NamedTuple):
    """Everything on the device that a step changes (replaced as a whole when a step commits)."""

    step: int
    params: dict
    adam: AdamState
    est: object  # influence-method state; a bptt.Window for --every-step; None for bptt
    s: object  # (B, n_state)
    shadow: object = None  # align.Shadow with --align


def _text(value):
    return np.asarray(json.dumps(value, sort_keys=True))


def arrays_of(run, rngs, task, config, seconds, identity):
    """Everything a checkpoint holds, as NumPy arrays (parameters under their own names)."""
    arrays = {k: to_numpy(v) for k, v in run.params.items()}
    for k in run.params:
        arrays[f"adam/m/{k}"] = to_numpy(run.adam.m[k])
        arrays[f"adam/v/{k}"] = to_numpy(run.adam.v[k])
    arrays["adam/step"] = np.asarray(run.adam.step, dtype=np.int64)
    if isinstance(run.est, Window):
        for k in ("s", "xs", "keep"):
            arrays[f"window/{k}"] = to_numpy(getattr(run.est, k))
        arrays["window/filled"] = np.asarray(run.est.filled, dtype=np.int64)
    else:
        for i, leaf in enumerate(leaves(run.est)):
            arrays[f"est/{i}"] = to_numpy(leaf)
    if run.shadow is not None:
        for i, leaf in enumerate(leaves(run.shadow.est)):
            arrays[f"align/G/{i}"] = to_numpy(leaf)
        arrays["align/sums"] = np.asarray([run.shadow.cos, run.shadow.rel], dtype=np.float64)
        arrays["align/count"] = np.asarray(run.shadow.count, dtype=np.int64)
    arrays["s"] = to_numpy(run.s)
    arrays["step"] = np.asarray(run.step, dtype=np.int64)
    arrays["seconds"] = np.asarray(seconds, dtype=np.float64)
    arrays["rng/data"] = _text(rngs[0].bit_generator.state)
    arrays["rng/noise"] = _text(rngs[1].bit_generator.state)
    for k, v in task.state_dict().items():
        arrays[f"task/{k}"] = np.asarray(v)
    arrays["config"] = _text(config)
    arrays["run"] = _text(identity)
    arrays["format"] = _text(FORMAT)
    return arrays


def save(path, arrays):
    """Write ``arrays`` (name -> NumPy array) to ``path`` atomically (``safety.write_atomic``).

    The caller checks ``problem(arrays)`` first: a state that could not be resumed is never
    written."""
    write_atomic(path, lambda f: np.savez(f, **arrays))


def _floats(arrays):
    """The model's float arrays: parameters, Adam's moments, the method's state, ``s``."""
    return [k for k, a in arrays.items()
            if a.dtype.kind == "f" and not k.startswith("task/") and k != "seconds"]


def problem(arrays):
    """Why the state in ``arrays`` cannot be a checkpoint (a non-finite value, Adam's second
    moments < 0, an output outside [-1, 1]), or None; one pass over every float array."""
    for k in _floats(arrays):
        if not np.all(np.isfinite(arrays[k])):
            return f"{k!r} holds values that are not finite"
    if any(np.any(arrays[k] < 0) for k in arrays if k.startswith("adam/v/")):
        return "Adam's second moments must be >= 0"
    n = arrays["V"].shape[1] - 1  # the outputs h: the first n entries of a state (LSTM [h; c])
    for k in ("s", "window/s"):  # outputs are tanh's, their convex combinations, or o tanh(c)
        if k in arrays and np.any(np.abs(arrays[k][:, :n]) > 1.0 + 1e-5):
            return f"{k!r} holds outputs outside [-1, 1]"
    return None


# ---- reading ----------------------------------------------------------------------------
def expected(template, task, dtype):
    """``{member: (dtype, shape)}`` this run expects; a ``None`` in a shape is any size
    up to the task's ``MAX_WIDTH`` (the task's own variable-width arrays)."""
    float_, int_ = np.dtype(dtype), np.dtype(np.int64)
    out = {}
    for k, p in template.params.items():
        for prefix in ("", "adam/m/", "adam/v/"):
            out[prefix + k] = (float_, tuple(p.shape))
    if isinstance(template.est, Window):
        for k in ("s", "xs", "keep"):
            out[f"window/{k}"] = (float_, tuple(getattr(template.est, k).shape))
        out["window/filled"] = (int_, ())
    else:
        for i, leaf in enumerate(leaves(template.est)):
            out[f"est/{i}"] = (float_, tuple(leaf.shape))
    if template.shadow is not None:
        for i, leaf in enumerate(leaves(template.shadow.est)):
            out[f"align/G/{i}"] = (float_, tuple(leaf.shape))
        out["align/sums"] = (np.dtype(np.float64), (2,))
        out["align/count"] = (int_, ())
    out["s"] = (float_, tuple(template.s.shape))
    out.update({"adam/step": (int_, ()), "step": (int_, ()), "seconds": (np.dtype(np.float64), ())})
    for k in ("rng/data", "rng/noise", "config", "run", "format"):
        out[k] = ("text", ())
    for k, (kind, shape) in task.state_spec().items():
        out[f"task/{k}"] = (np.dtype(kind), shape)
    return out


def load(path, spec, max_width, config):
    """The arrays of the checkpoint at ``path``, checked against ``spec`` (``expected``).

    The ``format`` and ``config`` members are read first: a checkpoint of another
    configuration is refused with the settings that differ. Raises ``Failure`` (status 2)
    naming ``path`` and what is wrong; never reads a member whose header does not match,
    never unpickles.
    """
    def bad(why):
        return Failure(f"cannot read checkpoint {path}: {why}")

    try:
        with zipfile.ZipFile(path) as archive:
            infos = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
            if len(infos) != len(archive.infolist()):
                raise bad("it holds files that are not arrays")
            if "format" not in infos or "config" not in infos:
                raise bad(f"not a {FORMAT} file (no 'format' or 'config' member)")
            arrays = {}
            for name in ("format", "config"):
                with archive.open(infos[name]) as f:
                    arrays[name] = _read_member(f, infos[name], name, spec[name], max_width, bad)
            _check_format(_json(arrays, "format", bad), bad)
            _check_config(path, _json(arrays, "config", bad), config)
            missing = sorted(set(spec) - set(infos))
            extra = sorted(set(infos) - set(spec))
            if missing or extra:
                raise bad(f"members do not match this run: missing {missing or 'none'}, "
                          f"unexpected {extra or 'none'}")
            for name, info in infos.items():
                if name in arrays:
                    continue
                with archive.open(info) as f:
                    arrays[name] = _read_member(f, info, name, spec[name], max_width, bad)
    except FileNotFoundError:
        raise Failure(f"no checkpoint at {path} to resume from") from None
    except zipfile.BadZipFile:
        raise bad(_not_an_archive(path)) from None
    except (OSError, EOFError, ValueError, NotImplementedError, zipfile.LargeZipFile) as exc:
        raise bad(f"unreadable ({exc})") from None  # NotImplementedError: compression method
    return arrays


def _not_an_archive(path):
    """Why ``zipfile`` refused ``path``: cut short (it begins like a zip archive), or not one."""
    with open(path, "rb") as f:
        start = f.read(4)
    if start == b"PK\x03\x04":
        return "truncated or damaged (it begins like an .npz archive, but its end is missing)"
    return "not a minirtrl checkpoint (not an .npz archive)"


def _check_format(found, bad):
    if found == FORMAT:
        return
    if isinstance(found, str) and found.startswith(FORMAT_STEM):
        version = found[len(FORMAT_STEM):]
        age = "an older" if version.isdigit() and int(version) < int(FORMAT[-1]) else "another"
        raise bad(f"written by {age} version of minirtrl ({found}; this version reads "
                  f"{FORMAT}); resume it with the version that wrote it, or start afresh")
    raise bad(f"not a {FORMAT} file")


def _check_config(path, saved, config):
    if isinstance(saved, dict) and set(saved) != set(config):
        missing, extra = sorted(set(config) - set(saved)), sorted(set(saved) - set(config))
        raise Failure(f"cannot read checkpoint {path}: written by another version of minirtrl "
                      f"(its settings lack {missing or 'nothing'} and have {extra or 'nothing'} "
                      "besides); resume it with the version that wrote it, or start afresh")
    if saved != config:
        keys = sorted(set(saved) | set(config)) if isinstance(saved, dict) else sorted(config)
        get = saved.get if isinstance(saved, dict) else (lambda k: None)
        diff = ", ".join(f"{k} {get(k)!r} (checkpoint) vs {config.get(k)!r} (now)"
                         for k in keys if get(k) != config.get(k))
        raise Failure(f"checkpoint {path} was written with another configuration: {diff}")


def _read_member(f, info, name, want, max_width, bad):
    """One member, after its header was checked against ``want = (dtype, shape)``."""
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise bad(f"{name!r} is not a NumPy array")
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
        np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(f, max_header_size=HEADER_LIMIT)
    kind, shape_want = want
    if kind == "text":
        if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * TEXT_LIMIT:
            raise bad(f"{name!r} is not a short text (dtype {dtype}, shape {shape})")
    elif dtype != kind or dtype.hasobject:
        raise bad(f"{name!r} has dtype {dtype}, expected {kind}")
    if kind != "text" and not _shape_fits(shape, shape_want, max_width):
        raise bad(f"{name!r} has shape {shape}, expected {_show(shape_want, max_width)}")
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size > nbytes + f.tell() + 64:
        raise bad(f"{name!r} declares {info.file_size} bytes for {nbytes} bytes of data")
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise bad(f"{name!r} is truncated")
    order = "F" if fortran else "C"
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


def _shape_fits(shape, want, max_width):
    return len(shape) == len(want) and all(
        (w is None and 0 <= s <= max_width) or s == w for s, w in zip(shape, want))


def _show(want, max_width):
    return "(" + ", ".join(f"<= {max_width}" if w is None else str(w) for w in want) + ")"


def _json(arrays, key, bad):
    try:
        return json.loads(str(arrays[key][()]))
    except (KeyError, ValueError, IndexError) as exc:
        raise bad(f"bad or missing {key!r} ({exc})") from None


def restore(path, arrays, template, rngs, task, *, xp, device):
    """``(Run, elapsed seconds, run identity)`` stored in ``arrays`` (from ``load``).

    Checks every value before anything is used, then moves the arrays to ``device`` and
    sets ``rngs`` and the task in place.
    """
    def bad(why):
        return Failure(f"cannot read checkpoint {path}: {why}")

    why = problem(arrays)
    if why is not None:
        raise bad(why)
    step, adam_t, seconds = int(arrays["step"]), int(arrays["adam/step"]), float(arrays["seconds"])
    if step < 0 or adam_t != step:
        raise bad(f"'step' {step} and 'adam/step' {adam_t} must be equal and >= 0")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise bad(f"'seconds' {seconds} must be a finite number >= 0")
    identity = _json(arrays, "run", bad)
    if not isinstance(identity, str) or not identity:
        raise bad(f"'run' {identity!r} is not a run identity")
    try:
        for rng, key in zip(rngs, ("rng/data", "rng/noise")):
            state, kind = _json(arrays, key, bad), rng.bit_generator.state["bit_generator"]
            if not isinstance(state, dict) or state.get("bit_generator") != kind:
                raise bad(f"{key!r} is not a {kind} state")
            rng.bit_generator.state = state
        task.load_state_dict({k[5:]: a for k, a in arrays.items() if k.startswith("task/")})
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise bad(str(exc)) from None

    def move(key, like):
        return xp.asarray(arrays[key], dtype=like.dtype, device=device)

    params = {k: move(k, p) for k, p in template.params.items()}
    m = {k: move(f"adam/m/{k}", p) for k, p in template.params.items()}
    v = {k: move(f"adam/v/{k}", p) for k, p in template.params.items()}
    if isinstance(template.est, Window):
        est = Window(*(move(f"window/{k}", getattr(template.est, k)) for k in ("s", "xs", "keep")),
                     _filled(arrays, template.est, bad))
    else:
        est = rebuild(template.est, [move(f"est/{i}", leaf)
                                     for i, leaf in enumerate(leaves(template.est))])
    shadow = None
    if template.shadow is not None:
        cos, rel, count = _sums(arrays, bad)
        G = rebuild(template.shadow.est, [move(f"align/G/{i}", leaf)
                                          for i, leaf in enumerate(leaves(template.shadow.est))])
        shadow = Shadow(G, cos, rel, count)
    now = Run(step, params, AdamState(adam_t, m, v), est, move("s", template.s), shadow)
    return now, seconds, identity


def _filled(arrays, window, bad):
    """The window's count of kept steps, checked: 0 .. K - 1, resets 0 or 1."""
    filled, slots = int(arrays["window/filled"]), window.xs.shape[0]
    if not 0 <= filled <= slots:
        raise bad(f"'window/filled' {filled} must be from 0 to {slots}")
    if not np.all((arrays["window/keep"] == 0) | (arrays["window/keep"] == 1)):
        raise bad("'window/keep' must hold 0 and 1 only")
    return filled


def _sums(arrays, bad):
    """The alignment sums ``(cosines, relative errors, count)``, checked against their count."""
    (cos, rel), count = (float(v) for v in arrays["align/sums"]), int(arrays["align/count"])
    if count < 0 or abs(cos) > count + 1e-9 or rel < 0:
        raise bad(f"'align/sums' [{cos}, {rel}] and 'align/count' {count} are inconsistent (a "
                  "sum of cosines within ±count, of relative errors >= 0)")
    return cos, rel, count
