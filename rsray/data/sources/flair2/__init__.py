"""FLAIR #2 (aerial + Sentinel-2 time series): reader, synthetic twin and command line.

``rsray prepare flair2 --root ..`` and ``rsray synth flair2``. The reader is in
:mod:`.reader`, the synthetic twin in :mod:`.synth`.
"""

from __future__ import annotations

from typing import Any

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.sources.flair2.metadata import load_aerial_metadata
from rsray.data.sources.flair2.reader import FLAIR2
from rsray.data.sources.flair2.sentinel2 import (
    BASELINE_CLOUD_THRESHOLD,
    CLOUD_THRESHOLD,
    cloud_shares,
    monthly_average,
    open_npy,
    parse_products,
    select_dates,
)
from rsray.data.sources.flair2.spec import (
    AERIAL_BANDS,
    CENTROIDS_NAME,
    CODE_NAMES,
    FLAIR2_CLASSES,
    S2_BANDS,
    SYNTHETIC_STAMP,
    codes_to_classes,
    flair2_spec,
)
from rsray.data.sources.flair2.synth import (
    CORRUPTIONS,
    SynthInfo,
    describe_synthetic_rules,
    write_synthetic_flair2,
)

# --------------------------------------------------------------------------------------------
# Registry entry
# --------------------------------------------------------------------------------------------

SYNTH_CLI_SIZE = 64
"""Tile size `rsray synth flair2` and smoke tests write (the real 512 via the Python API)."""
SYNTH_CLI_SAT = 16


__all__ = [
    "AERIAL_BANDS",
    "BASELINE_CLOUD_THRESHOLD",
    "CENTROIDS_NAME",
    "CLOUD_THRESHOLD",
    "CODE_NAMES",
    "FLAIR2",
    "FLAIR2_CLASSES",
    "S2_BANDS",
    "SYNTHETIC_STAMP",
    "SynthInfo",
    "cloud_shares",
    "codes_to_classes",
    "describe_synthetic_rules",
    "flair2_spec",
    "load_aerial_metadata",
    "monthly_average",
    "open_npy",
    "parse_products",
    "select_dates",
    "write_synthetic_flair2",
]


def _add_prepare_args(p: Any) -> None:
    p.add_argument("--root", required=True,
                   help="folder with flair_aerial_train/, flair_labels_train/, "
                        "flair_sen_train/ (+ flair_2_*_test/) and the centroid json")
    p.add_argument("--sat-patch-size", type=int, default=None,
                   help="S2 pixels cropped around each patch (default 40)")
    p.add_argument("--patch-size", type=int, default=None,
                   help="aerial tile size in px (default 512; synthetic: its stamp)")
    p.add_argument("--no-cloud-filter", action="store_true", help="keep cloudy dates")
    p.add_argument("--cloud-threshold", type=int, default=CLOUD_THRESHOLD,
                   help="probability (0-100) from which a pixel is cloud/snow: 50 as the LF-DLM "
                        f"paper (0.5); {BASELINE_CLOUD_THRESHOLD} reproduces the FLAIR #2 "
                        "baseline code")
    p.add_argument("--max-cloud-share", type=float, default=0.5,
                   help="a date is kept when its cloud/snow share of the crop is below this")
    p.add_argument("--fallback-dates", type=int, default=2,
                   help="least cloudy dates kept when every date is cloudy (flagged)")
    p.add_argument("--all-dates", action="store_true",
                   help="keep every cloudless date instead of monthly means")
    p.add_argument("--border", choices=["pad", "reject"], default="pad",
                   help="crops leaving the super-area: edge-pad (default) or reject")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of train domains used for validation")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--metadata", default="auto",
                   help="aerial metadata json (auto: look in --root; 'none' to ignore)")


def _source_from_args(args: Any) -> FLAIR2:
    return FLAIR2(args.root, sat_patch_size=args.sat_patch_size, patch_size=args.patch_size,
                  filter_clouds=not args.no_cloud_filter, cloud_threshold=args.cloud_threshold,
                  max_cloud_share=args.max_cloud_share, fallback_dates=args.fallback_dates,
                  monthly_average=not args.all_dates, border=args.border,
                  val_fraction=args.val_fraction, split_seed=args.split_seed,
                  metadata=None if args.metadata == "none" else args.metadata)


register_dataset(DatasetEntry(
    name="flair2",
    summary="FLAIR #2: aerial RGB+NIR+elevation tiles + Sentinel-2 time series, "
            "13-class segmentation",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_synthetic_flair2(
        out, n, seed=seed, size=SYNTH_CLI_SIZE, sat_patch_size=SYNTH_CLI_SAT),
    synthetic_source=lambda raw: FLAIR2(raw),
    describe_synthetic=describe_synthetic_rules,
    default_modalities=("aerial", "s2"),
    test_model="test_lf_dlm",
    test_model_params={"crop_size": 10},  # a 64 px tile covers 10.24 S2 px, as a real one
    corruptions=tuple(CORRUPTIONS),
    write_corrupted=lambda out, n, seed, corrupt: write_synthetic_flair2(
        out, n, seed=seed, size=SYNTH_CLI_SIZE, sat_patch_size=SYNTH_CLI_SAT, corrupt=corrupt,
        progress=False),
    shared_file_corruptions=("products_mismatch", "nan"),
    tolerated_corruptions={"near_border": "a crop running off the zone's Sentinel-2 "
                                          "super-patch is edge-padded and flagged "
                                          "(meta_s2_border_padded); border='reject' drops it"},
))
