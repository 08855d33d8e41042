"""EpochStream: the next pass of a streamed split starts as soon as the previous one ends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rsray.data.passes import EpochStream

START_S = 0.4


class _SlowStart:
    """A dataset whose every pass takes ``START_S`` before its first batch."""

    def __init__(self, fail_on: int = 0) -> None:
        self.started = 0
        self.fail_on = fail_on

    def iter_batches(self, batch_size: int) -> Iterator[int]:
        self.started += 1
        if self.started == self.fail_on:
            raise OSError("shard unreachable")
        time.sleep(START_S)
        yield from range(batch_size)


def _first(it: Iterator[int]) -> tuple[int, float]:
    t0 = time.perf_counter()
    return next(it), time.perf_counter() - t0


def test_later_pass_starts_while_the_epoch_is_evaluated() -> None:
    ds = _SlowStart()
    stream = EpochStream(ds, passes=2)
    first = stream.iter_batches(batch_size=3)
    assert _first(first)[1] >= START_S * 0.9
    assert list(first) == [1, 2]
    time.sleep(START_S * 1.5)  # the epoch's evaluation
    second = stream.iter_batches(batch_size=3)
    value, wait = _first(second)
    assert value == 0 and wait < START_S / 2
    assert list(second) == [1, 2]
    assert ds.started == 2  # the last pass starts nothing after it


def test_abandoned_pass_or_other_arguments_start_afresh() -> None:
    ds = _SlowStart()
    stream = EpochStream(ds, passes=5)
    part = stream.iter_batches(batch_size=3)
    next(part)
    part.close()  # early stop mid-pass: nothing started ahead
    assert ds.started == 1 and stream._next is None
    assert list(stream.iter_batches(batch_size=2)) == [0, 1]
    assert list(stream.iter_batches(batch_size=4)) == [0, 1, 2, 3]  # not the pass started ahead


def test_error_of_the_early_pass_surfaces_at_its_first_batch() -> None:
    stream = EpochStream(_SlowStart(fail_on=2), passes=2)
    assert list(stream.iter_batches(batch_size=1)) == [0]
    with pytest.raises(OSError, match="unreachable"):
        next(stream.iter_batches(batch_size=1))
