"""FLAIR #2: aerial 5-band tiles + Sentinel-2 super-area time series, 13-class segmentation.

On disk (the layout of the official FLAIR #2 release, IGNF/FLAIR-2)::

    <root>/flair_aerial_train/<domain>/<zone>/img/IMG_<id>.tif       5 x 512 x 512 uint8
    <root>/flair_labels_train/<domain>/<zone>/msk/MSK_<id>.tif       1 band, codes 1-19
    <root>/flair_sen_train/<domain>/<zone>/sen/SEN2_sp_<domain>_<zone>_data.npy      T x 10 x H x W
                                              SEN2_sp_<domain>_<zone>_masks.npy     T x 2 x H x W
                                              SEN2_sp_<domain>_<zone>_products.txt  T lines
    <root>/flair_2_aerial_test/...  flair_2_labels_test/...  flair_2_sen_test/...
    <root>/flair-2_centroids_sp_to_patch.json    "IMG_<id>.tif" -> [row, col] in the super-area
    <root>/flair-2_aerial_metadata.json          optional: date, camera, centroid of each tile

``<domain>`` is ``D<departement>_<year>`` (``D004_2021``), ``<zone>`` ``Z<n>_<2 letters>``.
The aerial tile (R, G, B, NIR, elevation; 0.2 m, EPSG:2154) covers about 10.24 Sentinel-2
pixels; :class:`FLAIR2` crops ``sat_patch_size`` (default 40) S2 pixels around its centroid
from the zone's super-area, memory-mapping the (large) ``.npy`` files so that one patch never
loads its whole zone, drops cloudy/snowy dates and averages the cloudless dates per month
(as the FLAIR #2 baseline and the LF-DLM paper do). A patch whose every date is cloudy keeps
its ``fallback_dates`` least cloudy dates and is flagged (``meta_all_cloudy = "1"``, counted
in the manifest's ``info.flags``); the reference loader crashes there.

Labels: codes 1-12 are the 12 classes, codes 13-19 (swimming pool, snow, clear cut, mixed,
ligneous, greenhouse, other) are merged into ``other``; then minus one, so classes 0..12.
``other`` is left out of mIoU (``exclude_from_mean``), as in the paper.

:func:`write_synthetic_flair2` writes a synthetic twin in exactly this layout whose classes
are separable from the aerial image only, from the S2 time series only, or from both (see
:func:`describe_synthetic_rules`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rasterio.crs import CRS

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.schema import BandGroup, DatasetSpec, Discovery, ModalitySpec, Reject, Sample
from rsray.data.sources._raster import crs_text, grid_of, lat_lon, read_rasters, write_geotiff
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError

__all__ = [
    "AERIAL_BANDS",
    "CODE_NAMES",
    "FLAIR2",
    "FLAIR2_CLASSES",
    "S2_BANDS",
    "SYNTHETIC_STAMP",
    "SynthInfo",
    "cloud_shares",
    "codes_to_classes",
    "describe_synthetic_rules",
    "flair2_spec",
    "load_aerial_metadata",
    "monthly_average",
    "parse_products",
    "select_dates",
    "write_synthetic_flair2",
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
_PRODUCT_DATE_RE = re.compile(r"_(\d{8})T\d{6}")


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


# --------------------------------------------------------------------------------------------
# Sentinel-2 helpers: dates, cloud filter, monthly means
# --------------------------------------------------------------------------------------------


def parse_products(path: str) -> list[dt.date]:
    """Acquisition date of every line of a ``_products.txt`` (``..._YYYYMMDDThhmmss_...``).

    Raises:
        PatchError: the file is missing/unreadable, or a line holds no product date.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise PatchError(path, "Sentinel-2 products file missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PatchError(path, f"Sentinel-2 products file unreadable: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    dates = []
    for i, line in enumerate(lines, 1):
        m = _PRODUCT_DATE_RE.search(line)
        try:
            if m is None:
                raise ValueError
            s = m.group(1)
            dates.append(dt.date(int(s[:4]), int(s[4:6]), int(s[6:])))
        except ValueError:
            raise PatchError(path, f"line {i} ({line.strip()[:70]!r}) is not a Sentinel-2 "
                                   "product name with a _YYYYMMDDThhmmss date") from None
    return dates


def cloud_shares(masks: np.ndarray, threshold: int = 60) -> np.ndarray:
    """Per date, the share of pixels whose snow *or* cloud probability is ``>= threshold``.

    ``masks`` is ``(T, 2, h, w)`` (channel 0 snow, 1 cloud, 0-100). The FLAIR #2 baseline adds
    the snow and cloud pixel counts (a pixel with both counts twice); the union used here
    never exceeds 1.
    """
    covered = (masks >= threshold).any(axis=1)
    return covered.reshape(covered.shape[0], -1).mean(axis=1)


def select_dates(shares: np.ndarray, max_share: float = 0.5,
                 fallback: int = 2) -> tuple[np.ndarray, bool]:
    """Indices of the dates to keep (chronological) and whether the series was all cloudy.

    A date is kept when its cloudy share is below ``max_share``. When none is, the
    ``fallback`` least cloudy dates are kept (ties: earlier first) and the flag is ``True``.
    """
    keep = np.flatnonzero(shares < max_share)
    if keep.size:
        return keep, False
    order = np.argsort(shares, kind="stable")[:max(1, fallback)]
    return np.sort(order), True


def monthly_average(series: np.ndarray, dates: Sequence[dt.date]) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Mean image per calendar month present, chronologically.

    Returns ``(M, C, h, w)`` float64 means and ``(M,)`` day of year of the 15th of each month
    (the date the FLAIR #2 baseline gives a monthly mean).
    """
    months = sorted({(d.year, d.month) for d in dates})
    out = np.empty((len(months), *series.shape[1:]), dtype=np.float64)
    doys = np.empty(len(months), dtype=np.int32)
    for i, (y, m) in enumerate(months):
        idx = [j for j, d in enumerate(dates) if (d.year, d.month) == (y, m)]
        out[i] = series[idx].astype(np.float64).mean(axis=0)
        doys[i] = dt.date(y, m, 15).timetuple().tm_yday
    return out, doys


@lru_cache(maxsize=16)
def _memmap(path: str, mtime_ns: int, size: int) -> np.ndarray:
    del mtime_ns, size  # part of the cache key only: a rewritten file is mapped again
    return np.load(path, mmap_mode="r", allow_pickle=False)


def open_npy(path: str, what: str) -> np.ndarray:
    """Memory-map a ``.npy`` file (cached per process; only touched pages are read).

    Raises:
        PatchError: missing, truncated or not a plain ``.npy`` array.
    """
    try:
        st = os.stat(path)
        return _memmap(path, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        raise PatchError(path, f"Sentinel-2 {what} file missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise PatchError(path, f"Sentinel-2 {what} file unreadable or truncated: {exc}") from None


# --------------------------------------------------------------------------------------------
# Aerial metadata (optional)
# --------------------------------------------------------------------------------------------

_TIME_RE = re.compile(r"^(\d{1,2})h(\d{2})$")


def load_aerial_metadata(path: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Parse ``flair-2_aerial_metadata.json`` (FLAIR-1 has the same schema).

    Returns ``(entries, problems)``: ``"IMG_<id>"`` -> ``{domain, zone, x, y, z, date, time,
    camera}`` for the valid entries, and key -> reason for the invalid ones.

    Raises:
        RsrayError: the file is not JSON or not an object of objects.
    """
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RsrayError(f"{path}: aerial metadata is not readable JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise RsrayError(f"{path}: aerial metadata must be a JSON object keyed by IMG_<id>")
    entries: dict[str, dict[str, Any]] = {}
    problems: dict[str, str] = {}
    for key, v in raw.items():
        try:
            if not isinstance(v, dict):
                raise ValueError("entry is not an object")
            x, y = float(v["patch_centroid_x"]), float(v["patch_centroid_y"])
            z = float(v.get("patch_centroid_z", float("nan")))
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError("centroid is not finite")
            date = dt.date.fromisoformat(str(v["date"]))
            time = str(v.get("time", ""))
            if time and not _TIME_RE.match(time):
                raise ValueError(f"time {time!r} is not like 08h06")
            entries[str(key)] = {"domain": str(v["domain"]), "zone": str(v["zone"]),
                                 "x": x, "y": y, "z": z, "date": date.isoformat(),
                                 "time": time, "camera": str(v.get("camera", ""))}
        except KeyError as exc:
            problems[str(key)] = f"aerial metadata entry lacks {exc.args[0]!r}"
        except (TypeError, ValueError) as exc:
            problems[str(key)] = f"aerial metadata entry is invalid: {exc}"
    return entries, problems


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


class FLAIR2:
    """FLAIR #2 reader: lists domains/zones/patches, assigns splits, reads and validates.

    ``discover`` runs on the driver (folder listings, the centroid json, the small
    ``_products.txt`` of each zone, the optional aerial metadata json); ``read`` runs in Ray
    tasks. Paths are local (or mounted, e.g. mountpoint-s3): the super-area ``.npy`` files
    are memory-mapped.

    Splits: ``train`` and ``test`` are the official folders (``test`` only when its label
    folder exists); ``val`` is a seeded ``val_fraction`` of the train *domains* (the
    baseline's 20 %), or the domains named in ``val_domains``. Hold-out keys
    (``--holdout``): ``domain``, ``zone``, ``departement``, ``year``, and ``lat``/``lon``
    when the aerial metadata json is there.

    Border: a centroid whose ``sat_patch_size`` crop leaves the super-area is padded with the
    edge values (``border="pad"``, flagged ``meta_s2_border_padded``) or rejected
    (``border="reject"``); a centroid outside the super-area is always rejected.
    """

    classes: tuple[str, ...] = FLAIR2_CLASSES
    aerial_bands: tuple[str, ...] = AERIAL_BANDS
    s2_bands: tuple[str, ...] = S2_BANDS
    rgb_bands: tuple[str, ...] = ("R", "G", "B")

    def __init__(
        self,
        root: str | Path,
        *,
        sat_patch_size: int | None = None,
        patch_size: int | None = None,
        filter_clouds: bool = True,
        cloud_threshold: int = 60,
        max_cloud_share: float = 0.5,
        fallback_dates: int = 2,
        monthly_average: bool = True,
        border: Literal["pad", "reject"] = "pad",
        val_fraction: float = 0.2,
        val_domains: Sequence[str] | None = None,
        split_seed: int = 0,
        metadata: str | None = "auto",
        folders: Mapping[str, str] | None = None,
        synthetic: bool | None = None,
    ) -> None:
        """Describe a FLAIR #2 copy; nothing is read until :meth:`discover`.

        Args:
            root: folder holding the ``flair_*`` folders and the centroid json.
            sat_patch_size: S2 pixels per side cropped around each patch (even, >= 2);
                ``None``: the synthetic stamp's value, else 40 (the baseline's).
            patch_size: aerial/label pixels per side; ``None``: the synthetic stamp's value,
                else 512. Tiles of another size are rejected.
            filter_clouds: drop dates whose cloud/snow share in the crop is too high.
            cloud_threshold: probability (0-100) from which a pixel counts as cloud or snow.
            max_cloud_share: a date is kept when its share of such pixels is below this.
            fallback_dates: dates kept (least cloudy first) when every date is cloudy.
            monthly_average: average the kept dates per calendar month (so T <= 12);
                ``False`` keeps every kept date (``max_len`` = the most dates of any zone).
            border: ``pad`` or ``reject`` crops that leave the super-area.
            val_fraction: share of train domains that form ``val`` (0 for none).
            val_domains: explicit validation domains (overrides ``val_fraction``).
            split_seed: seed of the validation-domain draw.
            metadata: aerial metadata json path, ``"auto"`` (look in ``root``) or ``None``.
            folders: overrides of folder paths, keys ``aerial_train``, ``labels_train``,
                ``sen_train``, ``aerial_test``, ``labels_test``, ``sen_test``, ``centroids``.
            synthetic: mark the data synthetic; ``None`` detects the synthetic stamp.

        Raises:
            ConfigError: an argument is out of range.
        """
        if border not in ("pad", "reject"):
            raise ConfigError(f"border: {border!r} is not one of pad, reject")
        if not 0 <= cloud_threshold <= 100:
            raise ConfigError(f"cloud_threshold: {cloud_threshold} must be in 0..100")
        if not 0 < max_cloud_share <= 1:
            raise ConfigError(f"max_cloud_share: {max_cloud_share} must be in (0, 1]")
        if fallback_dates < 1:
            raise ConfigError(f"fallback_dates: {fallback_dates} must be >= 1")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"val_fraction: {val_fraction} must be in [0, 1)")
        unknown = set(folders or {}) - {*(f"{k}_{s}" for k, s in _FOLDERS), "centroids"}
        if unknown:
            raise ConfigError(f"folders: unknown key(s) {sorted(unknown)}")
        self.root = os.path.abspath(os.path.expanduser(str(root)))
        if "://" in str(root):
            raise ConfigError(f"{root}: FLAIR #2 is read from a local (or mounted) folder: the "
                              "super-area .npy files are memory-mapped")
        stamp = self._stamp()
        self.sat_patch_size = int(sat_patch_size or stamp.get("sat_patch_size")
                                  or DEFAULT_SAT_PATCH_SIZE)
        self.patch_size = int(patch_size or stamp.get("size") or REAL_PATCH_SIZE)
        if self.sat_patch_size < 2 or self.sat_patch_size % 2:
            raise ConfigError(f"sat_patch_size: {self.sat_patch_size} must be even and >= 2")
        if self.patch_size < 8:
            raise ConfigError(f"patch_size: {self.patch_size} must be >= 8")
        self.filter_clouds = bool(filter_clouds)
        self.cloud_threshold = int(cloud_threshold)
        self.max_cloud_share = float(max_cloud_share)
        self.fallback_dates = int(fallback_dates)
        self.monthly_average = bool(monthly_average)
        self.border = border
        self.val_fraction = float(val_fraction)
        self.val_domains = None if val_domains is None else sorted(set(val_domains))
        self.split_seed = int(split_seed)
        self.metadata = metadata
        self.folders = dict(folders or {})
        self.synthetic = bool(stamp) if synthetic is None else bool(synthetic)
        self.spec: DatasetSpec = flair2_spec(
            self.patch_size, self.sat_patch_size,
            12 if self.monthly_average else MAX_SERIES_DATES, self.synthetic)

    def __repr__(self) -> str:
        return (f"FLAIR2(root={self.root!r}, sat_patch_size={self.sat_patch_size}, "
                f"patch_size={self.patch_size}, monthly_average={self.monthly_average})")

    def _stamp(self) -> dict[str, Any]:
        path = os.path.join(self.root, SYNTHETIC_STAMP)
        try:
            with open(path, encoding="utf-8") as f:
                stamp = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise RsrayError(f"{path}: synthetic stamp unreadable: {exc}") from None
        return stamp if isinstance(stamp, dict) else {}

    # -- discover ----------------------------------------------------------------------------

    def _folder(self, kind: str, split: str) -> str | None:
        key = f"{kind}_{split}"
        if key in self.folders:
            path = os.path.abspath(self.folders[key])
            return path if os.path.isdir(path) else None
        for name in _FOLDERS[(kind, split)]:
            path = os.path.join(self.root, name)
            if os.path.isdir(path):
                return path
        return None

    def _centroids(self) -> dict[str, Any]:
        path = self.folders.get("centroids") or os.path.join(self.root, CENTROIDS_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise DatasetNotFoundError(f"{path}: centroid json not found (FLAIR #2 maps each "
                                       "IMG_<id>.tif to its [row, col] in the zone's "
                                       "Sentinel-2 super-area there)") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RsrayError(f"{path}: centroid json is not readable JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RsrayError(f"{path}: centroid json must map IMG_<id>.tif to [row, col]")
        return data

    def _metadata_path(self) -> str | None:
        if self.metadata is None:
            return None
        if self.metadata != "auto":
            if not os.path.isfile(self.metadata):
                raise DatasetNotFoundError(f"{self.metadata}: aerial metadata json not found")
            return os.path.abspath(self.metadata)
        for name in METADATA_NAMES:
            path = os.path.join(self.root, name)
            if os.path.isfile(path):
                return path
        return None

    def discover(self) -> Discovery:
        """List the patches of the train (and labelled test) folders and assign splits.

        Returns:
            Items sorted by ``patch_id`` (``IMG_<id>``; the release numbers patches zone by
            zone, so a shard's items come from few zones) with the file paths, centroid,
            ``groups`` and aerial metadata; rejects (no label mask, no S2 files for the zone,
            not in the centroid json or a malformed entry there, duplicate ids, metadata
            naming another domain/zone); info with splits, validation domains, series length,
            filter settings and metadata counts.

        Raises:
            DatasetNotFoundError: the root, the train aerial/label/S2 folders or the centroid
                json are missing.
        """
        if not os.path.isdir(self.root):
            raise DatasetNotFoundError(f"{self.root}: FLAIR #2 folder not found")
        folders = {(k, s): self._folder(k, s) for k, s in _FOLDERS}
        for kind in ("aerial", "labels", "sen"):
            if folders[(kind, "train")] is None:
                names = " or ".join(_FOLDERS[(kind, "train")])
                raise DatasetNotFoundError(f"{self.root}: no {kind} train folder ({names})")
        centroids = self._centroids()
        rejects: list[Reject] = []
        items: list[dict[str, Any]] = []
        info: dict[str, Any] = {"dataset": "FLAIR #2"}
        splits = ["train"]
        if folders[("aerial", "test")] is not None:
            if folders[("labels", "test")] is None or folders[("sen", "test")] is None:
                info["test_note"] = ("test aerial folder found without its labels or S2 "
                                     "folder: no test split")
            else:
                splits.append("test")
        zone_dates: dict[str, list[dt.date] | None] = {}
        n_zones = 0
        for split in splits:
            aerial_root = str(folders[("aerial", split)])
            for domain in _subdirs(aerial_root):
                for zone in _subdirs(os.path.join(aerial_root, domain)):
                    n_zones += 1
                    items += self._zone_items(split, domain, zone, folders, centroids,
                                              zone_dates, rejects)
        items, dup_rejects = _drop_duplicates(items)
        rejects += dup_rejects
        meta_info = self._attach_metadata(items, rejects)
        split_info = self._assign_val(items)
        items.sort(key=lambda it: it["patch_id"])

        lengths = []
        for d in zone_dates.values():
            if d:
                lengths.append(len({(x.year, x.month) for x in d}) if self.monthly_average
                               else len(d))
        max_len = max(lengths, default=12 if self.monthly_average else MAX_SERIES_DATES)
        self.spec = dataclasses.replace(self.spec, synthetic=self.synthetic,
                                        modalities=flair2_spec(self.patch_size,
                                                               self.sat_patch_size,
                                                               max_len).modalities)
        counts = Counter(it["split"] for it in items)
        info.update({
            **split_info,
            "counts": {s: counts.get(s, 0) for s in ("train", "val", "test")},
            "domains": len({it["domain"] for it in items}),
            "zones": n_zones,
            "patch_size": self.patch_size,
            "sat_patch_size": self.sat_patch_size,
            "series_max_len": max_len,
            "monthly_average": self.monthly_average,
            "cloud_filter": ({"threshold": self.cloud_threshold,
                              "max_share": self.max_cloud_share,
                              "fallback_dates": self.fallback_dates}
                             if self.filter_clouds else None),
            "border": self.border,
            "metadata": meta_info,
            "synthetic": self.synthetic,
        })
        rejects.sort(key=lambda r: (r["path"], r["reason"]))
        return Discovery(items=items, rejects=rejects, info=info)

    def _zone_items(self, split: str, domain: str, zone: str,
                    folders: Mapping[tuple[str, str], str | None], centroids: Mapping[str, Any],
                    zone_dates: dict[str, list[dt.date] | None],
                    rejects: list[Reject]) -> list[dict[str, Any]]:
        """Items of one zone folder (and its products' dates into ``zone_dates``)."""
        img_dir = os.path.join(str(folders[("aerial", split)]), domain, zone, "img")
        msk_dir = os.path.join(str(folders[("labels", split)]), domain, zone, "msk")
        sen_dir = os.path.join(str(folders[("sen", split)]), domain, zone, "sen")
        try:
            names = sorted(e.name for e in os.scandir(img_dir) if _IMG_RE.match(e.name))
        except (FileNotFoundError, NotADirectoryError):
            rejects.append({"path": img_dir, "reason": "zone folder without an img/ folder"})
            return []
        masks = set(os.listdir(msk_dir)) if os.path.isdir(msk_dir) else set()
        stem = os.path.join(sen_dir, f"SEN2_sp_{domain}_{zone}")
        sen = {k: f"{stem}_{k}" for k in ("data.npy", "masks.npy", "products.txt")}
        missing_sen = [p for p in sen.values() if not os.path.isfile(p)]
        key = f"{split}/{domain}/{zone}"
        if not missing_sen and key not in zone_dates:
            try:
                zone_dates[key] = parse_products(sen["products.txt"])
            except PatchError:
                zone_dates[key] = None  # read() reports it for every patch of the zone
        out = []
        for name in names:
            pid = name[:-4]
            img = os.path.join(img_dir, name)
            msk_name = "MSK_" + pid[4:] + ".tif"
            if msk_name not in masks:
                rejects.append({"path": os.path.join(msk_dir, msk_name),
                                "reason": f"label mask missing for {name}"})
                continue
            if missing_sen:
                rejects.append({"path": missing_sen[0], "reason": f"Sentinel-2 super-area file "
                                f"missing for zone {domain}/{zone} (needed by {name})"})
                continue
            centroid = centroids.get(name)
            if centroid is None:
                rejects.append({"path": img, "reason": f"{name} is not in {CENTROIDS_NAME}: "
                                                       "no Sentinel-2 position"})
                continue
            if (not isinstance(centroid, list) or len(centroid) != 2
                    or not all(isinstance(v, int) for v in centroid)):
                rejects.append({"path": img, "reason": f"{CENTROIDS_NAME} entry {centroid!r} "
                                                       "is not [row, col] integers"})
                continue
            departement, _, year = domain.partition("_")
            groups: dict[str, Any] = {"domain": domain, "zone": f"{domain}/{zone}",
                                      "departement": departement}
            if year.isdigit():
                groups["year"] = int(year)
            out.append({
                "patch_id": pid, "split": split, "domain": domain, "zone": zone,
                "aerial": img, "label": os.path.join(msk_dir, msk_name),
                "s2_data": sen["data.npy"], "s2_masks": sen["masks.npy"],
                "s2_products": sen["products.txt"], "centroid": list(centroid),
                "groups": groups, "meta": {},
            })
        return out

    def _attach_metadata(self, items: list[dict[str, Any]],
                         rejects: list[Reject]) -> dict[str, Any]:
        """Add date/time/camera (meta) and lat/lon (groups) from the aerial metadata json."""
        path = self._metadata_path()
        if path is None:
            return {"file": None}
        entries, problems = load_aerial_metadata(path)
        found, missing, kept = [], 0, []
        for it in items:
            e = entries.get(it["patch_id"])
            if it["patch_id"] in problems:
                rejects.append({"path": path, "reason": f"{it['patch_id']}: "
                                                        f"{problems[it['patch_id']]}"})
                continue
            if e is None:
                missing += 1
                kept.append(it)
                continue
            if (e["domain"], e["zone"]) != (it["domain"], it["zone"]):
                rejects.append({"path": it["aerial"], "reason": f"aerial metadata places "
                                f"{it['patch_id']} in {e['domain']}/{e['zone']}, the folder in "
                                f"{it['domain']}/{it['zone']}"})
                continue
            it["meta"] = {"aerial_date": e["date"], "aerial_time": e["time"],
                          "camera": e["camera"]}
            found.append((it, e))
            kept.append(it)
        items[:] = kept
        # the metadata centroids are Lambert-93 (EPSG:2154) metres
        points = lat_lon([("EPSG:2154", e["x"], e["y"]) for _, e in found])
        for (it, _), ll in zip(found, points, strict=True):
            if ll is not None:
                it["groups"]["lat"], it["groups"]["lon"] = ll
        return {"file": path, "entries": len(entries), "invalid": len(problems),
                "matched": len(found), "missing": missing}

    def _assign_val(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Move the validation domains' train items to ``val``."""
        train_domains = sorted({it["domain"] for it in items if it["split"] == "train"})
        if self.val_domains is not None:
            unknown = sorted(set(self.val_domains) - set(train_domains))
            if unknown:
                raise ConfigError(f"val_domains: {unknown} are not train domains; train "
                                  f"domains are {', '.join(train_domains)}")
            val = list(self.val_domains)
            source = "official train/test folders; val = the given val_domains"
        else:
            n = len(train_domains)
            n_val = round(self.val_fraction * n)
            if self.val_fraction > 0 and n >= 2:
                n_val = min(max(n_val, 1), n - 1)
            perm = np.random.default_rng(self.split_seed).permutation(n)
            val = sorted(train_domains[i] for i in perm[:n_val])
            source = (f"official train/test folders; val = seeded {self.val_fraction:.0%} of "
                      f"the train domains (seed {self.split_seed})")
        for it in items:
            if it["split"] == "train" and it["domain"] in val:
                it["split"] = "val"
        return {"split_source": source, "val_domains": val,
                "train_domains": [d for d in train_domains if d not in val],
                "test_domains": sorted({it["domain"] for it in items if it["split"] == "test"})}

    # -- read --------------------------------------------------------------------------------

    def read(self, item: Mapping[str, Any]) -> Sample:
        """Read and validate one patch.

        Returns:
            ``aerial`` (5, size, size) uint8; ``s2`` (T, 10, s, s) uint16 with ``s2_dates``
            (T,) day of year (monthly means dated the 15th); a (size, size) uint8 class mask;
            meta (domain, zone, all_cloudy, date counts, border padding, aerial date, time,
            camera); ``geo`` (the aerial grid); ``flags`` counted into the manifest.

        Raises:
            PatchError: naming the file at fault: missing, truncated or unreadable GeoTIFF,
                wrong band count, dtype or size, aerial without CRS, mask codes outside
                1-19, mask CRS/transform differing from the aerial's, super-area arrays of
                the wrong shape, products line count differing from T, unparsable products,
                NaN/inf or out-of-range reflectance, probabilities outside 0-100, centroid
                outside the super-area (or too close to its border with ``border="reject"``).
        """
        pid = str(item["patch_id"])
        size = self.patch_size
        raster = read_rasters([str(item["aerial"])])[0]
        aerial, crs, path = raster.array, raster.crs, raster.path
        if aerial.shape[0] != len(AERIAL_BANDS):
            raise PatchError(path, f"has {aerial.shape[0]} bands, expected 5 (R, G, B, NIR, "
                                   "elevation)")
        if aerial.dtype != np.uint8:
            raise PatchError(path, f"dtype {aerial.dtype}, expected uint8")
        if aerial.shape[1:] != (size, size):
            raise PatchError(path, f"size {aerial.shape[2]} x {aerial.shape[1]} px, expected "
                                   f"{size} x {size}")
        if crs is None:
            raise PatchError(path, "aerial image is not georeferenced (no CRS)")
        label = self._read_label(str(item["label"]), crs, raster.transform)
        series, dates, meta, flags = self._read_s2(item)
        meta.update({"domain": str(item.get("domain", "")), "zone": str(item.get("zone", ""))})
        meta.update({k: str(v) for k, v in (item.get("meta") or {}).items()})
        sample: dict[str, Any] = {
            "patch_id": pid,
            "split": str(item.get("split", "")),
            "label": label,
            "arrays": {"aerial": aerial, "s2": series, "s2_dates": dates},
            "meta": meta,
            "geo": grid_of(raster),
            "flags": flags,
        }
        return sample  # type: ignore[return-value]

    def _read_label(self, path: str, crs: CRS, transform: Any) -> np.ndarray:
        mask = read_rasters([path])[0]
        arr, mcrs, mtransform = mask.array, mask.crs, mask.transform
        size = self.patch_size
        if arr.shape[0] != 1:
            raise PatchError(path, f"has {arr.shape[0]} bands, expected a single-band mask")
        if arr.dtype.kind not in "ui":
            raise PatchError(path, f"dtype {arr.dtype}, expected integer label codes")
        if arr.shape[1:] != (size, size):
            raise PatchError(path, f"size {arr.shape[2]} x {arr.shape[1]} px, expected "
                                   f"{size} x {size} like its aerial image")
        if mcrs is not None:  # a mask without georeferencing is matched by its file name
            if mcrs != crs:
                raise PatchError(path, f"CRS {crs_text(mcrs)} differs from the aerial "
                                       f"image's {crs_text(crs)}")
            if mtransform is None or not mtransform.almost_equals(transform, precision=1e-4):
                raise PatchError(path, f"geotransform {tuple(mtransform)[:6]} differs from the "
                                       f"aerial image's {tuple(transform)[:6]}")
        return codes_to_classes(arr[0], path)

    def _read_s2(self, item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray,
                                                         dict[str, str], dict[str, bool]]:
        """Crop, validate, filter and (optionally) average the patch's S2 time series."""
        data_path, masks_path = str(item["s2_data"]), str(item["s2_masks"])
        data = open_npy(data_path, "data")
        masks = open_npy(masks_path, "masks")
        dates = parse_products(str(item["s2_products"]))
        if data.ndim != 4 or data.shape[1] != len(S2_BANDS):
            raise PatchError(data_path, f"shape {data.shape}, expected (T, 10, H, W)")
        t, _, h, w = data.shape
        if masks.shape != (t, 2, h, w):
            raise PatchError(masks_path, f"shape {masks.shape}, expected {(t, 2, h, w)} "
                                         f"(snow, cloud) like its data file")
        if len(dates) != t:
            raise PatchError(str(item["s2_products"]), f"{len(dates)} product lines but the "
                                                       f"data file has {t} dates")
        if data.dtype.kind not in "uif" or masks.dtype.kind not in "uif":
            raise PatchError(data_path, f"dtypes {data.dtype}/{masks.dtype} are not numeric")
        row, col = (int(v) for v in item["centroid"])
        half = self.sat_patch_size // 2
        r0, r1, c0, c1 = row - half, row + half, col - half, col + half
        if not (0 <= row <= h and 0 <= col <= w):
            raise PatchError(data_path, f"centroid [{row}, {col}] of {item['patch_id']} lies "
                                        f"outside the {h} x {w} super-area")
        pad = ((max(0, -r0), max(0, r1 - h)), (max(0, -c0), max(0, c1 - w)))
        padded = any(v for p in pad for v in p)
        if padded and self.border == "reject":
            raise PatchError(data_path, f"centroid [{row}, {col}] of {item['patch_id']} is too "
                                        f"close to the border of the {h} x {w} super-area for "
                                        f"a {self.sat_patch_size}-px crop")
        rows = slice(max(r0, 0), min(r1, h))
        cols = slice(max(c0, 0), min(c1, w))
        crop = np.asarray(data[:, :, rows, cols])  # reads only these pages of the memmap
        mcrop = np.asarray(masks[:, :, rows, cols])
        if crop.dtype.kind == "f" and not np.isfinite(crop).all():
            bad = int((~np.isfinite(crop)).sum())
            raise PatchError(data_path, f"{bad} NaN/inf values in the crop of "
                                        f"{item['patch_id']}")
        if crop.size and (crop.min() < 0 or crop.max() > 65535):
            raise PatchError(data_path, f"reflectance {crop.min()}..{crop.max()} in the crop of "
                                        f"{item['patch_id']} is outside 0..65535")
        if mcrop.dtype.kind == "f" and not np.isfinite(mcrop).all():
            raise PatchError(masks_path, f"NaN/inf probabilities in the crop of "
                                         f"{item['patch_id']}")
        if mcrop.size and (mcrop.min() < 0 or mcrop.max() > 100):
            raise PatchError(masks_path, f"probabilities {mcrop.min()}..{mcrop.max()} outside "
                                         f"0..100 in the crop of {item['patch_id']}")
        all_cloudy = False
        keep = np.arange(t)
        if self.filter_clouds:
            shares = cloud_shares(mcrop, self.cloud_threshold)
            keep, all_cloudy = select_dates(shares, self.max_cloud_share, self.fallback_dates)
        kept_dates = [dates[i] for i in keep]
        if self.monthly_average:
            series, doys = monthly_average(crop[keep], kept_dates)
        else:
            series = crop[keep]
            doys = np.array([d.timetuple().tm_yday for d in kept_dates], dtype=np.int32)
        if len(doys) > self.spec.groups[1].max_len:
            raise PatchError(str(item["s2_products"]), f"{len(doys)} dates after filtering, "
                             f"more than the {self.spec.groups[1].max_len} found at discovery "
                             "(run discover() on this source before reading)")
        series = np.clip(np.rint(series), 0, 65535).astype(np.uint16)
        if padded:
            series = np.pad(series, ((0, 0), (0, 0), *pad), mode="edge")
        meta = {"all_cloudy": str(int(all_cloudy)), "s2_dates_raw": str(t),
                "s2_dates_cloudless": "0" if all_cloudy else str(len(keep)),
                "s2_border_padded": str(int(padded))}
        return series, doys.astype(np.int32), meta, {"all_cloudy": all_cloudy,
                                                     "s2_border_padded": padded}


def _subdirs(path: str) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir())


def _drop_duplicates(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Reject]]:
    """Patch ids found in several zone folders are ambiguous: reject every copy."""
    count = Counter(it["patch_id"] for it in items)
    rejects: list[Reject] = [
        {"path": it["aerial"], "reason": f"{it['patch_id']} appears in {count[it['patch_id']]} "
                                         "zone folders (ambiguous centroid)"}
        for it in items if count[it["patch_id"]] > 1]
    return [it for it in items if count[it["patch_id"]] == 1], rejects


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


_CORRUPTIONS: dict[str, str] = {
    "truncated": "aerial tif cut to half its size",
    "wrong_bands": "aerial tif written with 4 bands (no elevation)",
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
        corrupt: corruption kind -> patch index or indices (see ``_CORRUPTIONS``).
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
        if kind not in _CORRUPTIONS:
            raise ValueError(f"corrupt: unknown kind {kind!r}; known: {sorted(_CORRUPTIONS)}")
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
    if "wrong_size" in kinds:
        img = np.pad(img, ((0, 0), (0, 16), (0, 16)), mode="edge")
    img_path = img_dir / f"{pid}.tif"
    write_geotiff(img_path, img, crs, ulx, uly, px)
    if "truncated" in kinds:
        img_path.write_bytes(img_path.read_bytes()[: img_path.stat().st_size // 2])
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


# --------------------------------------------------------------------------------------------
# Registry entry
# --------------------------------------------------------------------------------------------

SYNTH_CLI_SIZE = 64
"""Tile size `rsray synth flair2` and smoke tests write (the real 512 via the Python API)."""
SYNTH_CLI_SAT = 16


def _add_prepare_args(p: Any) -> None:
    p.add_argument("--root", required=True,
                   help="folder with flair_aerial_train/, flair_labels_train/, "
                        "flair_sen_train/ (+ flair_2_*_test/) and the centroid json")
    p.add_argument("--sat-patch-size", type=int, default=None,
                   help="S2 pixels cropped around each patch (default 40)")
    p.add_argument("--patch-size", type=int, default=None,
                   help="aerial tile size in px (default 512; synthetic: its stamp)")
    p.add_argument("--no-cloud-filter", action="store_true", help="keep cloudy dates")
    p.add_argument("--cloud-threshold", type=int, default=60,
                   help="probability (0-100) from which a pixel is cloud/snow")
    p.add_argument("--max-cloud-share", type=float, default=0.5,
                   help="a date is kept when its cloud/snow share of the crop is below this")
    p.add_argument("--fallback-dates", type=int, default=2,
                   help="least cloudy dates kept when every date is cloudy (flagged)")
    p.add_argument("--all-dates", action="store_true",
                   help="keep every cloudless date instead of monthly means")
    p.add_argument("--border", choices=["pad", "reject"], default="pad",
                   help="crops leaving the super-area: edge-pad (default) or reject")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of train domains used for validation")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--metadata", default="auto",
                   help="aerial metadata json (auto: look in --root; 'none' to ignore)")


def _source_from_args(args: Any) -> FLAIR2:
    return FLAIR2(args.root, sat_patch_size=args.sat_patch_size, patch_size=args.patch_size,
                  filter_clouds=not args.no_cloud_filter, cloud_threshold=args.cloud_threshold,
                  max_cloud_share=args.max_cloud_share, fallback_dates=args.fallback_dates,
                  monthly_average=not args.all_dates, border=args.border,
                  val_fraction=args.val_fraction, split_seed=args.split_seed,
                  metadata=None if args.metadata == "none" else args.metadata)


register_dataset(DatasetEntry(
    name="flair2",
    summary="FLAIR #2: aerial RGB+NIR+elevation tiles + Sentinel-2 time series, "
            "13-class segmentation",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_synthetic_flair2(
        out, n, seed=seed, size=SYNTH_CLI_SIZE, sat_patch_size=SYNTH_CLI_SAT),
    synthetic_source=lambda raw: FLAIR2(raw),
    describe_synthetic=describe_synthetic_rules,
    default_modalities=("aerial", "s2"),
))
