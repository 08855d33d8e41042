"""One ``lc.csv`` row (raw or GLOBE Observer's cleaned export) -> a checked record, features.

A malformed date, number or code raises ``_RowError`` (kind + detail), which the reader turns
into a reject naming the file and row; :func:`winterness` is the seasonal feature.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from rsray.data.sources.globe.spec import (
    _DIR_COLUMN,
    CONDITIONS,
    DIRECTIONS,
    HORIZONTAL,
    MUC_LEVEL1,
)

__all__ = ["winterness"]

_CLASSIFICATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*MUC\s+(\d+)\b")
_MUC_CODE_RE = re.compile(r"^M(\d+)$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# GLOBE Observer's cleaned export (cleanup.py): lc_ prefix; these names change meaning.
_CLEANED_RENAMES = {
    "lc_MGRSLatitude": "latitude", "lc_MGRSLongitude": "longitude", "lc_elevation": "elevation",
    "lc_Latitude": "landcoversMeasurementLatitude",
    "lc_Longitude": "landcoversMeasurementLongitude",
    "lc_MeasurementElevation": "landcoversMeasurementElevation",
}
_CLEANED_TOP = {"measuredDate", "createDate", "updateDate", "publishDate", "organizationId",
                "organizationName", "siteId", "siteName", "countryName", "countryCode", "pid"}


# --------------------------------------------------------------------------------------------
# Parsing one CSV row
# --------------------------------------------------------------------------------------------


class _RowError(Exception):
    """A record is unusable; ``kind`` starts the reject reason."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.reason = f"{kind}: {detail}"


@dataclass
class _Record:
    """One parsed, label-carrying observation (before splits and imputation)."""

    patch_id: str
    where: str
    site_key: str
    site_id: str
    lat: float | None
    lon: float | None
    elevation: float | None
    day: date
    measured_at: datetime | None
    conditions: dict[str, int | None]
    muc: int | None
    cover: list[float] | None
    photos: dict[str, str]
    """Direction -> photo location (URL or path) for the directions that have one."""
    missing: dict[str, str]
    """Direction -> why it has no photo."""
    label: list[int]
    country_code: str
    country_name: str
    synthetic: bool


def _bool(row: Mapping[str, str], column: str) -> int | None:
    text = row.get(column, "").strip()
    if text == "":
        return None
    low = text.lower()
    if low in ("true", "1", "1.0"):
        return 1
    if low in ("false", "0", "0.0"):
        return 0
    raise _RowError("bad value", f"{column} is {text!r}, expected True or False")


def _number(row: Mapping[str, str], column: str, lo: float | None = None,
            hi: float | None = None, *, cleaned: bool = False) -> float | None:
    text = row.get(column, "").strip()
    if text == "" or text.lower() in ("nan", "null", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise _RowError("bad value", f"{column} is {text!r}, not a number") from None
    if cleaned and value == -9999:
        return None
    if not math.isfinite(value):
        raise _RowError("bad value", f"{column} is {text!r}, not a finite number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _RowError("bad value", f"{column} is {value:g}, outside {lo:g}..{hi:g}")
    return value


def _day(row: Mapping[str, str]) -> date:
    text = row.get("measuredDate", "").strip()
    try:
        if not _DATE_RE.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise _RowError("bad date", f"measuredDate {text!r} is not a YYYY-MM-DD date") \
            from None


def _measured_at(row: Mapping[str, str]) -> datetime | None:
    text = row.get("landcoversMeasuredAt", "").strip()
    if text == "":
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _RowError("bad date", f"landcoversMeasuredAt {text!r} is not an ISO date "
                                      "and time") from None


def _muc(row: Mapping[str, str]) -> int | None:
    text = row.get("landcoversMucCode", "").strip()
    if text == "":
        return None
    m = _MUC_CODE_RE.match(text)
    if not m:
        raise _RowError("bad value", f"landcoversMucCode {text!r} is not M<digits>")
    return int(m.group(1)[0])


def _cover(row: Mapping[str, str]) -> list[float] | None:
    """Mean share of each MUC class over the horizontal directions that have classifications."""
    per_dir = []
    for d in HORIZONTAL:
        column = f"landcovers{_DIR_COLUMN[d]}Classifications"
        text = row.get(column, "").strip()
        if not text:
            continue
        shares = [0.0] * len(MUC_LEVEL1)
        for entry in (e for e in text.split(";") if e.strip()):
            m = _CLASSIFICATION_RE.match(entry)
            if not m:
                raise _RowError("bad value", f"{column} entry {entry.strip()!r} is not "
                                               "'NN% MUC CC [...]'")
            shares[int(m.group(2)[0])] += float(m.group(1)) / 100.0
        per_dir.append(shares)
    if not per_dir:
        return None
    return [sum(s[c] for s in per_dir) / len(per_dir) for c in range(len(MUC_LEVEL1))]


def _from_cleaned(row: Mapping[str, str]) -> dict[str, str]:
    """A row of GLOBE Observer's cleaned export with the raw export's column names."""
    out: dict[str, str] = {}
    for key, value in row.items():
        if key in _CLEANED_RENAMES:
            name = _CLEANED_RENAMES[key]
        elif key.startswith("lc_") and key[3:] in _CLEANED_TOP:
            name = key[3:]
        elif key.startswith("lc_"):
            name = "landcovers" + key[3:]
        else:
            name = key
        out[name] = "" if value.strip() == "-9999" else value
    return out


def _features(r: _Record, fill_elev: float) -> dict[str, float]:
    """Every feature of :data:`FEATURES` for one record."""
    f: dict[str, float] = {}
    if r.lat is None or r.lon is None:
        f.update(latitude=0.0, longitude=0.0, abs_latitude=0.0, latlon_missing=1.0)
    else:
        f.update(latitude=r.lat, longitude=r.lon, abs_latitude=abs(r.lat), latlon_missing=0.0)
    f["elevation_m"] = r.elevation if r.elevation is not None else fill_elev
    f["elevation_missing"] = float(r.elevation is None)
    doy = r.day.timetuple().tm_yday
    angle = 2 * math.pi * (doy - 1) / 365.25
    f["doy_sin"], f["doy_cos"] = math.sin(angle), math.cos(angle)
    f["winterness"] = winterness(doy, r.lat)
    if r.measured_at is not None and r.lon is not None:
        t = r.measured_at
        if t.utcoffset() is not None:
            t = (t - t.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]
        hour = (t.hour + t.minute / 60 + t.second / 3600 + r.lon / 15.0) % 24.0
        f["solar_hour_sin"] = math.sin(2 * math.pi * hour / 24)
        f["solar_hour_cos"] = math.cos(2 * math.pi * hour / 24)
        f["time_missing"] = 0.0
    else:
        f.update(solar_hour_sin=0.0, solar_hour_cos=0.0, time_missing=1.0)
    for name, _ in CONDITIONS:
        value = r.conditions[name]
        f[name] = float(value or 0)
        f[f"{name}_missing"] = float(value is None)
    for c, cls in enumerate(MUC_LEVEL1):
        f[f"muc_{cls}"] = float(r.muc == c)
        f[f"cover_{cls}"] = r.cover[c] if r.cover is not None else 0.0
    f["muc_missing"] = float(r.muc is None)
    f["cover_missing"] = float(r.cover is None)
    for d in DIRECTIONS:
        f[f"photo_{d}"] = float(d in r.photos)
    return f


def winterness(doy: int, lat: float | None) -> float:
    """``cos(2 pi (doy - 15) / 365.25) * sign(lat) * min(|lat| / 30, 1)`` (0 without lat)."""
    if lat is None or lat == 0:
        return 0.0
    season = math.cos(2 * math.pi * (doy - 15) / 365.25)
    return season * math.copysign(1.0, lat) * min(abs(lat) / 30.0, 1.0)
