"""The copy-task generator and curriculum against the rules of the OK authors' generator,
stated again here."""

import collections

import numpy as np
import pytest

from minirtrl.drivers.copy import CopyTask, draw_length
from minirtrl.testing import assert_close


def expected_sequence(T, bits):
    """The rule written out: input [2, b.., 3 x (T+1)], target [3 x (T+1), 2, b..]."""
    inputs = [2] + list(bits) + [3] * (T + 1)
    targets = [3] * (T + 1) + [2] + list(bits)
    return inputs, targets


def expected_streams(seed, level, batch, steps):
    """Inputs, targets, keep (steps, B) from the rule, drawing as documented.

    A stream needing a new sequence (streams in order) draws U{0..4} then the T bits.
    """
    rng = np.random.default_rng(seed)
    queues = [collections.deque() for _ in range(batch)]
    xs, ys, keeps = [], [], []
    for _ in range(steps):
        x, y, k = [], [], []
        for b in range(batch):
            if not queues[b]:
                T = max(1, level - int(rng.integers(0, 5)))
                bits = [int(v) for v in rng.integers(0, 2, size=T)]
                queues[b].extend(zip(*expected_sequence(T, bits)))
                k.append(0.0)
            else:
                k.append(1.0)
            i, t = queues[b].popleft()
            x.append(i)
            y.append(t)
        xs.append(x)
        ys.append(y)
        keeps.append(k)
    return np.array(xs), np.array(ys), np.array(keeps)


@pytest.mark.parametrize("level", [1, 3, 7])
def test_streams_match_the_rule_position_by_position(level):
    batch, steps = 3, 80
    task = CopyTask(batch)
    task.level = level  # running error stays 1: the level never changes here
    rng = np.random.default_rng(11)
    got = [task.next_batch(rng) for _ in range(steps)]
    xs, ys, keeps = expected_streams(11, level, batch, steps)
    x = np.stack([b.x for b in got])  # (steps, B, 4)
    assert x.shape == (steps, batch, 4)
    assert np.all(x.sum(axis=2) == 1) and np.all((x == 0) | (x == 1))  # one-hot
    assert_close(x.argmax(axis=2), xs, rtol=0)
    assert_close(np.stack([b.y for b in got]), ys, rtol=0)
    assert_close(np.stack([b.keep for b in got]), keeps, rtol=0)
    assert_close(np.stack([b.mask for b in got]), np.ones((steps, batch)), rtol=0)
    assert task.level == level


def test_sequence_layout():
    inputs, targets = expected_sequence(3, [1, 0, 1])  # the rule the streams are checked with
    assert inputs == [2, 1, 0, 1, 3, 3, 3, 3]
    assert targets == [3, 3, 3, 3, 2, 1, 0, 1]


@pytest.mark.parametrize("level", [1, 2, 4, 5, 9])
def test_lengths_cover_exactly_the_allowed_range(level):
    rng = np.random.default_rng(level)
    draws = collections.Counter(draw_length(rng, level) for _ in range(5000))
    allowed = {T for T in range(level - 4, level + 1) if T >= 1}
    assert set(draws) == allowed
    # max(1, T_ - U{0..4}): every U gives 1/5; values below 1 pile up on T = 1
    for T in allowed:
        p = (5 - (level - 1) if T == 1 else 1) / 5 if level <= 5 else 1 / 5
        assert abs(draws[T] / 5000 - p) < 0.03, (T, draws[T])


def test_lengths_through_the_task():
    task = CopyTask(4)
    task.level = 9
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(3000):
        batch = task.next_batch(rng)
        seen.update(int(T) for T in task.length[batch.keep == 0])
    assert seen == {5, 6, 7, 8, 9}


def test_running_error_follows_the_stated_update():
    task = CopyTask(2)
    assert task.figures() == {"T": 1, "bits": 1.0}
    e = 1.0
    for bits in [2.0, 0.5, 1.25, 0.0, 3.0]:
        task.observe(bits)
        e = 0.999 * e + 0.001 * bits
        assert_close(task.error, e, rtol=1e-15)
    task.observe(0.7, steps=50)  # 50 characters of the same mean loss
    for _ in range(50):
        e = 0.999 * e + 0.001 * 0.7
    assert_close(task.error, e, rtol=1e-12)


def test_curriculum_rises_only_at_a_sequence_start_below_threshold():
    task = CopyTask(2)
    rng = np.random.default_rng(0)
    # level 1: every sequence has T = 1, length 4; both streams start at steps 1, 5, 9, ...
    b = task.next_batch(rng)
    assert b.keep.tolist() == [0.0, 0.0] and task.level == 1  # e = 1: no rise
    task.observe(0.0, steps=2000)  # e = 0.999^2000 ≈ 0.135 < 0.15
    assert task.error < 0.15
    for _ in range(3):  # positions 1..3: nobody starts, so no rise however low e is
        b = task.next_batch(rng)
        assert b.keep.tolist() == [1.0, 1.0]
        assert task.level == 1
    b = task.next_batch(rng)  # both start: the first raises the level and resets e
    assert b.keep.tolist() == [0.0, 0.0]
    assert task.level == 2 and task.error == 0.3  # the second sees e = 0.3: no second rise
    assert set(task.length.tolist()) <= {1, 2}
    # just above the threshold: no rise
    task.error = 0.15
    for _ in range(12):
        task.next_batch(rng)
    assert task.level == 2 and task.error == 0.15
    # just below: rises once at the next start, then not again until e drops below 0.15
    task.error = 0.1499
    while True:
        b = task.next_batch(rng)
        if np.any(b.keep == 0):
            break
    assert task.level == 3 and task.error == 0.3


def test_state_round_trip_continues_identically():
    task = CopyTask(3)
    task.level = 6
    rng = np.random.default_rng(5)
    for _ in range(17):
        task.next_batch(rng)
    task.observe(0.4)
    saved, rng_state = task.state_dict(), rng.bit_generator.state
    ahead = [task.next_batch(rng) for _ in range(30)]
    other = CopyTask(3)
    other.load_state_dict(saved)
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = rng_state
    again = [other.next_batch(rng2) for _ in range(30)]
    for a, b in zip(ahead, again):
        for u, v in zip(a, b):
            assert_close(u, v, rtol=0)
    assert other.figures() == task.figures()
    with pytest.raises(ValueError):
        CopyTask(4).load_state_dict(saved)
