"""BigEarthNet v2 (reBEN): reader, synthetic twin and command line.

``rsray prepare bigearthnet_v2 --root ..`` and ``rsray synth bigearthnet_v2``. The reader is
in :mod:`.reader`, the synthetic twin in :mod:`.synth`.
"""

from __future__ import annotations

from typing import Any

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.sources.bigearthnet.spec import S1_DTYPES
from rsray.data.sources.bigearthnet_v2.metadata import (
    CLC_UNLABELED_CODES,
    METADATA_COLUMNS,
    SYNTHETIC_METADATA_KEY,
    MetadataRow,
    bigearthnet_v2_spec,
    metadata_items,
    read_metadata,
    s1_product,
    s2_product,
    tile_of,
)
from rsray.data.sources.bigearthnet_v2.reader import BigEarthNetV2, check_reference_map
from rsray.data.sources.bigearthnet_v2.synth import (
    CORRUPTIONS,
    describe_synthetic_rules_v2,
    write_synthetic_bigearthnet_v2,
)

__all__ = [
    "CLC_UNLABELED_CODES",
    "METADATA_COLUMNS",
    "SYNTHETIC_METADATA_KEY",
    "BigEarthNetV2",
    "MetadataRow",
    "bigearthnet_v2_spec",
    "check_reference_map",
    "describe_synthetic_rules_v2",
    "metadata_items",
    "read_metadata",
    "s1_product",
    "s2_product",
    "tile_of",
    "write_synthetic_bigearthnet_v2",
]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _add_prepare_args(p: Any) -> None:
    p.add_argument("--root", required=True, help="folder (or s3://) holding BigEarthNet-S2, "
                   "BigEarthNet-S1, Reference_Maps and metadata.parquet")
    p.add_argument("--metadata", default=None,
                   help="metadata parquet (default: <root>/metadata.parquet)")
    p.add_argument("--snow-cloud-metadata", default=None,
                   help="snow/cloud/shadow companion parquet (default: <root>/"
                        "metadata_for_patches_with_snow_cloud_or_shadow.parquet)")
    p.add_argument("--include-snow-cloud", action="store_true",
                   help="also use the patches with seasonal snow, cloud or shadow")
    p.add_argument("--modalities", default="s2,s1", help="s2,s1 (default), s2 or s1")
    p.add_argument("--include-60m", action="store_true", help="also store B01 and B09")
    p.add_argument("--s1-dtype", choices=list(S1_DTYPES), default="float32")
    p.add_argument("--no-reference-maps", action="store_true",
                   help="do not validate the reference maps")


def _source_from_args(args: Any) -> BigEarthNetV2:
    mods = [m.strip() for m in str(args.modalities).split(",") if m.strip()]
    return BigEarthNetV2(args.root, metadata=args.metadata,
                         snow_cloud_metadata=args.snow_cloud_metadata,
                         include_snow_cloud=args.include_snow_cloud, modalities=mods,
                         include_60m=args.include_60m, s1_dtype=args.s1_dtype,
                         check_reference_maps=not args.no_reference_maps)


register_dataset(DatasetEntry(
    name="bigearthnet_v2",
    summary="BigEarthNet v2.0 (reBEN): Sentinel-2 + Sentinel-1 patches with metadata.parquet, "
            "19-class multi-label, geographic splits, countries",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_synthetic_bigearthnet_v2(out, n, seed=seed),
    synthetic_source=lambda raw: BigEarthNetV2(raw),
    describe_synthetic=describe_synthetic_rules_v2,
    default_modalities=("s2", "s1"),
    corruptions=tuple(CORRUPTIONS),
    write_corrupted=lambda out, n, seed, corrupt: write_synthetic_bigearthnet_v2(
        out, n, seed=seed, corrupt=corrupt, progress=False),
))
