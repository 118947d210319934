# Run only as `python -m minirtrl.copy`: run as a file it would shadow the stdlib `copy` module.
"""``python -m minirtrl.copy``: string memorisation (copy) with a curriculum, trained online.

The task is the generator of the OK authors' code (Benzing et al. 2019): symbols ``0``, ``1``
data bits, ``2`` start marker, ``3`` blank. Each of the ``B`` streams reads one sequence after
another; a new sequence of length ``T = max(1, T_ - U{0..4})`` is::

    position   0   1 .. T        T+1 .. 2T+1
    input      2   b_1 .. b_T    3 .. 3
    target     3   3 .. 3        2, b_1 .. b_T        (loss at every position)

The curriculum keeps a running error ``e ← 0.999 e + 0.001 · (batch-mean loss in bits)``
(start 1) and, whenever a stream starts a new sequence while ``e < 0.15``, sets
``T_ ← T_ + 1, e ← 0.3`` (before drawing that stream's sequence). Random numbers come only
from the Generator passed in: per new sequence, in stream order, ``U{0..4}`` then the T bits.
The OK authors report, for n=128, ``ok`` rank 16, batch 16, lr 10^-3.5, T_ ≈ 34 after 1M steps
and ≈ 42 after 2M steps. The loop, flags and outputs: ``loop``, ``cli``, ``docs/commands.md``.

Notation: ``level`` T_, ``error`` e, ``length`` T of a stream's sequence, ``pos`` the position
it reads next, ``inputs`` / ``targets`` (B, capacity) every stream's sequence, blank-padded.
"""

import math

import numpy as np

from . import cli, loop
from .safety import command

PROG = "minirtrl.copy"

START, BLANK = 2, 3
VOCAB = 4
DECAY = 0.999  # running-error decay
THRESHOLD = 0.15  # error below which the level rises
RESET_ERROR = 0.3  # running error right after a rise


def draw_length(rng, level):
    """Length ``T = max(1, level - U{0..4})`` of a new sequence at curriculum level ``level``."""
    return max(1, int(level) - int(rng.integers(0, 5)))


def update_error(error, bits, steps=1):
    """Running error after ``steps`` characters of batch-mean loss ``bits`` each."""
    decay = DECAY**steps
    return decay * error + (1.0 - decay) * bits


def advance_level(level, error):
    """The curriculum rule at one sequence start: ``(level, error)`` afterwards."""
    if error < THRESHOLD:
        return level + 1, RESET_ERROR
    return level, error


class CopyTask:
    """B streams of copy sequences plus the curriculum (the task interface of ``loop.run``).

    ``next_batch(rng)`` returns the next character of every stream; ``observe(bits)``
    feeds back the batch-mean loss in bits of a step. All state is host NumPy and is
    saved and restored exactly by ``state_dict`` / ``load_state_dict``.
    """

    name = "copy"
    n_in = VOCAB
    n_out = VOCAB

    def __init__(self, batch):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, not {batch}")
        self.batch = batch
        self.level = 1
        self.error = 1.0  # -log2(1/2)
        self.length = np.zeros(batch, dtype=np.int64)  # T per stream; 0 = no sequence yet
        self.pos = np.zeros(batch, dtype=np.int64)
        # current sequence of every stream, padded with blanks: (B, capacity >= 2T+2)
        self.inputs = np.full((batch, 4), BLANK, dtype=np.int64)
        self.targets = np.full((batch, 4), BLANK, dtype=np.int64)
        self._rows = np.arange(batch)

    # ---- data -----------------------------------------------------------------------
    def _start(self, b, rng):
        """Apply the curriculum rule, then draw stream b's next sequence."""
        self.level, self.error = advance_level(self.level, self.error)
        T = draw_length(rng, self.level)
        bits = rng.integers(0, 2, size=T)
        cap = self.inputs.shape[1]
        if cap < 2 * T + 2:
            pad = np.full((self.batch, max(2 * T + 2, 2 * cap) - cap), BLANK, dtype=np.int64)
            self.inputs = np.concatenate([self.inputs, pad], axis=1)
            self.targets = np.concatenate([self.targets, pad], axis=1)
        # the row written in place: [2, bits, 3 × (T+1)] and [3 × (T+1), 2, bits], blanks after
        inputs, targets = self.inputs[b], self.targets[b]
        inputs[:] = BLANK
        targets[:] = BLANK
        inputs[0] = START
        inputs[1:T + 1] = bits
        targets[T + 1] = START
        targets[T + 2:2 * T + 2] = bits
        self.length[b] = T
        self.pos[b] = 0

    def next_batch(self, rng):
        """The next character of every stream as a ``Batch`` (advances the streams)."""
        keep = np.ones(self.batch)
        done = (self.length == 0) | (self.pos >= 2 * self.length + 2)
        if done.any():
            for b in np.flatnonzero(done):
                self._start(int(b), rng)
                keep[b] = 0.0
        x = self.inputs[self._rows, self.pos]
        y = self.targets[self._rows, self.pos]
        self.pos = self.pos + 1
        hot = np.zeros((self.batch, VOCAB))  # (B, VOCAB) one-hot inputs, no eye
        hot[self._rows, x] = 1.0
        return loop.Batch(hot, y, np.ones(self.batch), keep)

    def observe(self, bits, steps=1):
        """Feed back the batch-mean loss (bits per character) of the last ``steps`` steps."""
        self.error = update_error(self.error, float(bits), steps)

    # ---- reporting and checkpoints --------------------------------------------------------
    def figures(self):
        """``{"T": T_, "bits": e}`` for progress and log lines."""
        return {"T": int(self.level), "bits": float(self.error)}

    def config(self):
        """Settings a resumed run must share with the checkpoint."""
        return {"task": self.name}

    #: the widest sequence buffer a checkpoint may hold (a sequence of T bits needs 2T+2)
    MAX_WIDTH = 1 << 16

    def state_dict(self):
        return {
            "level": np.asarray(self.level, dtype=np.int64),
            "error": np.asarray(self.error, dtype=np.float64),
            "length": self.length.copy(),
            "pos": self.pos.copy(),
            "inputs": self.inputs.copy(),
            "targets": self.targets.copy(),
        }

    def state_spec(self):
        """``{key: (dtype, shape)}`` of ``state_dict`` (None: any width up to ``MAX_WIDTH``)."""
        B = self.batch
        return {"level": ("int64", ()), "error": ("float64", ()), "length": ("int64", (B,)),
                "pos": ("int64", (B,)), "inputs": ("int64", (B, None)),
                "targets": ("int64", (B, None))}

    def load_state_dict(self, state):
        """Restore ``state_dict``; ``ValueError`` naming what is inconsistent or out of range."""
        B = self.batch
        length, pos, inputs, targets = (
            np.asarray(state[k], dtype=np.int64) for k in ("length", "pos", "inputs", "targets")
        )
        level, error = int(state["level"]), float(state["error"])
        if length.shape != (B,) or pos.shape != (B,) or inputs.ndim != 2 or inputs.shape[0] != B:
            raise ValueError("copy-task state does not match the batch size")
        if not 1 <= level <= (self.MAX_WIDTH - 2) // 2:
            raise ValueError(f"copy-task level {level} is out of range")
        if not (math.isfinite(error) and error >= 0):
            raise ValueError(f"copy-task running error {error} must be a finite number >= 0")
        if np.any(length < 0) or np.any(length > level):
            raise ValueError(f"copy-task sequence lengths {length.tolist()} are out of range "
                             f"0..{level}")
        if np.any(pos < 0) or np.any(pos > 2 * length + 2):
            raise ValueError(f"copy-task positions {pos.tolist()} are out of range (0..2T+2 "
                             "for a sequence of T bits)")
        if targets.shape != inputs.shape or inputs.shape[1] < max(2 * int(length.max()) + 2, 4):
            raise ValueError(f"copy-task sequence buffers of shape {inputs.shape} and "
                             f"{targets.shape} do not hold the sequences")
        if np.any((inputs < 0) | (inputs >= VOCAB)) or np.any((targets < 0) | (targets >= VOCAB)):
            raise ValueError(f"copy-task sequences hold symbols outside 0..{VOCAB - 1}")
        self.level, self.error = level, error
        self.length, self.pos = length.copy(), pos.copy()
        self.inputs, self.targets = inputs.copy(), targets.copy()


# ---- the command ---------------------------------------------------------------------------
DESCRIPTION = (
    "Copy task with a curriculum: learn to repeat a random bit string after a "
    "blank gap, online, while the string length T_ grows whenever the running error drops "
    "below 0.15 bits per character."
)


def make_parser():
    return cli.training_parser(
        PROG, DESCRIPTION,
        algo="ok", hidden=128, batch=16, lr=10**-3.5, rank=16, clip=16.0, steps=2_000_000,
    )


def main(argv=None):
    """Run the copy command with the command-line arguments ``argv``; returns the exit status."""

    def body():
        args = cli.parse_training(make_parser(), argv)
        if isinstance(args, int):
            return args
        return loop.run(args, CopyTask(args.batch), prog=PROG)

    return command(PROG, body)

