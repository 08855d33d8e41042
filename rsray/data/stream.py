"""A streamed split read for many passes by ONE long-lived Ray Data execution.

Every pass over a Ray Dataset that is not materialised starts a new execution (read tasks,
decode, the streaming executor): about a second before its first batch on a small cluster, and
a pass that runs at a fraction of the read limit, since each execution ramps up and drains.
:func:`build_passes` makes one Ray Dataset holding ``passes`` passes back to back, and
:class:`PassStream` iterates it once, handing out one pass per ``iter_batches`` /
``iter_torch_batches`` call. The execution runs ahead across pass boundaries (bounded by Ray
Data's backpressure), so the next pass's first blocks are decoded while the current epoch is
evaluated, and no pass pays a start-up.

The dataset is built from *units*: a unit is a slice of one shard's row groups
(:data:`UNIT_BYTES` decoded or so). Each pass lists every unit once, in an order drawn from
``(seed, epoch)``; a Ray Data task reads its unit's row groups (only the plan's columns),
decodes them (:func:`~rsray.data.datasets.transform`, augmenting the training split with a
generator seeded from ``(seed, epoch, unit)``) and tags the rows with their pass. Output
order is preserved, so the passes arrive in order and a run repeated with its seed sees the
same rows in the same order (with the same augmentation).

:class:`PassStream` cuts the block stream into passes by that tag and into batches itself
(Ray's batcher cannot end a batch at a pass boundary inside one execution): without a
shuffle buffer, consecutive rows; with ``local_shuffle_buffer_size`` rows, every window of at
least that many rows is permuted with the pass's seed before it is cut (rows never cross
a pass). Every row of a pass is handed out exactly once in that pass. A run of many epochs
over a split of many units chains executions of a few whole epochs each (:data:`MAX_UNITS`
units at most), so that no execution lists every epoch's units at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsray.data.plan import DecodePlan, row_nbytes
from rsray.data.shards import Manifest
from rsray.errors import ShardIntegrityError
from rsray.storage import join

UNIT_BYTES = 128 << 20
"""Decoded bytes per read unit (one Ray Data task), about: a shard written with the default
``--shard-mb`` is one unit. Each task has a fixed cost (scheduling, its output block's hand-over)
of 15-30 ms on a loaded 2-core machine, so larger units stream faster: measured there on 274 KB
BigEarthNet-MM rows, one pass of 701 rows took 0.33-0.5 s in 32-row units, 0.2 s in 64-row
units and 0.10 s in 490-row units. A shard much larger than this is cut into several units
(row groups split evenly), so that a pass has units to overlap and to shuffle."""
MAX_UNITS = 4096
"""Read units per execution at most (whole epochs, at least one): a run of many epochs over a
large split chains a few executions instead of listing every epoch's units at once."""
PASS_COLUMN = "__pass"
"""The column tagging each row with the pass (epoch) it belongs to."""


@dataclass(frozen=True)
class SplitStream:
    """What a process needs to stream one split of a shard set: picklable, no Ray objects."""

    manifest: Manifest
    split: str
    plan: DecodePlan
    augment_with: dict[str, Any] | None = None
    """:attr:`~rsray.data.plan.DataPlan.augment` (``None``: no augmentation in the tasks)."""

    def unit_rows(self, unit_bytes: int = UNIT_BYTES) -> int:
        """Rows per unit: ``unit_bytes`` of decoded rows."""
        return max(1, unit_bytes // max(1, row_nbytes(self.plan)))

    def units(self, unit_rows: int | None = None) -> list[tuple[str, int, int]]:
        """``(shard path, part, parts)``: each shard cut into slices of its row groups.

        A slice holds about ``unit_rows`` rows (default :meth:`unit_rows`).
        """
        unit_rows = unit_rows or self.unit_rows()
        out = []
        for info in self.manifest.shards:
            if info.split != self.split:
                continue
            # rounded: a shard a little over one unit stays one unit (a task per shard)
            parts = max(1, round(info.rows / unit_rows))
            path = join(self.manifest.uri, info.path)
            out += [(path, i, parts) for i in range(parts)]
        return out


def pass_order(units: int, seed: int, epoch: int) -> np.ndarray:
    """The order of a pass's units: a permutation drawn from ``(seed, epoch)``."""
    return np.random.default_rng([int(seed), int(epoch), 0x5EED]).permutation(units)


def read_unit(path: str, part: int, parts: int, columns: Sequence[str]) -> Any:
    """Row groups ``part`` of ``parts`` (an even split of the shard's row groups) of ``path``."""
    import pyarrow.parquet as pq

    from rsray.storage import parse, pyarrow_fs

    loc = parse(path)
    if loc.is_remote:
        pf = pq.ParquetFile(loc.path, filesystem=pyarrow_fs(loc.uri))
    else:  # memory-mapped: the page cache's pages are read without a copy into a buffer
        pf = pq.ParquetFile(loc.path, memory_map=True)
    groups = np.array_split(np.arange(pf.metadata.num_row_groups), parts)[part]
    if not len(groups):
        return pf.schema_arrow.empty_table().select(list(columns))
    return pf.read_row_groups([int(g) for g in groups], columns=list(columns))


def _read_and_decode(batch: dict[str, np.ndarray], plan: DecodePlan,
                     augment_with: dict[str, Any] | None, seed: int) -> dict[str, np.ndarray]:
    """The Ray Data task of one unit: read, decode (and augment), tag with the pass."""
    from rsray.data.datasets import transform

    path, part, parts = str(batch["path"][0]), int(batch["part"][0]), int(batch["parts"][0])
    epoch, unit = int(batch["epoch"][0]), int(batch["unit"][0])
    table = read_unit(path, part, parts, plan.columns)
    out = transform(table, plan, augment_with, seed=[seed, epoch, unit])
    out[PASS_COLUMN] = np.full(len(out["label"]), epoch, dtype=np.int32)
    return out


def build_passes(stream: SplitStream, *, passes: int, seed: int, first_epoch: int = 0,
                 unit_rows: int | None = None) -> Any:
    """One Ray Dataset holding epochs ``first_epoch .. first_epoch + passes - 1`` in order.

    Its rows carry :data:`PASS_COLUMN` (the epoch). Each pass reads every unit once, in the
    order :func:`pass_order` draws.
    """
    import ray

    units = stream.units(unit_rows)
    if not units:
        raise ShardIntegrityError(
            f"{stream.manifest.uri}: the shard set has no '{stream.split}' split "
            f"(it has {', '.join(sorted(stream.manifest.splits))})")
    items = []
    for epoch in range(first_epoch, first_epoch + passes):
        for u in pass_order(len(units), seed, epoch):
            path, part, parts = units[u]
            items.append({"path": path, "part": part, "parts": parts, "epoch": epoch,
                          "unit": int(u)})
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(_read_and_decode, batch_size=1, batch_format="numpy",
                        fn_kwargs={"plan": stream.plan, "augment_with": stream.augment_with,
                                   "seed": int(seed)})
    ds.context.execution_options.preserve_order = True  # passes in order, a seeded run repeats
    return ds


def _rows(blocks: list[dict[str, np.ndarray]], offsets: np.ndarray, keys: Sequence[str],
          start: int, end: int) -> dict[str, np.ndarray]:
    """Rows ``start:end`` of the concatenated ``blocks`` (views when they lie in one block)."""
    first = int(np.searchsorted(offsets, start, side="right")) - 1
    last = int(np.searchsorted(offsets, end - 1, side="right")) - 1
    if first == last:
        lo = start - offsets[first]
        return {k: blocks[first][k][lo:lo + end - start] for k in keys}
    parts = [(j, max(start, offsets[j]) - offsets[j], min(end, offsets[j + 1]) - offsets[j])
             for j in range(first, last + 1)]
    return {k: np.concatenate([blocks[j][k][a:b] for j, a, b in parts]) for k in keys}


def _gather(blocks: list[dict[str, np.ndarray]], offsets: np.ndarray, keys: Sequence[str],
            idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``idx`` of the concatenated ``blocks``, in that order (one copy per row)."""
    which = np.searchsorted(offsets, idx, side="right") - 1
    present = np.unique(which)
    out = {}
    for k in keys:
        like = blocks[0][k]
        arr = np.empty((len(idx), *like.shape[1:]), dtype=like.dtype)
        for j in present:
            sel = which == j
            arr[sel] = blocks[j][k][idx[sel] - offsets[j]]
        out[k] = arr
    return out


def _cut(blocks: Iterator[dict[str, np.ndarray]], batch_size: int, shuffle: int,
         rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
    """Blocks -> batches of ``batch_size`` rows (the last one may be short).

    ``shuffle`` > 0: each window of at least ``shuffle + batch_size`` rows is permuted before
    its full batches are cut (each row copied once); the rows left over join the next window.
    Without it, batches are views on the blocks where they lie in one.
    """
    pending: list[dict[str, np.ndarray]] = []
    rows = 0
    keys: list[str] = []
    window = shuffle + batch_size if shuffle else batch_size

    def flush(final: bool) -> Iterator[dict[str, np.ndarray]]:
        nonlocal pending, rows
        offsets = np.cumsum([0] + [len(b["label"]) for b in pending])
        order = rng.permutation(rows) if shuffle else None
        full = rows if final else rows - rows % batch_size
        for start in range(0, full, batch_size):
            end = min(start + batch_size, full)
            yield (_rows(pending, offsets, keys, start, end) if order is None
                   else _gather(pending, offsets, keys, order[start:end]))
        rest = ([] if full == rows else
                [_rows(pending, offsets, keys, full, rows) if order is None
                 else _gather(pending, offsets, keys, order[full:])])
        pending, rows = rest, rows - full

    for block in blocks:
        n = len(block["label"])
        if not n:
            continue
        keys = [k for k in block if k != PASS_COLUMN]
        pending.append(block)
        rows += n
        if rows >= window:
            yield from flush(final=False)
    if rows:
        yield from flush(final=True)


class PassStream:
    """Passes of a :func:`build_passes` dataset, one per iteration call (see module doc).

    ``dataset`` holds the epochs ``first_epoch ..``; call :meth:`iter_batches` or
    :meth:`iter_torch_batches` once per epoch. When its blocks run out, ``more()`` (if given)
    returns the dataset of the next epochs (``None``: no more). A pass left part-way (early
    stopping) is skipped by the next call; :meth:`close` stops the execution. ``lead`` blocks
    are fetched ahead of the consumer. :meth:`over` builds the stream of a run.
    """

    def __init__(self, dataset: Any, *, first_epoch: int = 0, lead: int = 4,
                 more: Callable[[], Any] | None = None) -> None:
        self.dataset = dataset
        self.epoch = first_epoch
        self.lead = lead
        self.more = more
        self._blocks: Iterator[dict[str, np.ndarray]] | None = None
        self._held: dict[str, np.ndarray] | None = None
        self._done = False

    @classmethod
    def over(cls, stream: SplitStream, *, passes: int, seed: int, first_epoch: int = 0,
             max_units: int = MAX_UNITS) -> PassStream:
        """Epochs ``first_epoch .. first_epoch + passes - 1`` of ``stream``.

        One execution holds as many whole epochs as fit ``max_units`` read units (at least
        one): every epoch of a small split, a few at a time of a split of many units.
        """
        per = max(1, max_units // max(1, len(stream.units())))
        chunks = [(e, min(per, first_epoch + passes - e))
                  for e in range(first_epoch, first_epoch + passes, per)]

        def make() -> Any:
            if not chunks:
                return None
            first, n = chunks.pop(0)
            return build_passes(stream, passes=n, seed=seed, first_epoch=first)

        return cls(make(), first_epoch=first_epoch, more=make)

    def start(self) -> PassStream:
        """Start the execution now (its first blocks are decoded while the caller sets up)."""
        if self._blocks is None and self.dataset is not None:
            self._blocks = iter(self.dataset.iter_batches(
                batch_size=None, batch_format="numpy", prefetch_batches=self.lead))
        return self

    def close(self) -> None:
        """Stop the execution (its blocks are released)."""
        blocks, self._blocks, self._done, self._held = self._blocks, None, True, None
        close = getattr(blocks, "close", None)
        if close is not None:
            close()

    def _next_block(self) -> dict[str, np.ndarray] | None:
        if self._held is not None:
            block, self._held = self._held, None
            return block
        while not self._done:
            self.start()
            if self._blocks is None:
                self._done = True
                break
            try:
                return next(self._blocks)
            except StopIteration:  # this execution's epochs are over: the next ones, if any
                self._blocks = None
                self.dataset = self.more() if self.more is not None else None
        return None

    def _pass_blocks(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """The blocks of ``epoch``: earlier epochs' leftovers skipped, the next one held."""
        while (block := self._next_block()) is not None:
            tag = block[PASS_COLUMN]
            if len(tag) and int(tag[0]) < epoch:
                continue  # a pass left part-way
            if len(tag) and int(tag[0]) > epoch:
                self._held = block
                return
            yield block

    def iter_batches(self, *, batch_size: int, batch_format: str = "numpy",
                     local_shuffle_buffer_size: int | None = None,
                     local_shuffle_seed: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """The next pass as NumPy batches (``Dataset.iter_batches``' arguments, NumPy only)."""
        if batch_format != "numpy":
            raise ValueError(f"PassStream.iter_batches: batch_format {batch_format!r}; "
                             "only 'numpy' is supported")
        epoch, self.epoch = self.epoch, self.epoch + 1
        rng = np.random.default_rng(local_shuffle_seed)
        yield from _cut(self._pass_blocks(epoch), batch_size, local_shuffle_buffer_size or 0, rng)

    def iter_torch_batches(self, *, batch_size: int, local_shuffle_buffer_size: int | None = None,
                           local_shuffle_seed: int | None = None, device: Any = "cpu",
                           pin_memory: bool = False) -> Iterator[dict[str, Any]]:
        """The next pass as torch tensors on ``device`` (``Dataset.iter_torch_batches``')."""
        import torch

        for batch in self.iter_batches(batch_size=batch_size,
                                       local_shuffle_buffer_size=local_shuffle_buffer_size,
                                       local_shuffle_seed=local_shuffle_seed):
            out = {}
            with warnings.catch_warnings():  # object-store views are read-only, as in Ray's
                warnings.simplefilter("ignore", UserWarning)
                for k, v in batch.items():
                    t = torch.as_tensor(v)
                    if pin_memory:
                        t = t.pin_memory()
                    out[k] = t.to(device, non_blocking=pin_memory)
            yield out
