"""BigEarthNet v2.0's ``metadata.parquet``: reading and checking it, product folders, the spec.

:func:`read_metadata` reads and validates the table (one :class:`MetadataRow` per patch),
:func:`metadata_items` turns rows into discovery items, :func:`s2_product`,
:func:`s1_product` and :func:`tile_of` derive folder and tile names from patch names, and
:func:`bigearthnet_v2_spec` builds the dataset spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsray.data.schema import DatasetSpec, Reject
from rsray.data.sources.bigearthnet.spec import (
    BIGEARTHNET_19_CLASSES,
    CLC43_CODES,
    bigearthnet_spec,
)
from rsray.errors import ConfigError, DatasetNotFoundError, RsrayError
from rsray.storage import (
    StorageOptions,
    get_fs,
    is_local,
)

__all__ = [
    "CLC_UNLABELED_CODES",
    "METADATA_COLUMNS",
    "METADATA_NAME",
    "MODALITIES",
    "REFERENCE_MAP_SIZE",
    "SNOW_CLOUD_NAME",
    "SPLIT_MAP",
    "SYNTHETIC_METADATA_KEY",
    "MetadataRow",
    "bigearthnet_v2_spec",
    "metadata_items",
    "read_metadata",
    "s1_product",
    "s2_product",
    "tile_of",
]


METADATA_NAME = "metadata.parquet"
SNOW_CLOUD_NAME = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
METADATA_COLUMNS: tuple[str, ...] = ("patch_id", "labels", "split", "country", "s1_name")
"""Columns the reader needs; ``s2v1_name`` and the two contamination flags are read when
present."""
_OPTIONAL_COLUMNS = ("s2v1_name", "contains_seasonal_snow", "contains_cloud_or_shadow")
SPLIT_MAP: dict[str, str] = {"train": "train", "validation": "val", "test": "test"}
"""reBEN split name -> rsray split name."""
SYNTHETIC_METADATA_KEY = b"rsray_synthetic"
"""Parquet schema-metadata key (value ``true``) of a synthetic ``metadata.parquet``."""
MODALITIES = ("s2", "s1")
_CLASS_INDEX = {name: i for i, name in enumerate(BIGEARTHNET_19_CLASSES)}

CLC_UNLABELED_CODES: frozenset[int] = frozenset(
    {122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 335, 423, 999})
"""Reference-map codes that carry no 19-class target (pipeline ``clc_metadata.json``:
``UNLABELED``); 0 is nodata."""
_REFERENCE_CODES = frozenset(CLC43_CODES.values()) | CLC_UNLABELED_CODES | {0}
REFERENCE_MAP_SIZE = 120


def bigearthnet_v2_spec(
    modalities: Sequence[str] = MODALITIES, include_60m: bool = False,
    s1_dtype: str = "float32", synthetic: bool = False,
) -> DatasetSpec:
    """The :class:`DatasetSpec` of BigEarthNet v2: v1's band groups and 19 classes.

    Args:
        modalities: ``s2`` and/or ``s1``.
        include_60m: add the ``s2_60m`` group (B01, B09, 20 x 20 px).
        s1_dtype: stored dtype of the ``s1`` group (``float32`` or ``float16``).
        synthetic: the data come from :func:`write_synthetic_bigearthnet_v2`.

    Raises:
        ConfigError: unknown or no modality, or a bad ``s1_dtype``.
    """
    mods = tuple(modalities)
    unknown = [m for m in mods if m not in MODALITIES]
    if unknown or not mods or len(set(mods)) != len(mods):
        raise ConfigError(f"modalities: {list(mods)} must be distinct names among "
                          f"{', '.join(MODALITIES)}")
    base = bigearthnet_spec(include_60m, s1_dtype, synthetic)
    return dataclasses.replace(
        base, name="bigearthnet_v2",
        modalities=tuple(m for m in base.modalities if m.name in mods),
        meta_keys=("s1_patch", "country", "tile"),
    )


# --------------------------------------------------------------------------------------------
# metadata.parquet
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataRow:
    """One row of ``metadata.parquet``."""

    patch_id: str
    labels: tuple[str, ...]
    split: str
    country: str
    s1_name: str
    s2v1_name: str = ""
    contains_seasonal_snow: bool = False
    contains_cloud_or_shadow: bool = False


def read_metadata(
    url: str,
    storage_options: StorageOptions = None,
    *,
    patch_ids: Collection[str] | None = None,
    s1_names: Collection[str] | None = None,
) -> tuple[list[MetadataRow], bool]:
    """Rows of a reBEN metadata parquet and whether it is the synthetic twin's.

    With ``patch_ids`` and/or ``s1_names``, only the rows naming one of them are converted
    (filtered in Arrow first: the official file has 480,038 rows, a local copy a few). Extra
    columns (e.g. ConfigILM's ``__index_level_0__``) are ignored.

    Raises:
        DatasetNotFoundError: no file at ``url``.
        RsrayError: not a parquet file, or a required column is missing.
    """
    fs, path = get_fs(url, storage_options)
    if not fs.isfile(path):
        raise DatasetNotFoundError(f"{url}: BigEarthNet v2 metadata parquet not found")
    try:
        schema = pq.read_schema(path, filesystem=None if is_local(fs) else fs)
        missing = [c for c in METADATA_COLUMNS if c not in schema.names]
        if missing:
            raise RsrayError(f"{url}: metadata parquet lacks column(s) {missing} (it has "
                             f"{', '.join(schema.names)})")
        columns = [*METADATA_COLUMNS, *(c for c in _OPTIONAL_COLUMNS if c in schema.names)]
        table = pq.read_table(path, columns=columns, filesystem=None if is_local(fs) else fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RsrayError(f"{url}: not a readable parquet file ({exc})") from None
    synthetic = (schema.metadata or {}).get(SYNTHETIC_METADATA_KEY) == b"true"
    if patch_ids is not None or s1_names is not None:
        keep = pc.or_(
            pc.is_in(table["patch_id"], value_set=pa.array(sorted(patch_ids or ()), pa.string())),
            pc.is_in(table["s1_name"], value_set=pa.array(sorted(s1_names or ()), pa.string())))
        table = table.filter(keep)
    n = table.num_rows
    names = (*METADATA_COLUMNS, *_OPTIONAL_COLUMNS)
    cols = [table.column(c).to_pylist() if c in columns else [None] * n for c in names]
    label_cache: dict[tuple[str, ...], tuple[str, ...]] = {}
    rows = [
        MetadataRow(str(pid), label_cache.setdefault(key := tuple(labels or ()), key),
                    str(split), str(country or ""), str(s1 or ""), str(v1 or ""), bool(snow),
                    bool(cloud))
        for pid, labels, split, country, s1, v1, snow, cloud in zip(*cols, strict=True)
    ]
    return rows, synthetic


def s2_product(patch_id: str) -> str:
    """S2 product folder of a v2 patch id (the id minus its last two ``_`` fields)."""
    return patch_id.rsplit("_", 2)[0]


def s1_product(s1_name: str) -> str:
    """S1 product folder of an S1 patch name (the name minus its last three ``_`` fields)."""
    return s1_name.rsplit("_", 3)[0]


def tile_of(patch_id: str) -> str:
    """MGRS tile of a v2 patch id (``..._T33UUP_26_57`` -> ``33UUP``)."""
    parts = patch_id.split("_")
    return parts[-3][1:] if len(parts) >= 3 and parts[-3].startswith("T") else ""


def metadata_items(
    rows: Sequence[MetadataRow], source: str = METADATA_NAME
) -> tuple[list[dict[str, Any]], list[Reject]]:
    """Items and rejected rows from metadata rows alone (no image needed).

    Items: ``patch_id``, ``split``, ``labels`` (19-class indices), ``s1_name``, ``groups``
    (``country``, ``tile``). A row is rejected (path = ``source``) for an unknown split name,
    no labels or a label that is not one of the 19 class names. Enough for split and hold-out
    studies on the metadata without any image.
    """
    items: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    indices: dict[tuple[str, ...], list[int]] = {}
    for r in rows:
        split = SPLIT_MAP.get(r.split)
        bad = [name for name in r.labels if name not in _CLASS_INDEX]
        why = (f"split {r.split!r} is not one of {', '.join(SPLIT_MAP)}" if split is None
               else "no labels" if not r.labels
               else f"unknown class name(s) {bad} (not one of the 19 BigEarthNet classes)"
               if bad else "")
        if why:
            rejects.append({"path": source, "reason": f"row {r.patch_id}: {why}"})
            continue
        items.append({
            "patch_id": r.patch_id,
            "split": split,
            "labels": list(indices.setdefault(
                r.labels, sorted({_CLASS_INDEX[name] for name in r.labels}))),
            "s1_name": r.s1_name,
            "groups": {"country": r.country, "tile": tile_of(r.patch_id)},
        })
    return items, rejects
