"""``python -m minirtrl.ptb --data DIR``: a character-level language model trained online.

Training (the OK authors' protocol, Benzing et al. 2019): ``B`` streams read the training text
at evenly spaced offsets ``b·N // B``, as a circle. The RTRL family takes one Adam step per
character of every stream and resets the state and influence of all streams before characters
``t = 0, R, 2R, …`` (``R = --reset-every``, default 100; 0 never); ``bptt`` reads windows of
``--truncation`` characters and carries its state across windows, never reset.

Evaluation: every ``--eval-every`` steps the validation split, and at the end validation and
test, run with the current parameters as ``S = --eval-streams`` contiguous streams from a zero
state, the state carried through; each of the N - 1 next-symbol predictions of a split is
counted once (``eval_streams``) and bpc is the summed loss in bits over N - 1.

Figures: ``train_bpc`` a bias-corrected moving average of the batch-mean training loss, decay
0.999 per character of a stream (``m ← d^k m + (1 - d^k) bits``, ``w ← d^k w + (1 - d^k)``,
``train_bpc = m / w``); ``valid_bpc`` after an evaluation; ``test_bpc`` at the end. The OK
authors report 1.74-1.75 validation bpc for n=256, ``ok`` rank 8, batch 32, lr 10^-3.5, reset
every 100, 1M steps. Reading corpora: ``corpus``; the loop: ``loop``.

Notation: ``N`` symbols of a split, ``V`` vocabulary size (n_in = n_out = V), ``B`` training
streams, ``t`` their position, ``R`` the reset interval, ``S`` evaluation streams, ``T`` their
length ``ceil((N - 1)/S)``, ``s`` the state (S, n).
"""

import hashlib
import math
import time

import numpy as np

from .. import readout
from .._compat import get_device, to_numpy
from . import cli, loop
from .corpus import CorpusError, read_corpus
from .runfiles import Outputs
from .safety import Failure, command

PROG = "minirtrl.ptb"


# ---- streams of an encoded text ------------------------------------------------------------
def stream_offsets(n_symbols, n_streams):
    """(B,) int64 start positions ``b·N // B`` of ``B = n_streams`` training streams."""
    if n_symbols < 2 or n_streams < 1:
        raise ValueError(f"need n_symbols >= 2 and n_streams >= 1; got {n_symbols}, {n_streams}")
    return (np.arange(n_streams, dtype=np.int64) * n_symbols) // n_streams


def window_at(ids, offsets, t, length):
    """Inputs and targets of steps ``t .. t+length-1``, each (length, B) like ``ids``.

    ``inputs[j, b] = ids[(offsets[b] + t + j) % N]`` and ``targets[j, b]`` is the symbol after
    it, ``ids[(offsets[b] + t + j + 1) % N]``: the text is read as a circle, so after its last
    symbol comes its first again. Cost O(length·B).
    """
    n = ids.shape[0]
    steps = int(t) + np.arange(length + 1, dtype=np.int64)  # (length+1,)
    pos = (np.asarray(offsets, dtype=np.int64)[None, :] + steps[:, None]) % n  # (length+1, B)
    window = ids[pos]
    return window[:-1, :], window[1:, :]


def batch_at(ids, offsets, t):
    """(B,) input ids and (B,) target ids of step ``t`` (see :func:`window_at`)."""
    inputs, targets = window_at(ids, offsets, t, 1)
    return inputs[0, :], targets[0, :]


def eval_streams(ids, n_streams):
    """A split as ``S = n_streams`` contiguous streams: (T, S) inputs, targets and mask.

    The N - 1 predictions ``ids[i] -> ids[i+1]`` (i = 0..N-2) are cut into S consecutive
    chunks, chunk s holding i in ``[s(N-1)//S, (s+1)(N-1)//S)``; so lengths differ by at most
    one, T = ceil((N-1)/S), and a stream shorter than T is padded by one step at its end.
    ``inputs[j, s] = ids[i]``, ``targets[j, s] = ids[i+1]`` for the j-th prediction i of chunk
    s; padding holds ids 0 (valid symbols) with ``mask`` 0.0, elsewhere ``mask`` is 1.0
    (float64). Run each stream from a zero state and carry the state through all T steps:
    ``sum(mask · loss) / sum(mask)`` is then the mean over every prediction of the split,
    each counted once (``sum(mask) == N - 1``).
    """
    m = ids.shape[0] - 1  # predictions
    if not 1 <= n_streams <= m:
        raise ValueError(f"n_streams must be between 1 and len(ids) - 1 = {m}; got {n_streams}")
    bounds = (np.arange(n_streams + 1, dtype=np.int64) * m) // n_streams  # (S+1,)
    lengths = np.diff(bounds)  # (S,)
    steps = np.arange(int(lengths.max()), dtype=np.int64)[:, None]  # (T, 1)
    mask = steps < lengths[None, :]  # (T, S)
    pos = np.where(mask, bounds[None, :-1] + steps, 0)  # (T, S) index of the input symbol
    inputs = np.where(mask, ids[pos], 0).astype(ids.dtype)
    targets = np.where(mask, ids[pos + 1], 0).astype(ids.dtype)
    return inputs, targets, mask.astype(np.float64)


# ---- evaluation ------------------------------------------------------------------------------
TRAIN_DECAY = 0.999  # per character of a stream, for the train_bpc moving average
LN2 = math.log(2.0)


def evaluate(cell, params, inputs, targets, mask, *, xp):
    """Summed loss in bits of a split run as S streams, and the number of predictions.

    ``inputs``, ``targets`` (T, S) integer ids and ``mask`` (T, S) 0/1 in the dtype of the
    parameters, all on the parameters' device (as made by ``eval_streams``). Each
    stream starts from the zero state; the state is carried through all T steps, never
    reset, and the parameters are only read. Returns ``(bits, count)`` as Python floats:
    ``bits = Σ mask · loss / ln 2`` and ``count = Σ mask``. The per-step losses stay on the
    device until one host read at the end, where they are summed in float64.
    Cost: T steps of O(S n (n + V)), sequential in T, batched over S.
    """
    T, S = inputs.shape
    V = params["V"]
    s = xp.zeros((S, cell.n_state), dtype=V.dtype, device=get_device(V))  # (S, n)
    losses = []
    for t in range(T):
        x = readout.one_hot(inputs[t, :], cell.n_in, xp=xp, dtype=V.dtype)  # (S, V)
        s, _ = cell.step(params, s, x, xp=xp)
        losses.append(readout.loss(V, s, targets[t, :], mask[t, :], xp=xp))  # (S,) nats
    host = to_numpy(xp.stack([xp.stack(losses), mask]))  # (2, T, S): the one host read
    nats, count = np.sum(host, axis=(1, 2), dtype=np.float64)
    return float(nats) / LN2, float(count)


class Evaluator:
    """The ``evaluate(setup, params, final)`` hook of ``loop.run`` for one corpus.

    Cuts the validation and test splits into ``streams`` evaluation streams once, moves them
    to the device on first use and returns ``{"valid_bpc": …}`` (and ``"test_bpc"`` when
    ``final``). The final validation pass is skipped when the same parameters were just
    evaluated (the run ended on an evaluation step).
    """

    def __init__(self, corpus, streams):
        self.host = {}
        for split in ("valid", "test"):
            ids = getattr(corpus, split)
            self.host[split] = eval_streams(ids, min(streams, ids.shape[0] - 1))
        self.device = {}
        self.last = None  # (params, valid_bpc) of the last validation pass

    def _arrays(self, split, setup):
        if split not in self.device:
            xp, dev = setup.xp, setup.device
            inputs, targets, mask = self.host[split]
            self.device[split] = (xp.asarray(inputs, dtype=xp.int64, device=dev),
                                  xp.asarray(targets, dtype=xp.int64, device=dev),
                                  xp.asarray(mask, dtype=setup.dtype, device=dev))
        return self.device[split]

    def bpc(self, split, setup, params):
        """Bits per character of ``split`` with ``params``; prints a progress line."""
        start = time.perf_counter()
        bits, count = evaluate(setup.cell, params, *self._arrays(split, setup), xp=setup.xp)
        value = bits / count
        S = self.host[split][0].shape[1]
        print(f"{split}_bpc {value:.4f}  ({int(count):,} characters, {S} streams, "
              f"{time.perf_counter() - start:.1f} s)", flush=True)
        return value

    def __call__(self, setup, params, final):
        if self.last is not None and self.last[0] is params:
            figures = {"valid_bpc": self.last[1]}
        else:
            figures = {"valid_bpc": self.bpc("valid", setup, params)}
            self.last = (params, figures["valid_bpc"])
        if final:
            figures["test_bpc"] = self.bpc("test", setup, params)
        return figures


# ---- the training task ----------------------------------------------------------------------
def fingerprint(corpus, chunk=1 << 20):
    """First 16 hex digits of SHA-256 over the vocabulary and the three encoded splits (the
    ids as little-endian int32, ``chunk`` at a time: memory O(chunk), not a copy of a split)."""
    h = hashlib.sha256("\x00".join(corpus.vocab.symbols).encode("utf-8"))
    for split in ("train", "valid", "test"):
        ids = getattr(corpus, split)
        h.update(split.encode() + np.asarray(ids.shape[0], dtype="<i8").tobytes())
        for start in range(0, ids.shape[0], chunk):
            h.update(np.ascontiguousarray(ids[start:start + chunk], dtype="<i4"))
    return h.hexdigest()[:16]


class TextTask:
    """B streams of a training text at evenly spaced offsets (the task interface of ``loop.run``).

    ``next_batch`` gives character ``t`` of every stream (one-hot input, next symbol as
    target) with ``keep`` 0 for all streams when ``reset_every`` divides ``t`` (0 = never).
    The batch is a pure function of ``t``, so ``t`` and the ``train_bpc`` average are the
    whole state a resumed run needs.
    """

    name = "ptb"

    def __init__(self, corpus, batch, reset_every, *, data_format="mikolov"):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, not {batch}")
        self.ids = corpus.train  # (N,)
        self.batch = batch
        self.n_in = self.n_out = len(corpus.vocab)
        self.reset_every = int(reset_every)
        self.offsets = stream_offsets(self.ids.shape[0], batch)  # (B,)
        self.t = 0
        self.m, self.w = 0.0, 0.0  # train_bpc = m / w
        self._rows = np.arange(batch)  # (B,): one-hot rows are set in place, no V × V eye
        self._config = {"task": self.name, "format": data_format, "vocab": self.n_in,
                        "data": fingerprint(corpus), "reset_every": self.reset_every}

    def next_batch(self, rng=None):
        """Character ``t`` of every stream (``rng`` unused: the data are deterministic)."""
        x, y = batch_at(self.ids, self.offsets, self.t)
        reset = self.reset_every > 0 and self.t % self.reset_every == 0
        self.t += 1
        B = self.batch
        keep = np.full(B, 0.0 if reset else 1.0)
        hot = np.zeros((B, self.n_in))  # (B, V)
        hot[self._rows, x] = 1.0
        return loop.Batch(hot, y.astype(np.int64), np.ones(B), keep)

    def observe(self, bits, steps=1):
        """Feed back the batch-mean loss (bits per character) of the last ``steps`` characters."""
        decay = TRAIN_DECAY**steps
        self.m = decay * self.m + (1.0 - decay) * float(bits)
        self.w = decay * self.w + (1.0 - decay)

    def figures(self):
        """``{"train_bpc": …}``; None (JSON null) before the first step."""
        return {"train_bpc": self.m / self.w if self.w > 0 else None}

    def config(self):
        """Settings a resumed run must share: the data (vocabulary and content) and resets."""
        return dict(self._config)

    MAX_WIDTH = 0  # no variable-width state

    def state_dict(self):
        return {"t": np.asarray(self.t, dtype=np.int64),
                "train_bpc": np.asarray([self.m, self.w], dtype=np.float64)}

    def state_spec(self):
        """``{key: (dtype, shape)}`` of ``state_dict``."""
        return {"t": ("int64", ()), "train_bpc": ("float64", (2,))}

    def load_state_dict(self, state):
        """Restore ``state_dict``; ``ValueError`` naming what is out of range."""
        t = np.asarray(state["t"])
        ema = np.asarray(state["train_bpc"], dtype=np.float64)
        if t.shape != () or int(t) < 0 or ema.shape != (2,):
            raise ValueError("text-task state is inconsistent")
        m, w = float(ema[0]), float(ema[1])
        if not (math.isfinite(m) and m >= 0 and 0 <= w <= 1):
            raise ValueError(f"text-task train_bpc average ({m}, {w}) is out of range")
        self.t = int(t)
        self.m, self.w = m, w


# ---- the command -----------------------------------------------------------------------------
DESCRIPTION = (
    "Character-level language model: an RHN trained online on B streams of the "
    "training text, evaluated in bits per character over the whole validation split every "
    "--eval-every steps and over the test split at the end."
)


def make_parser():
    p = cli.training_parser(
        PROG, DESCRIPTION, algo="ok", hidden=256, batch=32, lr=10**-3.5,
        rank=8, clip=32.0, steps=1_000_000, truncation=25,
    )
    a = p.add_argument
    a("--data", metavar="DIR", required=True,
      help="directory holding the train, valid and test splits (see --format)")
    a("--format", default="mikolov", choices=("mikolov", "raw"),
      help="mikolov: ptb.char.{train,valid,test}.txt, characters separated by spaces, one "
           "sentence a line; raw: {train,valid,test}.txt of any UTF-8 text, every character a "
           "symbol; each file optionally .gz (default mikolov)")
    a("--unknown", action="store_true",
      help="map validation/test symbols that do not occur in the training split to one added "
           "unknown symbol (default: refuse them)")
    a("--reset-every", type=cli.nonnegative, default=None, metavar="R",
      help="RTRL family: reset the state and influence of all streams every R characters "
           "(default 100; 0 = never); bptt carries its state across windows instead")
    a("--eval-every", type=cli.nonnegative, default=10000, metavar="STEPS",
      help="evaluate on the whole validation split every STEPS optimiser steps (bptt: "
           "windows) and at the end (default 10000; 0 = only at the end, with the test split)")
    a("--eval-streams", type=cli.positive, default=8, metavar="S",
      help="cut valid/test into S contiguous streams, state carried through (default 8). "
           "More streams run faster on a batched backend and give the same figure up to a "
           "few warm-up characters per stream (the OK reference used 2)")
    return p


def parse(argv):
    """Parsed and checked arguments, or the exit status (``--help``, a bad flag)."""
    p = make_parser()

    def check(args):
        if args.algo == "bptt":
            if args.reset_every is not None:
                p.error("--reset-every applies only to the RTRL family; bptt carries its "
                        "state across windows (see --truncation)")
            args.reset_every = 0
        elif args.reset_every is None:
            args.reset_every = 100

    return cli.parse_training(p, argv, check)


def main(argv=None):
    """Run the char-PTB driver with the command-line arguments ``argv``; returns the exit status.

    Outputs are checked (and the checkpoint locked) before the corpus is read.
    """

    def body():
        args = parse(argv)
        if isinstance(args, int):
            return args
        with Outputs(args) as outputs:
            corpus = _read(args)
            print(f"{PROG}: {args.data}: {corpus.summary()}", flush=True)
            task = TextTask(corpus, args.batch, args.reset_every, data_format=args.format)
            return loop.run(args, task, prog=PROG, evaluate=Evaluator(corpus, args.eval_streams),
                            eval_every=args.eval_every, outputs=outputs)

    return command(PROG, body)


def _read(args):
    try:
        return read_corpus(args.data, args.format, unknown=args.unknown)
    except CorpusError as exc:
        message = str(exc).replace("allow unknown symbols", "pass --unknown")
        raise Failure(message.replace("use format ", "use --format ")) from None

