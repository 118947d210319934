"""Checkpoints of a training run: written atomically, read with ``allow_pickle=False``,
validated against the run before anything in them is used.

Layout (``.npz``): ``W1``..``WL``, ``V``; ``adam/m/<name>``, ``adam/v/<name>``,
``adam/step``; ``est/<i>`` the arrays of the method's state in order
(``influence.leaves``); ``s``; ``step``, ``seconds``; ``rng/data``, ``rng/noise`` and
``config`` as JSON text; ``task/<key>`` the task's ``state_dict``; ``format``. A resumed
run must have the same ``config`` (everything but backend, steps, time limit, paths and
reporting); it may run on another backend.
"""

import json
import os
import tempfile
import zipfile
from typing import NamedTuple

import numpy as np

from ..adam import AdamState
from ..backends import to_numpy
from ..influence import leaves, rebuild

FORMAT = "minirtrl-checkpoint-1"


class Failure(Exception):
    """A run cannot go on: ``str(exc)`` is the one-line reason, ``status`` the exit status."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


class Run(NamedTuple):
    """Everything on the device that a step changes (replaced as a whole when a step commits)."""

    step: int
    params: dict
    adam: AdamState
    est: object  # influence-method state; None for bptt
    s: object  # (B, n)


def _text(value):
    return np.asarray(json.dumps(value, sort_keys=True))


def save(path, arrays):
    """Write ``arrays`` (name -> NumPy array) to ``path`` atomically (temp file + rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path):
    """All arrays of a checkpoint (``allow_pickle=False``); ``Failure`` if unreadable."""
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise Failure(f"no checkpoint at {path} to resume from") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise Failure(f"cannot read checkpoint {path}: {exc}") from None
    if _get_text(arrays, "format", path) != FORMAT:
        raise Failure(f"cannot read checkpoint {path}: not a {FORMAT} file")
    return arrays


def _get_text(arrays, key, path):
    try:
        return json.loads(str(arrays[key][()]))
    except (KeyError, ValueError, IndexError) as exc:
        raise Failure(f"cannot read checkpoint {path}: bad or missing {key!r} ({exc})") from None


def arrays_of(run, rngs, task, config, seconds):
    """Everything a checkpoint holds, as NumPy arrays (parameters under their own names)."""
    arrays = {k: to_numpy(v) for k, v in run.params.items()}
    for k in run.params:
        arrays[f"adam/m/{k}"] = to_numpy(run.adam.m[k])
        arrays[f"adam/v/{k}"] = to_numpy(run.adam.v[k])
    arrays["adam/step"] = np.asarray(run.adam.step, dtype=np.int64)
    for i, leaf in enumerate(leaves(run.est)):
        arrays[f"est/{i}"] = to_numpy(leaf)
    arrays["s"] = to_numpy(run.s)
    arrays["step"] = np.asarray(run.step, dtype=np.int64)
    arrays["seconds"] = np.asarray(seconds, dtype=np.float64)
    arrays["rng/data"] = _text(rngs[0].bit_generator.state)
    arrays["rng/noise"] = _text(rngs[1].bit_generator.state)
    for k, v in task.state_dict().items():
        arrays[f"task/{k}"] = np.asarray(v)
    arrays["config"] = _text(config)
    arrays["format"] = _text(FORMAT)
    return arrays


def restore(path, arrays, template, rngs, task, config, *, xp, device):
    """The ``Run`` and elapsed seconds stored in ``arrays``; sets ``rngs`` and ``task`` in place.

    ``template`` is a fresh ``Run`` of this configuration: every array of the checkpoint
    must have its counterpart's shape.
    """
    saved = _get_text(arrays, "config", path)
    if saved != config:
        keys = sorted(set(saved) | set(config))
        diff = ", ".join(f"{k} {saved.get(k)!r} (checkpoint) vs {config.get(k)!r} (now)"
                         for k in keys if saved.get(k) != config.get(k))
        raise Failure(f"checkpoint {path} was written with another configuration: {diff}")

    def get(key, like):
        if key not in arrays:
            raise Failure(f"cannot read checkpoint {path}: {key!r} is missing")
        value = arrays[key]
        if tuple(value.shape) != tuple(like.shape):
            raise Failure(f"cannot read checkpoint {path}: {key!r} has shape {value.shape}, "
                          f"expected {tuple(like.shape)}")
        return xp.asarray(value, dtype=like.dtype, device=device)

    try:
        params = {k: get(k, p) for k, p in template.params.items()}
        m = {k: get(f"adam/m/{k}", p) for k, p in template.params.items()}
        v = {k: get(f"adam/v/{k}", p) for k, p in template.params.items()}
        est = rebuild(template.est, [get(f"est/{i}", leaf)
                                     for i, leaf in enumerate(leaves(template.est))])
        s = get("s", template.s)
        step, adam_t = int(arrays["step"]), int(arrays["adam/step"])
        seconds = float(arrays["seconds"])
        for rng, key in zip(rngs, ("rng/data", "rng/noise")):
            rng.bit_generator.state = _get_text(arrays, key, path)
        task.load_state_dict({k[5:]: a for k, a in arrays.items() if k.startswith("task/")})
    except (KeyError, ValueError, TypeError) as exc:
        raise Failure(f"cannot read checkpoint {path}: {exc}") from None
    return Run(step, params, AdamState(adam_t, m, v), est, s), seconds
