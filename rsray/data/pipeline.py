"""Streaming input: Ray Data ``read_parquet`` -> decode -> resample -> normalise -> augment.

The datasets built here are handed to ``TorchTrainer(datasets=...)``; each worker pulls its part
with ``ray.train.get_dataset_shard(split).iter_torch_batches(...)``. Batches are dicts of float32
arrays keyed by modality name (``s2``: ``(N, C, H, W)``, ``s1``: ...) plus ``label``.

Everything here is vectorised per batch with NumPy/PyTorch; the decoded arrays of a batch are
read with one ``np.frombuffer`` per band group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rsray.config import DataConfig
from rsray.data.shards import Manifest, pyarrow_fs, read_manifest, verify_shards
from rsray.errors import ConfigError, ShardIntegrityError

DECODE_BATCH_ROWS = 32


@dataclass(frozen=True)
class GroupPlan:
    """How to decode one band group column."""

    column: str
    shape: tuple[int, int, int]
    dtype: str


@dataclass(frozen=True)
class ModalityPlan:
    """How to build one modality tensor from its band groups."""

    name: str
    groups: tuple[GroupPlan, ...]
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class DecodePlan:
    """Everything a Ray Data task needs to turn shard rows into model inputs."""

    modalities: tuple[ModalityPlan, ...]
    num_classes: int
    image_size: int
    resample: str

    @property
    def columns(self) -> list[str]:
        """Parquet columns to read (unused groups and metadata are never read)."""
        return ["label"] + [g.column for m in self.modalities for g in m.groups]

    @property
    def channels(self) -> dict[str, int]:
        """Modality name -> number of channels (the model's ``modalities`` argument)."""
        return {m.name: len(m.bands) for m in self.modalities}


def make_plan(manifest: Manifest, cfg: DataConfig) -> DecodePlan:
    """Choose modalities/groups from ``cfg`` and take their statistics from the manifest."""
    plans = []
    for name in cfg.modalities:
        if name not in manifest.modalities:
            raise ConfigError(
                f"data.modalities: {name!r} is not in the shard set {manifest.uri} "
                f"(it has {', '.join(manifest.modalities)})"
            )
        groups, bands = [], []
        for gname, g in manifest.modalities[name]["groups"].items():
            if g.get("optional") and not cfg.include_60m:
                continue
            groups.append(GroupPlan(gname, (len(g["bands"]), g["size"], g["size"]), g["dtype"]))
            bands += g["bands"]
        stats = manifest.band_stats.get(name, {})
        mean, std = [], []
        for b in bands:
            s = stats.get(b)
            if not s or not np.isfinite(s["mean"]) or not np.isfinite(s["std"]):
                raise ShardIntegrityError(
                    f"{manifest.uri}: manifest has no training statistics for {name}/{b}; "
                    "prepare the data with a non-empty training split"
                )
            mean.append(float(s["mean"]))
            std.append(max(float(s["std"]), 1e-6))
        plans.append(ModalityPlan(name, tuple(groups), tuple(bands), tuple(mean), tuple(std)))
    return DecodePlan(tuple(plans), len(manifest.classes), cfg.image_size, cfg.resample)


def _resize(x: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Resize ``(N, C, h, w)`` to ``(N, C, size, size)``."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x))
    if mode == "nearest":
        out = F.interpolate(t, size=(size, size), mode="nearest")
    else:
        out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return out.numpy()


def _labels(col: Any) -> np.ndarray:
    arr = np.asarray(col)
    if arr.dtype == object:
        arr = np.stack([np.asarray(v) for v in arr])
    return arr.astype(np.float32)


def decode_batch(batch: dict[str, Any], plan: DecodePlan) -> dict[str, np.ndarray]:
    """Shard rows -> normalised float32 modality arrays at ``plan.image_size`` + labels."""
    n = len(batch["label"])
    out: dict[str, np.ndarray] = {"label": _labels(batch["label"])}
    for m in plan.modalities:
        parts = []
        for g in m.groups:
            buf = b"".join(batch[g.column])
            itemsize = np.dtype(g.dtype).itemsize
            expected = n * int(np.prod(g.shape)) * itemsize
            if len(buf) != expected:
                raise ShardIntegrityError(
                    f"column {g.column}: {len(buf)} bytes for {n} rows, expected {expected} "
                    f"(shape {g.shape}, {g.dtype}); the shard does not match its manifest"
                )
            arr = np.frombuffer(buf, dtype=g.dtype).reshape(n, *g.shape).astype(np.float32)
            parts.append(_resize(arr, plan.image_size, plan.resample))
        x = np.concatenate(parts, axis=1)
        mean = np.asarray(m.mean, dtype=np.float32)[None, :, None, None]
        std = np.asarray(m.std, dtype=np.float32)[None, :, None, None]
        x = (x - mean) / std
        if not np.isfinite(x).all():
            raise ShardIntegrityError(f"modality {m.name}: non-finite values after decoding")
        out[m.name] = x
    return out


def augment_batch(
    batch: dict[str, np.ndarray],
    modalities: list[str],
    *,
    desync: bool = False,
    modality_dropout: float = 0.0,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Random dihedral transforms (flips + 90-degree rotations) and modality dropping.

    With ``desync`` each modality of a sample draws its own transform (the thesis'
    desynchronised augmentation); otherwise all modalities of a sample share one. With
    probability ``modality_dropout`` one modality of a sample, chosen at random, is zeroed
    (the per-band mean after normalisation); a sample never loses all modalities.
    """
    rng = rng or np.random.default_rng()
    n = len(batch["label"])
    shared_k = rng.integers(0, 4, size=n)
    shared_f = rng.random(n) < 0.5
    for name in modalities:
        x = batch[name]
        k = rng.integers(0, 4, size=n) if desync else shared_k
        f = (rng.random(n) < 0.5) if desync else shared_f
        out = np.empty_like(x)
        for i in range(n):
            xi = x[i]
            if f[i]:
                xi = xi[:, :, ::-1]
            out[i] = np.rot90(xi, k=int(k[i]), axes=(1, 2))
        batch[name] = out
    if modality_dropout > 0 and len(modalities) > 1:
        drop = rng.random(n) < modality_dropout
        which = rng.integers(0, len(modalities), size=n)
        for i in np.nonzero(drop)[0]:
            batch[modalities[int(which[i])]][i] = 0.0
    return batch


def _transform(batch: dict[str, Any], plan: DecodePlan, augment: bool, desync: bool,
               modality_dropout: float) -> dict[str, np.ndarray]:
    out = decode_batch(batch, plan)
    if augment:
        out = augment_batch(out, [m.name for m in plan.modalities], desync=desync,
                            modality_dropout=modality_dropout)
    return out


def build_split(manifest: Manifest, split: str, cfg: DataConfig, *, augment: bool) -> Any:
    """A Ray Dataset streaming one split, decoded (and augmented if ``augment``)."""
    import ray

    paths = manifest.shard_paths(split)
    if not paths:
        raise ShardIntegrityError(f"{manifest.uri}: the shard set has no '{split}' split "
                                  f"(it has {', '.join(sorted(manifest.splits))})")
    plan = make_plan(manifest, cfg)
    ds = ray.data.read_parquet(paths, filesystem=pyarrow_fs(manifest.uri), columns=plan.columns)
    return ds.map_batches(
        _transform,
        fn_kwargs={"plan": plan, "augment": augment, "desync": cfg.desync_augment,
                   "modality_dropout": cfg.modality_dropout},
        batch_size=DECODE_BATCH_ROWS,
        batch_format="numpy",
    )


def load_shard_set(cfg: DataConfig, splits: tuple[str, ...] = ("train", "val")) -> Manifest:
    """Read the manifest at ``cfg.uri`` and (unless disabled) verify the shards of ``splits``."""
    manifest = read_manifest(cfg.uri)
    if cfg.verify_checksums:
        verify_shards(manifest, list(splits))
    return manifest


def build_datasets(
    cfg: DataConfig, splits: tuple[str, ...] = ("train", "val"), manifest: Manifest | None = None
) -> tuple[Manifest, dict[str, Any]]:
    """Manifest and one Ray Dataset per split; only ``train`` is augmented."""
    manifest = manifest or load_shard_set(cfg, splits)
    datasets = {
        s: build_split(manifest, s, cfg, augment=(s == "train" and cfg.augment)) for s in splits
    }
    return manifest, datasets
