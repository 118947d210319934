"""Shared helpers of the benchmark scripts.

What lives here: the machine header (CPU, cores, NumPy and its BLAS, backend versions),
device synchronisation, the timer (warm-up, then the median of single timed calls),
random one-hot inputs, the byte count of a state from its shapes, and the *online
step* of every algorithm exactly as a training loop runs it per character (forward,
loss, estimator update, gradient; no optimiser).

Benchmarks are not library code: NumPy is used freely here, and cupy / torch are
imported only when that backend is asked for.
"""

import json
import math
import os
import statistics
import sys
import time
from argparse import ArgumentTypeError
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from array_api_compat import is_cupy_namespace, is_jax_namespace, is_torch_namespace

import minirtrl
from minirtrl import bptt, readout
from minirtrl.drivers.backends import (
    NAMES,
    BackendError,
    dtype_of,
    load,
    machine_info,  # noqa: F401  (the header of every table)
)
from minirtrl.drivers.cli import (  # noqa: F401  (flag types)
    Parser,
    leak_rate,
    nonnegative,
    nonnegative_float,
    positive,
    positive_float,
    real,
)
from minirtrl.methods import INFLUENCE, METHODS, RANKED, host_signs, influence_step, leaves

# ---- what to run ------------------------------------------------------------------------
#: the runs that take a window K: TBPTT (one update per window) and every-step TBPTT
WINDOWED = ("bptt", "every")
#: every name a run spec accepts
NAMES_RUN = (*METHODS, "every")


class RunSpec(NamedTuple):
    """One algorithm with its rank (``ok``, ``kf-avg``) or truncation (``bptt``)."""

    algo: str
    rank: int | None = None
    truncation: int | None = None

    @property
    def label(self):
        """``bptt-25``, ``every-25``, ``ok-8``, ``kf``: the name of a run in tables and files."""
        value = self.truncation if self.algo in WINDOWED else self.rank
        return self.algo if value is None else f"{self.algo}-{value}"


def run_specs(tokens, *, ranks, truncations):
    """``["bptt", "ok:4", ...]`` or ``"bptt:10,kf"`` -> a list of ``RunSpec``.

    Algorithm names are minirtrl's (``minirtrl.METHODS``) and ``every``, every-step TBPTT
    (``bptt.every_step``). A bare ``bptt`` or ``every`` expands to every
    truncation in ``truncations``, ``ok`` to every rank in ``ranks`` and ``kf-avg`` to every
    rank > 1 (kf-avg with r = 1 is kf); ``name:v`` picks one value. Raises ``ValueError``
    with a one-line reason for an unknown name or a bad value.
    """
    if isinstance(tokens, str):
        tokens = [tokens]
    out = []
    for tok in (t.strip() for item in tokens for t in str(item).split(",") if t.strip()):
        name, _, value = tok.partition(":")
        if name not in NAMES_RUN:
            raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(NAMES_RUN)}")
        if value and name not in RANKED + WINDOWED:
            raise ValueError(f"{name!r} takes no ':value'")
        if value and (not value.isdigit() or int(value) < 1):
            raise ValueError(f"{tok!r}: the value after ':' must be an integer >= 1")
        values = [int(value)] if value else None
        if name in WINDOWED:
            out.extend(RunSpec(name, None, k) for k in (values or truncations))
        elif name == "ok":
            out.extend(RunSpec(name, r, None) for r in (values or ranks))
        elif name == "kf-avg":
            out.extend(RunSpec(name, r, None) for r in (values or [r for r in ranks if r > 1]))
        else:
            out.append(RunSpec(name))
    return out


# ---- command lines ------------------------------------------------------------------------
#: the float types a bench script can time or train in
DTYPES = ("float32", "float64")


def parser(description):
    """An argparse parser for a bench script: every flag's help ends with its default, and a
    bad flag is one line on stderr (``prog: error: ... (see --help)``, exit status 2), no
    usage dump, as in minirtrl's own commands (``minirtrl.drivers.cli.Parser``)."""
    import argparse

    class Defaults(argparse.ArgumentDefaultsHelpFormatter):
        def _get_help_string(self, action):  # a help that states its default keeps its own
            text = action.help or ""
            return text if "(default" in text else super()._get_help_string(action)

    return Parser(description=description, formatter_class=Defaults)


def dtype_name(text):
    """``float32`` or ``float64`` (an item of a list of float types)."""
    if text not in DTYPES:
        raise ArgumentTypeError(f"expected {' or '.join(DTYPES)}, not {text!r}")
    return text


def listed(kind):
    """A flag type for ``32,64`` (and, with ``nargs="+"``, ``32 64``): the text split on commas,
    each item checked by ``kind`` (``positive``, ``dtype_name``, ...); a list of the values.
    ``parse_list`` flattens the lists of every word (and splits a default given as text)."""

    def parse(text):
        items = [x.strip() for x in str(text).split(",") if x.strip()]
        if not items:
            raise ArgumentTypeError(f"expected a comma-separated list, not {text!r}")
        out = []
        for item in items:
            try:
                out.append(kind(item))
            except (ArgumentTypeError, ValueError) as exc:
                where = f" (in {text!r})" if item != text else ""
                raise ArgumentTypeError(f"{exc}{where}") from None
        return out

    parse.__name__ = f"list of {getattr(kind, '__name__', 'values')}"
    return parse


def int_at_least(low):
    """A flag type: an integer >= ``low``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise ArgumentTypeError(f"expected an integer >= {low}, not {text!r}")
        return value

    return parse


def run_tokens(text):
    """A flag type for ``--runs`` / ``--algo``: algorithm names, comma-separated, ``name:v``
    as ``run_specs`` reads them; the text itself, checked (it is expanded after parsing,
    with the ranks and windows of the other flags)."""
    tokens = [t for t in str(text).split(",") if t.strip()]
    if not tokens:
        raise ArgumentTypeError(f"expected algorithm names, not {text!r}")
    try:
        run_specs(tokens, ranks=[2], truncations=[1])
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from None
    return text


def specs_or_exit(p, flag, tokens, *, ranks, truncations):
    """``run_specs(tokens, ...)``, or ``p.error`` (one line, exit 2) for a bad token or for
    nothing to run."""
    try:
        specs = run_specs(tokens, ranks=ranks, truncations=truncations)
    except ValueError as exc:
        p.error(f"{flag}: {exc}")
    if not specs:
        p.error(f"{flag}: nothing to run (kf-avg runs only at ranks > 1)")
    return specs


def add_training_flags(p, *, runs, hidden, batch, rank, clip):
    """The flags a bench script passes on to every training run; the defaults are the task's."""
    p.add_argument("--runs", type=run_tokens, default=runs,
                   help="algorithms, comma-separated; bptt:K picks a window, ok:r a rank")
    p.add_argument("--hidden", type=positive, default=hidden, help="hidden units n")
    p.add_argument("--batch", type=positive, default=batch, help="parallel streams B")
    p.add_argument("--rank", type=positive, default=rank, help="r of ok and kf-avg without ':r'")
    p.add_argument("--lr", type=positive_float, default=10**-3.5, help="Adam learning rate")
    p.add_argument("--clip", type=positive_float, default=clip,
                   help="max norm of the recurrent gradient")
    p.add_argument("--seed", type=nonnegative, default=0,
                   help="seeds parameters, data and signs")
    p.add_argument("--backend", default="numpy", choices=NAMES, help="array library")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="float type")


def add_timer_flags(p, *, min_seconds, warmup_seconds):
    """The timer's flags (``TimerSettings``): at least ``--repeats`` timed calls and until
    they total ``--min-seconds`` (0: the count alone), at most ``--max-repeats``; untimed,
    at least ``--warmup`` calls and until ``--warmup-seconds`` (either may be 0)."""
    p.add_argument("--repeats", type=positive, default=5, help="at least this many timed calls")
    p.add_argument("--min-seconds", type=nonnegative_float, default=min_seconds,
                   help="time calls until their total reaches this")
    p.add_argument("--max-repeats", type=positive, default=5000,
                   help="at most this many timed calls")
    p.add_argument("--warmup", type=nonnegative, default=2,
                   help="at least this many untimed calls")
    p.add_argument("--warmup-seconds", type=nonnegative_float, default=warmup_seconds,
                   help="warm up until this much time has passed")


# ---- outputs ----------------------------------------------------------------------------
# Every output of a bench script is checked before any work, with the drivers' checks
# (``minirtrl.drivers.safety.check_output``): an existing file is never replaced unless the
# script was given ``--force``, an input of the script never, and every file is written
# atomically (``write_json``, ``write_text``, ``save_figure``: a failure leaves no partial file).
def fail(message):
    """Exit with ``<script>: error: <message>`` on stderr (one line) and status 2."""
    print(f"{os.path.basename(sys.argv[0]) or 'bench'}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def add_force_flag(p):
    """``--force``: the permission to replace existing output files (re-running a bench into
    the folder of its committed results, e.g. ``bench/results/``)."""
    p.add_argument("--force", action="store_true",
                   help="replace an existing output file (default: refuse)")


def checked_output(flag, path, *, image=False, directory=False, files=(), replace=False,
                   inputs=()):
    """``path`` checked before any work, or exit with one line and status 2.

    A file: it may not exist yet (``replace``: or it is a regular file, replaced) and is not
    one of ``inputs``, in a folder where it can be written; ``image``: matplotlib writes its
    suffix. ``directory``: an output folder (made later if missing) and ``files``, the names
    the script writes in it, each checked like a file.
    """
    from minirtrl.drivers.safety import Failure, check_output, check_output_dir

    try:
        if not directory:
            check_output(flag, path, image=image, replace=replace, inputs=inputs)
            return path
        if os.path.exists(path) and not os.path.isdir(path):
            raise Failure(f"{flag} {path}: is not a directory")
        check_output_dir(flag, path)
        if os.path.isdir(path):
            for name in files:
                check_output(flag, os.path.join(path, name), replace=replace, inputs=inputs)
    except Failure as exc:
        fail(exc)
    return path


def replace_run_log(path):
    """Remove ``path``, the ``--log`` of an earlier training run that ``--force`` replaces (a
    driver refuses an existing log), unless a live run holds it: ``Failure`` then."""
    from minirtrl.drivers.runfiles import Lock

    lock = Lock("--out", path).acquire()
    try:
        if os.path.lexists(path):
            os.remove(path)
    finally:
        lock.release()


def write_json(path, doc):
    """``doc`` as indented JSON at ``path``, atomically (a failure leaves no partial file)."""
    write_text(path, json.dumps(doc, indent=1))


def write_text(path, text):
    """``text`` (UTF-8) at ``path``, atomically (a failure leaves no partial file)."""
    from minirtrl.drivers.safety import write_atomic

    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def save_figure(fig, path):
    """A matplotlib figure at ``path`` in its suffix's format, atomically, then closed."""
    from minirtrl.drivers import plot

    plot.save(fig, path)


def run_log(path, command):
    """The records of ``path``, a ``--log`` of ``command`` (``minirtrl.ptb``, ...), header
    first; anything else (not a log, another command's, damaged) exits with one line, 2."""
    from minirtrl.drivers.plot import read
    from minirtrl.drivers.safety import Failure

    try:
        records = read(path).records
    except Failure as exc:
        fail(exc)
    if records[0].get("command") != command:
        fail(f"{path}: a log of {records[0].get('command')}, not of {command}")
    return records


def damaged_log(path, command, exc):
    """Exit with one line, status 2: the ``KeyError`` or ``TypeError`` ``exc`` met in reading
    a field of ``path``, a log of ``command``."""
    what = f"a record without {exc}" if isinstance(exc, KeyError) else "a field of another type"
    fail(f"{path}: a damaged {command} log ({what})")


# ---- backends ------------------------------------------------------------------------
def open_backend(name):
    """``(xp, device)`` for a backend name, or exit with one line and status 2."""
    try:
        if name == "array_api_strict":
            import array_api_strict

            array_api_strict.set_array_api_strict_flags(api_version="2024.12")
        return load(name)
    except (BackendError, ImportError) as exc:
        fail(exc)


def synchronizer(xp, device):
    """A function that waits for the device to finish queued work (no-op for NumPy, torch on
    the CPU and array-api-strict; JAX: every live array, as JAX dispatches asynchronously)."""
    if is_cupy_namespace(xp):
        import cupy

        return cupy.cuda.Device().synchronize
    if is_torch_namespace(xp) and getattr(device, "type", "cpu") == "cuda":
        import torch

        return torch.cuda.synchronize
    if is_jax_namespace(xp):  # dispatch is asynchronous on every JAX device, the CPU too
        import jax

        return lambda: jax.block_until_ready(jax.live_arrays())
    return lambda: None


# ---- a driver's speed, from its log ------------------------------------------------------
def log_records(path):
    """The records of a driver's ``--log`` (header first); ``[]`` when it is missing or not a
    log. A last line cut off by a kill is dropped (``minirtrl.drivers.plot.read``)."""
    from minirtrl.drivers.plot import read
    from minirtrl.drivers.safety import Failure

    try:
        return read(path).records
    except Failure:
        return []


def steps_per_second(records, *, warm_seconds=0.0, kinds=("progress",)):
    """Optimiser steps per second between the first record of ``kinds`` at or after
    ``warm_seconds`` and the last; None when fewer than two such records span any time."""
    rows = [r for r in records if r.get("kind") in kinds and r["seconds"] >= warm_seconds]
    if len(rows) < 2 or rows[-1]["seconds"] <= rows[0]["seconds"]:
        return None
    return (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["seconds"] - rows[0]["seconds"])


# ---- machine header --------------------------------------------------------------------
def busy_warning(info):
    """A warning line when other processes were using the CPU at the start, else None."""
    load_avg, cores = info.get("loadavg_at_start"), info.get("cores_usable") or 1
    if load_avg and load_avg[0] > 0.5:
        hint = "" if info.get("thread_env") else (
            "\n# WARNING: BLAS threads not pinned; on a busy machine run with "
            "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1")
        return (f"# WARNING: load average {load_avg[0]:.2f} on {cores} cores at start: other "
                "processes are running, so times are inflated and noisy (see bench/README.md)"
                + hint)
    return None


def print_machine(info, file=sys.stdout):
    keys = ("cpu", "cores", "cores_usable", "loadavg_at_start", "python", "numpy",
            "numpy_blas", "numpy_blas_config", "threadpools", "thread_env", "backend",
            "device", "torch", "torch_threads", "cupy", "cuda_runtime", "gpu",
            "array_api_strict")
    for k in keys:
        if k in info and info[k] not in (None, {}, []):
            print(f"# {k:18s} {info[k]}", file=file)
    if not info.get("thread_env"):
        print("# thread_env         (none set: BLAS / OpenMP use all cores)", file=file)
    warning = busy_warning(info)
    if warning:
        print(warning, file=file)
    file.flush()


# ---- timing ------------------------------------------------------------------------------
@dataclass
class Timing:
    """Seconds per call: median, quartiles, minimum, and how many timed calls they summarise."""

    median: float
    q1: float
    q3: float
    min: float
    count: int

    def scaled(self, factor):
        return Timing(self.median * factor, self.q1 * factor, self.q3 * factor,
                      self.min * factor, self.count)

    def as_dict(self):
        return asdict(self)


@dataclass
class TimerSettings:
    warmup: int = 2  # at least this many untimed calls ...
    warmup_seconds: float = 0.2  # ... and until this much time has passed
    repeats: int = 5  # at least this many timed calls ...
    min_seconds: float = 0.5  # ... and until their total reaches this
    max_repeats: int = 5000  # but never more than this
    clock: str = "wall"  # "wall": time.perf_counter; "cpu": time.process_time (see measure)


def measure(fn, sync, settings):
    """Median time of single calls of ``fn()`` after a warm-up.

    Every call is timed on its own with ``time.perf_counter`` (``clock="wall"``), or with
    ``time.process_time`` (``clock="cpu"``: the CPU time of all this process's threads,
    which leaves out the time other processes hold the cores: the figure to use on a
    shared CPU machine; meaningless for GPU work). ``sync()`` is called before each timer
    read so queued device work is counted (a no-op on CPU).
    """
    clock = time.process_time if settings.clock == "cpu" else time.perf_counter
    start = time.perf_counter()
    done = 0
    while done < settings.warmup or time.perf_counter() - start < settings.warmup_seconds:
        fn()
        done += 1
    sync()
    times = []
    total = 0.0
    while len(times) < settings.repeats or (
        total < settings.min_seconds and len(times) < settings.max_repeats
    ):
        sync()
        t0 = clock()
        fn()
        sync()
        dt = clock() - t0
        times.append(dt)
        total += dt
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return Timing(statistics.median(times), q1, q3, min(times), len(times))


# ---- sizes of states -----------------------------------------------------------------------
def itemsize(xp, dtype):
    kind = xp.finfo if xp.isdtype(dtype, ("real floating", "complex floating")) else xp.iinfo
    return kind(dtype).bits // 8


def nbytes(obj, xp):
    """Σ size × itemsize over the distinct arrays in ``obj`` (from shapes, no allocator).

    ``obj`` is a method's state or any nest of tuples of arrays (``influence.leaves``).
    """
    seen, total = set(), 0
    for x in leaves(obj):
        if id(x) in seen:
            continue
        seen.add(id(x))
        total += math.prod(x.shape) * itemsize(xp, x.dtype)
    return total


# ---- inputs ----------------------------------------------------------------------------------
def one_hot_stream(rng, T, B, n_in, n_out, *, xp, dtype, device):
    """Random one-hot inputs and integer targets: lists of T arrays (B, n_in) and (B,)."""
    idx = rng.integers(0, n_in, size=(T, B))
    xs = np.eye(n_in)[idx]  # (T, B, n_in)
    ys = rng.integers(0, n_out, size=(T, B)).astype(np.int64)
    return (
        xp.asarray(xs, dtype=dtype, device=device),
        xp.asarray(ys, device=device),
    )


def step_inputs(rng, T, B, cell, *, xp, dtype, device):
    """``one_hot_stream`` as lists of T per-step arrays (B, n_in) and (B,), and a (B,) mask
    of ones: what a step-at-a-time benchmark cycles through."""
    xs, ys = one_hot_stream(rng, T, B, cell.n_in, cell.n_out, xp=xp, dtype=dtype,
                            device=device)
    return ([xs[t, ...] for t in range(T)], [ys[t, ...] for t in range(T)],
            xp.ones((B,), dtype=dtype, device=device))


def cpu_per_call(fn, min_seconds):
    """CPU seconds (``time.process_time``) per call of ``fn`` over a block of at least
    ``min_seconds``."""
    calls, start = 0, time.process_time()
    while True:
        fn()
        calls += 1
        spent = time.process_time() - start
        if spent >= min_seconds:
            return spent / calls


# ---- the online step of each algorithm --------------------------------------------------------
@dataclass
class Bench:
    """A callable benchmark: ``step()`` advances one unit; ``per_call`` characters each.

    ``state_bytes`` is the estimator state (for bptt: the activations kept for one
    window) counted from shapes.
    """

    step: object
    per_call: int
    state_bytes: int


def make_cell_and_params(n, depth, n_in, n_out, *, xp, dtype, device, seed=0, init_scale=0.01,
                         cell="rhn"):
    """``(cell, params)``: a depth-``depth`` RHN, or (``cell=``) "vanilla" the tanh RNN,
    "gru" or "lstm"."""
    if cell == "vanilla":
        cell = minirtrl.VanillaRNN(n_in, n, n_out)
    elif cell in ("gru", "lstm"):
        cell = (minirtrl.GRU if cell == "gru" else minirtrl.LSTM)(n_in, n, n_out)
    else:
        cell = minirtrl.RHN(n_in, n, n_out, depth=depth)
    params = cell.init(seed, xp=xp, dtype=dtype, init_scale=init_scale, device=device)
    return cell, params


def influence_bench(method, cell, params, B, rank, *, xp, dtype, device, seed=0, stream=64):
    """One online step of influence method ``method`` with the state carried on.

    Per call: the ±1 signs drawn on the host and moved to the device
    (``methods.host_signs``), then the library's own online step, ``methods.influence_step``
    (``cell.step``, the method's ``update``, ``readout.loss_and_grad`` and the method's
    ``grads``: what ``sequence_gradient`` and the training drivers run per character).
    Inputs cycle through ``stream`` pre-built one-hot steps (data loading is not timed).
    """
    module = INFLUENCE[method]
    rank = rank or 1
    rng = np.random.default_rng(seed)
    xs, ys, mask = step_inputs(rng, stream, B, cell, xp=xp, dtype=dtype, device=device)
    shapes = module.sign_shapes(cell, B, rank)
    carried = {
        "s": xp.zeros((B, cell.n_state), dtype=dtype, device=device),
        "state": module.init(cell, B, rank, xp=xp, dtype=dtype, device=device),
        "t": 0,
    }
    state_bytes = nbytes(carried["state"], xp)

    def step():
        t = carried["t"] % stream
        host = host_signs(rng, shapes)
        noise = {k: xp.asarray(v, dtype=dtype, device=device) for k, v in host.items()}
        s, state, _, g = influence_step(module, cell, params, carried["s"], carried["state"],
                                        xs[t], ys[t], mask, noise, xp=xp)
        carried["s"], carried["state"], carried["t"] = s, state, carried["t"] + 1
        return g

    return Bench(step, 1, state_bytes)


def sequence_bench(method, cell, params, B, rank, *, xp, dtype, device, seed=0, length=64):
    """``minirtrl.sequence_gradient`` over a random one-hot sequence of ``length`` steps.

    ``per_call = length``: the time per call divided by it is the per-character cost a
    user pays through the public entry point (argument checks, the sign draws, the loop,
    the sum of the per-step gradients). ``state_bytes`` is the method's state for B streams.
    """
    rng = np.random.default_rng(seed)
    xs, ys = one_hot_stream(rng, length, B, cell.n_in, cell.n_out, xp=xp, dtype=dtype,
                            device=device)
    kwargs = {"rank": rank} if method in RANKED else {}
    if method == "bptt":
        kwargs = {"truncation": rank}  # for bptt the run spec's value is the window

    def step():
        return minirtrl.sequence_gradient(method, cell, params, xs, ys, seed=seed, **kwargs)

    module = INFLUENCE[method] if method != "bptt" else None
    state = None if module is None else module.init(cell, B, rank or 1, xp=xp, dtype=dtype,
                                                      device=device)
    return Bench(step, length, nbytes(state, xp) if state is not None else 0)


def bptt_bench(cell, params, B, K, *, xp, dtype, device, seed=0, windows=4):
    """One TBPTT window of ``K`` steps (``bptt.window_gradient``), state carried on.

    ``per_call = K``: divide the time by K for a per-character cost. ``state_bytes`` is
    what one window keeps for the backward pass: K × (every micro-layer's a, h, τ,
    s^{l-1} and c_t), counted from the shapes of one real step.
    """
    rng = np.random.default_rng(seed)
    xs, ys = one_hot_stream(rng, windows * K, B, cell.n_in, cell.n_out, xp=xp, dtype=dtype,
                            device=device)
    mask = xp.ones((K, B), dtype=dtype, device=device)
    wins = [(xs[i * K:(i + 1) * K, ...], ys[i * K:(i + 1) * K, ...]) for i in range(windows)]
    s0 = xp.zeros((B, cell.n_state), dtype=dtype, device=device)
    s1, layers = cell.step(params, s0, wins[0][0][0, ...], xp=xp)
    _, _, c = readout.SOFTMAX.loss_and_grad(params["V"], s1, wins[0][1][0, ...], mask[0, ...],
                                            xp=xp)
    state_bytes = K * nbytes((layers, c), xp)
    carried = {"s": s0, "i": 0}

    def step():
        w_xs, w_ys = wins[carried["i"] % windows]
        _, grads, s = bptt.window_gradient(cell, params, carried["s"], w_xs, w_ys, mask, xp=xp)
        carried["s"], carried["i"] = s, carried["i"] + 1
        return grads

    return Bench(step, K, state_bytes)


def every_step_bench(cell, params, B, K, *, xp, dtype, device, seed=0, stream=64):
    """One step of every-step TBPTT (``bptt.every_step``) with window ``K``, carried on.

    ``per_call = 1``: each call back-propagates one character's loss through its last K
    steps (K cell steps forward again and back). ``state_bytes`` is the window kept between
    steps (the state K - 1 steps back and the inputs since).
    """
    rng = np.random.default_rng(seed)
    xs, ys, mask = step_inputs(rng, stream, B, cell, xp=xp, dtype=dtype, device=device)
    carried = {"w": bptt.start_window(cell, B, K, xp=xp, dtype=dtype, device=device), "t": 0}

    def step():
        t = carried["t"] % stream
        w, _, grads, _ = bptt.every_step(cell, params, carried["w"], xs[t], ys[t], mask, xp=xp)
        carried["w"], carried["t"] = w, carried["t"] + 1
        return grads

    w = carried["w"]
    return Bench(step, 1, nbytes((w.s, w.xs, w.keep), xp))


def rtrl_theory_bytes(cell, B, xp, dtype):
    """B · Σ_l n_state · m_l · k_l elements of exact RTRL's influence, in bytes."""
    shapes = cell.shapes()
    elems = B * sum(cell.n_state * shapes[b][0] * shapes[b][1] for b in cell.blocks)
    return elems * itemsize(xp, dtype)


def parse_list(values, kind=str):
    """Flags accept ``--sizes 32 64`` and ``--sizes 32,64`` alike: one flat list of the values,
    from the lists a ``listed`` type made of the words given and from a default's text."""
    out = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out.extend(v)
        else:
            out.extend(kind(x) for x in str(v).split(",") if x.strip() != "")
    return out


def resolve_dtype(xp, name):
    return dtype_of(xp, name)


def draw_runs(results, out, path):
    """``python -m minirtrl.plot`` of the logs (in folder ``out``) of every result with status 0
    into ``path``; False when there is none or matplotlib is missing."""
    from minirtrl.drivers import plot

    logs = [plot.read(os.path.join(out, r["log"])) for r in results if r["status"] == 0]
    if not logs or pyplot() is None:
        return False
    save_figure(plot.figure(logs), path)
    return True


def synthetic_corpus(folder, symbols=50,
                     sizes=(("train", 200_000), ("valid", 2000), ("test", 2000))):
    """A raw corpus in ``folder`` of ``symbols`` distinct characters (a step costs what it
    costs on any corpus of that many symbols): each split ``n`` random characters, then
    every symbol once. Returns ``folder``."""
    rng = np.random.default_rng(0)
    alphabet = [chr(0x21 + i) for i in range(symbols)]
    for split, n in sizes:
        text = "".join(rng.choice(alphabet, size=n)) + "".join(alphabet)
        with open(os.path.join(folder, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write(text)
    return folder


def pyplot():
    """``matplotlib.pyplot`` with the file-only Agg backend, or None (with a note) if missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'minirtrl[plot]')")
        return None
    return plt
