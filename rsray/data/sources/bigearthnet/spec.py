"""BigEarthNet's vocabulary: the CLC classes (43 and 19), band groups, the spec, multi-hot labels.

:func:`bigearthnet_spec` builds the :class:`~rsray.data.schema.DatasetSpec` of the S1 + S2
modalities; :func:`labels_to_multihot` maps a patch's CLC label names to the 19-class vector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from rsray.data.schema import (
    BandGroup,
    DatasetSpec,
    ModalitySpec,
)
from rsray.errors import ConfigError

__all__ = [
    "BIGEARTHNET_19_CLASSES",
    "CLC43_CLASSES",
    "CLC43_CODES",
    "CLC43_TO_19",
    "LABELS_SUFFIX",
    "META_KEYS",
    "S1_DTYPES",
    "S1_GROUPS",
    "S2_10M",
    "S2_20M",
    "S2_60M",
    "S2_GROUPS",
    "SYNTHETIC_MARKER",
    "bigearthnet_spec",
    "labels_to_multihot",
]


# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------

BIGEARTHNET_19_CLASSES: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
"""The 19 BigEarthNet classes in their original order (index = position in the multi-hot)."""

# (CLC level-3 code, name as written in the v1 jsons, 19-class index or None when dropped)
_CLC43: tuple[tuple[int, str, int | None], ...] = (
    (111, "Continuous urban fabric", 0),
    (112, "Discontinuous urban fabric", 0),
    (121, "Industrial or commercial units", 1),
    (122, "Road and rail networks and associated land", None),
    (123, "Port areas", None),
    (124, "Airports", None),
    (131, "Mineral extraction sites", None),
    (132, "Dump sites", None),
    (133, "Construction sites", None),
    (141, "Green urban areas", None),
    (142, "Sport and leisure facilities", None),
    (211, "Non-irrigated arable land", 2),
    (212, "Permanently irrigated land", 2),
    (213, "Rice fields", 2),
    (221, "Vineyards", 3),
    (222, "Fruit trees and berry plantations", 3),
    (223, "Olive groves", 3),
    (231, "Pastures", 4),
    (241, "Annual crops associated with permanent crops", 3),
    (242, "Complex cultivation patterns", 5),
    (243, "Land principally occupied by agriculture, with significant areas of natural "
          "vegetation", 6),
    (244, "Agro-forestry areas", 7),
    (311, "Broad-leaved forest", 8),
    (312, "Coniferous forest", 9),
    (313, "Mixed forest", 10),
    (321, "Natural grassland", 11),
    (322, "Moors and heathland", 12),
    (323, "Sclerophyllous vegetation", 12),
    (324, "Transitional woodland/shrub", 13),
    (331, "Beaches, dunes, sands", 14),
    (332, "Bare rock", None),
    (333, "Sparsely vegetated areas", 11),
    (334, "Burnt areas", None),
    (411, "Inland marshes", 15),
    (412, "Peatbogs", 15),
    (421, "Salt marshes", 16),
    (422, "Salines", 16),
    (423, "Intertidal flats", None),
    (511, "Water courses", 17),
    (512, "Water bodies", 17),
    (521, "Coastal lagoons", 18),
    (522, "Estuaries", 18),
    (523, "Sea and ocean", 18),
)

CLC43_CLASSES: tuple[str, ...] = tuple(name for _, name, _ in _CLC43)
"""The 43 CLC level-3 names used in v1 jsons, in the original BigEarthNet order."""
CLC43_CODES: dict[str, int] = {name: code for code, name, _ in _CLC43}
"""CLC level-3 name -> CLC code (needed for v2 reference maps)."""
CLC43_TO_19: dict[str, int | None] = {name: idx for _, name, idx in _CLC43}
"""CLC level-3 name -> index into :data:`BIGEARTHNET_19_CLASSES`; ``None`` for the 11 dropped
classes (roads, ports, airports, mines, dumps, construction, green urban, sport, bare rock,
burnt areas, intertidal flats)."""

# --------------------------------------------------------------------------------------------
# Bands and spec
# --------------------------------------------------------------------------------------------

S2_10M = BandGroup("s2_10m", ("B02", "B03", "B04", "B08"), 120, "uint16")
S2_20M = BandGroup("s2_20m", ("B05", "B06", "B07", "B8A", "B11", "B12"), 60, "uint16")
S2_60M = BandGroup("s2_60m", ("B01", "B09"), 20, "uint16", optional=True)
S2_GROUPS: tuple[BandGroup, ...] = (S2_10M, S2_20M, S2_60M)
"""Sentinel-2 band groups in channel order; the 60 m group is optional (``include_60m``)."""
S1_GROUPS: tuple[BandGroup, ...] = (BandGroup("s1", ("VV", "VH"), 120, "float32"),)
"""Sentinel-1 band group as stored in v1 (float32 dB); ``s1_dtype`` may store it as float16."""

META_KEYS: tuple[str, ...] = ("s1_patch", "acquisition_date")
SYNTHETIC_MARKER = "rsray_synthetic"
"""Extra json key (value ``true``) that marks a patch written by the synthetic generator."""
LABELS_SUFFIX = "_labels_metadata.json"
S1_DTYPES = ("float32", "float16")


def bigearthnet_spec(
    include_60m: bool = False, s1_dtype: str = "float32", synthetic: bool = False
) -> DatasetSpec:
    """Build the :class:`DatasetSpec` of BigEarthNet-MM.

    Args:
        include_60m: add the ``s2_60m`` group (B01, B09, 20 x 20 px).
        s1_dtype: stored dtype of the ``s1`` group, ``float32`` (as on disk) or ``float16``
            (halves the S1 bytes in the shards; dB values fit with ~0.01 dB error).
        synthetic: the data come from :func:`write_synthetic_bigearthnet`.

    Returns:
        Modality ``s2`` (B02, B03, B04, B08, B05, B06, B07, B8A, B11, B12 [, B01, B09]) and
        modality ``s1`` (VV, VH); task ``multilabel`` over :data:`BIGEARTHNET_19_CLASSES`.

    Raises:
        ConfigError: ``s1_dtype`` is not one of ``float32``, ``float16``.
    """
    if s1_dtype not in S1_DTYPES:
        raise ConfigError(f"s1_dtype: {s1_dtype!r} is not one of {', '.join(S1_DTYPES)}")
    s2_groups = S2_GROUPS if include_60m else tuple(g for g in S2_GROUPS if g is not S2_60M)
    s1_groups = tuple(dataclasses.replace(g, dtype=s1_dtype) for g in S1_GROUPS)
    kwargs: dict[str, Any] = {}
    if "meta_keys" in {f.name for f in dataclasses.fields(DatasetSpec)}:
        kwargs["meta_keys"] = META_KEYS
    return DatasetSpec(
        name="bigearthnet",
        task="multilabel",
        classes=BIGEARTHNET_19_CLASSES,
        modalities=(ModalitySpec("s2", s2_groups), ModalitySpec("s1", s1_groups)),
        synthetic=synthetic,
        **kwargs,
    )


def labels_to_multihot(labels: Iterable[str]) -> np.ndarray:
    """Multi-hot ``uint8`` vector over the 19 classes from v1 CLC level-3 names.

    Dropped classes (e.g. ``Airports``) contribute nothing; the result may be all zeros.

    Raises:
        KeyError: a name is not one of the 43 CLC level-3 names.
    """
    out = np.zeros(len(BIGEARTHNET_19_CLASSES), dtype=np.uint8)
    for name in labels:
        idx = CLC43_TO_19[name]
        if idx is not None:
            out[idx] = 1
    return out
