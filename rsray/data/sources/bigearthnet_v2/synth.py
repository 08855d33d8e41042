"""The synthetic BigEarthNet v2 (reBEN) twin: the v1 twin's patches in the v2 layout.

:func:`write_synthetic_bigearthnet_v2` writes the patches of
:func:`~rsray.data.sources.bigearthnet.synth.synth_patches` as reBEN lays them out
(``metadata.parquet``, tile folders, reference maps), with planted snow and corruptions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rasterio.crs import CRS

from rsray.data.sources._raster import gdal_env, write_geotiff
from rsray.data.sources._synth import plan_corruptions, truncate_file, utm_wkt
from rsray.data.sources.bigearthnet.spec import (
    BIGEARTHNET_19_CLASSES,
    CLC43_CODES,
    CLC43_TO_19,
)
from rsray.data.sources.bigearthnet.synth import (
    ALL_S2_BANDS,
    CAPACITY,
    S2_BAND_SIZE,
    SynthInfo,
    describe_synthetic_rules,
    synth_patches,
)
from rsray.data.sources.bigearthnet_v2.metadata import (
    METADATA_NAME,
    REFERENCE_MAP_SIZE,
    SNOW_CLOUD_NAME,
    SYNTHETIC_METADATA_KEY,
    s1_product,
    s2_product,
)
from rsray.data.splits import seeded_split

__all__ = [
    "describe_synthetic_rules_v2",
    "write_synthetic_bigearthnet_v2",
]

# --------------------------------------------------------------------------------------------
# Synthetic twin
# --------------------------------------------------------------------------------------------

_COUNTRY = {"33UUP": "Austria", "29UPU": "Ireland", "29SND": "Portugal", "35VPK": "Finland"}
"""Country of the synthetic tiles (as in the official metadata)."""
_SNOW_ACQUISITION = "20180206T94151"  # the February 35VPK acquisition: half its patches snowy
_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)

CORRUPTIONS: dict[str, str] = {
    "missing_band": "S2 B05 file deleted",
    "truncated": "S2 B02 file cut to half its size",
    "wrong_shape": "S2 B05 written 120 x 120 instead of 60 x 60",
    "wrong_dtype": "S2 B03 written as float32",
    "nan_s1": "S1 VV with a block of NaN",
    "crs_mismatch": "S1 written in the next UTM zone",
    "bounds_mismatch": "S1 shifted 20 m east",
    "s1_missing": "S1 folder not written",
    "s2_missing": "S2 folder not written (S1 orphan)",
    "not_in_metadata": "no metadata.parquet row",
    "unknown_label": "metadata labels include 'Moon craters'",
    "bad_split": "metadata split 'holdout'",
    "ref_map_shape": "reference map written 60 x 60",
    "ref_map_code": "reference map with CLC code 777",
}


def describe_synthetic_rules_v2() -> str:
    """The v1 twin's label rules, as written into the v2 layout and metadata."""
    return ("Synthetic BigEarthNet v2 (reBEN layout): the pixels and labels of the v1 twin, "
            "converted to 19-class names in metadata.parquet, with countries per tile ("
            + ", ".join(f"{t} {c}" for t, c in _COUNTRY.items())
            + "); half of the February 35VPK patches are flagged seasonal snow (companion "
            "parquet). Reference maps carry the CLC codes of the labels in vertical bands "
            "(not aligned with the pixel factors).\n" + describe_synthetic_rules())


def _reference_map(rng: np.random.Generator, names: Sequence[str]) -> np.ndarray:
    """120 x 120 uint16: the CLC codes of ``names`` in random vertical bands."""
    codes = [CLC43_CODES[n] for n in names]
    cuts = np.sort(rng.choice(np.arange(10, 111), size=len(codes) - 1, replace=False))
    edges = [0, *cuts.tolist(), REFERENCE_MAP_SIZE]
    out = np.zeros((REFERENCE_MAP_SIZE, REFERENCE_MAP_SIZE), dtype=np.uint16)
    for code, a, b in zip(rng.permutation(codes), edges[:-1], edges[1:], strict=True):
        out[:, a:b] = code
    return out


def write_synthetic_bigearthnet_v2(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    include_60m: bool = True,
    corrupt: Mapping[str, int | Sequence[int]] | None = None,
    progress: bool = True,
) -> SynthInfo:
    """Write ``n`` synthetic patches in exactly the BigEarthNet v2 on-disk layout.

    ``BigEarthNet-S2/<product>/<patch_id>/`` (12 bands, uint16, ``nodata=0``),
    ``BigEarthNet-S1/<product>/<s1_name>/`` (VV, VH float32 dB), ``Reference_Maps`` (uint16,
    deflate), ``metadata.parquet`` and the snow/cloud companion, whose rows describe these
    images: 19-class labels, seeded split (60/20/20 %), country of the tile, S1 name, v1 name,
    flags. Pixels and label rules are the v1 twin's (:func:`describe_synthetic_rules_v2`);
    patch ``i`` depends only on ``seed`` and ``i``.

    Args:
        out_dir: folder to write into (created).
        n: number of patches (at most 40,500).
        seed: random seed.
        include_60m: write B01 and B09 too (the real archives have them).
        corrupt: corruption kind -> patch index or indices. Kinds: missing_band, truncated,
            wrong_shape, wrong_dtype, nan_s1, crs_mismatch, bounds_mismatch, s1_missing, s2_missing,
            not_in_metadata, unknown_label, bad_split, ref_map_shape, ref_map_code.
        progress: show a progress bar (rate, ETA) on stderr.

    Raises:
        ValueError: ``n`` out of range, or an unknown corruption kind / patch index.
    """
    by_patch = plan_corruptions(corrupt, n, CAPACITY, CORRUPTIONS)
    out = Path(out_dir)
    s2_bands = [b for b in ALL_S2_BANDS if include_60m or S2_BAND_SIZE[b] != 20]
    rows: list[dict[str, Any]] = []
    snow_rows: list[dict[str, Any]] = []
    corrupted: dict[str, list[str]] = {}
    from rsray.console import Progress

    bar = Progress(total=n, desc="synthetic BigEarthNet v2", unit="patch") if progress else None
    with gdal_env():
        for i, acq, col, row, names43, s2_px, s1_px, rng in synth_patches(
                n, seed, stream=2, layout_salt=0xBE2):
            date, hms = acq.s2_time.split("T")
            patch_id = (f"{acq.s2_sat}_MSIL2A_{date}T{hms.zfill(6)}_N9999_{acq.orbit}_"
                        f"T{acq.tile}_{col:02d}_{row:02d}")
            s1_name = f"{acq.s1_sat}_IW_GRDH_1SDV_{acq.s1_time}_{acq.tile}_{col}_{row}"
            kinds = by_patch.get(i, [])
            for kind in kinds:
                corrupted.setdefault(kind, []).append(patch_id)
            labels = sorted({BIGEARTHNET_19_CLASSES[idx] for name in names43
                             if (idx := CLC43_TO_19[name]) is not None})
            snow = acq.s2_time == _SNOW_ACQUISITION and rng.random() < 0.5
            _write_patch_v2(out, patch_id, s1_name, acq.zone, acq.ulx + 1200 * col,
                            acq.uly - 1200 * row, s2_px, s1_px, s2_bands,
                            _reference_map(rng, names43), kinds)
            if "not_in_metadata" not in kinds:
                split = {"val": "validation"}.get(s := seeded_split(patch_id, seed,
                                                                   _SPLIT_FRACTIONS), s)
                record = {
                    "patch_id": patch_id,
                    "labels": [*labels, "Moon craters"] if "unknown_label" in kinds else labels,
                    "split": "holdout" if "bad_split" in kinds else split,
                    "country": _COUNTRY[acq.tile],
                    "s1_name": s1_name,
                    "s2v1_name": f"{acq.s2_sat}_MSIL2A_{acq.s2_time}_{col}_{row}",
                    "contains_seasonal_snow": snow,
                    "contains_cloud_or_shadow": False,
                }
                (snow_rows if snow else rows).append(record)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    _write_metadata(out / METADATA_NAME, rows)
    _write_metadata(out / SNOW_CLOUD_NAME, snow_rows)
    (out / "README.txt").write_text(
        "SYNTHETIC DATA - not BigEarthNet v2.\n\nWritten by rsray.data.sources.bigearthnet_v2."
        f"write_synthetic_bigearthnet_v2(n={n}, seed={seed}, include_60m={include_60m}) in the "
        "exact reBEN on-disk layout; metadata.parquet carries the schema metadata "
        f"{SYNTHETIC_METADATA_KEY.decode()}=true. Tiles, countries and corners are real, "
        "dates and pixels are not.\n\n" + describe_synthetic_rules_v2() + "\n", encoding="utf-8")
    return SynthInfo(n=n, out_dir=str(out), seed=seed,
                     s2_root=str(out / "BigEarthNet-S2"), s1_root=str(out / "BigEarthNet-S1"),
                     rules=describe_synthetic_rules_v2(), corrupted=corrupted)


def _write_metadata(path: Path, rows: list[dict[str, Any]]) -> None:
    schema = pa.schema([
        ("patch_id", pa.string()), ("labels", pa.list_(pa.string())), ("split", pa.string()),
        ("country", pa.string()), ("s1_name", pa.string()), ("s2v1_name", pa.string()),
        ("contains_seasonal_snow", pa.bool_()), ("contains_cloud_or_shadow", pa.bool_()),
    ], metadata={SYNTHETIC_METADATA_KEY: b"true"})
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _write_patch_v2(
    out: Path, patch_id: str, s1_name: str, zone: int, ulx: int, uly: int,
    s2_px: Mapping[str, np.ndarray], s1_px: Mapping[str, np.ndarray], s2_bands: Sequence[str],
    ref_map: np.ndarray, kinds: Sequence[str],
) -> None:
    """Write one patch's S2, S1 and reference-map folders, applying the corruptions."""
    crs = CRS.from_wkt(utm_wkt(zone))
    s2_dir = out / "BigEarthNet-S2" / s2_product(patch_id) / patch_id
    if "s2_missing" not in kinds:
        s2_dir.mkdir(parents=True, exist_ok=True)
        for b in s2_bands:
            arr = s2_px[b]
            if b == "B05" and "wrong_shape" in kinds:
                arr = np.repeat(np.repeat(arr, 2, axis=0), 2, axis=1)
            if b == "B03" and "wrong_dtype" in kinds:
                arr = arr.astype(np.float32)
            write_geotiff(s2_dir / f"{patch_id}_{b}.tif", arr, crs, ulx, uly,
                          1200 / S2_BAND_SIZE[b], nodata=0)
        if "missing_band" in kinds:
            (s2_dir / f"{patch_id}_B05.tif").unlink()
        if "truncated" in kinds:
            p = s2_dir / f"{patch_id}_B02.tif"
            truncate_file(p)
        map_dir = out / "Reference_Maps" / s2_product(patch_id) / patch_id
        map_dir.mkdir(parents=True, exist_ok=True)
        if "ref_map_shape" in kinds:
            ref_map = ref_map[::2, ::2]
        if "ref_map_code" in kinds:
            ref_map = ref_map.copy()
            ref_map[:5, :5] = 777
        res = 1200 / ref_map.shape[0]
        write_geotiff(map_dir / f"{patch_id}_reference_map.tif", ref_map, crs, ulx, uly, res,
                      nodata=0, compress="deflate")
    if "s1_missing" in kinds:
        return
    s1_dir = out / "BigEarthNet-S1" / s1_product(s1_name) / s1_name
    s1_dir.mkdir(parents=True, exist_ok=True)
    s1_crs = CRS.from_wkt(utm_wkt(zone + 1)) if "crs_mismatch" in kinds else crs
    s1_ulx = ulx + 20 if "bounds_mismatch" in kinds else ulx
    for b in ("VV", "VH"):
        arr = s1_px[b]
        if b == "VV" and "nan_s1" in kinds:
            arr = arr.copy()
            arr[10:20, 10:20] = np.nan
        write_geotiff(s1_dir / f"{s1_name}_{b}.tif", arr, s1_crs, s1_ulx, uly, 10.0)
