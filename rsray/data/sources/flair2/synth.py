"""The synthetic FLAIR #2 twin: aerial patches, masks and Sentinel-2 series per zone.

:func:`write_synthetic_flair2` writes the release's on-disk layout (aerial GeoTIFFs, label
masks, per-zone Sentinel-2 super-patch series with cloud/snow masks, centroid json) with a
known cross-modal signal and optional corruptions.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS

from rsray.data.sources._raster import write_geotiff
from rsray.data.sources._synth import truncate_file
from rsray.data.sources.flair2.spec import (
    CENTROIDS_NAME,
    DEFAULT_SAT_PATCH_SIZE,
    METADATA_NAMES,
    REAL_PATCH_SIZE,
    SYNTHETIC_STAMP,
)

__all__ = [
    "SynthInfo",
    "describe_synthetic_rules",
    "write_synthetic_flair2",
]

# --------------------------------------------------------------------------------------------
# Synthetic twin
# --------------------------------------------------------------------------------------------

# Real domains (departement, year) with a Lambert-93 anchor near their FLAIR-1 patches (km).
_DOMAINS: tuple[tuple[str, int, int], ...] = (
    ("D004_2021", 924, 6339), ("D006_2020", 1054, 6345), ("D007_2020", 809, 6403),
    ("D008_2019", 828, 7005), ("D009_2019", 583, 6178), ("D013_2020", 909, 6274),
    ("D014_2020", 473, 6865), ("D016_2020", 456, 6511), ("D017_2018", 377, 6572),
    ("D021_2020", 833, 6767), ("D023_2020", 642, 6517), ("D029_2021", 148, 6838),
    ("D030_2021", 791, 6269), ("D031_2019", 567, 6282), ("D032_2019", 440, 6294),
    ("D033_2021", 418, 6446), ("D034_2021", 728, 6242), ("D035_2020", 321, 6802),
    ("D038_2021", 887, 6498), ("D044_2020", 365, 6707), ("D046_2019", 623, 6391),
    ("D049_2020", 434, 6705), ("D051_2019", 756, 6846), ("D052_2019", 860, 6777),
)
_MOUNTAIN = {"D004_2021", "D006_2020", "D009_2019", "D038_2021"}
_ZONE_KINDS = ("UU", "UN", "NF", "AU", "NN", "UA")
_CAMERAS = ("UCE-M3-f120-s06", "UCE-M3-f120-s07", "CAMERA#030", "CAMERA#017")
_TILES = ("31TGK", "31UDP", "30TXQ", "31TFJ", "31TCJ", "30UVU")
_AERIAL_M = 102.4  # ground width of an aerial tile (512 px x 0.2 m)
_S2_RES = 10.0
_SPACING = 11  # S2 px between neighbouring patch centroids in a synthetic zone

# Aerial look per code: (R, G, B, NIR), elevation offset, texture. Codes 6/7 and 10/11 look
# the same on purpose: only their Sentinel-2 seasonal curves tell them apart.
_AERIAL_LOOK: dict[int, tuple[tuple[int, int, int, int], int, str]] = {
    1: ((165, 95, 85, 95), 90, "flat"),
    2: ((125, 135, 100, 150), 0, "noise"),
    3: ((115, 115, 120, 85), 0, "flat"),
    4: ((185, 160, 125, 165), 0, "noise"),
    5: ((35, 60, 85, 15), 0, "flat"),
    6: ((55, 95, 55, 175), 55, "crowns"),
    7: ((55, 95, 55, 175), 55, "crowns"),
    8: ((85, 115, 70, 160), 12, "crowns"),
    9: ((110, 120, 85, 140), 5, "rows"),
    10: ((105, 150, 85, 195), 0, "smooth"),
    11: ((105, 150, 85, 195), 0, "smooth"),
    12: ((135, 105, 80, 105), 0, "furrows"),
    13: ((45, 155, 205, 55), 0, "flat"),
    18: ((215, 220, 225, 180), 8, "flat"),
}
# Field classes (S2-resolved, 10 m aligned rectangles) and their probabilities.
_FIELD_CODES = (2, 4, 5, 6, 7, 8, 9, 10, 11, 12)
_FIELD_P = (0.07, 0.07, 0.06, 0.14, 0.14, 0.07, 0.07, 0.14, 0.14, 0.10)

# Sentinel-2 endmembers (B02 B03 B04 B05 B06 B07 B08 B8A B11 B12), reflectance x 10000.
_VEG = np.array([300, 550, 300, 900, 2400, 2900, 3200, 3300, 1600, 800], dtype=np.float64)
_SOIL = np.array([900, 1200, 1600, 1800, 1900, 2000, 2000, 2100, 3000, 2600], dtype=np.float64)
_WATER = np.array([600, 500, 300, 250, 200, 180, 150, 140, 80, 60], dtype=np.float64)
_CLOUD = np.array([7000, 7000, 7200, 7300, 7400, 7500, 7600, 7600, 5000, 3500],
                  dtype=np.float64)
_SNOW = np.array([9000, 9000, 9000, 8500, 8500, 8400, 8300, 8200, 1200, 900], dtype=np.float64)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _veg_fraction(code: int, doy: int) -> float:
    """Vegetation cover of a field class on day ``doy`` (the seasonal 'NDVI' curve)."""
    summer = _sig((doy - 110) / 10) * _sig((290 - doy) / 10)
    return {
        2: 0.45 + 0.1 * summer,
        4: 0.05,
        6: 0.75,                                               # evergreen
        7: 0.1 + 0.75 * summer,                                # leaves on in summer only
        8: 0.55 + 0.15 * summer,
        9: 0.2 + 0.45 * _sig((doy - 150) / 12) * _sig((270 - doy) / 12),
        10: 0.55,                                              # permanent grass
        11: 0.1 + 0.8 * math.exp(-(((doy - 145) / 30) ** 2)),  # spring crop, then harvest
        12: 0.08 + 0.1 * _sig((doy - 300) / 10),
    }.get(code, 0.3)


_RULES_TEXT = """\
Synthetic FLAIR #2 (rsray): every zone is a mosaic of 10 m-aligned rectangular fields (3-7
Sentinel-2 px per side) of ten field classes; each aerial tile (102.4 m) adds small objects
only the aerial image can resolve. Labels are the codes drawn; codes 13 (swimming pool) and
18 (greenhouse) become 'other'.
  aerial only : building (8-16 m roofs, +90 elevation), impervious surface (6-10 m roads),
                other (4-8 m pools, greenhouses). They are not drawn into the S2 pixels at
                all: S2 only sees the field underneath.
  S2 only     : coniferous vs deciduous (same crowns, colour and height in the aerial image;
                S2 vegetation cover 0.75 all year vs 0.1 + 0.75 in summer only) and
                herbaceous vegetation vs agricultural land (same smooth green field; S2 cover
                0.55 all year vs a spring peak of 0.9 at day 145 then bare soil).
  both        : pervious surface, bare soil, water, brushwood, vineyard (row texture), plowed
                land (furrows): distinct in the aerial image and in S2.
Clouds: about 30 % of the dates carry a cloud blob (probability 80-100 in its core, S2
pixels mixed with a bright cloud spectrum); mountain domains get snow on winter dates. The
patches listed in 'all_cloudy' sit under a cloud on every date (the reader keeps the least
cloudy dates and flags them)."""


def describe_synthetic_rules() -> str:
    """Which classes the synthetic twin makes visible in which modality, and how."""
    return _RULES_TEXT


@dataclass
class SynthInfo:
    """What :func:`write_synthetic_flair2` wrote."""

    n: int
    out_dir: str
    seed: int
    size: int
    sat_patch_size: int
    patches: dict[str, dict[str, str]] = field(default_factory=dict)
    """``IMG_<id>`` -> ``{"domain", "zone", "folder_split"}`` (train or test folder)."""
    all_cloudy: list[str] = field(default_factory=list)
    """Patches under a cloud on every date."""
    corrupted: dict[str, list[str]] = field(default_factory=dict)
    """Corruption kind -> patch ids it was applied to (zone-wide kinds hit the zone)."""
    rules: str = ""


CORRUPTIONS: dict[str, str] = {
    "truncated": "aerial tif cut to half its size",
    "wrong_bands": "aerial tif written with 4 bands (no elevation)",
    "wrong_dtype": "aerial tif written as uint16 instead of uint8",
    "wrong_size": "aerial tif 16 px larger than the others",
    "bad_codes": "label mask with codes 0 and 25",
    "mask_crs": "label mask in EPSG:27572 instead of EPSG:2154",
    "mask_shift": "label mask geotransform shifted 3 m east",
    "no_centroid": "patch left out of the centroid json",
    "near_border": "centroid json puts the patch 1 px from the super-area's left border",
    "products_mismatch": "zone products.txt has one line more than the data has dates",
    "nan": "zone data stored as float32 with NaN in this patch's crop",
    "missing_mask": "label mask deleted",
}


@dataclass
class _Zone:
    split: str
    domain: str
    name: str
    x0: float
    y0: float
    height: int
    width: int
    fields: np.ndarray
    patches: list[tuple[str, int, int]]  # (patch id, row, col)


def _field_map(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A mosaic of rectangular fields, 3-7 px per side, each of a random field class."""
    def cuts(n: int) -> list[int]:
        out = [0]
        while out[-1] < n:
            out.append(out[-1] + int(rng.integers(3, 8)))
        return out
    out = np.zeros((h, w), dtype=np.uint8)
    rows = cuts(h)
    for r0, r1 in itertools.pairwise(rows):
        cols = cuts(w)
        for c0, c1 in itertools.pairwise(cols):
            out[r0:r1, c0:c1] = rng.choice(_FIELD_CODES, p=_FIELD_P)
    return out


def _plan_zones(rng: np.random.Generator, n: int, sat: int, patches_per_zone: int,
                test_fraction: float, first_id: int) -> list[_Zone]:
    """Domains, zones, super-area sizes and patch positions for ``n`` patches."""
    n_zones = math.ceil(n / patches_per_zone)
    n_domains = min(len(_DOMAINS), max(min(4, n_zones), math.ceil(n_zones / 2)))
    domain_idx = rng.permutation(len(_DOMAINS))[:n_domains]
    n_test = max(1, round(test_fraction * n_domains)) if n_domains >= 2 else 0
    zones: list[_Zone] = []
    pid = first_id
    left = n
    per_domain = Counter()
    for z in range(n_zones):
        d = z % n_domains
        name, xkm, ykm = _DOMAINS[int(domain_idx[d])]
        per_domain[d] += 1
        k = min(patches_per_zone, left)
        left -= k
        g = math.ceil(math.sqrt(k))
        rows_n = math.ceil(k / g)
        m = max(sat // 2, 6)
        h, w = 2 * m + (rows_n - 1) * _SPACING, 2 * m + (g - 1) * _SPACING
        zname = f"Z{per_domain[d] * 3 + int(rng.integers(0, 3))}_" \
                f"{_ZONE_KINDS[int(rng.integers(0, len(_ZONE_KINDS)))]}"
        patches = []
        for i in range(k):
            patches.append((f"IMG_{pid:06d}", m + (i // g) * _SPACING, m + (i % g) * _SPACING))
            pid += 1
        zones.append(_Zone("test" if d >= n_domains - n_test else "train", name, zname,
                           xkm * 1000.0 + 3000.0 * per_domain[d], ykm * 1000.0, h, w,
                           _field_map(rng, h, w), patches))
    return zones


def _texture(kind: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative texture in ground metres (``u`` east, ``v`` south of the tile corner)."""
    ph = rng.uniform(0, 2 * np.pi, size=2)
    if kind == "crowns":
        c = (0.5 + 0.5 * np.sin(2 * np.pi * u / 6 + ph[0])) * \
            (0.5 + 0.5 * np.sin(2 * np.pi * v / 6 + ph[1]))
        return 0.75 + 0.5 * c
    if kind == "rows":
        return np.where(np.sin(2 * np.pi * u / 6 + ph[0]) > 0, 1.15, 0.8)
    if kind == "furrows":
        return np.where(np.sin(2 * np.pi * v / 3 + ph[0]) > 0.3, 0.8, 1.05)
    if kind == "smooth":
        return 1.0 + 0.05 * np.sin(2 * np.pi * (u + v) / 40 + ph[0])
    return np.ones_like(u)


def _overlay(rng: np.random.Generator, codes: np.ndarray, u: np.ndarray,
             v: np.ndarray) -> None:
    """Draw the aerial-only objects (roads, buildings, pools, greenhouses) into ``codes``."""
    if rng.random() < 0.6:  # a road crossing the tile
        width, at = rng.uniform(6, 10), rng.uniform(10, _AERIAL_M - 10)
        along = u if rng.random() < 0.5 else v
        codes[np.abs(along - at) < width / 2] = 3
    for _ in range(int(rng.integers(0, 4))):
        s, x, y = rng.uniform(8, 16), rng.uniform(2, _AERIAL_M - 18), rng.uniform(2, _AERIAL_M - 18)
        codes[(u >= x) & (u < x + s) & (v >= y) & (v < y + s)] = 1
    if rng.random() < 0.3:
        s, x, y = rng.uniform(4, 8), rng.uniform(2, _AERIAL_M - 10), rng.uniform(2, _AERIAL_M - 10)
        codes[(u >= x) & (u < x + s) & (v >= y) & (v < y + s)] = 13
    if rng.random() < 0.15:
        x, y = rng.uniform(2, _AERIAL_M - 16), rng.uniform(2, _AERIAL_M - 12)
        codes[(u >= x) & (u < x + 14) & (v >= y) & (v < y + 10)] = 18


def _render_aerial(rng: np.random.Generator, zone: _Zone, row: int, col: int,
                   size: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """``(5, size, size)`` uint8 image, ``(size, size)`` codes, and the tile's upper-left."""
    px = _AERIAL_M / size
    cx, cy = zone.x0 + _S2_RES * col, zone.y0 - _S2_RES * row
    ulx, uly = cx - _AERIAL_M / 2, cy + _AERIAL_M / 2
    centres = (np.arange(size) + 0.5) * px
    u, v = np.meshgrid(centres, centres)  # metres east / south of the upper-left corner
    r = np.clip(((zone.y0 - (uly - v)) // _S2_RES).astype(int), 0, zone.height - 1)
    c = np.clip((((ulx + u) - zone.x0) // _S2_RES).astype(int), 0, zone.width - 1)
    codes = zone.fields[r, c].astype(np.uint8)
    _overlay(rng, codes, u, v)
    img = np.zeros((5, size, size), dtype=np.float64)
    light = rng.uniform(0.9, 1.1)
    ground = rng.uniform(10, 40)
    for code in np.unique(codes):
        sel = codes == code
        colour, elev, kind = _AERIAL_LOOK[int(code)]
        tex = _texture(kind, u, v, rng)[sel]
        for b in range(4):
            img[b][sel] = colour[b] * light * tex
        img[4][sel] = ground + elev * (tex if kind == "crowns" else 1.0)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), codes, (ulx, uly)


def _dates(rng: np.random.Generator, year: int) -> list[dt.date]:
    """1-3 acquisition dates in most months of ``year`` (a month is missing with p=0.1)."""
    out = set()
    for m in range(1, 13):
        if rng.random() < 0.1:
            continue
        for _ in range(int(rng.integers(1, 4))):
            out.add(dt.date(year, m, int(rng.integers(1, 29))))
    if not out:
        out.add(dt.date(year, 6, 15))
    return sorted(out)


def _disk(h: int, w: int, r: float, c: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.sqrt((yy + 0.5 - r) ** 2 + (xx + 0.5 - c) ** 2) / max(radius, 1e-6)


def _render_s2(rng: np.random.Generator, zone: _Zone, dates: list[dt.date], sat: int,
               cloudy_patches: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 10, H, W)`` uint16 reflectance and ``(T, 2, H, W)`` uint8 snow/cloud masks."""
    h, w = zone.height, zone.width
    t = len(dates)
    data = np.empty((t, 10, h, w), dtype=np.float64)
    masks = np.zeros((t, 2, h, w), dtype=np.float64)
    codes = np.unique(zone.fields)
    for i, d in enumerate(dates):
        doy = d.timetuple().tm_yday
        spectra = np.empty((10, h, w))
        for code in codes:
            sel = zone.fields == code
            if code == 5:
                spec = _WATER
            else:
                f = _veg_fraction(int(code), doy)
                spec = f * _VEG + (1 - f) * _SOIL
            spectra[:, sel] = spec[:, None]
        spectra *= rng.uniform(0.95, 1.05) * (1 + 0.03 * rng.standard_normal((10, h, w)))
        cloud = np.clip(rng.uniform(0, 15) + rng.normal(0, 3, size=(h, w)), 0, 100)
        if rng.random() < 0.3:
            dist = _disk(h, w, rng.uniform(0, h), rng.uniform(0, w),
                         rng.uniform(0.3, 0.9) * max(h, w))
            cloud = np.maximum(cloud, np.clip(110 - 80 * dist**2, 0, 100))
        for r, c in cloudy_patches:
            dist = _disk(h, w, r + rng.uniform(-1, 1), c + rng.uniform(-1, 1),
                         rng.uniform(0.5, 0.7) * sat)
            cloud = np.maximum(cloud, np.where(dist < 1, rng.uniform(80, 100), 0))
        snow = np.zeros((h, w))
        if zone.domain in _MOUNTAIN and (doy < 75 or doy > 330) and rng.random() < 0.7:
            a = rng.uniform(0, 2 * np.pi)
            yy, xx = np.mgrid[0:h, 0:w]
            side = (yy - h / 2) * np.cos(a) + (xx - w / 2) * np.sin(a) > 0
            snow = np.where(side, rng.uniform(80, 100), 0.0)
        a_cloud = np.clip((cloud - 20) / 80, 0, 1)[None]
        a_snow = np.clip((snow - 20) / 80, 0, 1)[None] * (1 - a_cloud)
        spectra = spectra * (1 - a_cloud - a_snow) + _CLOUD[:, None, None] * a_cloud \
            + _SNOW[:, None, None] * a_snow
        data[i] = spectra
        masks[i, 0], masks[i, 1] = snow, cloud
    return (np.clip(np.rint(data), 1, 20000).astype(np.uint16),
            np.clip(np.rint(masks), 0, 100).astype(np.uint8))


def _product_name(rng: np.random.Generator, d: dt.date, tile: str) -> str:
    sat = "S2A" if rng.random() < 0.5 else "S2B"
    hh, mm, ss = 10, int(rng.integers(0, 60)), int(rng.integers(0, 60))
    stamp = f"{d:%Y%m%d}T{hh:02d}{mm:02d}{ss:02d}"
    return (f"{sat}_MSIL2A_{stamp}_N0{int(rng.choice([300, 301, 500]))}_"
            f"R{int(rng.integers(1, 144)):03d}_T{tile}_{d:%Y%m%d}T{hh + 3:02d}{mm:02d}{ss:02d}")


def _folder(out: Path, kind: str, split: str) -> Path:
    return out / (f"flair_{kind}_train" if split == "train" else f"flair_2_{kind}_test")


def write_synthetic_flair2(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    size: int = REAL_PATCH_SIZE,
    sat_patch_size: int = DEFAULT_SAT_PATCH_SIZE,
    patches_per_zone: int = 4,
    test_fraction: float = 0.25,
    all_cloudy: Sequence[int] = (0,),
    corrupt: Mapping[str, int | Sequence[int]] | None = None,
    progress: bool = True,
) -> SynthInfo:
    """Write ``n`` synthetic FLAIR #2 patches in exactly the release's on-disk layout.

    Train zones go to ``flair_{aerial,labels,sen}_train``, test zones (about
    ``test_fraction`` of the domains) to ``flair_2_{aerial,labels,sen}_test``, plus
    ``flair-2_centroids_sp_to_patch.json``, ``flair-2_aerial_metadata.json``, a README and
    the stamp :data:`SYNTHETIC_STAMP` (size and crop size, read back by :class:`FLAIR2`).
    An aerial tile always covers 102.4 m (as the real 512 px x 0.2 m), so ``size`` sets its
    pixel size; the super-areas leave room for a ``sat_patch_size`` crop around every patch.

    Args:
        out_dir: folder to write into (created).
        n: number of patches (at most 24 domains' worth of zones).
        seed: random seed (same seed, same files).
        size: aerial/label pixels per side (the real 512; tests use 64).
        sat_patch_size: the S2 crop the super-areas must hold (even).
        patches_per_zone: patches per zone (one super-area each).
        test_fraction: share of domains written to the test folders.
        all_cloudy: indices of patches under a cloud on every date.
        corrupt: corruption kind -> patch index or indices (see ``CORRUPTIONS``).
        progress: print a line every ~10 % of the zones to stderr.

    Raises:
        ValueError: ``n`` or a size out of range, an unknown corruption or patch index.
    """
    if n < 1 or n > len(_DOMAINS) * 40 * patches_per_zone:
        raise ValueError(f"n: {n} out of range")
    if size < 8 or sat_patch_size < 2 or sat_patch_size % 2:
        raise ValueError(f"size {size} must be >= 8, sat_patch_size {sat_patch_size} even")
    by_patch: dict[int, list[str]] = {}
    for kind, value in (corrupt or {}).items():
        if kind not in CORRUPTIONS:
            raise ValueError(f"corrupt: unknown kind {kind!r}; known: {sorted(CORRUPTIONS)}")
        for i in [value] if isinstance(value, int) else list(value):
            if not 0 <= int(i) < n:
                raise ValueError(f"corrupt[{kind!r}]: patch index {i} outside 0..{n - 1}")
            by_patch.setdefault(int(i), []).append(kind)
    rng = np.random.default_rng([seed, 0xF1A12])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    zones = _plan_zones(rng, n, sat_patch_size, patches_per_zone, test_fraction,
                        first_id=int(rng.integers(1, 50)) * 1000)
    info = SynthInfo(n=n, out_dir=str(out), seed=seed, size=size,
                     sat_patch_size=sat_patch_size, rules=describe_synthetic_rules())
    lambert = CRS.from_epsg(2154)
    centroids: dict[str, list[int]] = {}
    metadata: dict[str, dict[str, Any]] = {}
    index = 0
    step = max(1, len(zones) // 10)
    for zi, zone in enumerate(zones):
        zrng = np.random.default_rng([seed, zi, 7])
        year = int(zone.domain[-4:])
        dates = _dates(zrng, year)
        ids = [p[0] for p in zone.patches]
        first = index
        cloudy = [(r, c) for k, (_, r, c) in enumerate(zone.patches) if first + k in all_cloudy]
        data, masks = _render_s2(zrng, zone, dates, sat_patch_size, cloudy)
        tile = _TILES[int(zrng.integers(0, len(_TILES)))]
        products = [_product_name(zrng, d, tile) for d in dates]
        aerial_date = dt.date(year, int(zrng.integers(4, 11)), int(zrng.integers(1, 29)))
        camera = _CAMERAS[int(zrng.integers(0, len(_CAMERAS)))]
        img_dir = _folder(out, "aerial", zone.split) / zone.domain / zone.name / "img"
        msk_dir = _folder(out, "labels", zone.split) / zone.domain / zone.name / "msk"
        sen_dir = _folder(out, "sen", zone.split) / zone.domain / zone.name / "sen"
        for d in (img_dir, msk_dir, sen_dir):
            d.mkdir(parents=True, exist_ok=True)
        zone_kinds: set[str] = set()
        for k, (pid, row, col) in enumerate(zone.patches):
            i = first + k
            kinds = by_patch.get(i, [])
            prng = np.random.default_rng([seed, i, 11])
            img, codes, (ulx, uly) = _render_aerial(prng, zone, row, col, size)
            px = _AERIAL_M / size
            info.patches[pid] = {"domain": zone.domain, "zone": zone.name,
                                 "folder_split": zone.split}
            if i in all_cloudy:
                info.all_cloudy.append(pid)
            for kind in kinds:
                info.corrupted.setdefault(kind, []).append(pid)
            _write_patch(img_dir, msk_dir, pid, img, codes, lambert, ulx, uly, px, kinds)
            centroids[f"{pid}.tif"] = [row, 1] if "near_border" in kinds else [row, col]
            if "no_centroid" in kinds:
                del centroids[f"{pid}.tif"]
            if "nan" in kinds:
                data = data.astype(np.float32)
                half = sat_patch_size // 2
                data[0, 0, row - half:row - half + 2, col - half:col - half + 2] = np.nan
            zone_kinds.update(kinds)
            hh, mm = int(prng.integers(7, 14)), int(prng.integers(0, 60))
            metadata[pid] = {
                "domain": zone.domain, "zone": zone.name,
                "patch_centroid_x": round(ulx + _AERIAL_M / 2, 2),
                "patch_centroid_y": round(uly - _AERIAL_M / 2, 2),
                "patch_centroid_z": round(float(prng.uniform(5, 1500)), 4),
                "date": aerial_date.isoformat(), "time": f"{hh:02d}h{mm:02d}",
                "camera": camera,
            }
        index += len(ids)
        stem = sen_dir / f"SEN2_sp_{zone.domain}_{zone.name}"
        np.save(f"{stem}_data.npy", data)
        np.save(f"{stem}_masks.npy", masks)
        if "products_mismatch" in zone_kinds:
            products.append(_product_name(zrng, dates[-1], tile))
        Path(f"{stem}_products.txt").write_text("\n".join(products) + "\n", encoding="utf-8")
        if progress and ((zi + 1) % step == 0 or zi + 1 == len(zones)):
            print(f"synthetic FLAIR #2: {zi + 1}/{len(zones)} zones ({index} patches)",
                  file=sys.stderr, flush=True)
    (out / CENTROIDS_NAME).write_text(json.dumps(centroids), encoding="utf-8")
    (out / METADATA_NAMES[0]).write_text(json.dumps(metadata), encoding="utf-8")
    (out / SYNTHETIC_STAMP).write_text(json.dumps(
        {"dataset": "flair2", "synthetic": True, "n": n, "seed": seed, "size": size,
         "sat_patch_size": sat_patch_size}), encoding="utf-8")
    (out / "README.txt").write_text(
        "SYNTHETIC DATA - not FLAIR #2.\n\nWritten by rsray.data.sources.flair2."
        f"write_synthetic_flair2(n={n}, seed={seed}, size={size}, "
        f"sat_patch_size={sat_patch_size}) in the FLAIR #2 on-disk layout; "
        f"{SYNTHETIC_STAMP} marks it.\n\n" + describe_synthetic_rules() + "\n",
        encoding="utf-8")
    return info


def _write_patch(img_dir: Path, msk_dir: Path, pid: str, img: np.ndarray, codes: np.ndarray,
                 crs: CRS, ulx: float, uly: float, px: float, kinds: list[str]) -> None:
    """Write ``IMG_<id>.tif`` and ``MSK_<id>.tif``, applying the corruptions ``kinds``."""
    if "wrong_bands" in kinds:
        img = img[:4]
    if "wrong_dtype" in kinds:
        img = img.astype(np.uint16) * 257  # 16-bit aerial instead of the release's 8-bit
    if "wrong_size" in kinds:
        img = np.pad(img, ((0, 0), (0, 16), (0, 16)), mode="edge")
    img_path = img_dir / f"{pid}.tif"
    write_geotiff(img_path, img, crs, ulx, uly, px)
    if "truncated" in kinds:
        truncate_file(img_path)
    mask = codes[None].astype(np.uint8)
    if "bad_codes" in kinds:
        mask = mask.copy()
        mask[0, :2, :2], mask[0, -2:, -2:] = 0, 25
    mcrs = CRS.from_epsg(27572) if "mask_crs" in kinds else crs
    shift = 3.0 if "mask_shift" in kinds else 0.0
    msk_path = msk_dir / f"MSK_{pid[4:]}.tif"
    write_geotiff(msk_path, mask, mcrs, ulx + shift, uly, px)
    if "missing_mask" in kinds:
        msk_path.unlink()
