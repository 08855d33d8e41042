"""The synthetic SEN12MS twin: S1 / S2 / land-cover triplets in the official layout.

:func:`write_synthetic_sen12ms` draws a blocky land-cover map per patch and renders S2 and S1
from it so that five classes are visible only in Sentinel-2 and five only in Sentinel-1
(:func:`describe_synthetic_rules`); it can plant the corruptions of ``CORRUPTIONS``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.crs import CRS

from rsray.data.sources._raster import gdal_env, write_geotiff
from rsray.data.sources._synth import plan_corruptions, truncate_file
from rsray.data.sources.sen12ms.reader import (
    _S2_LAND_IDX,
    IGBP_TO_SEN12MS,
    LC_BANDS,
    PATCH_SIZE,
    S2_FILE_BANDS,
    S2_LAND_BANDS,
    SEASONS,
    SEN12MS_CLASSES,
    SYNTHETIC_TAG,
)

__all__ = [
    "Sen12msSynthInfo",
    "describe_synthetic_rules",
    "write_synthetic_sen12ms",
]

# --------------------------------------------------------------------------------------------
# Synthetic twin
# --------------------------------------------------------------------------------------------

# (ROI folder, scene, EPSG, upper-left x, upper-left y): per season one official test scene,
# one official validation scene and three training scenes, in UTM zones of both hemispheres.
_SYNTH_SCENES: tuple[tuple[str, int, int, int, int], ...] = (
    ("ROIs1158_spring", 15, 32633, 300000, 5400000),
    ("ROIs1158_spring", 44, 32617, 500000, 4600000),
    ("ROIs1158_spring", 2, 32750, 300000, 7000000),
    ("ROIs1158_spring", 5, 32630, 400000, 4500000),
    ("ROIs1158_spring", 8, 32645, 600000, 3300000),
    ("ROIs1868_summer", 19, 32611, 400000, 3800000),
    ("ROIs1868_summer", 26, 32636, 300000, 6600000),
    ("ROIs1868_summer", 3, 32719, 500000, 6200000),
    ("ROIs1868_summer", 6, 32632, 500000, 5000000),
    ("ROIs1868_summer", 9, 32651, 300000, 3500000),
    ("ROIs1970_fall", 30, 32618, 600000, 4500000),
    ("ROIs1970_fall", 1, 32735, 400000, 7100000),
    ("ROIs1970_fall", 4, 32629, 500000, 4300000),
    ("ROIs1970_fall", 7, 32644, 400000, 2500000),
    ("ROIs1970_fall", 10, 32610, 500000, 5300000),
    ("ROIs2017_winter", 32, 32634, 400000, 6800000),
    ("ROIs2017_winter", 69, 32614, 600000, 3600000),
    ("ROIs2017_winter", 11, 32755, 300000, 6300000),
    ("ROIs2017_winter", 12, 32637, 400000, 6200000),
    ("ROIs2017_winter", 13, 32648, 500000, 4400000),
)
_GRID = 20  # patches per scene side: p = 1 + row * 20 + col, 2560 m apart
_CAPACITY = len(_SYNTH_SCENES) * _GRID * _GRID
_CELLS = 8  # the land-cover map is drawn on 8 x 8 blocks (MODIS' 500 m is blocky at 10 m)

# Ten land bands (S2_LAND_BANDS order) of each class, reflectance x 10000. Classes that S2
# must not separate share the spectrum _S2_SHARED; B1, B9, B10 are derived from them.
_S2_SHARED = (1000, 1050, 1000, 1300, 1900, 2100, 2200, 2300, 2000, 1400)
_S2_SPECTRA: dict[int, tuple[int, ...]] = {
    0: (300, 500, 300, 700, 2000, 2600, 2900, 3000, 1400, 700),  # Forest: dense vegetation
    2: (700, 900, 1100, 1500, 1800, 1900, 2000, 2100, 2900, 2300),  # Savanna: dry, SWIR-bright
    5: (500, 900, 500, 1200, 3000, 3600, 3800, 3900, 1900, 1000),  # Croplands: vigorous green
    7: (8000, 7800, 7500, 7000, 6500, 6200, 6000, 5800, 800, 600),  # Snow/Ice: bright, SWIR-dark
    8: (1500, 2000, 2500, 2800, 3000, 3100, 3200, 3300, 4000, 3500),  # Barren: bright soil
}
# (VV, VH) in dB; classes that S1 must not separate share _S1_SHARED.
_S1_SHARED = (-11.0, -17.0)
_S1_LEVELS: dict[int, tuple[float, float]] = {
    1: (-15.0, -21.0),  # Shrubland: 4 dB darker in both polarisations
    3: (-11.0, -24.0),  # Grassland: low cross-pol (VH 7 dB lower, VV unchanged)
    4: (-6.0, -17.0),  # Wetlands: bright VV (double bounce over water), VH unchanged
    6: (-2.0, -9.0),  # Urban/Built-up: bright both + 4-px bright-point texture
    9: (-22.0, -29.0),  # Water: dark both
}
_SEASON_GAIN = {"spring": 1.0, "summer": 1.06, "fall": 0.95, "winter": 0.9}  # S2 brightness
_SEASON_DB = {"spring": 0.0, "summer": 0.5, "fall": 0.0, "winter": -1.0}  # S1 offset
_IGBP_CODES: dict[int, tuple[int, ...]] = {
    idx: tuple(c for c, i in IGBP_TO_SEN12MS.items() if i == idx) for idx in range(10)
}
# Placeholder LCCS land cover / land use / surface hydrology codes per class (bands 2-4).
_LCCS = {0: (11, 10, 10), 1: (40, 30, 20), 2: (43, 30, 20), 3: (30, 30, 20), 4: (27, 27, 3),
         5: (36, 25, 20), 6: (9, 9, 20), 7: (2, 2, 20), 8: (1, 1, 20), 9: (3, 3, 3)}

CORRUPTIONS: dict[str, str] = {
    "missing_s1": "S1 file deleted",
    "missing_lc": "LC file deleted",
    "s2_missing": "S2 file not written (S1 and LC orphans)",
    "wrong_band_count": "S2 written with 12 bands",
    "wrong_shape": "S1 written 256 x 255",
    "wrong_dtype": "S1 written as int16 instead of float32 dB",
    "crs_mismatch": "LC written in the next UTM zone",
    "bounds_mismatch": "S1 shifted 30 m east",
    "nan_s1": "S1 VV with a 10 x 10 block of NaN",
    "truncated": "S2 file cut to half its size",
    "lc_no_igbp": "LC band 1 all 0 (no IGBP code)",
}


def describe_synthetic_rules() -> str:
    """Which classes the synthetic SEN12MS twin shows in which modality, and how."""
    lines = ["Synthetic SEN12MS: a blocky 8 x 8 land-cover map per patch (a dominant class "
             "plus 0-2 others covering 10-22 % each), rendered into S2 and S1:",
             "  visible in S2 only (distinct spectra, identical S1 backscatter "
             f"{_S1_SHARED[0]:g}/{_S1_SHARED[1]:g} dB): "
             + ", ".join(SEN12MS_CLASSES[c] for c in _S2_SPECTRA),
             "  visible in S1 only (distinct backscatter, identical S2 spectrum): "
             + ", ".join(SEN12MS_CLASSES[c] for c in _S1_LEVELS)]
    for c, (vv, vh) in _S1_LEVELS.items():
        lines.append(f"    {SEN12MS_CLASSES[c]}: VV {vv:g} dB, VH {vh:g} dB")
    lines.append("Nuisances: season gain on S2 (winter 0.9 ... summer 1.06) and offset on S1 "
                 "(winter -1 dB), per-patch gain 0.92-1.08 / offset N(0, 0.7) dB, 3 % S2 "
                 "noise, 4-look S1 speckle.")
    lines.append("Labels follow from the IGBP codes of LC band 1 (any code of the class). With "
                 "a uniform dominant class, a single-modality model can reach about 60 % OA "
                 "(its five classes + 1/5 of the others); fusion can reach 100 %.")
    return "\n".join(lines)


@dataclass
class Sen12msSynthInfo:
    """What :func:`write_synthetic_sen12ms` wrote."""

    n: int
    out_dir: str
    seed: int
    rules: str
    class_modality: dict[str, str] = field(default_factory=dict)
    """Class name -> ``s2`` or ``s1`` (the only modality that shows it)."""
    corrupted: dict[str, list[str]] = field(default_factory=dict)
    """Corruption kind -> patch ids (S2 file stems) it was applied to."""


def _draw_map(rng: np.random.Generator) -> np.ndarray:
    """``(8, 8)`` simplified class indices: a dominant class and 0-2 rectangles of others."""
    dominant = int(rng.integers(0, 10))
    grid = np.full((_CELLS, _CELLS), dominant, dtype=np.int64)
    k = int(rng.choice(3, p=[0.3, 0.4, 0.3]))
    others = rng.choice([c for c in range(10) if c != dominant], size=k, replace=False)
    for c in others:
        area = rng.uniform(0.10, 0.22) * _CELLS * _CELLS
        h = int(rng.integers(2, _CELLS))
        w = int(max(1, min(_CELLS, np.floor(area / h))))
        y, x = int(rng.integers(0, _CELLS - h + 1)), int(rng.integers(0, _CELLS - w + 1))
        grid[y:y + h, x:x + w] = int(c)
    return grid


def _render(rng: np.random.Generator, cmap: np.ndarray, season: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S2 (13, 256, 256) uint16, S1 (2, 256, 256) float32 dB, LC (4, 256, 256) uint16."""
    size = PATCH_SIZE
    cell = size // _CELLS
    px = np.repeat(np.repeat(cmap, cell, axis=0), cell, axis=1)
    land = np.array([_S2_SPECTRA.get(c, _S2_SHARED) for c in range(10)], dtype=np.float32)
    gain = _SEASON_GAIN[season] * rng.uniform(0.92, 1.08)
    s2_land = land[px].transpose(2, 0, 1) * np.float32(gain)  # (10, H, W)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = 1 + 0.04 * np.sin(2 * np.pi * (yy * rng.uniform(0.01, 0.04)
                                             + xx * rng.uniform(0.01, 0.04)))
    s2_land = s2_land * texture * (1 + 0.03 * rng.standard_normal(s2_land.shape,
                                                                   dtype=np.float32))
    s2 = np.empty((len(S2_FILE_BANDS), size, size), dtype=np.float32)
    s2[_S2_LAND_IDX] = s2_land
    b2, b8a = s2_land[S2_LAND_BANDS.index("B2")], s2_land[S2_LAND_BANDS.index("B8A")]
    s2[S2_FILE_BANDS.index("B1")] = 0.9 * b2 + 150
    s2[S2_FILE_BANDS.index("B9")] = 0.35 * b8a
    s2[S2_FILE_BANDS.index("B10")] = 15 + 3 * rng.standard_normal((size, size))
    s2_out = np.clip(np.rint(s2), 1, 28000).astype(np.uint16)

    levels = np.array([_S1_LEVELS.get(c, _S1_SHARED) for c in range(10)], dtype=np.float32)
    base = levels[px].transpose(2, 0, 1) + np.float32(_SEASON_DB[season]
                                                       + rng.normal(0.0, 0.7))
    urban = px == 6
    if urban.any():
        points = ((yy.astype(np.int64) // 4 + xx.astype(np.int64) // 4) % 3 == 0) & urban
        base = base + 4.0 * points[None].astype(np.float32)
    speckle = 10 * np.log10(rng.gamma(4.0, 0.25, size=base.shape))
    s1_out = np.clip(base + speckle, -45.0, 15.0).astype(np.float32)

    codes = np.array([rng.choice(_IGBP_CODES[c]) for c in range(10)], dtype=np.uint16)
    lc = np.empty((len(LC_BANDS), size, size), dtype=np.uint16)
    lc[0] = codes[px]
    for b in range(3):
        lc[b + 1] = np.array([_LCCS[c][b] for c in range(10)], dtype=np.uint16)[px]
    return s2_out, s1_out, lc


def write_synthetic_sen12ms(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    corrupt: Mapping[str, int | Sequence[int]] | None = None,
    progress: bool = True,
) -> Sen12msSynthInfo:
    """Write ``n`` synthetic SEN12MS triplets in exactly the SEN12MS on-disk format.

    ``out_dir/ROIs<id>_<season>/{s1,s2,lc}_<scene>/ROIs<id>_<season>_{s1,s2,lc}_<scene>_p<n>.tif``:
    S2 13 bands uint16, S1 2 bands float32 dB, LC 4 bands uint16 (IGBP codes in band 1),
    256 x 256 px at 10 m, uncompressed GeoTIFF in UTM (both hemispheres), every file tagged
    ``RSRAY_SYNTHETIC=1``. Patches cycle through 20 scenes (per season one official test
    scene, one validation scene and three training scenes), so the official split gives about
    60/20/20 %. Labels follow :func:`describe_synthetic_rules`. Patch ``i`` depends only on
    ``seed`` and ``i``.

    Args:
        out_dir: folder to write into (created).
        n: number of triplets (at most 8,000).
        seed: random seed.
        corrupt: corruption kind -> patch index or indices, to test validation. Kinds:
            missing_s1, missing_lc, s2_missing, wrong_band_count, wrong_shape, wrong_dtype,
            crs_mismatch, bounds_mismatch, nan_s1, truncated, lc_no_igbp (:data:`CORRUPTIONS`).
        progress: print a line about every 10 % to stderr.

    Raises:
        ValueError: ``n`` out of range, or an unknown corruption kind / patch index.
    """
    by_patch = plan_corruptions(corrupt, n, _CAPACITY, CORRUPTIONS)
    out = Path(out_dir)
    corrupted: dict[str, list[str]] = {}
    step = max(1, n // 10)
    with gdal_env():
        for i in range(n):
            roi, scene, epsg, x0, y0 = _SYNTH_SCENES[i % len(_SYNTH_SCENES)]
            p = i // len(_SYNTH_SCENES)
            ulx, uly = x0 + 2560 * (p % _GRID), y0 - 2560 * (p // _GRID)
            rng = np.random.default_rng([seed, i, 12])
            s2, s1, lc = _render(rng, _draw_map(rng), SEASONS[roi])
            patch_id = f"{roi}_s2_{scene}_p{p + 1}"
            kinds = by_patch.get(i, [])
            for kind in kinds:
                corrupted.setdefault(kind, []).append(patch_id)
            _write_triplet(out, roi, scene, p + 1, epsg, ulx, uly, s2, s1, lc, kinds)
            if progress and ((i + 1) % step == 0 or i + 1 == n):
                print(f"synthetic SEN12MS: {i + 1}/{n} triplets ({100 * (i + 1) // n} %)",
                      file=sys.stderr, flush=True)
    (out / "README.txt").write_text(
        "SYNTHETIC DATA - not SEN12MS.\n\nWritten by rsray.data.sources.sen12ms."
        f"write_synthetic_sen12ms(n={n}, seed={seed}) in the exact SEN12MS on-disk format; "
        f"every GeoTIFF carries the tag {SYNTHETIC_TAG}=1. Scene numbers are real SEN12MS "
        "scene numbers (so the official split applies); locations and pixels are not.\n\n"
        + describe_synthetic_rules() + "\n", encoding="utf-8")
    class_modality = {SEN12MS_CLASSES[c]: "s2" for c in _S2_SPECTRA}
    class_modality.update({SEN12MS_CLASSES[c]: "s1" for c in _S1_LEVELS})
    return Sen12msSynthInfo(n=n, out_dir=str(out), seed=seed, rules=describe_synthetic_rules(),
                            class_modality=class_modality, corrupted=corrupted)


def _write_triplet(out: Path, roi: str, scene: int, patch: int, epsg: int, ulx: float,
                   uly: float, s2: np.ndarray, s1: np.ndarray, lc: np.ndarray,
                   kinds: list[str]) -> None:
    """Write the three GeoTIFFs of one patch, applying the corruptions ``kinds``."""
    tags = {SYNTHETIC_TAG: "1"}
    paths = {}
    for mod in ("s1", "s2", "lc"):
        folder = out / roi / f"{mod}_{scene}"
        folder.mkdir(parents=True, exist_ok=True)
        paths[mod] = folder / f"{roi}_{mod}_{scene}_p{patch}.tif"
    crs = CRS.from_epsg(epsg)
    if "nan_s1" in kinds:
        s1 = s1.copy()
        s1[0, 10:20, 10:20] = np.nan
    if "wrong_shape" in kinds:
        s1 = s1[:, :, :-1]
    if "wrong_band_count" in kinds:
        s2 = s2[:12]
    if "wrong_dtype" in kinds:
        s1 = np.nan_to_num(s1).astype(np.int16)  # integer S1 instead of float32 dB
    if "lc_no_igbp" in kinds:
        lc = lc.copy()
        lc[0] = 0
    s1_ulx = ulx + 30 if "bounds_mismatch" in kinds else ulx
    lc_crs = CRS.from_epsg(epsg + 1) if "crs_mismatch" in kinds else crs
    if "s2_missing" not in kinds:
        write_geotiff(paths["s2"], s2, crs, ulx, uly, 10.0, tags=tags)
    write_geotiff(paths["s1"], s1, crs, s1_ulx, uly, 10.0, tags=tags)
    write_geotiff(paths["lc"], lc, lc_crs, ulx, uly, 10.0, tags=tags)
    if "truncated" in kinds:
        truncate_file(paths["s2"])
    if "missing_s1" in kinds:
        paths["s1"].unlink()
    if "missing_lc" in kinds:
        paths["lc"].unlink()
