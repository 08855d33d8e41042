"""FLAIR #2's vocabulary: class codes, band names, file names of the release, the spec.

:func:`codes_to_classes` maps a mask's codes 1-19 to class indices; :func:`flair2_spec` builds
the :class:`~rsray.data.schema.DatasetSpec` for the aerial + Sentinel-2 modalities.
"""

from __future__ import annotations

import re

import numpy as np

from rsray.data.schema import BandGroup, DatasetSpec, ModalitySpec
from rsray.errors import PatchError

__all__ = [
    "AERIAL_BANDS",
    "CENTROIDS_NAME",
    "CODE_NAMES",
    "DEFAULT_SAT_PATCH_SIZE",
    "FLAIR2_CLASSES",
    "MAX_SERIES_DATES",
    "METADATA_NAMES",
    "META_KEYS",
    "REAL_PATCH_SIZE",
    "S2_BANDS",
    "SYNTHETIC_STAMP",
    "codes_to_classes",
    "flair2_spec",
]


# --------------------------------------------------------------------------------------------
# Classes, bands, file names
# --------------------------------------------------------------------------------------------

CODE_NAMES: dict[int, str] = {
    1: "building", 2: "pervious surface", 3: "impervious surface", 4: "bare soil", 5: "water",
    6: "coniferous", 7: "deciduous", 8: "brushwood", 9: "vineyard",
    10: "herbaceous vegetation", 11: "agricultural land", 12: "plowed land",
    13: "swimming pool", 14: "snow", 15: "clear cut", 16: "mixed", 17: "ligneous",
    18: "greenhouse", 19: "other",
}
"""The 19 codes of ``MSK_*.tif`` files (FLAIR #2 nomenclature)."""

FLAIR2_CLASSES: tuple[str, ...] = (*(CODE_NAMES[c] for c in range(1, 13)), "other")
"""The 13 training classes: codes 1-12, then ``other`` (codes 13-19 merged)."""

AERIAL_BANDS: tuple[str, ...] = ("R", "G", "B", "NIR", "elevation")
S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11",
                             "B12")
"""Sentinel-2 bands of the super-area ``_data.npy`` files, in their channel order."""

META_KEYS: tuple[str, ...] = ("domain", "zone", "all_cloudy", "s2_dates_raw",
                              "s2_dates_cloudless", "s2_border_padded", "aerial_date",
                              "aerial_time", "camera")
CENTROIDS_NAME = "flair-2_centroids_sp_to_patch.json"
METADATA_NAMES = ("flair-2_aerial_metadata.json", "flair_aerial_metadata.json")
SYNTHETIC_STAMP = "rsray_flair2_synthetic.json"
"""Written by :func:`write_synthetic_flair2` at the root: marks the data synthetic and records
the tile and crop sizes it wrote."""
REAL_PATCH_SIZE = 512
DEFAULT_SAT_PATCH_SIZE = 40
MAX_SERIES_DATES = 128
"""Placeholder series length before :meth:`FLAIR2.discover` measures it (FLAIR: 20-110)."""

# The folder names of the release (train), the challenge test set, and the toy set.
_FOLDERS: dict[tuple[str, str], tuple[str, ...]] = {
    (kind, split): (f"flair_{kind}_{split}", f"flair_2_{kind}_{split}",
                    f"flair_2_toy_{kind}_{split}")
    for kind in ("aerial", "labels", "sen") for split in ("train", "test")
}
_IMG_RE = re.compile(r"^IMG_(\d+)\.tif$")


def codes_to_classes(codes: np.ndarray, path: str = "mask") -> np.ndarray:
    """``MSK`` codes 1-19 -> class indices 0-12 (codes > 12 become ``other`` = 12).

    Raises:
        PatchError: naming ``path`` when a code is outside 1-19.
    """
    codes = np.asarray(codes)
    bad = (codes < 1) | (codes > 19)
    if bad.any():
        found = np.unique(codes[bad])[:8].tolist()
        raise PatchError(path, f"label codes outside 1-19: {found} ({int(bad.sum())} pixels)")
    out = np.minimum(codes, 13).astype(np.uint8) - 1
    return out.astype(np.uint8)


def flair2_spec(
    patch_size: int = REAL_PATCH_SIZE,
    sat_patch_size: int = DEFAULT_SAT_PATCH_SIZE,
    max_len: int = 12,
    synthetic: bool = False,
) -> DatasetSpec:
    """The :class:`DatasetSpec` of FLAIR #2.

    Modality ``aerial`` (one image group, R G B NIR elevation, uint8, ``patch_size`` px) and
    modality ``s2`` (one series group, 10 bands, uint16, ``sat_patch_size`` px, at most
    ``max_len`` dates); task ``segmentation`` over :data:`FLAIR2_CLASSES` with a
    ``patch_size`` mask and ``other`` excluded from mIoU.
    """
    return DatasetSpec(
        name="flair2",
        task="segmentation",
        classes=FLAIR2_CLASSES,
        modalities=(
            ModalitySpec("aerial", (BandGroup("aerial", AERIAL_BANDS, patch_size, "uint8"),)),
            ModalitySpec("s2", (BandGroup("s2", S2_BANDS, sat_patch_size, "uint16",
                                          kind="series", max_len=max_len),)),
        ),
        synthetic=synthetic,
        meta_keys=META_KEYS,
        label_size=patch_size,
        exclude_from_mean=("other",),
    )
