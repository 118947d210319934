"""``python -m minirtrl.ptb --data DIR``: a character-level language model trained online (SPEC §4).

Trains a depth-L RHN on a character corpus (Mikolov's char-PTB, or any UTF-8 text with
``--format raw``; reader: ``minirtrl.corpus``) and reports bits per character (bpc).

Training: ``B = --batch`` streams read the training text at evenly spaced offsets
``b·N // B`` (a circle: after the last symbol comes the first). The RTRL family (``rtrl``,
``uoro``, ``kf``, ``ok``, ``kf-avg``) takes one Adam step per character of every stream and
resets the state *and* the influence estimate of all streams together before characters
``t = 0, R, 2R, …`` of each stream (``R = --reset-every``, default 100; 0 = never), so each
gradient reaches back at most to the last multiple of R. ``bptt`` reads windows of
``K = --truncation`` characters, back-propagates each window to its start and carries the
state across windows with no resets at all (the ``--reset-every`` schedule does not apply
to it). The loop itself (clipping, Adam, logs, checkpoints, Ctrl-C, the non-finite guard)
is ``minirtrl.train``.

Evaluation: every ``--eval-every`` optimiser steps the whole validation split, and at the
end the validation and the test split, are run with the current parameters (no updates)
as ``S = --eval-streams`` contiguous streams from a zero state, the state carried through
with no resets; ``evaluate`` returns the summed loss in bits over all N - 1 next-symbol
predictions of the split (each counted once, ``corpus.eval_streams``) and bpc is that over
N - 1. More streams are fewer sequential steps (faster on a batched backend) and equal in
expectation; each stream starts cold, so the figure rises by a few warm-up characters per
stream out of N/S (the OK reference script used 2 streams; papers.md §7.2).

Reported figures (progress lines, ``--log`` JSON lines, the final summary):
``train_bpc`` a bias-corrected exponential moving average of the batch-mean training loss
in bits per character with decay 0.999 per character of a stream, i.e. a time constant of
about 1000 characters per stream (``m ← d^k m + (1 - d^k) bits``, ``w ← d^k w + (1 - d^k)``,
``train_bpc = m / w`` after a step of k characters); ``valid_bpc`` on the line following an
evaluation (and on the final line); ``test_bpc`` on the final line. An evaluation also
prints its own progress line with its duration.

Reference (papers.md §7.2, SPEC §5): n=256, ``ok`` rank 8, batch 32, lr 10^-3.5, reset every
100, 1M steps: validation 1.74–1.75 bpc.

    python -m minirtrl.ptb --data /path/to/ptb --algo kf --hidden 128 --log ptb.jsonl

Notation: ``N`` symbols of a split, ``V`` vocabulary size (n_in = n_out = V; 50 for PTB),
``B`` training streams, ``t`` position of the training streams (characters per stream
read so far), ``R`` reset interval, ``S`` evaluation streams, ``T`` their length
(``ceil((N - 1)/S)``), ``s`` the state s_t (S, n). Cost of an evaluation: T sequential
steps of O(S n (n + V)) each (one forward step and the readout), one host read at the end.
"""

import hashlib
import math
import sys
import time

import numpy as np

from . import readout, rhn, train
from ._compat import get_device
from .backends import to_numpy
from .corpus import CorpusError, batch_at, eval_streams, read_corpus, stream_offsets
from .train import Batch

PROG = "minirtrl.ptb"
DESCRIPTION = (
    "Character-level language model (SPEC §4): an RHN trained online on B streams of the "
    "training text, evaluated in bits per character over the whole validation split every "
    "--eval-every steps and over the test split at the end."
)
TRAIN_DECAY = 0.999  # per character of a stream, for the train_bpc moving average
LN2 = math.log(2.0)


# ---- evaluation -------------------------------------------------------------------------
def evaluate(cell, params, inputs, targets, mask, *, xp):
    """Summed loss in bits of a split run as S streams, and the number of predictions.

    ``inputs``, ``targets`` (T, S) integer ids and ``mask`` (T, S) 0/1 in the dtype of the
    parameters, all on the parameters' device (as made by ``corpus.eval_streams``). Each
    stream starts from the zero state; the state is carried through all T steps, never
    reset, and the parameters are only read. Returns ``(bits, count)`` as Python floats:
    ``bits = Σ mask · loss / ln 2`` and ``count = Σ mask``. The per-step losses stay on the
    device until one host read at the end, where they are summed in float64.
    Cost: T steps of O(S n (n + V)), sequential in T, batched over S.
    """
    T, S = inputs.shape
    V = params["V"]
    s = xp.zeros((S, cell.n_hidden), dtype=V.dtype, device=get_device(V))  # (S, n)
    losses = []
    for t in range(T):
        x = readout.one_hot(inputs[t, :], cell.n_in, xp=xp, dtype=V.dtype)  # (S, V)
        s, _ = rhn.step(cell, params, s, x, xp=xp)
        losses.append(readout.loss(V, s, targets[t, :], mask[t, :], xp=xp))  # (S,) nats
    host = to_numpy(xp.stack([xp.stack(losses), mask]))  # (2, T, S): the one host read
    nats, count = np.sum(host, axis=(1, 2), dtype=np.float64)
    return float(nats) / LN2, float(count)


class Evaluator:
    """The ``evaluate(ctx, params, final)`` hook of ``train.run`` for one corpus.

    Cuts the validation and test splits into ``streams`` evaluation streams once, moves them
    to the device on first use and returns ``{"valid_bpc": …}`` (and ``"test_bpc"`` when
    ``final``). The final validation pass is skipped when the same parameters were just
    evaluated (the run ended on an evaluation step).
    """

    def __init__(self, corpus, streams, out=None):
        self.host = {}
        for split in ("valid", "test"):
            ids = getattr(corpus, split)
            self.host[split] = eval_streams(ids, min(streams, ids.shape[0] - 1))
        self.out = out
        self.device = {}
        self.last = None  # (params, valid_bpc) of the last validation pass

    def _arrays(self, split, ctx):
        if split not in self.device:
            xp, dev = ctx.xp, ctx.device
            inputs, targets, mask = self.host[split]
            self.device[split] = (xp.asarray(inputs, dtype=xp.int64, device=dev),
                                  xp.asarray(targets, dtype=xp.int64, device=dev),
                                  xp.asarray(mask, dtype=ctx.dtype, device=dev))
        return self.device[split]

    def bpc(self, split, ctx, params):
        """Bits per character of ``split`` with ``params``; prints a progress line."""
        start = time.perf_counter()
        bits, count = evaluate(ctx.cell, params, *self._arrays(split, ctx), xp=ctx.xp)
        value = bits / count
        S = self.host[split][0].shape[1]
        print(f"{split}_bpc {value:.4f}  ({int(count):,} characters, {S} streams, "
              f"{time.perf_counter() - start:.1f} s)", file=self.out or sys.stdout, flush=True)
        return value

    def __call__(self, ctx, params, final):
        if self.last is not None and self.last[0] is params:
            figures = {"valid_bpc": self.last[1]}
        else:
            figures = {"valid_bpc": self.bpc("valid", ctx, params)}
            self.last = (params, figures["valid_bpc"])
        if final:
            figures["test_bpc"] = self.bpc("test", ctx, params)
        return figures


# ---- the training task ----------------------------------------------------------------------
def fingerprint(corpus):
    """First 16 hex digits of SHA-256 over the vocabulary and the three encoded splits."""
    h = hashlib.sha256("\x00".join(corpus.vocab.symbols).encode("utf-8"))
    for split in ("train", "valid", "test"):
        ids = np.ascontiguousarray(getattr(corpus, split), dtype="<i4")
        h.update(split.encode() + np.asarray(ids.shape[0], dtype="<i8").tobytes())
        h.update(ids.tobytes())
    return h.hexdigest()[:16]


class TextTask:
    """B streams of a training text at evenly spaced offsets (implements ``train.Task``).

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
        self._eye = np.eye(self.n_in)
        self._config = {"task": self.name, "format": data_format, "vocab": self.n_in,
                        "data": fingerprint(corpus), "reset_every": self.reset_every}

    def next_batch(self, rng=None):
        """Character ``t`` of every stream (``rng`` unused: the data are deterministic)."""
        x, y = batch_at(self.ids, self.offsets, self.t)
        reset = self.reset_every > 0 and self.t % self.reset_every == 0
        self.t += 1
        B = self.batch
        keep = np.full(B, 0.0 if reset else 1.0)
        return Batch(self._eye[x], y.astype(np.int64), np.ones(B), keep)

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

    def state_dict(self):
        return {"t": np.asarray(self.t, dtype=np.int64),
                "train_bpc": np.asarray([self.m, self.w], dtype=np.float64)}

    def load_state_dict(self, state):
        t = np.asarray(state["t"])
        ema = np.asarray(state["train_bpc"], dtype=np.float64)
        if t.shape != () or int(t) < 0 or ema.shape != (2,):
            raise ValueError("text-task state is inconsistent")
        self.t = int(t)
        self.m, self.w = float(ema[0]), float(ema[1])


# ---- command line -----------------------------------------------------------------------------
def make_parser():
    p = train.make_parser(
        "python -m minirtrl.ptb", DESCRIPTION, algo="ok", hidden=256, batch=32, lr=10**-3.5,
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
    a("--reset-every", type=train.nonnegative, default=None, metavar="R",
      help="RTRL family: reset the state and influence of all streams every R characters "
           "(default 100; 0 = never); bptt carries its state across windows instead")
    a("--eval-every", type=train.nonnegative, default=10000, metavar="STEPS",
      help="evaluate on the whole validation split every STEPS optimiser steps (bptt: "
           "windows) and at the end (default 10000; 0 = only at the end, with the test split)")
    a("--eval-streams", type=train.positive, default=8, metavar="S",
      help="cut valid/test into S contiguous streams, state carried through (default 8). "
           "More streams run faster on a batched backend and give the same figure up to a "
           "few warm-up characters per stream (the OK reference used 2)")
    return p


def parse(argv):
    """Parsed and checked arguments, or the exit status (``--help``, a bad flag)."""
    parser = make_parser()
    args = train.parse(parser, argv)
    if isinstance(args, int):
        return args
    if args.algo == "bptt":
        if args.reset_every is not None:
            try:
                parser.error("--reset-every applies only to the RTRL family; bptt carries its "
                             "state across windows (see --truncation)")
            except SystemExit as exc:
                return exc.code
        args.reset_every = 0
    elif args.reset_every is None:
        args.reset_every = 100
    return args


def main(argv=None):
    """Run the char-PTB driver with the command-line arguments ``argv``; returns the exit status."""
    args = parse(argv)
    if isinstance(args, int):
        return args
    try:
        corpus = read_corpus(args.data, args.format, unknown=args.unknown)
    except CorpusError as exc:
        message = str(exc).replace("allow unknown symbols", "pass --unknown")
        message = message.replace("use format ", "use --format ")
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
        return 2
    print(f"{PROG}: {args.data}: {corpus.summary()}", flush=True)
    task = TextTask(corpus, args.batch, args.reset_every, data_format=args.format)
    return train.run(args, task, prog=PROG, evaluate=Evaluator(corpus, args.eval_streams),
                     eval_every=args.eval_every)


if __name__ == "__main__":
    sys.exit(main())
