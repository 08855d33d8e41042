"""Test folders of a user's own data, in each supported layout, with planted corruptions.

:func:`write_files_dataset` writes GeoTIFF chips (and tables) the way users keep them, plus the
``dataset.yaml`` that describes them, so that the generic source is tested on real formats:

* ``mixed`` (the registry default): Sentinel-2-like bands one file each in a folder per sample
  at two resolutions (``s2/<id>/B02.tif`` 32 px at 10 m, ``B11.tif`` 16 px at 20 m), a
  Sentinel-1-like two-band chip per sample at 20 m (``s1/<id>.tif``), a CSV of labels with a
  class column, a split column and a region group;
* ``flat``: one multi-band chip per modality (``s2/<id>.tif``, ``s1/<id>.tif``,
  ``dem/<id>.tif``), a weather table modality (CSV columns), multi-label classes in one
  column with a separator, split files of ids;
* ``series``: a folder per sample per acquisition date (``s2/<id>/<YYYYMMDD>/B*.tif``, 2-4
  dates) and ``s1/<region>_<id>.tif`` (the region is a group from the path), a seeded random
  split by region;
* ``segmentation``: flat chips plus a class-index mask per sample (``mask/<id>.tif``);
* ``terratorch``: TerraTorch's data-module keys (per-split roots, ``image_grep``, split files).

The labels carry a known cross-modal signal: of four classes, the first bit of the class is
visible only in the optical bands' brightness, the second only in the radar backscatter, so
a model needs both modalities to separate all four.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rasterio.crs import CRS

from rsray.data.sources._raster import write_geotiff
from rsray.data.sources._synth import plan_corruptions, truncate_file
from rsray.data.sources.files.reader import SYNTHETIC_TAG

CLASSES = ("bare_dry", "bare_wet", "green_dry", "green_wet")
S2_10M = ("B02", "B03", "B04", "B08")
S2_20M = ("B11", "B12")
S1_BANDS = ("VV", "VH")
LAYOUTS = ("mixed", "flat", "series", "segmentation", "terratorch")
CAPACITY = 10_000
SIZE = 32
"""Pixels per side of the 10 m bands (20 m bands: half)."""

CORRUPTIONS: dict[str, str] = {
    "missing_band": "one band file (B11) of the sample is deleted",
    "wrong_crs": "the S1 chip is written in another UTM zone",
    "shifted_bounds": "the S1 chip is shifted by 200 m",
    "nan_band": "the S1 chip holds NaN pixels (no nodata declared)",
    "missing_modality": "the sample has no S1 chip",
    "unknown_label": "the label row names a class outside the class list",
    "label_without_files": "the label row stays but every file of the sample is deleted",
    "files_without_label": "the files stay but the label row is dropped",
    "truncated": "a band file is cut to half its size",
    "wrong_dtype": "a 10 m band is written as float32 instead of uint16",
    "wrong_shape": "a 10 m band is 30 x 30 instead of 32 x 32",
    "nodata": "most of a band is the declared nodata value 0",
}
"""Corruption kinds of the ``mixed`` layout (the registry's twin) -> what each does."""


def describe_synthetic_rules() -> str:
    """The known signal of the synthetic labels, in words."""
    return ("class = 2 x green + wet over bare_dry, bare_wet, green_dry, green_wet: 'green' "
            "raises the optical bands' reflectance (visible only in s2), 'wet' lowers the "
            "radar backscatter by 6 dB (visible only in s1); early or late fusion of s2 and "
            "s1 separates all four classes, each modality alone only two.")


def _sample(rng: np.random.Generator, cls: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    green, wet = cls // 2, cls % 2
    s2 = rng.normal(800 + 1400 * green, 150, (len(S2_10M), SIZE, SIZE))
    s2_20 = rng.normal(1200 + 900 * green, 150, (len(S2_20M), SIZE // 2, SIZE // 2))
    s1 = rng.normal(-12 - 6 * wet, 1.5, (len(S1_BANDS), SIZE // 2, SIZE // 2))
    return (np.clip(s2, 1, 10000).astype(np.uint16), np.clip(s2_20, 1, 10000).astype(np.uint16),
            s1.astype(np.float32))


def write_files_dataset(out: str | Path, n: int, seed: int = 0, *, layout: str = "mixed",
                        corrupt: Mapping[str, int | Sequence[int]] | None = None,
                        allow_missing: bool = False, progress: bool = True) -> Path:
    """Write ``n`` samples in ``layout`` under ``out``; return the ``dataset.yaml`` path.

    Sample ``i`` depends only on ``(seed, i)``; ``corrupt`` maps a kind of
    :data:`CORRUPTIONS` to sample indices (``mixed`` layout; ``missing_modality`` also in
    the others). ``allow_missing`` sets ``allow_missing_modalities`` in the YAML.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    plan = plan_corruptions(corrupt, n, CAPACITY, CORRUPTIONS)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    crs, other = CRS.from_epsg(32633), CRS.from_epsg(32634)
    tags = {SYNTHETIC_TAG: "1"}
    rows: list[dict[str, Any]] = []
    deleted: list[Path] = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        cls = int(rng.integers(0, 4))
        sid = f"chip{i:05d}"
        kinds = plan.get(i, [])
        region = ("north", "south", "east")[i % 3]
        ulx, uly = 400000.0 + 2000.0 * (i % 50), 5400000.0 - 2000.0 * (i // 50) \
            - (300000.0 if region == "south" else 0.0)
        s2, s2_20, s1 = _sample(rng, cls)
        split = ("train", "train", "train", "val", "test")[i % 5]
        name = CLASSES[cls]
        if "unknown_label" in kinds:
            name = "snow"
        if layout == "mixed":
            folder = root / "s2" / sid
            folder.mkdir(parents=True, exist_ok=True)
            for b, band in enumerate(S2_10M):
                arr = s2[b]
                if "wrong_dtype" in kinds and b == 0:
                    arr = arr.astype(np.float32)
                if "wrong_shape" in kinds and b == 0:
                    arr = arr[:30, :30]
                if "nodata" in kinds and b == 1:
                    arr = arr.copy()
                    arr[: SIZE * 3 // 4] = 0
                write_geotiff(folder / f"{band}.tif", arr, crs, ulx, uly, 10.0, tags=tags)
            for b, band in enumerate(S2_20M):
                write_geotiff(folder / f"{band}.tif", s2_20[b], crs, ulx, uly, 20.0, tags=tags)
            if "truncated" in kinds:
                truncate_file(folder / "B03.tif")
            if "missing_band" in kinds:
                deleted.append(folder / "B11.tif")
            _write_s1(root / "s1" / f"{sid}.tif", s1, kinds, crs, other, ulx, uly, tags)
        elif layout in ("flat", "segmentation", "terratorch"):
            sub = split if layout == "terratorch" else ""
            s2_dir = root / "s2" / sub if sub else root / "s2"
            s2_dir.mkdir(parents=True, exist_ok=True)
            stem = f"{sid}_S2" if layout == "terratorch" else sid
            write_geotiff(s2_dir / f"{stem}.tif", s2, crs, ulx, uly, 10.0, tags=tags)
            s1_dir = root / "s1" / sub if sub else root / "s1"
            _write_s1(s1_dir / (f"{sid}_S1.tif" if layout == "terratorch" else f"{sid}.tif"),
                      s1, kinds, crs, other, ulx, uly, tags)
            if layout == "flat":
                dem = rng.normal(300 + 50 * cls, 20, (1, SIZE // 4, SIZE // 4)).astype(np.float32)
                (root / "dem").mkdir(exist_ok=True)
                write_geotiff(root / "dem" / f"{sid}.tif", dem, crs, ulx, uly, 40.0, tags=tags)
            if layout in ("segmentation", "terratorch"):
                mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
                mask[:, SIZE // 2:] = cls
                mdir = root / "mask" / sub if sub else root / "mask"
                mdir.mkdir(parents=True, exist_ok=True)
                mstem = f"{sid}_mask" if layout == "terratorch" else sid
                write_geotiff(mdir / f"{mstem}.tif", mask, crs, ulx, uly, 10.0, tags=tags)
        else:  # series
            for t in range(2 + i % 3):
                folder = root / "s2" / sid / f"2021{3 + 2 * t:02d}15"
                folder.mkdir(parents=True, exist_ok=True)
                for b, band in enumerate(S2_10M):
                    arr = np.clip(s2[b].astype(np.int32) + 40 * t, 1, 10000).astype(np.uint16)
                    write_geotiff(folder / f"{band}.tif", arr, crs, ulx, uly, 10.0, tags=tags)
            _write_s1(root / "s1" / f"{region}_{sid}.tif", s1, kinds, crs, other, ulx, uly,
                      tags)
        if "label_without_files" in kinds:
            deleted += [p for p in root.rglob(f"*{sid}*") if p.is_file()]
            deleted += [p for d in root.rglob(sid) if d.is_dir() for p in d.rglob("*")
                        if p.is_file()]
        if "files_without_label" not in kinds:
            rows.append({"id": sid, "label": name, "split": split, "region": region,
                         "green": cls // 2, "wet": cls % 2,
                         "temp": round(float(rng.normal(15 - 5 * (cls % 2), 1)), 3),
                         "rain": round(float(rng.normal(2 + 4 * (cls % 2), 0.5)), 3)})
    for p in deleted:
        if p.exists():
            p.unlink()
    _write_tables(root, layout, rows)
    doc = _yaml_for(layout, allow_missing)
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    if progress:
        print(f"wrote {n} synthetic {layout} samples and {path}", flush=True)
    return path


def _write_s1(path: Path, s1: np.ndarray, kinds: list[str], crs: CRS, other: CRS,
              ulx: float, uly: float, tags: dict[str, str]) -> None:
    if "missing_modality" in kinds:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if "nan_band" in kinds:
        s1 = s1.copy()
        s1[0, :4, :4] = np.nan
    shift = 200.0 if "shifted_bounds" in kinds else 0.0
    write_geotiff(path, s1, other if "wrong_crs" in kinds else crs, ulx + shift, uly, 20.0,
                  tags=tags)


def _write_tables(root: Path, layout: str, rows: list[dict[str, Any]]) -> None:
    import csv

    def write(path: Path, cols: list[str], data: list[dict[str, Any]]) -> None:
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(data)

    if layout == "flat":
        multi = [{**r, "label": ";".join(x for x, on in (("green", r["green"]),
                                                         ("wet", r["wet"])) if on)}
                 for r in rows]
        write(root / "labels.csv", ["id", "label"], multi)
        write(root / "weather.csv", ["id", "temp", "rain"], rows)
    elif layout == "series":
        write(root / "labels.csv", ["id", "green", "wet"], rows)
    else:
        write(root / "labels.csv", ["id", "label", "split", "region"], rows)
    if layout in ("flat", "terratorch"):
        for split in ("train", "val", "test"):
            ids = [r["id"] for r in rows if r["split"] == split]
            (root / f"{split}.txt").write_text("".join(f"{x}\n" for x in ids))


def _yaml_for(layout: str, allow_missing: bool) -> dict[str, Any]:
    s1 = {"root": "s1", "pattern": "{id}.tif", "bands": list(S1_BANDS)}
    doc: dict[str, Any]
    if layout == "mixed":
        doc = {"name": "files", "modalities": {
            "s2": {"root": "s2", "pattern": "{id}/{band}.tif", "bands": [*S2_10M, *S2_20M],
                   "nodata": 0, "max_nodata": 0.5}, "s1": s1},
            "labels": {"file": "labels.csv", "id_column": "id", "class_column": "label",
                       "classes": list(CLASSES)},
            "splits": {"column": "split"}, "groups": {"region": {"column": "region"}}}
    elif layout == "flat":
        doc = {"name": "files_flat", "modalities": {
            "s2": {"root": "s2", "pattern": "{id}.tif", "bands": list(S2_10M)}, "s1": s1,
            "dem": {"root": "dem", "pattern": "{id}.tif", "bands": ["elevation"]},
            "weather": {"kind": "table", "file": "weather.csv", "columns": ["temp", "rain"]}},
            "labels": {"file": "labels.csv", "labels_column": "label", "separator": ";",
                       "classes": ["green", "wet"]},
            "splits": {"files": {"train": "train.txt", "val": "val.txt", "test": "test.txt"}}}
    elif layout == "series":
        doc = {"name": "files_series", "modalities": {
            "s2": {"root": "s2", "pattern": "{id}/{date}/{band}.tif", "kind": "series",
                   "bands": list(S2_10M)},
            "s1": {"root": "s1", "pattern": "{region}_{id}.tif", "bands": list(S1_BANDS)}},
            "labels": {"file": "labels.csv", "class_columns": ["green", "wet"]},
            "groups": {"region": {"field": "region", "modality": "s1"}},
            "splits": {"random": {"seed": 0, "fractions": [0.6, 0.2, 0.2], "by": "region"}}}
    elif layout == "segmentation":
        doc = {"name": "files_segmentation", "modalities": {
            "s2": {"root": "s2", "pattern": "{id}.tif", "bands": list(S2_10M)}, "s1": s1},
            "labels": {"mask": {"root": "mask", "pattern": "{id}.tif"},
                       "classes": list(CLASSES)},
            "splits": {"random": {"seed": 1}}}
    else:
        doc = {"name": "files_terratorch", "modalities": ["S2", "S1"],
               "train_data_root": {"S2": "s2/train", "S1": "s1/train"},
               "val_data_root": {"S2": "s2/val", "S1": "s1/val"},
               "test_data_root": {"S2": "s2/test", "S1": "s1/test"},
               "image_grep": {"S2": "*_S2.tif", "S1": "*_S1.tif"},
               "dataset_bands": {"S2": list(S2_10M), "S1": list(S1_BANDS)},
               "train_label_data_root": "mask/train", "val_label_data_root": "mask/val",
               "test_label_data_root": "mask/test", "label_grep": "*_mask.tif",
               "class_names": list(CLASSES), "batch_size": 8, "num_classes": 4}
    if allow_missing:
        doc["allow_missing_modalities"] = True
    return doc


__all__ = ["CLASSES", "CORRUPTIONS", "LAYOUTS", "describe_synthetic_rules",
           "write_files_dataset"]
