"""The decode plan: which shard columns a run reads and how they become model inputs.

:func:`make_plan` chooses the modalities, band groups and bands of ``data.*`` from a shard set's
manifest and takes their training statistics from it; the frozen :class:`DecodePlan` is what
the Ray Data tasks (:mod:`rsray.data.decode`), the training workers
(:mod:`rsray.data.finalize`) and the augmentations (:mod:`rsray.data.augment`) need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rsray.config import DataConfig
from rsray.data.shards import Manifest
from rsray.errors import ConfigError, ShardIntegrityError


@dataclass(frozen=True)
class GroupPlan:
    """How to decode one band group column."""

    column: str
    shape: tuple[int, ...]
    """``(C, s, s)`` image, ``(max_len, C, s, s)`` series (padded length), ``(D,)`` vector."""
    dtype: str
    kind: str = "image"
    keep: tuple[int, ...] | None = None
    """Channels of the group that are used (``data.bands``); ``None``: all."""


@dataclass(frozen=True)
class ModalityPlan:
    """How to build one modality tensor from its band groups."""

    name: str
    groups: tuple[GroupPlan, ...]
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: str = "image"
    order: tuple[int, ...] | None = None
    """Permutation from the groups' kept channels to ``bands`` (``data.bands`` order)."""
    optional: bool = False
    """Samples may lack this modality: the shards' ``present_<name>`` column is read and a
    missing modality decodes as dropped (zeros plus presence bit 0)."""


@dataclass(frozen=True)
class DecodePlan:
    """Everything a Ray Data task needs to turn shard rows into model inputs."""

    modalities: tuple[ModalityPlan, ...]
    num_classes: int
    image_size: int
    resample: str
    task: str = "multilabel"
    label_size: int = 0
    """Segmentation: side of the stored mask."""
    train_fraction: float = 1.0
    fraction_seed: int = 0
    check_finite: bool = False
    """Check every element of every float modality for NaN/inf (``data.check_finite``, a debug
    switch); otherwise only the cheap guard of :func:`_finite_guard` runs."""

    @property
    def columns(self) -> list[str]:
        """Parquet columns to read (unused groups and metadata are never read)."""
        cols = ["label"]
        if self.train_fraction < 1.0:
            cols.append("patch_id")
        for m in self.modalities:
            for g in m.groups:
                cols.append(g.column)
                if g.kind == "series":
                    cols += [f"{g.column}_shape", f"{g.column}_dates"]
            if m.optional:
                cols.append(f"present_{m.name}")
        return cols

    @property
    def channels(self) -> dict[str, int]:
        """Raster modality name -> channels (the model's ``modalities`` argument).

        Vector modalities are not here: they form the ``metadata`` input (:attr:`metadata_dim`).
        """
        return {m.name: len(m.bands) for m in self.modalities if m.kind != "vector"}

    @property
    def metadata_dim(self) -> int:
        """Length of the ``metadata`` vector (all vector modalities concatenated)."""
        return sum(len(m.bands) for m in self.modalities if m.kind == "vector")

    @property
    def spatial(self) -> tuple[ModalityPlan, ...]:
        """Image and series modalities (what flips and rotations apply to)."""
        return tuple(m for m in self.modalities if m.kind != "vector")


def make_plan(manifest: Manifest, cfg: DataConfig, *, for_training: bool = False) -> DecodePlan:
    """Choose modalities/groups from ``cfg`` and take their statistics from the manifest.

    ``for_training`` applies ``cfg.train_fraction`` (the training split's plan only).
    """
    plans = []
    for name in cfg.modalities or list(manifest.modalities):
        if name not in manifest.modalities:
            raise ConfigError(
                f"data.modalities: {name!r} is not in the shard set {manifest.uri} "
                f"(it has {', '.join(manifest.modalities)})"
            )
        groups, bands, kinds = [], [], set()
        wanted = _wanted_bands(manifest, cfg, name)
        for gname, g in manifest.modalities[name]["groups"].items():
            if g.get("optional") and not cfg.include_60m and wanted is None:
                continue
            keep = None if wanted is None else tuple(
                i for i, b in enumerate(g["bands"]) if b in wanted)
            if keep is not None and not keep:
                continue  # no selected band in this group: it is never read
            kind = g.get("kind", "image")
            kinds.add(kind)
            c = len(g["bands"])
            if kind == "vector":
                shape: tuple[int, ...] = (c,)
            elif kind == "series":
                length = cfg.series_len or int(g["max_len"])
                shape = (length, c, g["size"], g["size"])
            else:
                shape = (c, g["size"], g["size"])
            groups.append(GroupPlan(gname, shape, g["dtype"], kind, keep))
            bands += [g["bands"][i] for i in keep] if keep is not None else g["bands"]
        order = None
        if wanted is not None:
            order = tuple(bands.index(b) for b in wanted)
            bands = list(wanted)
        if len(kinds) != 1:
            raise ShardIntegrityError(f"{manifest.uri}: modality {name} mixes group kinds "
                                      f"{sorted(kinds)}")
        kind = kinds.pop()
        if kind == "series" and len(groups) != 1:
            raise ShardIntegrityError(f"{manifest.uri}: series modality {name} must be one group")
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
            # A band constant in training (a 0/1 indicator never set) carries no information
            # there; dividing by ~0 would turn an unseen value at evaluation into ~1e6.
            std.append(float(s["std"]) if float(s["std"]) > 1e-6 else 1.0)
        plans.append(ModalityPlan(name, tuple(groups), tuple(bands), tuple(mean), tuple(std),
                                  kind, order,
                                  bool(manifest.modalities[name].get("optional", False))))
    label = manifest.info.get("label", {})
    return DecodePlan(
        tuple(plans), len(manifest.classes), cfg.image_size, cfg.resample,
        task=manifest.task, label_size=int(label.get("size", 0)),
        train_fraction=cfg.train_fraction if for_training else 1.0,
        fraction_seed=cfg.fraction_seed, check_finite=cfg.check_finite,
    )


def _wanted_bands(manifest: Manifest, cfg: DataConfig, name: str) -> list[str] | None:
    """``data.bands`` of modality ``name`` (checked against the shard set), or ``None``."""
    wanted = cfg.bands.get(name)
    if wanted is None:
        return None
    have = [b for g in manifest.modalities[name]["groups"].values() for b in g["bands"]]
    missing = [b for b in wanted if b not in have]
    if missing:
        raise ConfigError(f"data.bands.{name}: {missing} are not bands of {name} in "
                          f"{manifest.uri} (it has {', '.join(have)})")
    return list(wanted)


def decode_key(plan: DecodePlan) -> tuple[Any, ...]:
    """What :func:`decode_raw` output depends on: plans with equal keys decode the same rows.

    Resampling, normalisation and augmentation happen later, so ``image_size``, ``resample``
    and band statistics are not part of it: trials that differ only there share a cached split.
    """
    return (tuple((m.name, m.groups, m.optional) for m in plan.modalities), plan.task,
            plan.label_size,
            plan.train_fraction, plan.fraction_seed)


def row_nbytes(plan: DecodePlan) -> int:
    """Bytes of one decoded row (native dtypes, native sizes; series padded to their length)."""
    total = (plan.label_size ** 2 if plan.task == "segmentation"
             else plan.num_classes * (4 if plan.task == "regression" else 1))
    for m in plan.modalities:
        total += 1  # drop flag
        for g in m.groups:
            total += int(np.prod(g.shape)) * np.dtype(g.dtype).itemsize
            if g.kind == "series":
                total += g.shape[0] * 5  # mask (uint8) + dates (int32)
    return int(total)



def default_splits(cfg: DataConfig) -> tuple[str, ...]:
    """``train`` plus the evaluation splits of ``cfg`` (``data.eval_splits``)."""
    return ("train", *[s for s in cfg.eval_splits if s != "train"])


@dataclass(frozen=True)
class DataPlan:
    """What a run reads and where its data work happens, decided once from ``data.*``.

    Built by :meth:`build` from a :class:`~rsray.config.DataConfig` and the shard set's
    manifest: the decode plans of the training split (``data.train_fraction`` applied) and of
    the evaluation splits, the cache policy (``data.cache``) and the augmentation placement
    (``data.augment``, ``data.augment_on``, with the augmentation settings checked against the
    shard set). :mod:`rsray.data.datasets` turns it into Ray Datasets; the training workers
    read the placement from it.
    """

    uri: str
    """The shard set (its manifest's URI)."""
    splits: tuple[str, ...]
    """``train`` and the evaluation splits, in order."""
    train: DecodePlan
    """Decode plan of the training split."""
    eval: DecodePlan
    """Decode plan of every evaluation split (never subsampled)."""
    cache: str
    """``data.cache``: ``auto``, ``memory``, ``device`` or ``off``."""
    cache_fraction: float
    """Share of the object store ``cache=auto`` may fill."""
    augment: dict[str, Any] | None
    """Keyword arguments of :func:`~rsray.data.augment.augment_raw` /
    :func:`~rsray.data.augment.augment_device` for the training split; ``None``: no
    augmentation."""
    augment_on: str
    """``data.augment_on``: ``auto``, ``host`` or ``device`` (``auto`` is resolved by the worker,
    which knows its device: :func:`rsray.train.batches.resolve_augment_on`)."""

    @classmethod
    def build(cls, manifest: Manifest, cfg: DataConfig) -> DataPlan:
        """Decide everything ``cfg`` asks of ``manifest`` (one-line errors for bad settings)."""
        from rsray.data.augment import augment_kwargs, check_augment

        train = make_plan(manifest, cfg, for_training=True)
        augment = None
        if cfg.augment:
            check_augment(train, cfg)
            augment = augment_kwargs(cfg)
        return cls(uri=manifest.uri, splits=default_splits(cfg), train=train,
                   eval=make_plan(manifest, cfg), cache=cfg.cache,
                   cache_fraction=cfg.cache_fraction, augment=augment,
                   augment_on=cfg.augment_on)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The evaluation splits (``data.eval_splits``)."""
        return self.splits[1:]

    def decode(self, split: str) -> DecodePlan:
        """The decode plan of ``split``."""
        return self.train if split == "train" else self.eval

    @property
    def streams_augmented(self) -> bool:
        """Whether Ray Data augments a *streamed* training split (in its CPU tasks).

        ``False`` with augmentation off, or with ``data.augment_on=device`` (the workers then
        augment on their device). A *cached* training split is always augmented by the workers.
        """
        return self.augment is not None and self.augment_on != "device"

    @property
    def resident(self) -> bool:
        """``data.cache=device``: each worker keeps its share of the training split on device."""
        return self.cache == "device"
