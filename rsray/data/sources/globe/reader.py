"""GLOBE Observer land cover: six directional photos + a metadata vector, two binary heads.

On disk: GLOBE Observer's ``lc.csv`` export of the GLOBE API (an unnamed index column, then
the 54 columns of :data:`rsray.data.sources.globe.api.LC_COLUMNS`; one row per land-cover
observation), whose ``landcovers{North,South,East,West,Upward,Downward}PhotoUrl`` columns point
at ``https://data.globe.gov/system/photos/YYYY/MM/DD/<id>/original.jpg``. GLOBE Observer's
cleaned form (``lc_`` prefix, ``-9999`` for missing numbers, e.g. ``lc_small.csv``) is read too.
:mod:`rsray.data.sources.globe.api` downloads ``lc.csv`` from the API.

Photos come from one of two places:

* a local (or ``s3://``) mirror, ``photos_dir``: the URL
  ``https://data.globe.gov/system/photos/2021/01/22/2095382/original.jpg`` is read from
  ``<photos_dir>/2021/01/22/2095382/original.jpg`` (the part after ``/system/photos/``; other
  URLs use their whole path), and a cell holding a relative path is resolved against it;
* the URLs themselves, fetched while ``rsray prepare`` runs (in its Ray tasks) with a timeout
  and bounded exponential-backoff retries, through a cache folder (``cache_dir``; content
  stored by the sha256 of the URL, written atomically) so that a second prepare makes no
  request. ``photo_url_map`` rewrites a URL prefix first (a mirror or proxy).

What the model sees (see :func:`globe_spec`):

* ``layout="directions"`` (default): six image modalities ``north``, ``south``, ``east``,
  ``west``, ``up``, ``down``, each ``(3, photo_size, photo_size)`` uint8 RGB (centre-cropped to
  a square, EXIF-rotated, resized). Late and progressive fusion get one branch/encoder per
  direction; early fusion concatenates them (18 channels); ``data.modalities`` picks any subset.
* ``layout="stacked"``: one modality ``photos`` of six groups (18 channels): one encoder for
  all directions (cheaper for progressive/late fusion).
* the vector modality ``metadata`` (:data:`FEATURES`, float32), which the pipeline hands to
  models as ``inputs["metadata"]`` (training sets ``metadata_dim`` from it).

Labels: ``snow_ice`` (``landcoversSnowIce``) and ``leaves_on_trees``
(``landcoversLeavesOnTrees``), task ``binary`` (one 0/1 head each). Records whose labels are
empty (GLOBE's "Site Definition" rows), whose dates, numbers or codes are malformed, that have
fewer than ``min_photos`` usable photos (empty, ``rejected``, ``pending``, missing file,
unreachable URL, corrupt image), or whose CSV row has the wrong number of fields are rejected
with the file/URL and the reason. With ``min_photos < 6`` a missing direction becomes a zero
image and its ``photo_<dir>`` feature is 0.

Splits: a seeded hash of the *site* (``siteId``; all observations of a site share a split, so
a site's photos never leak from training into validation), or of the record
(``split_by="record"``). Hold-out keys (``rsray prepare globe --holdout``): ``country``
(ISO3 code), ``country_name``, ``site``, ``lat``, ``lon``, ``elevation``, ``year``, ``month``.

:func:`write_synthetic_globe` writes a synthetic twin in exactly this format, photos included,
whose labels need both photos and metadata (:func:`describe_synthetic_rules`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median
from typing import Any, Literal

import numpy as np

from rsray.data.schema import DatasetSpec, Discovery, Reject, Sample
from rsray.data.sources._http import FetchError, HttpFetcher, UrlCache, is_http_url
from rsray.data.sources.globe.rows import (
    _bool,
    _cover,
    _day,
    _features,
    _from_cleaned,
    _measured_at,
    _muc,
    _number,
    _Record,
    _RowError,
)
from rsray.data.sources.globe.spec import (
    _DIR_COLUMN,
    _NOT_A_PHOTO,
    _REQUIRED,
    CLASSES,
    CONDITIONS,
    DEFAULT_CACHE,
    DIRECTIONS,
    FEATURES,
    LABEL_COLUMNS,
    SYNTHETIC_ORGANIZATION,
    globe_spec,
    photo_rel_path,
)
from rsray.data.splits import seeded_split
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError
from rsray.storage import is_remote_url, join_url, read_bytes
from rsray.storage import normalise as normalise_root

__all__ = ["GlobeObserver", "decode_photo"]


# --------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------


def decode_photo(data: bytes, size: int) -> np.ndarray:
    """JPEG (or any Pillow-readable image) bytes -> ``(3, size, size)`` uint8 RGB.

    The image is rotated by its EXIF orientation, centre-cropped to a square and resized
    (Pillow's antialiased bilinear filter); JPEGs are decoded at a reduced scale first when
    they are much larger than needed.

    Raises:
        ValueError: the bytes are not a complete, readable image (message says why).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ValueError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (2 * size, 2 * size))
            oriented = ImageOps.exif_transpose(img)
            rgb = oriented.convert("RGB")
            square = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BILINEAR)
            arr = np.asarray(square, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    if arr.shape != (size, size, 3):
        raise ValueError(f"decoded to shape {arr.shape}, expected ({size}, {size}, 3)")
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


class GlobeObserver:
    """GLOBE Observer land-cover reader: parses ``lc.csv``, assigns splits, reads photos.

    ``discover`` parses the CSV on the driver (labels, dates, metadata vector, photo URLs,
    splits); ``read`` runs in Ray tasks and loads, decodes and resizes the six photos of one
    record (from ``photos_dir`` or from their URLs through the cache). Instances hold only
    plain attributes and pickle cheaply.
    """

    directions: tuple[str, ...] = DIRECTIONS
    classes: tuple[str, ...] = CLASSES
    features: tuple[str, ...] = FEATURES

    def __init__(
        self,
        csv_path: str,
        *,
        photos_dir: str | None = None,
        cache_dir: str | None = None,
        photo_size: int = 128,
        min_photos: int = 6,
        layout: Literal["directions", "stacked"] = "directions",
        photo_url_map: tuple[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 1.0,
        fetch_threads: int = 6,
        split_by: Literal["site", "record"] = "site",
        split_seed: int = 0,
        split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
        exclude_features: Sequence[str] = (),
        synthetic: bool | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """Describe a GLOBE Observer export; nothing is read until :meth:`discover`.

        Args:
            csv_path: ``lc.csv`` (raw export) or GLOBE Observer's cleaned CSV; local or
                ``s3://``.
            photos_dir: folder mirroring ``data.globe.gov/system/photos`` (see the module
                docstring); ``None`` fetches the photo URLs.
            cache_dir: cache of fetched photos (local or ``s3://``; default
                ``~/.cache/rsray/globe_photos`` on each node).
            photo_size: side of the stored square photos.
            min_photos: fewest usable photos a record needs (1-6); with fewer than 6, missing
                directions are zero images and their ``photo_<dir>`` feature is 0.
            layout: ``directions`` or ``stacked`` (see :func:`globe_spec`).
            photo_url_map: ``(old_prefix, new_prefix)`` applied to photo URLs before fetching.
            timeout: seconds per photo request.
            retries: extra attempts per photo for transient failures.
            backoff: seconds before the first retry (doubled each time).
            fetch_threads: photos of one record fetched concurrently.
            split_by: ``site`` (seeded hash of ``siteId``) or ``record``.
            split_seed: seed of the split hash.
            split_fractions: train, val, test fractions (sum 1).
            exclude_features: names of :data:`FEATURES` left out of the metadata vector.
            synthetic: mark the spec synthetic; ``None`` detects :data:`SYNTHETIC_ORGANIZATION`.
            storage_options: fsspec options for remote paths.

        Raises:
            ConfigError: an argument is out of range or names an unknown feature.
        """
        if not 1 <= int(min_photos) <= len(DIRECTIONS):
            raise ConfigError(f"min_photos: {min_photos} must be in 1..{len(DIRECTIONS)}")
        if split_by not in ("site", "record"):
            raise ConfigError(f"split_by: {split_by!r} is not one of site, record")
        if fetch_threads < 1:
            raise ConfigError(f"fetch_threads: {fetch_threads} must be >= 1")
        unknown = sorted(set(exclude_features) - set(FEATURES))
        if unknown:
            raise ConfigError(f"exclude_features: unknown feature(s) {unknown}; the features "
                              f"are {', '.join(FEATURES)}")
        fr = tuple(float(f) for f in split_fractions)
        if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(f"split_fractions: {split_fractions!r} must be three "
                              "non-negative fractions summing to 1")
        if photo_url_map is not None and len(photo_url_map) != 2:
            raise ConfigError(f"photo_url_map: {photo_url_map!r} must be (old_prefix, new)")
        self.csv_path = normalise_root(str(csv_path))
        self.photos_dir = normalise_root(str(photos_dir)) if photos_dir else None
        self.cache_dir = normalise_root(str(cache_dir or DEFAULT_CACHE))
        self.photo_size = int(photo_size)
        self.min_photos = int(min_photos)
        self.layout = layout
        self.photo_url_map = tuple(photo_url_map) if photo_url_map else None
        self.fetcher = HttpFetcher(timeout=timeout, retries=retries, backoff=backoff)
        self.fetch_threads = int(fetch_threads)
        self.split_by = split_by
        self.split_seed = int(split_seed)
        self.split_fractions = (fr[0], fr[1], fr[2])
        self.feature_names = tuple(f for f in FEATURES if f not in set(exclude_features))
        self.synthetic_override = synthetic
        self.storage_options = dict(storage_options or {})
        self.spec: DatasetSpec = globe_spec(self.photo_size, layout, self.feature_names,
                                            bool(synthetic))

    def __repr__(self) -> str:
        where = f"photos_dir={self.photos_dir!r}" if self.photos_dir else \
            f"cache_dir={self.cache_dir!r}"
        return (f"GlobeObserver(csv_path={self.csv_path!r}, {where}, "
                f"photo_size={self.photo_size}, min_photos={self.min_photos}, "
                f"layout={self.layout!r})")

    # -- discover ----------------------------------------------------------------------------

    def _read_rows(self) -> tuple[list[tuple[str, dict[str, str]]], list[Reject], str]:
        """``[(where, row)]`` with raw-export column names, malformed-row rejects, format."""
        try:
            raw = read_bytes(self.csv_path, self.storage_options)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise DatasetNotFoundError(
                f"{self.csv_path}: GLOBE land-cover CSV not found (expected GLOBE Observer's "
                "lc.csv export; download one with --download or python -m "
                "rsray.data.sources.globe.api)") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RsrayError(f"{self.csv_path}: not UTF-8 text ({exc})") from None
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            raise RsrayError(f"{self.csv_path}: empty file (no header)") from None
        except csv.Error as exc:
            raise RsrayError(f"{self.csv_path}: line 1: CSV syntax error: {exc}") from None
        cleaned = "lc_SnowIce" in header and "landcoversSnowIce" not in header
        fmt = "cleaned" if cleaned else "raw"
        names = list(_from_cleaned(dict.fromkeys(header, "")).keys()) if cleaned else header
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            raise RsrayError(f"{self.csv_path}: not a GLOBE land-cover export: columns "
                             f"{missing} are missing (header has {len(header)} columns: "
                             f"{', '.join(header[:8])}, ...)")
        rows: list[tuple[str, dict[str, str]]] = []
        rejects: list[Reject] = []
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise RsrayError(f"{self.csv_path}: line {reader.line_num}: CSV syntax error: "
                                 f"{exc}") from None
            where = f"{self.csv_path}:{reader.line_num}"
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                rejects.append({"path": where,
                                "reason": f"malformed row: {len(fields)} fields, the header "
                                          f"has {len(header)}"})
                continue
            row = dict(zip(header, fields, strict=True))
            rows.append((where, _from_cleaned(row) if cleaned else row))
        return rows, rejects, fmt

    def _locate(self, value: str) -> str:
        """Where a photo cell's content is read from (URL or path)."""
        if self.photos_dir is not None:
            return join_url(self.photos_dir, *photo_rel_path(value).split("/"))
        if is_http_url(value):
            if self.photo_url_map and value.startswith(self.photo_url_map[0]):
                return self.photo_url_map[1] + value[len(self.photo_url_map[0]):]
            return value
        if value.startswith("file://"):
            return value[len("file://"):]
        if value.startswith("/") or is_remote_url(value):
            return value
        base = self.csv_path.rsplit("/", 1)[0] if is_remote_url(self.csv_path) else \
            str(Path(self.csv_path).parent)
        return join_url(base, *value.split("/"))

    def _parse(self, where: str, row: Mapping[str, str], cleaned: bool) -> _Record:
        source = row.get("landcoversDataSource", "").strip()
        label = []
        for cls, column in LABEL_COLUMNS.items():
            value = _bool(row, column)
            if value is None:
                what = f" ({source!r} record)" if source else ""
                raise _RowError("no label", f"{column} ({cls}) is empty{what}")
            label.append(value)
        day = _day(row)
        measured_at = _measured_at(row)
        lat = _number(row, "latitude", -90, 90, cleaned=cleaned)
        lon = _number(row, "longitude", -180, 180, cleaned=cleaned)
        if (lat is None) != (lon is None):
            raise _RowError("bad value", "only one of latitude/longitude is given")
        elevation = _number(row, "elevation", -500, 9000, cleaned=cleaned)
        conditions = {name: _bool(row, column) for name, column in CONDITIONS}
        muc = _muc(row)
        cover = _cover(row)
        photos: dict[str, str] = {}
        missing: dict[str, str] = {}
        for d in DIRECTIONS:
            column = f"landcovers{_DIR_COLUMN[d]}PhotoUrl"
            value = row.get(column, "").strip()
            if value.lower() in _NOT_A_PHOTO:
                missing[d] = f"{_NOT_A_PHOTO[value.lower()]} ({column} is {value!r})"
            else:
                photos[d] = self._locate(value)
        if len(photos) < self.min_photos:
            detail = "; ".join(f"{d}: {why}" for d, why in missing.items())
            raise _RowError("too few photos", f"{len(photos)} of 6 photos, min_photos is "
                                                f"{self.min_photos} ({detail})")
        ident = row.get("landcoversLandCoverId", "").strip() or row.get("pid", "").strip()
        if not ident:
            ident = "line" + where.rsplit(":", 1)[-1]
        site = row.get("siteId", "").strip()
        return _Record(
            patch_id=f"globe-{ident.removesuffix('.0')}", where=where,
            site_key=f"site:{site}" if site else f"record:{ident}", site_id=site,
            lat=lat, lon=lon, elevation=elevation, day=day, measured_at=measured_at,
            conditions=conditions, muc=muc, cover=cover, photos=photos, missing=missing,
            label=label, country_code=row.get("countryCode", "").strip(),
            country_name=row.get("countryName", "").strip(),
            synthetic=row.get("organizationName", "").strip() == SYNTHETIC_ORGANIZATION,
        )

    def discover(self) -> Discovery:
        """Parse the CSV, reject unusable records, assign splits, build metadata vectors.

        Returns:
            Items ``{"patch_id", "split", "groups", "where", "photos", "missing",
            "metadata", "label", "meta"}``; rejects (malformed rows, empty or bad labels,
            bad dates/values, too few photos, duplicate ids) naming ``<csv>:<line>``; info
            with counts, the split source and the elevation used for imputation.

        Raises:
            DatasetNotFoundError: the CSV does not exist.
            RsrayError: it is empty, not UTF-8 or lacks the land-cover columns.
        """
        rows, rejects, fmt = self._read_rows()
        records: list[_Record] = []
        seen: dict[str, str] = {}
        for where, row in rows:
            try:
                rec = self._parse(where, row, fmt == "cleaned")
            except _RowError as exc:
                rejects.append({"path": where, "reason": exc.reason})
                continue
            if rec.patch_id in seen:
                rejects.append({"path": where, "reason": f"duplicate record: {rec.patch_id} "
                                                         f"is also at {seen[rec.patch_id]}"})
                continue
            seen[rec.patch_id] = where
            records.append(rec)

        synthetic = (any(r.synthetic for r in records) if self.synthetic_override is None
                     else bool(self.synthetic_override))
        self.spec = dataclasses.replace(self.spec, synthetic=synthetic)
        split_of = {r.patch_id: seeded_split(r.site_key if self.split_by == "site"
                                             else r.patch_id, self.split_seed,
                                             self.split_fractions)
                    for r in records}
        train_elev = [r.elevation for r in records
                      if r.elevation is not None and split_of[r.patch_id] == "train"]
        any_elev = [r.elevation for r in records if r.elevation is not None]
        fill_elev = float(median(train_elev or any_elev)) if (train_elev or any_elev) else 0.0

        items = [self._item(r, split_of[r.patch_id], fill_elev) for r in records]
        items.sort(key=lambda it: it["patch_id"])
        kinds = Counter(r["reason"].split(":")[0] for r in rejects)
        counts = Counter(it["split"] for it in items)
        info: dict[str, Any] = {
            "dataset": "GLOBE Observer land cover",
            "csv": self.csv_path,
            "csv_format": fmt,
            "rows": len(rows) + kinds.get("malformed row", 0),
            "items": len(items),
            "rejected_while_parsing": dict(kinds),
            "split_source": f"seeded by {self.split_by}(seed={self.split_seed}, "
                            f"fractions={self.split_fractions})",
            "counts": {s: counts.get(s, 0) for s in ("train", "val", "test")},
            "photos": self.photos_dir or f"fetched (cache {self.cache_dir})",
            "photo_size": self.photo_size,
            "min_photos": self.min_photos,
            "layout": self.layout,
            "features": list(self.feature_names),
            "imputation": {"elevation_m": fill_elev},
            "synthetic": synthetic,
        }
        return Discovery(items=items, rejects=sorted(rejects, key=lambda r: r["path"]),
                         info=info)

    def _item(self, r: _Record, split: str, fill_elev: float) -> dict[str, Any]:
        values = _features(r, fill_elev)
        vector = [float(values[name]) for name in self.feature_names]
        groups: dict[str, Any] = {"country": r.country_code or None,
                                  "country_name": r.country_name or None,
                                  "site": r.site_id or None, "lat": r.lat, "lon": r.lon,
                                  "elevation": r.elevation, "year": r.day.year,
                                  "month": r.day.month}
        return {
            "patch_id": r.patch_id,
            "split": split,
            "groups": groups,
            "where": r.where,
            "photos": r.photos,
            "missing": r.missing,
            "metadata": vector,
            "label": list(r.label),
            "meta": {"site_id": r.site_id, "measured_date": r.day.isoformat(),
                     "country_code": r.country_code},
        }

    # -- read --------------------------------------------------------------------------------

    def _load(self, location: str) -> tuple[bytes, bool]:
        """Bytes of one photo and whether they came from the URL (not the cache or a file).

        Raises:
            _RowError: missing/unreadable file, or a URL unreachable after the retries.
        """
        if not is_http_url(location):
            try:
                return read_bytes(location, self.storage_options), False
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise _RowError("photo missing", "no such file") from None
            except OSError as exc:
                raise _RowError("photo missing", f"unreadable ({exc})") from None
        data = UrlCache(self.cache_dir, self.storage_options).get(location)
        if data is not None:
            return data, False
        try:
            return self.fetcher.get(location), True
        except FetchError as exc:
            raise _RowError("photo unreachable", exc.reason) from None

    def _photo(self, location: str) -> np.ndarray:
        """One decoded photo; fetched content is cached once it decodes."""
        data, fetched = self._load(location)
        try:
            arr = decode_photo(data, self.photo_size)
        except ValueError as exc:
            raise _RowError("corrupt photo", str(exc)) from None
        if fetched:
            UrlCache(self.cache_dir, self.storage_options).put(location, data)
        return arr

    def read(self, item: Mapping[str, Any]) -> Sample:
        """Load the photos of one record and assemble the sample.

        Args:
            item: one of :meth:`discover`'s items.

        Returns:
            Arrays ``north`` ... ``down`` ``(3, photo_size, photo_size)`` uint8 and
            ``metadata`` ``(len(features),)`` float32; label ``[snow_ice, leaves_on_trees]``
            uint8; meta ``site_id``, ``measured_date``, ``country_code``, ``missing_photos``.

        Raises:
            PatchError: fewer than ``min_photos`` photos could be used; the path is the first
                failing photo's URL or file and the reason lists every failing direction
                (unreachable after retries, HTTP status, missing file, corrupt image).
        """
        patch_id = str(item["patch_id"])
        # Ray Data hands items over as Arrow structs: absent keys come back as None
        photos = {d: str(v) for d, v in (item.get("photos") or {}).items() if v}
        missing = {d: str(v) for d, v in (item.get("missing") or {}).items() if v}
        failed: dict[str, tuple[str, str]] = {}
        arrays: dict[str, np.ndarray] = {}

        def load(d: str) -> tuple[str, np.ndarray | _RowError]:
            try:
                return d, self._photo(photos[d])
            except _RowError as exc:
                return d, exc

        order = [d for d in DIRECTIONS if d in photos]
        with ThreadPoolExecutor(max_workers=min(self.fetch_threads, max(len(order), 1))) as pool:
            for d, result in pool.map(load, order):
                if isinstance(result, _RowError):
                    failed[d] = (photos[d], result.reason)
                else:
                    arrays[d] = result
        if len(arrays) < self.min_photos:
            first_dir = next(iter(failed), None)
            path = failed[first_dir][0] if first_dir else str(item.get("where", patch_id))
            kind = failed[first_dir][1].split(":")[0] if first_dir else "too few photos"
            details = [f"{d} {loc}: {why}" for d, (loc, why) in failed.items()]
            details += [f"{d}: {why}" for d, why in missing.items()]
            raise PatchError(path, f"{kind}: {len(arrays)} of 6 photos usable, min_photos is "
                                   f"{self.min_photos} (record {patch_id}, "
                                   f"{item.get('where', '?')}): " + "; ".join(details))
        size = self.photo_size
        vector = np.asarray(item["metadata"], dtype=np.float32)
        if vector.shape != (len(self.feature_names),):
            raise PatchError(str(item.get("where", patch_id)),
                             f"metadata vector of length {vector.shape}, expected "
                             f"{len(self.feature_names)} (item from another configuration?)")
        for d in DIRECTIONS:
            if d not in arrays:
                arrays[d] = np.zeros((3, size, size), dtype=np.uint8)
                if d in failed:
                    missing[d] = failed[d][1]
            name = f"photo_{d}"
            if name in self.feature_names:
                vector[self.feature_names.index(name)] = 0.0 if d in missing else 1.0
        if not np.isfinite(vector).all():
            raise PatchError(str(item.get("where", patch_id)), "metadata vector has NaN/inf")
        arrays["metadata"] = vector
        label = np.asarray(item["label"], dtype=np.uint8)
        meta = {k: str(v or "") for k, v in (item.get("meta") or {}).items()}
        meta["missing_photos"] = ",".join(d for d in DIRECTIONS if d in missing)
        return {"patch_id": patch_id, "split": str(item.get("split", "")), "label": label,
                "arrays": arrays, "meta": meta}


