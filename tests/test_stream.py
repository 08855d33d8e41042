"""PassStream: every epoch of a streamed split through one long-lived Ray Data execution."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from rsray.data.stream import PASS_COLUMN, PassStream, SplitStream, _cut, build_passes, pass_order


def _blocks(sizes: list[int], epoch: int = 0, start: int = 0) -> list[dict[str, np.ndarray]]:
    out, row = [], start
    for n in sizes:
        ids = np.arange(row, row + n)
        out.append({"label": ids.copy(), "x": np.stack([ids, -ids], 1),
                    PASS_COLUMN: np.full(n, epoch, np.int32)})
        row += n
    return out


def test_cut_hands_out_every_row_once_in_batches() -> None:
    rng = np.random.default_rng(0)
    plain = list(_cut(iter(_blocks([5, 7, 1, 9])), 4, 0, rng))
    assert [len(b["label"]) for b in plain] == [4, 4, 4, 4, 4, 2]
    assert np.concatenate([b["label"] for b in plain]).tolist() == list(range(22))
    assert all(PASS_COLUMN not in b for b in plain)
    assert all((b["x"][:, 0] == b["label"]).all() for b in plain)  # columns stay aligned
    mixed = list(_cut(iter(_blocks([5, 7, 1, 9])), 4, 8, np.random.default_rng(1)))
    rows = np.concatenate([b["label"] for b in mixed])
    assert sorted(rows.tolist()) == list(range(22)) and rows.tolist() != list(range(22))
    assert all((b["x"][:, 1] == -b["label"]).all() for b in mixed)
    again = list(_cut(iter(_blocks([5, 7, 1, 9])), 4, 8, np.random.default_rng(1)))
    assert np.array_equal(np.concatenate([b["label"] for b in again]), rows)


class _Blocks:
    """A stand-in for the multi-pass Ray Dataset: blocks of ``passes`` epochs in order."""

    def __init__(self, passes: int, first: int = 0) -> None:
        self.blocks = [b for e in range(first, first + passes)
                       for b in _blocks([3, 4], epoch=e, start=100 * e)]
        self.started = 0

    def iter_batches(self, **kwargs: Any) -> Iterator[dict[str, np.ndarray]]:
        assert kwargs["batch_size"] is None
        self.started += 1
        yield from self.blocks


def test_passes_end_at_their_boundary_and_a_left_pass_is_skipped() -> None:
    ds = _Blocks(3)
    stream = PassStream(ds)
    first = [b["label"].tolist() for b in stream.iter_batches(batch_size=5)]
    assert first == [[0, 1, 2, 3, 4], [5, 6]]  # the pass's last batch is short, not mixed
    part = stream.iter_batches(batch_size=2)
    assert next(part)["label"].tolist() == [100, 101]
    part.close()  # early stop mid-pass
    third = np.concatenate([b["label"] for b in stream.iter_batches(batch_size=4)])
    assert third.tolist() == list(range(200, 207))
    assert list(stream.iter_batches(batch_size=4)) == []  # no pass left
    assert ds.started == 1  # one execution for every pass


def test_epochs_continue_in_the_next_execution() -> None:
    later = [_Blocks(1, first=1), _Blocks(1, first=2)]
    stream = PassStream(_Blocks(1), more=lambda: later.pop(0) if later else None)
    epochs = [np.concatenate([b["label"] for b in stream.iter_batches(batch_size=3)]).tolist()
              for _ in range(3)]
    assert epochs == [list(range(100 * e, 100 * e + 7)) for e in range(3)]
    assert list(stream.iter_batches(batch_size=3)) == []


def test_torch_batches_and_unknown_format() -> None:
    torch = pytest.importorskip("torch")
    stream = PassStream(_Blocks(1))
    batches = list(stream.iter_torch_batches(batch_size=4))
    assert all(isinstance(b["x"], torch.Tensor) for b in batches)
    assert torch.cat([b["label"] for b in batches]).tolist() == list(range(7))
    with pytest.raises(ValueError, match="batch_format"):
        next(PassStream(_Blocks(1)).iter_batches(batch_size=2, batch_format="pandas"))


def test_pass_order_is_drawn_from_seed_and_epoch() -> None:
    a = pass_order(20, seed=3, epoch=0)
    assert sorted(a.tolist()) == list(range(20))
    assert np.array_equal(a, pass_order(20, seed=3, epoch=0))
    assert not np.array_equal(a, pass_order(20, seed=3, epoch=1))
    assert not np.array_equal(a, pass_order(20, seed=4, epoch=0))


# ---------------------------------------------------------------- on real shards, through Ray


def _stream(shards: str, augment: bool = False) -> SplitStream:
    from rsray.config import DataConfig
    from rsray.data.plan import DataPlan
    from rsray.data.shards import read_manifest

    manifest = read_manifest(shards)
    data = DataPlan.build(manifest, DataConfig(uri=shards, batch_size=8, augment=augment))
    return SplitStream(manifest, "train", data.decode("train"),
                       augment_with=data.augment if augment else None)


def _row_ids(batch: dict[str, Any]) -> list[str]:
    return [hashlib.sha1(np.ascontiguousarray(r).tobytes()).hexdigest()[:16] for r in batch["s1"]]


def _epochs(stream: SplitStream, *, passes: int, seed: int, first: int = 0,
            shuffle: int = 16, max_units: int | None = None) -> list[list[str]]:
    if max_units:  # executions of max_units units each (unit size: the default)
        ps = PassStream.over(stream, passes=passes, seed=seed, first_epoch=first,
                             max_units=max_units).start()
    else:
        ps = PassStream(build_passes(stream, passes=passes, seed=seed, first_epoch=first,
                                     unit_rows=8), first_epoch=first).start()
    out = []
    for epoch in range(first, first + passes):
        ids: list[str] = []
        for b in ps.iter_batches(batch_size=8, local_shuffle_buffer_size=shuffle,
                                 local_shuffle_seed=epoch):
            ids += _row_ids(b)
        out.append(ids)
    ps.close()
    return out


def test_every_row_once_per_pass_in_a_seeded_order(synthetic_shards: str, ray_session) -> None:
    stream = _stream(synthetic_shards)
    rows = stream.manifest.splits["train"]
    assert len(stream.units(8)) > 3  # several units per pass, to be ordered
    epochs = _epochs(stream, passes=3, seed=7)
    for ids in epochs:
        assert len(ids) == rows and len(set(ids)) == rows
    assert set(epochs[0]) == set(epochs[1]) == set(epochs[2])
    assert epochs[0] != epochs[1]  # a new order every epoch
    assert _epochs(stream, passes=3, seed=7) == epochs  # the seed decides it
    assert _epochs(stream, passes=3, seed=8)[0] != epochs[0]
    # a resumed run (epochs 1..2) reads what the uninterrupted run read in those epochs
    assert _epochs(stream, passes=2, seed=7, first=1) == epochs[1:]
    # one execution per epoch reads what one execution for all of them reads
    one = len(stream.units())
    assert _epochs(stream, passes=3, seed=7, max_units=one) == \
        _epochs(stream, passes=3, seed=7, max_units=3 * one)


def test_augmentation_in_the_tasks_repeats_with_the_seed(synthetic_shards: str,
                                                         ray_session) -> None:
    stream = _stream(synthetic_shards, augment=True)
    assert stream.augment_with is not None
    first = _epochs(stream, passes=2, seed=1, shuffle=0)
    assert _epochs(stream, passes=2, seed=1, shuffle=0) == first
    plain = _epochs(_stream(synthetic_shards), passes=1, seed=1, shuffle=0)[0]
    assert first[0] != plain  # augmented rows differ from the stored ones
