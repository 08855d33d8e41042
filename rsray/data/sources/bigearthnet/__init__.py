"""BigEarthNet-MM v1.0 (Sentinel-2 + Sentinel-1): reader, synthetic twin and command line.

``rsray prepare bigearthnet --s2-root .. --s1-root ..`` and ``rsray synth bigearthnet``.
The reader is in :mod:`.reader`, the synthetic twin in :mod:`.synth`.
"""

from __future__ import annotations

from typing import Any

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.sources.bigearthnet.bands import read_band_groups
from rsray.data.sources.bigearthnet.reader import BigEarthNetMM
from rsray.data.sources.bigearthnet.spec import (
    BIGEARTHNET_19_CLASSES,
    CLC43_CLASSES,
    CLC43_CODES,
    CLC43_TO_19,
    LABELS_SUFFIX,
    S1_DTYPES,
    S1_GROUPS,
    S2_GROUPS,
    SYNTHETIC_MARKER,
    bigearthnet_spec,
    labels_to_multihot,
)
from rsray.data.sources.bigearthnet.synth import (
    CORRUPTIONS,
    SynthInfo,
    describe_synthetic_rules,
    synth_patches,
    write_synthetic_bigearthnet,
)

__all__ = [
    "BIGEARTHNET_19_CLASSES",
    "CLC43_CLASSES",
    "CLC43_CODES",
    "CLC43_TO_19",
    "LABELS_SUFFIX",
    "S1_DTYPES",
    "S1_GROUPS",
    "S2_GROUPS",
    "SYNTHETIC_MARKER",
    "BigEarthNetMM",
    "SynthInfo",
    "bigearthnet_spec",
    "describe_synthetic_rules",
    "labels_to_multihot",
    "read_band_groups",
    "synth_patches",
    "write_synthetic_bigearthnet",
]


def _add_prepare_args(p: Any) -> None:
    p.add_argument("--s2-root", required=True, help="folder (or s3://) of BigEarthNet-S2 patches")
    p.add_argument("--s1-root", required=True, help="folder (or s3://) of BigEarthNet-S1 patches")
    p.add_argument("--include-60m", action="store_true", help="also store B01 and B09")
    p.add_argument("--s1-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--splits", choices=["auto", "official", "seeded"], default="auto",
                   help="official = bigearthnet-common's lists; seeded = hash split")
    p.add_argument("--split-seed", type=int, default=0)


def _source_from_args(args: Any) -> BigEarthNetMM:
    return BigEarthNetMM(args.s2_root, args.s1_root, include_60m=args.include_60m,
                         s1_dtype=args.s1_dtype, splits=args.splits, split_seed=args.split_seed)


register_dataset(DatasetEntry(
    name="bigearthnet",
    summary="BigEarthNet-MM v1.0: Sentinel-2 + Sentinel-1 patch folders, 19-class multi-label",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_synthetic_bigearthnet(out, n, seed=seed),
    synthetic_source=lambda raw: BigEarthNetMM(str(raw / "BigEarthNet-S2"),
                                               str(raw / "BigEarthNet-S1")),
    describe_synthetic=describe_synthetic_rules,
    default_modalities=("s2", "s1"),
    corruptions=tuple(CORRUPTIONS),
    write_corrupted=lambda out, n, seed, corrupt: write_synthetic_bigearthnet(
        out, n, seed=seed, corrupt=corrupt, progress=False),
))
