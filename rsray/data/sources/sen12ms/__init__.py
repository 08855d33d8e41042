"""SEN12MS (Sentinel-1 + Sentinel-2 + MODIS land cover): reader, synthetic twin, command line.

``rsray prepare sen12ms --root ..`` and ``rsray synth sen12ms``. The reader is in
:mod:`.reader`, the synthetic twin in :mod:`.synth`.
"""

from __future__ import annotations

from typing import Any

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.sources.sen12ms.reader import (
    IGBP_CLASSES,
    IGBP_TO_SEN12MS,
    LABEL_MODES,
    S1_NAN_POLICIES,
    S2_FILE_BANDS,
    SEN12MS,
    SEN12MS_CLASSES,
    SPLIT_MODES,
    SYNTHETIC_TAG,
    TEST_SCENES,
    VAL_SCENES,
    sen12ms_spec,
    simplify_igbp,
)
from rsray.data.sources.sen12ms.synth import (
    CORRUPTIONS,
    Sen12msSynthInfo,
    describe_synthetic_rules,
    write_synthetic_sen12ms,
)

__all__ = [
    "IGBP_CLASSES",
    "IGBP_TO_SEN12MS",
    "S2_FILE_BANDS",
    "SEN12MS",
    "SEN12MS_CLASSES",
    "SYNTHETIC_TAG",
    "TEST_SCENES",
    "VAL_SCENES",
    "Sen12msSynthInfo",
    "describe_synthetic_rules",
    "sen12ms_spec",
    "simplify_igbp",
    "write_synthetic_sen12ms",
]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _add_prepare_args(p: Any) -> None:
    p.add_argument("--root", required=True,
                   help="folder (or s3://) holding ROIs1158_spring, ROIs1868_summer, ...")
    p.add_argument("--label-mode", choices=list(LABEL_MODES), default="multi",
                   help="multi (default) = every class with a pixel share >= --min-share "
                        "(multilabel, the SEN12MS toolbox's definition); single = majority "
                        "class (multiclass)")
    p.add_argument("--min-share", type=float, default=0.1,
                   help="multi-label threshold on a class's share (default 0.1, as SEN12MS)")
    p.add_argument("--all-s2-bands", action="store_true",
                   help="also store B1, B9, B10 (default: the 10 bands of the SEN12MS code)")
    p.add_argument("--splits", choices=list(SPLIT_MODES), default="official",
                   help="official = hold-out/validation scenes; seeded = hash of the scene")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--s1-nan", choices=list(S1_NAN_POLICIES), default="reject",
                   help="S1 NaN/inf: reject the patch (default) or set to 0 dB")
    p.add_argument("--igbp-pickle", default=None,
                   help="labels/IGBP_probability_labels.pkl: use the official probabilities "
                        "instead of pixel shares (a pickle: only from a trusted source)")


def _source_from_args(args: Any) -> SEN12MS:
    return SEN12MS(args.root, label_mode=args.label_mode, min_share=args.min_share,
                   all_s2_bands=args.all_s2_bands, splits=args.splits,
                   split_seed=args.split_seed, s1_nan=args.s1_nan, igbp_pickle=args.igbp_pickle)


register_dataset(DatasetEntry(
    name="sen12ms",
    summary="SEN12MS: Sentinel-1 + Sentinel-2 + land-cover triplets, 10 simplified IGBP "
            "classes (single- or multi-label)",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_synthetic_sen12ms(out, n, seed=seed),
    synthetic_source=lambda raw: SEN12MS(raw),
    describe_synthetic=describe_synthetic_rules,
    default_modalities=("s2", "s1"),
    corruptions=tuple(CORRUPTIONS),
    write_corrupted=lambda out, n, seed, corrupt: write_synthetic_sen12ms(
        out, n, seed=seed, corrupt=corrupt, progress=False),
))
