"""Synthetic geographic covariate layers covering the patches of a (synthetic) dataset.

:func:`write_synthetic_covariates` reads where the patches of a raw dataset folder lie (their
CRS and bounds) and writes four GeoTIFF layers covering them, each in a CRS and at a resolution
different from the patches, so that :mod:`rsray.data.sources.covariates` really reprojects:

==============  ==================  ==========  =========================================
layer           CRS                 pixel       values
==============  ==================  ==========  =========================================
dem.tif         EPSG:4326           3 arc-sec   elevation (m), float32, nodata -32768
temperature.tif EPSG:3035 (LAEA)*   1 km        mean air temperature (deg C), float32
wind.tif        EPSG:3035 (LAEA)*   1 km        mean wind speed (m/s), float32
landcover.tif   EPSG:3857           100 m       WorldCover-like codes, uint8, nodata 0
==============  ==================  ==========  =========================================

(*) EPSG:8857 (Equal Earth) when some patch lies outside Europe (SEN12MS's global scenes).

The fields are smooth analytic functions of longitude/latitude (seeded phases): terrain at
four scales (about 700 km to 3 km), temperature falling with latitude and elevation (lapse rate
6.5 K/km), wind rising with elevation and latitude, land cover from elevation and two
moisture/texture fields. The files are tiled and *sparse*: only the blocks near a patch are
written (the rest reads as nodata), so a layer spanning Portugal to Finland stays a few MB.

Known relation to the labels (BigEarthNet twin only): every patch labelled *Inland wetlands*
(CLC "Inland marshes"/"Peatbogs"; in the synthetic BigEarthNet twin the XOR class a3 xor b2,
which S2 or S1 alone cannot predict) lies on a lowland floor: over its footprint the DEM is
15-25 m (a shallow bowl), while the terrain elsewhere never drops below 100 m. A model given
S2 + DEM can therefore learn that class without S1. The temperature, wind and land-cover
layers carry no label signal (they use the terrain without the lowlands). For other folders
(patches found from their GeoTIFFs) no layer carries label signal.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import from_origin
from rasterio.warp import transform
from rasterio.windows import Window

from rsray.data.sources._raster import gdal_env
from rsray.data.sources.covariates.warp import bounds_in
from rsray.errors import ConfigError, DatasetNotFoundError, RsrayError

__all__ = [
    "LANDCOVER_CODES",
    "SIGNAL_LABELS",
    "CovariateSynthInfo",
    "Footprint",
    "SyntheticFields",
    "describe_synthetic_covariates",
    "find_footprints",
    "footprints_from_bigearthnet",
    "footprints_from_rasters",
    "synth_covariates_from_args",
    "write_synthetic_covariates",
]

LANDCOVER_CODES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 80)
"""ESA WorldCover codes used: tree cover, shrubland, grassland, cropland, built-up, bare,
permanent water."""
SIGNAL_LABELS: tuple[str, ...] = ("Inland marshes", "Peatbogs")
"""CLC level-3 names (BigEarthNet 19-class *Inland wetlands*) whose patches lie on a lowland."""
LOWLAND_M = (15.0, 25.0)
"""DEM over a signal patch: from the centre to the corners of its footprint (metres)."""
TERRAIN_MIN_M = 100.0
"""The terrain elsewhere never drops below this."""
DEM_NODATA = -32768.0
CLIMATE_NODATA = -9999.0
BLOCK = 128
MAX_BLOCKS = 250_000


@dataclass(frozen=True)
class Footprint:
    """Where one patch lies: its CRS (WKT) and bounds ``(left, bottom, right, top)`` in it."""

    crs: str
    bounds: tuple[float, float, float, float]
    signal: bool = False
    """The patch carries the label the DEM encodes (it lies on a lowland floor)."""


@dataclass
class CovariateSynthInfo:
    """What :func:`write_synthetic_covariates` wrote."""

    out_dir: str
    layers: dict[str, str]
    """Layer name -> GeoTIFF path."""
    footprints: int
    signal_patches: int
    """Patches on a DEM lowland (0 when the folder is not a BigEarthNet twin)."""
    source: str
    """How the footprints were found (``bigearthnet jsons`` or ``GeoTIFF headers``)."""
    prepare_flags: list[str] = field(default_factory=list)
    """``rsray prepare`` flags that add these layers."""


# --------------------------------------------------------------------------------------------
# Footprints
# --------------------------------------------------------------------------------------------


def footprints_from_bigearthnet(raw: str | Path) -> list[Footprint]:
    """Footprints of the S2 patches of a BigEarthNet v1 folder, from their labels jsons.

    ``signal`` is set for patches whose labels include :data:`SIGNAL_LABELS`. Patches whose
    json is missing or invalid are skipped (the dataset reader rejects them anyway).

    Raises:
        DatasetNotFoundError: ``raw/BigEarthNet-S2`` does not exist.
    """
    s2 = Path(raw) / "BigEarthNet-S2"
    if not s2.is_dir():
        raise DatasetNotFoundError(f"{s2}: no BigEarthNet-S2 folder")
    out = []
    for d in sorted(p for p in s2.iterdir() if p.is_dir()):
        try:
            meta = json.loads((d / f"{d.name}_labels_metadata.json").read_text(encoding="utf-8"))
            c = meta["coordinates"]
            bounds = (float(c["ulx"]), float(c["lry"]), float(c["lrx"]), float(c["uly"]))
            crs = CRS.from_wkt(meta["projection"]).to_wkt()
            labels = meta.get("labels") or []
        except (OSError, ValueError, KeyError, TypeError, RasterioError):
            continue
        signal = isinstance(labels, list) and any(lab in SIGNAL_LABELS for lab in labels)
        out.append(Footprint(crs, bounds, signal))
    return out


def footprints_from_rasters(root: str | Path, pattern: str = "*.tif") -> list[Footprint]:
    """Distinct ``(CRS, bounds)`` of every georeferenced GeoTIFF under ``root`` (headers only).

    Raises:
        DatasetNotFoundError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: not a folder")
    seen: dict[tuple[str, tuple[float, ...]], Footprint] = {}
    with gdal_env():
        for path in sorted(root.rglob(pattern)):
            try:
                with rasterio.open(path) as src:
                    if src.crs is None or src.transform == rasterio.Affine.identity():
                        continue
                    crs, bounds = src.crs.to_wkt(), tuple(float(v) for v in src.bounds)
            except (RasterioError, OSError):
                continue
            key = (crs, tuple(round(v, 3) for v in bounds))
            seen.setdefault(key, Footprint(crs, (bounds[0], bounds[1], bounds[2], bounds[3])))
    return list(seen.values())


def find_footprints(like: str | Path) -> tuple[list[Footprint], str]:
    """Footprints of the patches under ``like`` and how they were found.

    A BigEarthNet v1 folder (``BigEarthNet-S2/<patch>/<patch>_labels_metadata.json``) is read
    from its labels jsons (which carry the label signal); any other folder (BigEarthNet v2,
    SEN12MS, FLAIR-2, ...) from the headers of its GeoTIFFs.

    Raises:
        DatasetNotFoundError: ``like`` is not a folder.
        RsrayError: no georeferenced patch found.
    """
    like = Path(like)
    if not like.is_dir():
        raise DatasetNotFoundError(f"{like}: --like must be a raw dataset folder")
    fps: list[Footprint] = []
    if (like / "BigEarthNet-S2").is_dir():  # v1 layout: one json per patch folder
        fps, how = footprints_from_bigearthnet(like), "bigearthnet jsons"
    if not fps:
        fps, how = footprints_from_rasters(like), "GeoTIFF headers"
    if not fps:
        raise RsrayError(f"{like}: no georeferenced patch found ({how}); nothing to cover")
    return fps, how


# --------------------------------------------------------------------------------------------
# Fields
# --------------------------------------------------------------------------------------------


class SyntheticFields:
    """Seeded analytic fields of longitude/latitude (degrees): terrain, climate, land cover."""

    def __init__(self, seed: int = 0) -> None:
        """Draw the phases of every wave from ``seed``."""
        self.p = np.random.default_rng([seed, 0xC0A]).uniform(0, 2 * np.pi, size=16)

    def elevation(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Terrain height in metres (>= :data:`TERRAIN_MIN_M`), waves of ~700, 60, 15, 3 km."""
        p, tau = self.p, 2 * np.pi
        e = (640 + 320 * np.sin(tau * lon / 9 + p[0]) * np.cos(tau * lat / 7 + p[1])
             + 140 * np.sin(tau * (0.8 * lon + 0.6 * lat) / 0.7 + p[2])
             + 60 * np.sin(tau * lon / 0.23 + p[3]) * np.sin(tau * lat / 0.17 + p[4])
             + 12 * np.sin(tau * lon / 0.05 + p[5]) * np.cos(tau * lat / 0.037 + p[6]))
        return np.maximum(e, TERRAIN_MIN_M)

    def temperature(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Mean air temperature (deg C) from latitude, elevation and a west-east wave.

        30 deg C within 15 deg of the equator, 0.55 K colder per degree beyond, 6.5 K/km lapse
        rate.
        """
        return (30.0 - 0.55 * np.maximum(np.abs(lat) - 15.0, 0.0)
                - 0.0065 * self.elevation(lon, lat) + 1.2 * np.sin(2 * np.pi * lon / 6
                                                                 + self.p[7]))

    def wind(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Mean wind speed (m/s): rises with elevation and absolute latitude, plus a wave."""
        return (2.5 + 0.004 * self.elevation(lon, lat) + 0.05 * np.abs(lat)
                + 0.75 * (1 + np.sin(2 * np.pi * lon / 3 + self.p[8])))

    def landcover(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """WorldCover-like codes (:data:`LANDCOVER_CODES`) from elevation, moisture, texture."""
        p, tau = self.p, 2 * np.pi
        elev = self.elevation(lon, lat)
        moist = 0.5 + 0.5 * np.sin(tau * lon / 0.4 + p[9]) * np.cos(tau * lat / 0.3 + p[10])
        tex = 0.5 + 0.5 * np.sin(tau * lon / 0.03 + p[11]) * np.sin(tau * lat / 0.02 + p[12])
        code = np.full(lon.shape, 20, dtype=np.uint8)          # shrubland
        code[moist < 0.3] = 30                                 # grassland
        code[tex < 0.35] = 40                                  # cropland
        code[(elev > 850) | ((moist > 0.6) & (tex > 0.5))] = 10  # tree cover
        code[tex > 0.96] = 50                                  # built-up
        code[elev > 1100] = 60                                 # bare
        code[moist > 0.93] = 80                                # permanent water
        return code


@lru_cache(maxsize=256)
def _crs(wkt: str) -> CRS:
    return CRS.from_wkt(wkt)


def _lowlands(xs: np.ndarray, ys: np.ndarray, crs: CRS, boxes: Sequence[tuple[float, ...]],
              fps: Sequence[Footprint]) -> np.ndarray:
    """Lowland floor (m) of the ``signal`` footprints at layer points ``xs, ys``; NaN outside."""
    floor = np.full(xs.shape, np.nan, dtype=np.float64)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    for box, fp in zip(boxes, fps, strict=True):
        if not fp.signal or box[2] < x0 or box[0] > x1 or box[3] < y0 or box[1] > y1:
            continue
        px, py = transform(crs, _crs(fp.crs), xs.ravel(), ys.ravel())
        px, py = np.asarray(px).reshape(xs.shape), np.asarray(py).reshape(xs.shape)
        left, bottom, right, top = fp.bounds
        u = (px - (left + right) / 2) / ((right - left) / 2)
        v = (py - (bottom + top) / 2) / ((top - bottom) / 2)
        inside = (np.abs(u) <= 1) & (np.abs(v) <= 1)
        lo, hi = LOWLAND_M
        floor = np.where(inside, lo + (hi - lo) * (u * u + v * v) / 2, floor)
    return floor


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _write_sparse(path: Path, crs: CRS, res: float, fps: Sequence[Footprint], dtype: str,
                  nodata: float, values: Callable[[np.ndarray, np.ndarray,
                                                   Sequence[tuple[float, ...]]], np.ndarray],
                  margin_px: int = 4) -> tuple[int, int]:
    """Write a tiled, sparse GeoTIFF on a ``res`` grid covering ``fps``.

    Only blocks near a footprint are computed and written. ``values(xs, ys, boxes)`` gives the
    pixels at layer coordinates (``boxes``: the footprints' bounds in the layer CRS).
    Returns the number of blocks written and the block side.
    """
    boxes = [bounds_in(_crs(fp.crs), crs, fp.bounds) for fp in fps]
    pad = margin_px * res
    left = math.floor((min(b[0] for b in boxes) - pad) / res) * res
    top = math.ceil((max(b[3] for b in boxes) + pad) / res) * res
    width = math.ceil((max(b[2] for b in boxes) + pad - left) / res)
    height = math.ceil((top - (min(b[1] for b in boxes) - pad)) / res)
    block = BLOCK  # larger blocks keep the block table of a continent-wide layer small
    while math.ceil(width / block) * math.ceil(height / block) > MAX_BLOCKS and block < 2048:
        block *= 2
    tr = from_origin(left, top, res, res)
    floating = np.dtype(dtype).kind == "f"
    with gdal_env(), rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=1, dtype=dtype,
            crs=crs, transform=tr, nodata=nodata, tiled=True, blockxsize=block,
            blockysize=block, compress="deflate", predictor=3 if floating else 2,
            SPARSE_OK=True) as dst:
        blocks: set[tuple[int, int]] = set()
        for b in boxes:
            c0 = max(int((b[0] - left) / res) - margin_px, 0) // block
            c1 = min(int((b[2] - left) / res) + margin_px, width - 1) // block
            r0 = max(int((top - b[3]) / res) - margin_px, 0) // block
            r1 = min(int((top - b[1]) / res) + margin_px, height - 1) // block
            blocks.update((r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))
        for r, c in sorted(blocks):
            win = Window(c * block, r * block, min(block, width - c * block),
                         min(block, height - r * block))
            cols, rows = np.meshgrid(np.arange(win.width) + c * block + 0.5,
                                     np.arange(win.height) + r * block + 0.5)
            xs, ys = tr @ (cols, rows)
            dst.write(values(xs, ys, boxes).astype(dtype), 1, window=win)
    return len(blocks), block


def _in_europe(fps: Sequence[Footprint]) -> bool:
    """Whether every footprint lies where LAEA Europe (EPSG:3035) is meant to be used."""
    geo = CRS.from_epsg(4326)
    for fp in fps:
        left, bottom, right, top = bounds_in(_crs(fp.crs), geo, fp.bounds)
        if left < -35 or right > 45 or bottom < 25 or top > 75:
            return False
    return True


def _lonlat(xs: np.ndarray, ys: np.ndarray, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    if crs.to_epsg() == 4326:
        return xs, ys
    lon, lat = transform(crs, CRS.from_epsg(4326), xs.ravel(), ys.ravel())
    return np.asarray(lon).reshape(xs.shape), np.asarray(lat).reshape(xs.shape)


def write_synthetic_covariates(
    like: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    dem_res_deg: float = 1 / 1200,
    climate_res_m: float = 1000.0,
    landcover_res_m: float = 100.0,
    footprints: Sequence[Footprint] | None = None,
    progress: bool = True,
) -> CovariateSynthInfo:
    """Write DEM, temperature, wind and land-cover GeoTIFFs covering the patches of ``like``.

    The files are ``dem.tif``, ``temperature.tif``, ``wind.tif`` and ``landcover.tif`` (see
    the module docstring) plus a ``README.txt``.

    Args:
        like: raw dataset folder (BigEarthNet v1 twin: footprints and label signal from its
            jsons; any other folder: footprints from its GeoTIFF headers).
        out_dir: folder to write into (created).
        seed: phases of the analytic fields.
        dem_res_deg: DEM pixel in degrees (default 3 arc-seconds, about 90 m).
        climate_res_m: temperature/wind pixel in metres (EPSG:3035).
        landcover_res_m: land-cover pixel in metres (EPSG:3857).
        footprints: use these instead of scanning ``like`` (``like`` is then only recorded).
        progress: print one line per layer to stderr.

    Returns:
        A :class:`CovariateSynthInfo` with the paths and the ``rsray prepare`` flags.

    Raises:
        DatasetNotFoundError: ``like`` is not a folder.
        RsrayError: no georeferenced patch under ``like``.
    """
    if footprints is None:
        fps, how = find_footprints(like)
    else:
        fps, how = list(footprints), "given"
        if not fps:
            raise RsrayError("write_synthetic_covariates: no footprints given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = SyntheticFields(seed)
    geo = CRS.from_epsg(4326)
    laea = CRS.from_epsg(3035 if _in_europe(fps) else 8857)
    merc = CRS.from_epsg(3857)

    def dem(xs: np.ndarray, ys: np.ndarray, boxes: Sequence[tuple[float, ...]]) -> np.ndarray:
        floor = _lowlands(xs, ys, geo, boxes, fps)
        return np.where(np.isnan(floor), fields.elevation(xs, ys), floor)

    def climate(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], crs: CRS) -> Callable[
            [np.ndarray, np.ndarray, Sequence[tuple[float, ...]]], np.ndarray]:
        return lambda xs, ys, _boxes: fn(*_lonlat(xs, ys, crs))

    specs = [
        ("dem", geo, dem_res_deg, "float32", DEM_NODATA, dem),
        ("temperature", laea, climate_res_m, "float32", CLIMATE_NODATA,
         climate(fields.temperature, laea)),
        ("wind", laea, climate_res_m, "float32", CLIMATE_NODATA, climate(fields.wind, laea)),
        ("landcover", merc, landcover_res_m, "uint8", 0, climate(fields.landcover, merc)),
    ]
    layers: dict[str, str] = {}
    for name, crs, res, dtype, nodata, fn in specs:
        path = out / f"{name}.tif"
        n_blocks, block = _write_sparse(path, crs, res, fps, dtype, nodata, fn)
        layers[name] = str(path.resolve())
        if progress:
            print(f"synthetic covariates: {name}.tif ({crs.to_string()}, pixel {res:g}, "
                  f"{n_blocks} blocks of {block}^2 written)", file=sys.stderr, flush=True)
    flags = ["--covariate", f"dem={layers['dem']}:bilinear",
             "--covariate", f"temperature={layers['temperature']}:bilinear",
             "--covariate", f"wind={layers['wind']}:bilinear",
             "--covariate", f"landcover={layers['landcover']}:nearest",
             "--covariate-opt", "landcover.categories=" + ",".join(map(str, LANDCOVER_CODES)),
             "--indices", "ndvi,ndwi"]
    signal = sum(fp.signal for fp in fps)
    info = CovariateSynthInfo(out_dir=str(out), layers=layers, footprints=len(fps),
                              signal_patches=signal, source=how, prepare_flags=flags)
    (out / "README.txt").write_text(
        "SYNTHETIC covariate layers - not real elevation, climate or land cover.\n\n"
        f"Written by rsray.data.sources.covariates.write_synthetic_covariates(like={str(like)!r}, "
        f"seed={seed}) for {len(fps)} patch footprints (from {how}); {signal} patch(es) "
        "lie on a DEM lowland.\n\n" + describe_synthetic_covariates()
        + "\n\nrsray prepare flags:\n  " + " ".join(flags) + "\n", encoding="utf-8")
    return info


def describe_synthetic_covariates() -> str:
    """The rules of the synthetic layers, including their relation to the labels."""
    return (
        "dem.tif (EPSG:4326, 3 arc-sec, m): terrain waves of ~700/60/15/3 km; every patch "
        f"labelled Inland wetlands ({' or '.join(SIGNAL_LABELS)}) lies on a lowland floor of "
        f"{LOWLAND_M[0]:.0f}-{LOWLAND_M[1]:.0f} m over its footprint, while the terrain elsewhere "
        f"stays above {TERRAIN_MIN_M:.0f} m (the label signal: in the synthetic BigEarthNet twin "
        "that class is S2 a3 XOR S1 b2, so S2 + DEM predicts it without S1).\n"
        "temperature.tif (EPSG:3035 in Europe, else EPSG:8857; 1 km, deg C): 30 - 0.55 "
        "(|lat| - 15 if positive) - 6.5 K/km x elevation + a west-east wave; no label signal.\n"
        "wind.tif (same grid, m/s): rises with elevation and |latitude|; no label signal.\n"
        "landcover.tif (EPSG:3857, 100 m, uint8): WorldCover-like codes "
        f"{', '.join(map(str, LANDCOVER_CODES))} from elevation, moisture and texture fields; "
        "no label signal.\n"
        "Only blocks near patches are written (sparse GeoTIFFs); elsewhere the layers read as "
        "nodata.")


def synth_covariates_from_args(args: Any) -> CovariateSynthInfo:
    """``rsray synth covariates --like RAW --out DIR [--seed S]``: write and explain the layers.

    Raises:
        ConfigError: ``--like`` missing, or given with a dataset name instead of ``covariates``.
    """
    if args.dataset != "covariates":
        raise ConfigError(f"--like is only for `rsray synth covariates`, not {args.dataset}")
    if not args.like:
        raise ConfigError("rsray synth covariates: --like RAW_FOLDER is required (the raw "
                          "dataset whose patches the layers must cover)")
    info = write_synthetic_covariates(args.like, args.out, seed=args.seed)
    print(f"wrote SYNTHETIC covariate layers for {info.footprints} patches of {args.like} "
          f"(found from {info.source}; {info.signal_patches} with the DEM label signal) to "
          f"{info.out_dir}")
    print(describe_synthetic_covariates())
    print("add them to a prepare command with:\n  " + " ".join(info.prepare_flags))
    return info
