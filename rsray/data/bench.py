"""Ingest benchmark: the same patches read three ways, side by side in one run.

(a) Ray Data over rsray shards (``read_parquet`` -> decode in Ray tasks, ``iter_torch_batches``,
    then resample + normalise as the training worker does);
(b) a torch DataLoader reading the per-band GeoTIFFs with rasterio, the way BigEarthNet is
    commonly read today (one file open per band, coarse bands resampled on read);
(c) a torch DataLoader over the same Parquet shards with the same decode function as (a).

All three produce the same model input: float32 ``s2`` (10, 120, 120), ``s1`` (2, 120, 120) and
the 19-class multi-hot label, normalised with the manifest's statistics. Every reader makes one
untimed warm-up pass (so all read from the page cache), then ``passes`` timed passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import rasterio
import torch
from rasterio.enums import Resampling
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from rsray.config import DataConfig
from rsray.data.pipeline import DecodePlan, build_split, decode_batch, finalize_batch, make_plan
from rsray.data.shards import Manifest, read_manifest


@dataclass
class BenchResult:
    """Samples per second of one reader."""

    name: str
    samples: int
    seconds: float

    @property
    def rate(self) -> float:
        """Samples per second."""
        return self.samples / self.seconds


class GeoTiffDataset(Dataset):
    """Per-band GeoTIFF reading with rasterio (the common way to read BigEarthNet)."""

    def __init__(self, pairs: list[tuple[Path, Path, np.ndarray]], plan: DecodePlan) -> None:
        self.pairs = pairs
        self.plan = plan

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, folder: Path, bands: tuple[str, ...], size: int) -> np.ndarray:
        out = np.empty((len(bands), size, size), dtype=np.float32)
        for i, band in enumerate(bands):
            with rasterio.open(folder / f"{folder.name}_{band}.tif") as src:
                out[i] = src.read(1, out_shape=(size, size), resampling=Resampling.bilinear)
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s2_dir, s1_dir, label = self.pairs[i]
        size = self.plan.image_size
        sample: dict[str, torch.Tensor] = {"label": torch.from_numpy(label)}
        for m in self.plan.modalities:
            folder = s2_dir if m.name == "s2" else s1_dir
            x = self._read(folder, m.bands, size)
            mean = np.asarray(m.mean, np.float32)[:, None, None]
            std = np.asarray(m.std, np.float32)[:, None, None]
            sample[m.name] = torch.from_numpy((x - mean) / std)
        return sample


class ParquetShardDataset(IterableDataset):
    """Row groups of rsray shards split over DataLoader workers, decoded like Ray Data does."""

    def __init__(self, paths: list[str], plan: DecodePlan, batch_rows: int = 32) -> None:
        self.paths = paths
        self.plan = plan
        self.batch_rows = batch_rows

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        units = [(p, g) for p in self.paths for g in range(pq.ParquetFile(p).num_row_groups)]
        for path, group in units[wid::nw]:
            table = pq.ParquetFile(path).read_row_group(group, columns=self.plan.columns)
            for start in range(0, table.num_rows, self.batch_rows):
                part = table.slice(start, self.batch_rows)
                batch = {c: part.column(c).to_numpy(zero_copy_only=False)
                         for c in part.column_names}
                out = decode_batch(batch, self.plan)
                yield {k: torch.from_numpy(v) for k, v in out.items()}


def _drain(loader: Any, plan: DecodePlan | None = None) -> int:
    """Consume every batch; with ``plan``, finish raw Ray Data batches the way workers do."""
    n = 0
    for batch in loader:
        if plan is not None:
            batch = finalize_batch(batch, plan)
        n += int(batch["label"].shape[0])
    return n


def _time(name: str, make_iter: Any, passes: int, plan: DecodePlan | None = None) -> BenchResult:
    _drain(make_iter(), plan)  # warm-up: page cache, worker start-up code paths
    t0 = time.perf_counter()
    n = sum(_drain(make_iter(), plan) for _ in range(passes))
    return BenchResult(name, n, time.perf_counter() - t0)


def geotiff_pairs(raw_root: Path, manifest: Manifest, split: str) -> list[tuple[Path, Path, Any]]:
    """(S2 folder, S1 folder, label) of every row of ``split``, from the shards' own columns."""
    pairs = []
    for path in manifest.shard_paths(split):
        table = pq.read_table(path, columns=["patch_id", "label", "meta_s1_patch"])
        for pid, label, s1 in zip(table["patch_id"].to_pylist(), table["label"].to_pylist(),
                                  table["meta_s1_patch"].to_pylist(), strict=True):
            pairs.append((raw_root / "BigEarthNet-S2" / pid, raw_root / "BigEarthNet-S1" / s1,
                          np.asarray(label, np.float32)))
    return pairs


def run_ingest_benchmark(
    raw_root: Path, shard_uri: str, *, batch_size: int = 32, num_workers: int = 2,
    passes: int = 2, split: str = "train",
) -> dict[str, Any]:
    """Measure (a), (b), (c) on the same ``split``; return rates, ratios and bytes/sample."""
    from rsray.runtime import ensure_ray

    ensure_ray()
    manifest = read_manifest(shard_uri)
    cfg = DataConfig(uri=shard_uri, batch_size=batch_size, augment=False)
    plan = make_plan(manifest, cfg)
    ds = build_split(manifest, split, cfg, augment=False)
    ray_res = _time("(a) Ray Data over rsray shards",
                    lambda: ds.iter_torch_batches(batch_size=batch_size), passes, plan)
    tif = GeoTiffDataset(geotiff_pairs(raw_root, manifest, split), plan)
    tif_res = _time("(b) DataLoader + rasterio GeoTIFFs",
                    lambda: DataLoader(tif, batch_size=batch_size, num_workers=num_workers),
                    passes)
    pqds = ParquetShardDataset(manifest.shard_paths(split), plan)
    pq_res = _time("(c) DataLoader over Parquet shards",
                   lambda: DataLoader(pqds, batch_size=None, num_workers=num_workers), passes)
    rows = manifest.splits[split]
    shard_bytes = sum(s.bytes for s in manifest.shards if s.split == split)
    return {
        "results": [ray_res, tif_res, pq_res],
        "a_over_b": ray_res.rate / tif_res.rate,
        "a_over_c": ray_res.rate / pq_res.rate,
        "bytes_per_sample": shard_bytes / rows,
        "rows": rows,
    }
