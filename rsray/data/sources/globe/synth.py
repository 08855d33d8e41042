"""The synthetic GLOBE Observer twin: an ``lc.csv`` export plus photos.

:func:`write_synthetic_globe` writes land-cover records with the 54 API columns and JPEG
photos whose labels depend on the photos and on the metadata (:func:`describe_synthetic_rules`).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rsray.data.sources.globe.api import LC_COLUMNS, write_lc_csv
from rsray.data.sources.globe.rows import winterness
from rsray.data.sources.globe.spec import (
    _DIR_COLUMN,
    DIRECTIONS,
    HORIZONTAL,
    SYNTHETIC_ORGANIZATION,
)

__all__ = [
    "GlobeSynthInfo",
    "describe_synthetic_rules",
    "write_synthetic_globe",
]

# --------------------------------------------------------------------------------------------
# Synthetic twin
# --------------------------------------------------------------------------------------------

_REGIONS: tuple[tuple[str, str, tuple[float, float], tuple[float, float], tuple[float, float]],
                ...] = (
    ("United States of America", "USA", (30, 48), (-122, -72), (0, 3200)),
    ("Canada", "CAN", (45, 60), (-125, -65), (0, 1800)),
    ("Norway", "NOR", (58, 70), (5, 25), (0, 1500)),
    ("Switzerland", "CHE", (45.8, 47.8), (6, 10.5), (300, 3500)),
    ("India", "IND", (10, 32), (70, 88), (0, 4500)),
    ("Kenya", "KEN", (-4, 4), (34, 41), (0, 3200)),
    ("Argentina", "ARG", (-50, -25), (-72, -58), (0, 4000)),
    ("New Zealand", "NZL", (-46, -35), (167, 178), (0, 2500)),
)
"""Country, ISO3 code and the latitude/longitude/elevation ranges synthetic sites come from."""

# (code, detail, description) of classification entries, as the GLOBE Observer app writes them
_MUC_ENTRIES: tuple[tuple[str, str, str], ...] = (
    ("01", "n", "Trees, Closely Spaced, Evergreen - Needle Leaved"),
    ("02", "b", "Trees, Closely Spaced, Deciduous - Broad Leaved"),
    ("11", "n", "Trees, Loosely Spaced, Evergreen - Needle Leaved"),
    ("12", "b", "Trees, Loosely Spaced, Deciduous - Broad Leaved"),
    ("22", "l", "Shrubs, Loosely Spaced, Tall Deciduous"),
    ("31", "l", "Shrubs, Loosely Spaced, Short Evergreen"),
    ("43", "", "Herbaceous/Grassland, Short Grass"),
    ("44", "", "Herbaceous/Grassland, Ferns or Flowers"),
    ("56", "", "Barren, Dirt/Other"),
    ("71", "", "Open Water, Freshwater"),
    ("91", "", "Urban, Residential Property"),
    ("93", "", "Urban, Roads and Parking"),
)
_TREE_TYPES = ("none", "evergreen", "deciduous")
_TREE_P = (0.25, 0.15, 0.6)
_VISIBLE_P = 0.5
_SNOW_VISIBLE_P = 0.4
_SNOW_T0 = 33.0
_RECORDS_PER_SITE = 4
_SITE_DEFINITION_P = 0.35
CORRUPTIONS = ("no_label", "bad_label", "bad_date", "bad_time", "bad_latitude",
                "missing_photo", "rejected_photo", "pending_photo", "corrupt_jpeg",
                "absent_file", "malformed_row")
_MGRS_BANDS = "CDEFGHJKLMNPQRSTUVWX"


def describe_synthetic_rules() -> str:
    """The rules linking the synthetic records' photos and metadata to their labels."""
    return f"""Synthetic GLOBE Observer land cover: labels need photos AND metadata.

Sites: {_RECORDS_PER_SITE} consecutive records per site; each site lies in one of
{len(_REGIONS)} countries' latitude/longitude/elevation boxes (20 % of sites have an empty
country, as many real records do). Records: measured 2021-2023 on a uniformly drawn day,
07-18 h local solar time; each record's view has a tree type: none ({_TREE_P[0]:.0%}),
evergreen ({_TREE_P[1]:.0%}) or deciduous ({_TREE_P[2]:.0%}), drawn per record (not per site,
so that a model cannot learn it from where the site is). About {_SITE_DEFINITION_P:.0%} of
sites also have one 'GLOBE Data Entry Site Definition' row (no photos, empty labels) that
prepare must reject.

winterness w = cos(2 pi (doy - 15) / 365.25) * sign(lat) * min(|lat| / 30, 1) (a metadata
feature; +1 in mid-winter away from the tropics, -1 in mid-summer).

snow_ice: each record is 'visible' with probability {_VISIBLE_P:.0%}.
  * visible: snow ~ Bernoulli({_SNOW_VISIBLE_P}) independent of everything else; the DOWN photo
    shows it (snow: bright white grainy surface; no snow: grass/soil/dry ground) and the UP
    photo shows the sky.
  * not visible: the UP and DOWN photos are dark (underexposed), identical in distribution
    for both labels; snow = [{_SNOW_T0} - 0.55 |lat| - 6.5 elevation_km - 12 w + N(0, 1.5) < 0],
    i.e. decided by latitude, elevation and season in the metadata.
  Photos alone solve only visible records, metadata alone only dark ones; together, all.

leaves_on_trees: the horizontal photos (N/S/E/W; trees stand on the horizon in 2-4 of them)
show the record's tree type: evergreen = dark-green cones, deciduous = round grey-brown crowns
drawn the SAME in every season, none = open land (buildings may appear anywhere).
  * none -> False; evergreen -> True;
  * deciduous -> True iff w + N(0, 0.1) < 0.2 (growing season), which only the metadata tells.

Distractors independent of both labels: sky colour, ground colour in horizontal photos,
buildings, the four condition booleans, MUC code and classifications, captions, user ids.
"""


@dataclass
class GlobeSynthInfo:
    """What :func:`write_synthetic_globe` wrote."""

    n: int
    out_dir: str
    csv: str
    photos_dir: str
    seed: int
    rows: int
    site_definitions: int
    rules: str
    latent: list[dict[str, Any]] = field(default_factory=list)
    """Per observation record: ``patch_id``, ``visible``, ``tree_type``, ``winterness``,
    ``snow``, ``leaves``, ``snow_by_metadata`` (the metadata rule's answer)."""
    corrupted: dict[str, list[str]] = field(default_factory=dict)
    """Corruption kind -> patch ids it was applied to."""


@dataclass(frozen=True)
class _Site:
    index: int
    site_id: int
    name: str
    country: str
    code: str
    lat: float
    lon: float
    elevation: float
    user_id: int
    organization_id: int
    definition: bool


def _mgrs_like(lat: float, lon: float, rng: np.random.Generator) -> str:
    """A site name shaped like the MGRS references GLOBE uses (e.g. ``16SEJ191374``)."""
    zone = int((lon + 180) // 6) + 1
    band = _MGRS_BANDS[min(max(int((lat + 80) // 8), 0), len(_MGRS_BANDS) - 1)]
    letters = "".join(rng.choice(list("ABCDEFGHJKLMNPQRSTUVWXYZ"), size=2))
    return f"{zone}{band}{letters}{int(rng.integers(0, 1_000_000)):06d}"


def _site(seed: int, s: int) -> _Site:
    rng = np.random.default_rng([seed, 0x6C0BE, s])
    region = _REGIONS[int(rng.integers(0, len(_REGIONS)))]
    name, code, (la0, la1), (lo0, lo1), (e0, e1) = region
    lat = float(rng.uniform(la0, la1))
    lon = float(rng.uniform(lo0, lo1))
    elevation = float(e0 + (e1 - e0) * rng.random() ** 1.6)
    if rng.random() < 0.2:
        name, code = "", ""
    return _Site(index=s, site_id=300_000 + s, name=_mgrs_like(lat, lon, rng), country=name,
                 code=code, lat=round(lat, 6), lon=round(lon, 6), elevation=round(elevation, 1),
                 user_id=int(rng.integers(10_000_000, 99_999_999)),
                 organization_id=int(rng.integers(1_000_000, 99_999_999)),
                 definition=bool(rng.random() < _SITE_DEFINITION_P))


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    return rng.normal(0.0, sigma, size=shape).astype(np.float32)


def _dark(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(6, 26) + rng.uniform(-4, 4, size=3)
    return np.broadcast_to(base, (h, w, 3)).astype(np.float32) + _noise(rng, (h, w, 3), 4)


def _sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    if rng.random() < 0.3:  # overcast
        top = np.array([175, 180, 188], np.float32) + rng.uniform(-15, 15)
        bottom = top + 15
    else:
        top = np.array([70, 120, 210], np.float32) + rng.uniform(-20, 20, size=3)
        bottom = np.array([170, 200, 235], np.float32) + rng.uniform(-15, 15, size=3)
    sky = np.broadcast_to(top + (bottom - top) * t, (h, w, 3)).astype(np.float32)
    return sky + _noise(rng, (h, w, 3), 3)


def _ground_colour(rng: np.random.Generator) -> np.ndarray:
    colours = ((80, 120, 55), (115, 90, 60), (160, 145, 100), (95, 105, 70))
    return np.array(colours[int(rng.integers(0, len(colours)))], np.float32) + \
        rng.uniform(-12, 12, size=3)


def _down_photo(rng: np.random.Generator, h: int, w: int, visible: bool, snow: bool) -> np.ndarray:
    if not visible:
        return _dark(rng, h, w)
    if snow:
        img = np.array([232, 236, 245], np.float32) + _noise(rng, (h, w, 3), 6)
        grains = rng.random((h, w)) < 0.06
        img[grains] -= np.array([40, 35, 20], np.float32)
        return img
    img = np.broadcast_to(_ground_colour(rng), (h, w, 3)).astype(np.float32)
    blobs = _noise(rng, (h // 4 + 1, w // 4 + 1, 1), 18).repeat(4, 0).repeat(4, 1)[:h, :w]
    return img + blobs + _noise(rng, (h, w, 3), 8)


def _up_photo(rng: np.random.Generator, h: int, w: int, visible: bool) -> np.ndarray:
    if not visible:
        return _dark(rng, h, w)
    img = _sky(rng, h, w)
    for _ in range(int(rng.integers(0, 4))):  # clouds
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(h / 10, h / 4), rng.uniform(w / 8, w / 3)
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img[mask] = 0.5 * img[mask] + 0.5 * np.array([240, 242, 246], np.float32)
    return img


def _horizontal_photo(rng: np.random.Generator, h: int, w: int, trees: str | None) -> np.ndarray:
    horizon = int(h * rng.uniform(0.42, 0.55))
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = _sky(rng, horizon, w)
    img[horizon:] = _ground_colour(rng) + _noise(rng, (h - horizon, w, 3), 10)
    yy, xx = np.mgrid[0:h, 0:w]
    if rng.random() < 0.3:  # a building, in any direction
        bw, bh = int(rng.uniform(0.15, 0.3) * w), int(rng.uniform(0.15, 0.3) * h)
        x0 = int(rng.integers(0, w - bw))
        img[horizon - bh:horizon, x0:x0 + bw] = np.array([150, 150, 156], np.float32)
        for wy in range(horizon - bh + 3, horizon - 4, 7):
            for wx in range(x0 + 3, x0 + bw - 4, 7):
                img[wy:wy + 3, wx:wx + 3] = 60.0
    if trees is not None:
        for _ in range(int(rng.integers(2, 6))):
            cx = rng.uniform(0.05, 0.95) * w
            th = rng.uniform(0.28, 0.45) * h
            base = horizon + rng.uniform(0, 0.06) * h
            top = base - th
            if trees == "evergreen":
                half = (yy - top) / th * (th * 0.35)
                mask = (yy >= top) & (yy <= base) & (np.abs(xx - cx) <= half)
                colour = np.array([25, 75, 35], np.float32) + rng.uniform(-6, 6, size=3)
            else:
                trunk = (yy >= base - th * 0.45) & (yy <= base) & (np.abs(xx - cx) <= th * 0.05)
                img[trunk] = np.array([90, 70, 50], np.float32)
                cy, r = top + th * 0.3, th * 0.32
                mask = ((yy - cy) / r) ** 2 + ((xx - cx) / (r * 1.2)) ** 2 <= 1
                colour = np.array([128, 118, 105], np.float32) + rng.uniform(-6, 6, size=3)
            img[mask] = colour + _noise(rng, (int(mask.sum()), 3), 7)
    return img + _noise(rng, (h, w, 3), 4)


def _jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB").save(
        buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _classifications(rng: np.random.Generator) -> str:
    k = int(rng.integers(1, 4))
    picks = rng.choice(len(_MUC_ENTRIES), size=k, replace=False)
    parts = []
    for i in picks:
        code, detail, desc = _MUC_ENTRIES[int(i)]
        pct = int(rng.choice([10, 20, 30, 50, 70, 80, 100]))
        det = f" ({detail})" if detail else ""
        parts.append(f"{pct}% MUC {code}{det} [{desc}]")
    return "; ".join(parts)


def _extra(rng: np.random.Generator, d: str) -> str:
    if rng.random() < 0.3:
        return "(source: camera)"
    horizon = {"up": rng.uniform(80, 89), "down": rng.uniform(-89, -80)}.get(
        d, rng.uniform(-3, 9))
    return f"(source: app, (compassData.horizon: {horizon:.1f}))"


def _indices(value: int | Sequence[int], n: int, kind: str) -> list[int]:
    vals = [value] if isinstance(value, int) else list(value)
    for v in vals:
        if not isinstance(v, int) or not 0 <= v < n:
            raise ValueError(f"corrupt[{kind!r}]: record index {v!r} is outside 0..{n - 1}")
    return vals


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def write_synthetic_globe(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    photo_px: tuple[int, int] = (128, 96),
    corrupt: Mapping[str, int | Sequence[int]] | None = None,
    progress: bool = True,
) -> GlobeSynthInfo:
    """Write ``n`` synthetic observation records as GLOBE Observer's ``lc.csv`` + photos.

    ``out_dir/lc.csv`` has exactly the export's columns and formats (unnamed index column,
    pandas' CSV; photo URLs ``https://data.globe.gov/system/photos/YYYY/MM/DD/<id>/original.jpg``)
    plus about one 'Site Definition' row per three sites; the JPEGs (``photo_px`` = width,
    height) lie at ``out_dir/photos/YYYY/MM/DD/<id>/original.jpg``, so
    ``GlobeObserver(out/"lc.csv", photos_dir=out/"photos")`` reads them (or serve
    ``out_dir/photos`` under ``/system/photos/`` and fetch them). Every record carries
    ``organizationName`` = :data:`SYNTHETIC_ORGANIZATION`. Labels follow
    :func:`describe_synthetic_rules`. Record ``i`` depends only on ``seed`` and ``i``.

    Args:
        out_dir: folder to write into (created).
        n: observation records (site-definition rows come on top).
        seed: random seed.
        photo_px: photo width and height in pixels.
        corrupt: corruption kind -> record index or indices, to test validation. Kinds:
            no_label, bad_label, bad_date, bad_time, bad_latitude, missing_photo,
            rejected_photo, pending_photo, corrupt_jpeg, absent_file, malformed_row.
        progress: print a line about every 10 % to stderr.

    Raises:
        ValueError: ``n`` < 1, a bad photo size, or an unknown corruption kind / index.
    """
    if n < 1:
        raise ValueError(f"n: {n} must be >= 1")
    width, height = photo_px
    if width < 16 or height < 16:
        raise ValueError(f"photo_px: {photo_px} must be at least 16 x 16")
    corrupt = dict(corrupt or {})
    unknown = sorted(set(corrupt) - set(CORRUPTIONS))
    if unknown:
        raise ValueError(f"corrupt: unknown kind(s) {unknown}; known: {list(CORRUPTIONS)}")
    by_record: dict[int, list[str]] = {}
    for kind, value in corrupt.items():
        for i in _indices(value, n, kind):
            by_record.setdefault(i, []).append(kind)

    out = Path(out_dir)
    photos_root = out / "photos"
    photos_root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    latent: list[dict[str, Any]] = []
    corrupted: dict[str, list[str]] = {}
    malformed_ids: list[int] = []
    step = max(1, n // 10)
    definitions = 0
    for i in range(n):
        site = _site(seed, i // _RECORDS_PER_SITE)
        rng = np.random.default_rng([seed, i, 0x6C])
        year = int(rng.integers(2021, 2024))
        day = date(year, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
        doy = day.timetuple().tm_yday
        solar = float(rng.uniform(7, 18))
        utc = datetime(day.year, day.month, day.day) + timedelta(hours=solar - site.lon / 15)
        w = winterness(doy, site.lat)
        temp = _SNOW_T0 - 0.55 * abs(site.lat) - 6.5 * site.elevation / 1000 - 12 * w + \
            float(rng.normal(0, 1.5))
        snow_meta = bool(temp < 0)
        visible = bool(rng.random() < _VISIBLE_P)
        snow = bool(rng.random() < _SNOW_VISIBLE_P) if visible else snow_meta
        season_draw = w + float(rng.normal(0, 0.1))
        tree_type = _TREE_TYPES[int(rng.choice(3, p=_TREE_P))]
        leaves = {"none": False, "evergreen": True, "deciduous": season_draw < 0.2}[tree_type]
        land_cover_id = 500_000 + 2 * i
        patch_id = f"globe-{land_cover_id}"
        kinds = by_record.get(i, [])
        for kind in kinds:
            corrupted.setdefault(kind, []).append(patch_id)

        if site.definition and i % _RECORDS_PER_SITE == 0:
            definitions += 1
            rows.append(_definition_row(site, day, rng, land_cover_id + 1, i))

        # photos
        tree_dirs = set()
        if tree_type != "none":
            k = int(rng.integers(2, 5))
            tree_dirs = set(rng.choice(HORIZONTAL, size=k, replace=False).tolist())
        urls: dict[str, str] = {}
        for k_dir, d in enumerate(DIRECTIONS):
            if d == "up":
                img = _up_photo(rng, height, width, visible)
            elif d == "down":
                img = _down_photo(rng, height, width, visible, snow)
            else:
                img = _horizontal_photo(rng, height, width,
                                        tree_type if d in tree_dirs else None)
            photo_id = 5_000_000 + 6 * i + k_dir
            rel = f"{day:%Y/%m/%d}/{photo_id}/original.jpg"
            data = _jpeg(img)
            if d == "north" and "corrupt_jpeg" in kinds:
                data = data[: len(data) // 3]
            target = photos_root / rel
            if not (d == "east" and "absent_file" in kinds):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            urls[d] = f"https://data.globe.gov/system/photos/{rel}"
        if "missing_photo" in kinds:
            urls["north"] = ""
        if "rejected_photo" in kinds:
            urls["down"] = "rejected"
        if "pending_photo" in kinds:
            urls["up"] = "pending"

        created = utc + timedelta(minutes=int(rng.integers(5, 600)))
        row: dict[str, Any] = {
            "protocol": "land_covers",
            "measuredDate": day.isoformat(),
            "createDate": _stamp(created),
            "updateDate": _stamp(created),
            "publishDate": _stamp(created + timedelta(days=int(rng.integers(1, 60)))),
            "organizationId": site.organization_id,
            "organizationName": SYNTHETIC_ORGANIZATION,
            "siteId": site.site_id,
            "siteName": site.name,
            "countryName": site.country or None,
            "countryCode": site.code or None,
            "latitude": site.lat,
            "longitude": site.lon,
            "elevation": site.elevation,
            "pid": 190_000_000 + 2 * i,
            "landcoversDataSource": "GLOBE Observer App",
            "landcoversMeasuredAt": _stamp(utc),
            "landcoversSnowIce": snow,
            "landcoversLeavesOnTrees": leaves,
            "landcoversRainingSnowing": bool(rng.random() < 0.1),
            "landcoversDryGround": bool(rng.random() < 0.6),
            "landcoversMuddy": bool(rng.random() < 0.1),
            "landcoversStandingWater": bool(rng.random() < 0.05),
            "landcoversUserid": site.user_id,
            "landcoversLandCoverId": land_cover_id,
            "landcoversFieldNotes": "(none)",
            "landcoversMeasurementLatitude": round(site.lat + float(rng.normal(0, 2e-4)), 4),
            "landcoversMeasurementLongitude": round(site.lon + float(rng.normal(0, 2e-4)), 4),
            "landcoversMeasurementElevation": round(site.elevation + float(rng.normal(0, 3)), 1),
        }
        entry = _MUC_ENTRIES[int(rng.integers(0, len(_MUC_ENTRIES)))]
        row["landcoversMucCode"] = f"M{entry[0]}"
        row["landcoversMucDescription"] = entry[2]
        row["landcoversMucDetails"] = entry[1] or None
        for d in DIRECTIONS:
            col = _DIR_COLUMN[d]
            row[f"landcovers{col}PhotoUrl"] = urls[d] or None
            row[f"landcovers{col}Caption"] = None
            row[f"landcovers{col}ExtraData"] = _extra(rng, d)
            if d in HORIZONTAL:
                row[f"landcovers{col}Classifications"] = _classifications(rng)
        if "no_label" in kinds:
            row["landcoversSnowIce"] = None
        if "bad_label" in kinds:
            row["landcoversLeavesOnTrees"] = "maybe"
        if "bad_date" in kinds:
            row["measuredDate"] = f"{day.year}-13-45"
        if "bad_time" in kinds:
            row["landcoversMeasuredAt"] = "yesterday afternoon"
        if "bad_latitude" in kinds:
            row["latitude"] = "north"
        if "malformed_row" in kinds:
            malformed_ids.append(land_cover_id)
        rows.append(row)
        latent.append({"patch_id": patch_id, "visible": visible, "tree_type": tree_type,
                       "winterness": w, "snow": snow, "leaves": leaves,
                       "snow_by_metadata": snow_meta, "site": site.site_id})
        if progress and ((i + 1) % step == 0 or i + 1 == n):
            print(f"synthetic GLOBE Observer: {i + 1}/{n} records ({100 * (i + 1) // n} %)",
                  file=sys.stderr, flush=True)

    csv_path = out / "lc.csv"
    write_lc_csv(rows, str(csv_path))
    if malformed_ids:
        _break_rows(csv_path, malformed_ids)
    (out / "README.txt").write_text(
        "SYNTHETIC DATA - not GLOBE Observer observations.\n\n"
        f"Written by rsray.data.sources.globe.write_synthetic_globe(n={n}, seed={seed}) in the "
        "exact format of GLOBE Observer's lc.csv export of the GLOBE API; photo URLs point at "
        "data.globe.gov but the photos are the JPEGs under photos/ (read them with "
        "--photos-dir photos). Every record's organizationName is "
        f"'{SYNTHETIC_ORGANIZATION}'.\n\n" + describe_synthetic_rules(), encoding="utf-8")
    return GlobeSynthInfo(n=n, out_dir=str(out), csv=str(csv_path), photos_dir=str(photos_root),
                          seed=seed, rows=len(rows), site_definitions=definitions,
                          rules=describe_synthetic_rules(), latent=latent, corrupted=corrupted)


def _definition_row(site: _Site, day: date, rng: np.random.Generator, land_cover_id: int,
                    i: int) -> dict[str, Any]:
    """A 'GLOBE Data Entry Site Definition' row: no photos, no conditions, no labels."""
    t = datetime(day.year, day.month, day.day) + timedelta(hours=float(rng.uniform(8, 17)))
    entry = _MUC_ENTRIES[int(rng.integers(0, len(_MUC_ENTRIES)))]
    return {
        "protocol": "land_covers", "measuredDate": day.isoformat(),
        "createDate": _stamp(t), "updateDate": _stamp(t),
        "publishDate": _stamp(t + timedelta(days=30)),
        "organizationId": site.organization_id, "organizationName": SYNTHETIC_ORGANIZATION,
        "siteId": site.site_id, "siteName": site.name, "countryName": site.country or None,
        "countryCode": site.code or None, "latitude": site.lat, "longitude": site.lon,
        "elevation": site.elevation, "pid": 190_000_000 + 2 * i + 1,
        "landcoversMucCode": f"M{entry[0]}", "landcoversMucDescription": entry[2] + " ",
        "landcoversDataSource": "GLOBE Data Entry Site Definition",
        "landcoversMeasuredAt": t.isoformat(timespec="microseconds"),
        "landcoversLandCoverId": land_cover_id,
    }


def _break_rows(csv_path: Path, land_cover_ids: Sequence[int]) -> None:
    """Append two stray fields to the rows of these land-cover ids (malformed CSV rows)."""
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    ids = {str(v) for v in land_cover_ids}
    col = 1 + LC_COLUMNS.index("landcoversLandCoverId")
    for k, line in enumerate(lines[1:], start=1):
        fields = next(csv.reader([line]))
        if len(fields) > col and fields[col] in ids:
            lines[k] = line.rstrip("\r\n") + ",stray,fields\n"
    csv_path.write_text("".join(lines), encoding="utf-8")
