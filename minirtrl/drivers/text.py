"""The text task of ``python -m minirtrl.ptb``: B training streams of a corpus and the
evaluation of a split in bits per character (see ``drivers.ptb`` for the protocol).

Notation: ``N`` symbols of a split, ``V`` vocabulary size (n_in = n_out = V), ``B``
training streams, ``t`` position of the training streams, ``S`` evaluation streams,
``T`` their length (``ceil((N - 1)/S)``), ``s`` the state s_t (S, n).
"""

import hashlib
import math
import time

import numpy as np

from .. import readout
from .._compat import get_device
from .backends import to_numpy
from .streams import batch_at, eval_streams, stream_offsets
from .task import Batch

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
        s, _ = cell.step(params, s, x, xp=xp)
        losses.append(readout.loss(V, s, targets[t, :], mask[t, :], xp=xp))  # (S,) nats
    host = to_numpy(xp.stack([xp.stack(losses), mask]))  # (2, T, S): the one host read
    nats, count = np.sum(host, axis=(1, 2), dtype=np.float64)
    return float(nats) / LN2, float(count)


class Evaluator:
    """The ``evaluate(ctx, params, final)`` hook of ``loop.run`` for one corpus.

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
              f"{time.perf_counter() - start:.1f} s)", flush=True)
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
    """B streams of a training text at evenly spaced offsets (implements ``task.Task``).

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
