"""The task interface of the training loop: what the copy task and a text corpus provide.

A task makes host-side batches (NumPy), is told the loss, owns the figures it reports
and the state that goes into checkpoints.
"""

from typing import NamedTuple, Protocol

import numpy as np


class Batch(NamedTuple):
    """One character of every stream, on the host (NumPy).

    ``x`` (B, n_in) real (one-hot) inputs, ``y`` (B,) integer targets in [0, n_out),
    ``mask`` (B,) 0/1 loss weights, ``keep`` (B,) 0/1: 0 where a stream starts a new
    sequence (its state and influence are zeroed before this character).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    keep: np.ndarray


class Task(Protocol):
    """What a driver's task provides to ``loop.run`` (all host-side; see ``copytask.CopyTask``).

    ``next_batch`` is called once per character (K times per ``bptt`` window, before the
    window's loss is known), then ``observe`` once per optimiser step. ``figures`` go into
    progress and log lines; ``state_dict`` (a dict of NumPy arrays) into checkpoints, and
    ``load_state_dict`` must restore it so that a resumed run continues exactly (and raise
    ``ValueError`` for a state it cannot take: out of range, inconsistent); ``state_spec``
    gives the dtype and shape of every array of ``state_dict`` (a ``None`` dimension is
    any size up to ``MAX_WIDTH``), which a checkpoint is checked against before it is read;
    ``config`` holds the task's settings a resumed run must share.
    """

    name: str
    n_in: int
    n_out: int
    batch: int
    MAX_WIDTH: int

    def next_batch(self, rng: np.random.Generator) -> Batch: ...

    def observe(self, bits: float, steps: int = 1) -> None:
        """Batch-mean loss in bits per character, averaged over the last ``steps`` characters."""

    def figures(self) -> dict: ...

    def config(self) -> dict: ...

    def state_dict(self) -> dict: ...

    def state_spec(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Context(NamedTuple):
    """What an ``evaluate(ctx, params, final)`` hook gets: the model and where it lives."""

    cell: object
    xp: object
    device: object
    dtype: object
