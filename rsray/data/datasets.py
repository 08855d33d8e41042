"""Ray Data assembly: one streamed or cached dataset per split, and the cache policy.

``read_parquet`` -> :func:`transform` (decode, then augment in the Ray Data task when the
training split is streamed) per split. Splits that fit ``data.cache_fraction`` of the object
store are decoded once into it (:func:`cache_splits`) and read from memory by every epoch; the
training workers then augment each batch themselves (:class:`TrainingData`).

The datasets built here are handed to ``TorchTrainer(datasets=...)``; each worker pulls its part
with ``ray.train.get_dataset_shard(split).iter_torch_batches(...)`` and calls
:func:`~rsray.data.finalize.finalize_batch` to get
``{modality: (N, C, H, W) float32, "label": (N, K) float32}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsray.config import DataConfig
from rsray.data.augment import augment_raw
from rsray.data.decode import decode_raw
from rsray.data.plan import DataPlan, DecodePlan, decode_key, default_splits, row_nbytes
from rsray.data.shards import Manifest, read_manifest, verify_shards
from rsray.data.stream import SplitStream
from rsray.errors import ShardIntegrityError
from rsray.storage import pyarrow_fs

DECODE_BATCH_ROWS = 128
READ_BLOCKS_PER_SHARD = 4


def transform(batch: dict[str, Any], plan: DecodePlan, augment_with: dict[str, Any] | None,
              seed: int | None = None) -> dict[str, np.ndarray]:
    """What every Ray Data task runs on a batch of shard rows: decode, then augment if asked.

    ``augment_with`` is :attr:`DataPlan.augment` (``None``: evaluation, no augmentation).
    """
    out = decode_raw(batch, plan)
    if augment_with is not None:
        rng = np.random.default_rng(seed)
        out = augment_raw(out, plan, rng=rng, **augment_with)
    return out


def build_split(manifest: Manifest, split: str, plan: DecodePlan, *,
                augment_with: dict[str, Any] | None = None) -> Any:
    """A Ray Dataset streaming one split, decoded with ``plan``.

    ``augment_with`` (:attr:`DataPlan.augment`) augments it in the Ray Data tasks.
    """
    import ray

    paths = manifest.shard_paths(split)
    if not paths:
        raise ShardIntegrityError(f"{manifest.uri}: the shard set has no '{split}' split "
                                  f"(it has {', '.join(sorted(manifest.splits))})")
    if plan.train_fraction < 1.0:
        print(f"[rsray] training on a nested {plan.train_fraction:.0%} subset of the training "
              f"split (data.fraction_seed={plan.fraction_seed})", flush=True)
    # Several read tasks per shard (by row group): a 128 MiB shard is otherwise one block,
    # which serialises reading on clusters with few shards (measured +30 % on 2 cores).
    # The manifest names every file, so the V1 reader reads that list as given: the default
    # (V2) reader lists the files again through new FooterReader actors on every pass (3-4 s
    # of start-up per epoch and split) and ignores ``override_num_blocks``.
    with _listed_parquet_reader():
        ds = ray.data.read_parquet(paths, filesystem=pyarrow_fs(manifest.uri),
                                   columns=plan.columns,
                                   override_num_blocks=READ_BLOCKS_PER_SHARD * len(paths))
    return ds.map_batches(
        transform,
        fn_kwargs={"plan": plan, "augment_with": augment_with},
        batch_size=DECODE_BATCH_ROWS,
        batch_format="pyarrow",  # band columns decode as views on Arrow buffers (no copy)
    )


def load_shard_set(cfg: DataConfig, splits: tuple[str, ...] | None = None) -> Manifest:
    """Read the manifest at ``cfg.uri`` and (unless disabled) verify the shards of ``splits``."""
    splits = splits or default_splits(cfg)
    manifest = read_manifest(cfg.uri)
    if cfg.verify_checksums:
        verify_shards(manifest, list(splits))
    return manifest


def build_datasets(
    cfg: DataConfig, splits: tuple[str, ...] | None = None, manifest: Manifest | None = None
) -> tuple[Manifest, dict[str, Any]]:
    """Manifest and one streamed Ray Dataset per split (default: train + ``data.eval_splits``).

    Only ``train`` is augmented (in the Ray Data tasks) and subsampled by
    ``data.train_fraction``.
    """
    splits = splits or default_splits(cfg)
    manifest = manifest or load_shard_set(cfg, splits)
    data = DataPlan.build(manifest, cfg)
    datasets = {s: build_split(manifest, s, data.decode(s),
                               augment_with=data.augment if s == "train" else None)
                for s in splits}
    return manifest, datasets


@contextlib.contextmanager
def _listed_parquet_reader() -> Iterator[None]:
    """Build ``read_parquet`` datasets with Ray Data's V1 reader (an explicit file list)."""
    import ray

    ctx = ray.data.DataContext.get_current()
    before = getattr(ctx, "use_datasource_v2", None)
    if before is None:  # a Ray without the switch has one reader only
        yield
        return
    ctx.use_datasource_v2 = False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = before


@dataclass
class CachedSplit:
    """A decoded, un-augmented split held in Ray's object store (``MaterializedDataset``)."""

    key: tuple[Any, ...]
    dataset: Any
    rows: int
    nbytes: int
    seconds: float


@dataclass
class TrainingData:
    """The datasets of one run and how its training split is augmented.

    ``augment`` holds :attr:`DataPlan.augment` when the training workers augment each batch
    themselves (the training split is cached, so it must be augmented anew every epoch, or
    ``data.augment_on=device``); ``None`` when Ray Data augments (a streamed split) or
    augmentation is off.
    """

    datasets: dict[str, Any]
    augment: dict[str, Any] | None = None
    cached: dict[str, CachedSplit] = field(default_factory=dict)
    streams: dict[str, SplitStream] = field(default_factory=dict)
    """The splits that are streamed (not cached): what a one-worker run needs to read all
    its epochs of each through one execution (:mod:`rsray.data.stream`)."""


def cache_splits(data: DataPlan, manifest: Manifest, splits: Sequence[str] | None = None,
                 *, have: Mapping[str, CachedSplit] | None = None) -> dict[str, CachedSplit]:
    """Read and decode ``splits`` once into the object store, if ``data.cache`` allows.

    ``auto`` caches when every split not already in ``have`` fits in ``data.cache_fraction``
    of the cluster's object store (estimated from the manifest's row counts); ``memory`` and
    ``device`` (whose workers then copy their share of the training split to their device)
    always; ``off`` never. Returns the cached splits (``have``'s included).
    """
    import time

    import ray

    out = dict(have or {})
    if data.cache == "off":
        return out
    todo = {}
    for s in splits or data.splits:
        plan = data.decode(s)
        if s in out and out[s].key == decode_key(plan):
            continue
        rows = manifest.splits.get(s, 0)
        if s == "train":
            rows = int(np.ceil(rows * plan.train_fraction))
        todo[s] = (plan, rows, rows * row_nbytes(plan))
    if not todo:
        return out
    need = sum(n for _, _, n in todo.values())
    budget = data.cache_fraction * ray.cluster_resources().get("object_store_memory", 0.0)
    if data.cache == "auto" and need > budget:
        print(f"[rsray] streaming {', '.join(todo)}: {need / 2**20:.0f} MiB decoded exceeds "
              f"data.cache_fraction={data.cache_fraction} of the object store "
              f"({budget / 2**20:.0f} MiB)", flush=True)
        return out
    for s, (plan, rows, nbytes) in todo.items():
        t0 = time.perf_counter()
        ds = build_split(manifest, s, plan)
        # rows in shard order: a run repeated with its seed sees the same batches
        options = ds.context.execution_options
        before, options.preserve_order = options.preserve_order, True
        try:
            ds = ds.materialize()
        finally:
            options.preserve_order = before
        out[s] = CachedSplit(decode_key(plan), ds, rows, nbytes, time.perf_counter() - t0)
        print(f"[rsray] {s}: {rows} rows ({nbytes / 2**20:.0f} MiB) decoded into the object "
              f"store in {out[s].seconds:.1f} s; every epoch reads them from memory", flush=True)
    return out


def training_datasets(data: DataPlan, manifest: Manifest,
                      shared: Mapping[str, CachedSplit] | None = None) -> TrainingData:
    """The datasets a training run needs: cached splits where they fit, streams elsewhere.

    ``shared`` are splits another process cached (the tune driver caches them once for all
    trials); a split whose :func:`~rsray.data.plan.decode_key` differs for this run is not
    taken from it.
    """
    cached = cache_splits(data, manifest, data.splits, have=shared)
    datasets: dict[str, Any] = {}
    streams = {}
    for s in data.splits:
        c = cached.get(s)
        if c is not None and c.key == decode_key(data.decode(s)):
            datasets[s] = c.dataset
        else:  # a stream: Ray Data augments it unless the workers do (augment_on=device)
            augment = data.augment if s == "train" and data.streams_augmented else None
            datasets[s] = build_split(manifest, s, data.decode(s), augment_with=augment)
            streams[s] = SplitStream(manifest, s, data.decode(s), augment_with=augment)
    in_memory = "train" in cached and datasets["train"] is cached["train"].dataset
    workers_augment = data.augment is not None and (in_memory or not data.streams_augmented)
    return TrainingData(datasets, data.augment if workers_augment else None, cached, streams)
