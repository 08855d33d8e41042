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
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rasterio.crs import CRS

from rsray.data.schema import DatasetSpec, Discovery, Reject, Sample
from rsray.data.sources._raster import crs_text, grid_of, lat_lon, read_rasters
from rsray.data.sources.flair2.metadata import load_aerial_metadata
from rsray.data.sources.flair2.sentinel2 import (
    CLOUD_THRESHOLD,
    cloud_shares,
    monthly_average,
    open_npy,
    parse_products,
    select_dates,
)
from rsray.data.sources.flair2.spec import (
    _FOLDERS,
    _IMG_RE,
    AERIAL_BANDS,
    CENTROIDS_NAME,
    DEFAULT_SAT_PATCH_SIZE,
    FLAIR2_CLASSES,
    MAX_SERIES_DATES,
    METADATA_NAMES,
    REAL_PATCH_SIZE,
    S2_BANDS,
    SYNTHETIC_STAMP,
    codes_to_classes,
    flair2_spec,
)
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError

__all__ = ["FLAIR2"]


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
        cloud_threshold: int = CLOUD_THRESHOLD,
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
            cloud_threshold: probability (0-100) from which a pixel counts as cloud or snow:
                50 (the LF-DLM paper's 0.5) by default, 60 in the FLAIR #2 baseline code.
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
