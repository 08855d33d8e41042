"""The generic multimodal source: a dataset described in YAML, read like the built-in ones.

``discover`` lists every modality's roots once, pairs files by sample id, reads the label
table (or per-sample label files), assigns splits and groups, opens the header of one sample
per modality to learn band sizes and dtypes (each band keeps its native resolution: bands of
one size form a band group) and the header of each sample's reference raster for its
latitude and longitude. ``read`` opens one sample's files and validates them as the built-in
readers do: band count, dtype and shape against the first sample, co-registration with the
reference raster (CRS and bounds within ``tolerance``; or reprojection onto it when a modality
asks), nodata share, NaN/inf. A sample missing a modality is rejected naming it, or, with
``allow_missing_modalities``, kept with zeros and a presence bit (``present_<modality>``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rsray.data.schema import BandGroup, DatasetSpec, Discovery, ModalitySpec, Reject, Sample
from rsray.data.sources._raster import (
    Band,
    Raster,
    crs_text,
    gdal_env,
    grid_of,
    lat_lon,
    read_bands,
    read_rasters,
)
from rsray.data.sources.files.config import (
    SPLIT_ALIASES,
    FilesConfig,
    ModalityConfig,
    load_files_config,
)
from rsray.data.sources.files.labels import Labels, load_labels
from rsray.data.sources.files.listing import (
    Listing,
    all_urls,
    day_of_year,
    first_url,
    list_modality,
    missing_bands,
    read_id_list,
    remap_ids,
    table_rows,
)
from rsray.data.splits import seeded_split
from rsray.errors import ConfigError, PatchError
from rsray.storage import StorageOptions, get_fs, is_local

SYNTHETIC_TAG = "RSRAY_SYNTHETIC"
"""GeoTIFF metadata tag (value ``1``) the test-data writer puts on every file."""
GROUP_META = "group"
"""``meta_group``: the first declared group of each sample (grouped statistics use it)."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What the first sample's file of a modality says about all of them."""

    count: int
    height: int
    width: int
    dtype: str
    nodata: float | None
    res: float
    synthetic: bool


def read_header(url: str, options: StorageOptions = None) -> tuple[Header, Any]:
    """Band count, size, dtype, nodata, pixel size of one raster, and its grid (no pixels)."""
    import rasterio

    fs, path = get_fs(url, options)
    with gdal_env():
        if is_local(fs):
            with rasterio.open(path) as src:
                return _header(src), (src.crs, src.transform, src.width, src.height)
        with fs.open(path, "rb") as f, rasterio.open(f) as src:
            return _header(src), (src.crs, src.transform, src.width, src.height)


def _header(src: Any) -> Header:
    return Header(count=src.count, height=src.height, width=src.width, dtype=src.dtypes[0],
                  nodata=src.nodata, res=abs(float(src.transform.a)) or 1.0,
                  synthetic=src.tags().get(SYNTHETIC_TAG) == "1")


class FilesSource:
    """A dataset described in YAML (see :mod:`rsray.data.sources.files.config`).

    Args:
        config: the YAML file (a path or a URL), or an already parsed :class:`FilesConfig`.
        storage_options: fsspec options for ``s3://`` roots (never logged).
        threads: threads for the per-sample headers and label files read in ``discover``.
        synthetic: mark the spec synthetic; ``None``: detect the test-data writer's tag.
    """

    def __init__(self, config: str | Path | FilesConfig, *,
                 storage_options: StorageOptions = None, threads: int = 16,
                 synthetic: bool | None = None) -> None:
        self.storage_options = dict(storage_options or {})
        self.cfg = (config if isinstance(config, FilesConfig)
                    else load_files_config(config, self.storage_options))
        if threads < 1:
            raise ConfigError(f"threads: {threads} must be >= 1")
        self.threads = threads
        self.synthetic_override = synthetic
        self._spec: DatasetSpec | None = None
        self._pending: Discovery | None = None
        self._groups: dict[str, list[tuple[BandGroup, list[int]]]] = {}
        """modality -> [(group, indices into the modality's bands)]."""
        self._tables: dict[str, dict[str, list[float]]] = {}
        self._nodata: dict[str, float | None] = {}
        """modality -> the first sample's nodata tag (used when the YAML gives none)."""

    def __repr__(self) -> str:
        return f"FilesSource({self.cfg.source!r})"

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's spec (known after the first sample's headers: runs ``discover``)."""
        if self._spec is None:
            self._pending = self.discover()  # handed out by the next discover() call
        assert self._spec is not None
        return self._spec

    # -- discover ----------------------------------------------------------------------------

    def discover(self) -> Discovery:
        """List, pair, label, split and group the samples; learn sizes from the first one.

        Returns:
            Items ``{"patch_id", "split", "files": {modality: entry}, "label", "present",
            "groups"}``; rejects, each with the file (or ``table#id=...`` row) and the reason:
            duplicate files, missing bands, a missing modality (unless
            ``allow_missing_modalities``), files without a label row, a label row without
            files, unknown class names, a sample in no split file.

        Raises:
            DatasetNotFoundError: a root or table is missing.
            ConfigError: a table lacks a named column; no sample is complete enough to learn
                a modality's bands.
        """
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        cfg = self.cfg
        rasters = cfg.image_modalities
        listings: dict[str, Listing] = {m.name: list_modality(m, self.storage_options)
                                        for m in rasters}
        rejects: list[Reject] = [r for li in listings.values() for r in li.rejects]
        for m in cfg.modalities:
            if m.kind == "table":
                rows, bad = table_rows(m.file, m.id_column, list(m.columns),
                                       f"table of modality {m.name}", self.storage_options)
                rejects += bad
                self._tables[m.name] = {}
                for sid, r in rows.items():
                    try:
                        values = [float(r[c]) for c in m.columns]
                        if not all(math.isfinite(v) for v in values):
                            raise ValueError("not finite")
                        self._tables[m.name][sid] = values
                    except (TypeError, ValueError):
                        rejects.append({"path": f"{m.file}#{m.id_column}={sid}", "reason":
                                        f"modality {m.name}: a column is not a finite number "
                                        f"({ {c: r[c] for c in m.columns} })"})
        for m in rasters:
            if m.id_json is not None:
                rejects += remap_ids(m, listings[m.name], self.threads,
                                     self.storage_options)
        labels = load_labels(cfg, self.storage_options, self.threads, listings)
        rejects += labels.rejects
        ids = sorted({sid for li in listings.values() for sid in li.files})
        split_of = self._split_lists()
        items: list[dict[str, Any]] = []
        for sid in ids:
            entries = {m.name: listings[m.name].files[sid] for m in rasters
                       if sid in listings[m.name].files}
            files = [u for e in entries.values() for u in all_urls(e)]
            if sid in labels.bad:
                continue  # already rejected with its label row
            present = [m.name for m in cfg.modalities if m.name in entries
                       or (m.kind == "table" and sid in self._tables[m.name])]
            missing = [m for m in cfg.modalities if m.name not in present]
            if missing and not cfg.allow_missing_modalities:
                rejects.append({"path": first_url(next(iter(entries.values()))), "reason":
                                "; ".join(f"missing modality {m.name} ({_where(m)})"
                                          for m in missing)})
                continue
            if sid not in labels.values:
                rejects += [{"path": u, "reason": f"files without a label row: sample {sid} is "
                             f"not in {labels.source}"} for u in files]
                continue
            problem = self._incomplete(sid, entries, listings)
            if problem:
                rejects.append(problem)
                continue
            groups = self._sample_groups(sid, listings, labels)
            split = self._split(sid, groups, listings, labels, split_of)
            if split.startswith("!"):
                rejects.append({"path": first_url(next(iter(entries.values()))),
                                "reason": split[1:]})
                continue
            tables = {m: t[sid] for m, t in self._tables.items() if sid in t}
            items.append({"patch_id": sid, "split": split, "files": entries, "tables": tables,
                          "label": labels.values[sid], "present": present, "groups": groups})
        for sid in sorted(set(labels.values) - set(ids)):
            rejects.append({"path": labels.where.get(sid, sid), "reason": f"label row without "
                            f"files: no file of sample {sid} in any modality"})
        self._spec = self._build_spec(items, labels)
        self._add_lat_lon(items)
        info: dict[str, Any] = {
            "dataset": cfg.name, "description": cfg.source, "source": "files",
            "split_source": self._split_text(),
            "counts": dict(Counter(it["split"] for it in items)),
            "files": {k: li.matched for k, li in listings.items()},
            "label_source": labels.source,
            "groups": [g.name for g in cfg.groups],
            "allow_missing_modalities": cfg.allow_missing_modalities,
            "missing_modalities": dict(Counter(m.name for it in items for m in cfg.modalities
                                               if m.name not in it["present"])),
        }
        self._tables = {}  # now in the items: read() tasks need not carry whole tables
        if cfg.means or cfg.stds:
            info["given_stats"] = {"means": cfg.means, "stds": cfg.stds}
        return Discovery(items=items, rejects=sorted(rejects, key=lambda r: r["path"]), info=info)

    def _incomplete(self, sid: str, entries: Mapping[str, Any],
                    listings: Mapping[str, Listing]) -> Reject | None:
        for m in self.cfg.image_modalities:
            entry = entries.get(m.name)
            if entry is None:
                continue
            gone = missing_bands(m, entry)
            if gone:
                return {"path": first_url(entry), "reason": f"{m.name}: missing band "
                        f"{', '.join(gone)} of sample {sid} (no file matching the pattern)"}
        return None

    def _sample_groups(self, sid: str, listings: Mapping[str, Listing],
                       labels: Labels) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for g in self.cfg.groups:
            if g.column:
                value = labels.extra.get(sid, {}).get(g.column, "")
            else:
                value = listings[g.modality].fields.get(sid, {}).get(g.field, "")
            out[g.name] = value
        return out

    def _split_lists(self) -> dict[str, str]:
        sc = self.cfg.splits
        if sc.mode != "files":
            return {}
        out: dict[str, str] = {}
        for split, url in sc.files.items():
            for sid in read_id_list(url, self.storage_options):
                out[sid] = "!" + f"in two split files ({out[sid].lstrip('!')} and {split})" \
                    if sid in out else split
        return out

    def _split(self, sid: str, groups: Mapping[str, Any], listings: Mapping[str, Listing],
               labels: Labels, split_of: Mapping[str, str]) -> str:
        sc = self.cfg.splits
        if sc.mode == "column":
            raw = labels.extra.get(sid, {}).get(sc.column, "")
            split = SPLIT_ALIASES.get(raw.strip().lower())
            return split or (f"!split {raw!r} in column {sc.column} is not train, val or test")
        if sc.mode == "files":
            if sid not in split_of:
                return "!in no split file (" + ", ".join(sc.files.values()) + ")"
            return split_of[sid]
        if sc.mode == "roots":
            for li in listings.values():
                if sid in li.split:
                    return li.split[sid]
            return "!under no per-split root"
        key = str(groups.get(sc.by, "")) if sc.by else sid
        return seeded_split(key, sc.seed, sc.fractions)

    def _split_text(self) -> str:
        sc = self.cfg.splits
        if sc.mode == "column":
            return f"column {sc.column} of {self.cfg.labels.file}"
        if sc.mode == "files":
            return "split files " + ", ".join(f"{k}={v}" for k, v in sc.files.items())
        if sc.mode == "roots":
            return "per-split roots"
        by = f" by group {sc.by}" if sc.by else " by sample id"
        return f"seeded random split{by} (seed={sc.seed}, fractions={list(sc.fractions)})"

    def _build_spec(self, items: list[dict[str, Any]], labels: Labels) -> DatasetSpec:
        """Band groups from the first sample having each modality (native sizes kept)."""
        mods: list[ModalitySpec] = []
        synthetic = False
        label_size = 0
        for m in self.cfg.modalities:
            if m.kind == "table":
                group = BandGroup(m.name, tuple(m.columns), 0, "float32", kind="vector")
                self._groups[m.name] = [(group, list(range(len(m.columns))))]
                mods.append(ModalitySpec(m.name, (group,)))
                continue
            first = next((it for it in items if m.name in it["files"]), None)
            if first is None:
                raise ConfigError(f"{self.cfg.source}: modalities.{m.name}: no usable sample "
                                  "has this modality (see the rejects)")
            entry = first["files"][m.name]
            slot = entry["dates"][sorted(entry["dates"])[0]] if m.kind == "series" else entry
            if "file" in slot:
                h, _ = read_header(slot["file"], self.storage_options)
                bands = m.bands or tuple(f"b{i + 1}" for i in range(h.count))
                if len(bands) != h.count:
                    raise ConfigError(f"{self.cfg.source}: modalities.{m.name}.bands: "
                                      f"{len(bands)} band names but {slot['file']} has "
                                      f"{h.count} bands")
                sizes = {b: h for b in bands}
            else:
                bands = m.bands
                sizes = {b: read_header(slot["bands"][b], self.storage_options)[0]
                         for b in bands}
            synthetic = synthetic or any(h.synthetic for h in sizes.values())
            self._nodata[m.name] = next(iter(sizes.values())).nodata
            for b, h in sizes.items():
                if h.height != h.width and not m.reproject:
                    raise ConfigError(f"{self.cfg.source}: modalities.{m.name}: band {b} of "
                                      f"sample {first['patch_id']} is {h.height} x {h.width}; "
                                      "chips must be square (or set reproject: true)")
            by_size: dict[int, list[str]] = {}
            for b in bands:
                by_size.setdefault(sizes[b].height, []).append(b)
            if m.kind == "series" and len(by_size) > 1:
                raise ConfigError(f"{self.cfg.source}: modalities.{m.name}: a time series "
                                  f"needs all bands at one size, found {sorted(by_size)}")
            max_len = m.max_len or max(len(it["files"][m.name]["dates"]) for it in items
                                       if m.name in it["files"]) if m.kind == "series" else 0
            groups = []
            for size in sorted(by_size, reverse=True):
                names = by_size[size]
                dtypes = {sizes[b].dtype for b in names}
                if len(dtypes) > 1:
                    raise ConfigError(f"{self.cfg.source}: modalities.{m.name}: bands of one "
                                      f"size have different dtypes {sorted(dtypes)}")
                gname = m.name if len(by_size) == 1 else f"{m.name}_{size}px"
                group = BandGroup(gname, tuple(names), size, dtypes.pop(), kind=m.kind,
                                  max_len=max_len)
                groups.append((group, [bands.index(b) for b in names]))
            self._groups[m.name] = groups
            mods.append(ModalitySpec(m.name, tuple(g for g, _ in groups)))
        if labels.task == "segmentation":
            mask = next((it["label"] for it in items), None)
            if mask is None:
                raise ConfigError(f"{self.cfg.source}: labels.mask: no usable sample")
            h, _ = read_header(str(mask), self.storage_options)
            label_size = h.height
        if self.synthetic_override is not None:
            synthetic = self.synthetic_override
        meta = [g.name for g in self.cfg.groups]
        meta += [GROUP_META] if meta else []
        optional = tuple(m.name for m in self.cfg.modalities) \
            if self.cfg.allow_missing_modalities else ()
        return DatasetSpec(name=self.cfg.name, task=labels.task, classes=labels.classes,
                           modalities=tuple(mods), synthetic=synthetic,
                           meta_keys=(*meta, "lat", "lon"), label_size=label_size,
                           optional_modalities=optional)

    def _add_lat_lon(self, items: list[dict[str, Any]]) -> None:
        """``groups.lat``/``lon`` of each sample: the centre of its reference raster."""
        def centre(item: dict[str, Any]) -> tuple[str, float, float] | None:
            try:
                url = first_url(next(iter(item["files"].values())))
                _, (crs, t, w, h) = read_header(url, self.storage_options)
            except Exception:  # unreadable here: read() rejects it with the reason
                return None
            if crs is None:
                return None
            x, y = t * (w / 2, h / 2)
            return crs.to_wkt(), float(x), float(y)

        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            points = list(pool.map(centre, items))
        for item, ll in zip(items, lat_lon(points), strict=True):
            if ll is not None:
                item["groups"]["lat"], item["groups"]["lon"] = ll

    # -- read --------------------------------------------------------------------------------

    def read(self, item: Mapping[str, Any]) -> Sample:
        """Read and validate one sample.

        Raises:
            PatchError: naming the file at fault: missing, unreadable or truncated, band count,
                dtype or size unlike the first sample's, CRS or bounds off the reference
                raster (beyond ``tolerance``) without ``reproject``, nodata share above
                ``max_nodata``, NaN/inf not declared as nodata, mask values outside the
                classes.
        """
        spec = self.spec
        ref: list[Band | Raster] = []
        arrays: dict[str, np.ndarray] = {}
        present = set(item.get("present") or [])
        for m in self.cfg.modalities:
            groups = self._groups[m.name]
            if m.name not in present:
                for g, _ in groups:
                    shape = (1, *g.shape[1:]) if g.kind == "series" else g.shape
                    arrays[g.name] = np.zeros(shape, dtype=g.dtype)
                    if g.kind == "series":
                        arrays[f"{g.name}_dates"] = np.zeros(1, dtype=np.int32)
                continue
            if m.kind == "table":
                arrays[groups[0][0].name] = np.asarray(item["tables"][m.name],
                                                       dtype=np.float32)
                continue
            entry = item["files"][m.name]
            if m.kind == "image":
                arrays.update(self._read_slot(m, entry, ref))
                continue
            dates = sorted(entry["dates"], key=lambda d: day_of_year(d, m.date_format))
            g = groups[0][0]
            if len(dates) > g.max_len:
                raise PatchError(first_url(entry), f"{m.name}: {len(dates)} dates, more than "
                                                   f"max_len {g.max_len}")
            stack = [self._read_slot(m, entry["dates"][d], ref)[g.name] for d in dates]
            arrays[g.name] = np.stack(stack)
            try:
                arrays[f"{g.name}_dates"] = np.asarray(
                    [day_of_year(d, m.date_format) for d in dates], dtype=np.int32)
            except ValueError as exc:
                raise PatchError(first_url(entry), f"{m.name}: {exc}") from None
        label = self._label(item, ref, spec)
        groups = {k: str(v) for k, v in (item.get("groups") or {}).items()}
        meta = {g.name: groups.get(g.name, "") for g in self.cfg.groups}
        if self.cfg.groups:
            meta[GROUP_META] = groups.get(self.cfg.groups[0].name, "")
        meta.update(lat=groups.get("lat", ""), lon=groups.get("lon", ""))
        out: Sample = {"patch_id": str(item["patch_id"]), "split": str(item.get("split", "")),
                       "label": label, "arrays": arrays, "meta": meta}
        if ref:
            out["geo"] = grid_of(ref[0])  # type: ignore[typeddict-item]
        if spec.optional_modalities:
            out["present"] = {m: m in present for m in spec.optional_modalities}  # type: ignore[typeddict-unknown-key]
        return out

    def _read_slot(self, m: ModalityConfig, slot: Mapping[str, Any],
                   ref: list[Band | Raster]) -> dict[str, np.ndarray]:
        """One date (or the single raster set) of an image modality -> arrays per group."""
        if "file" in slot:
            r = read_rasters([str(slot["file"])], self.storage_options)[0]
            n = sum(len(g.bands) for g, _ in self._groups[m.name])
            if r.array.shape[0] != n:
                raise PatchError(r.path, f"{m.name}: {r.array.shape[0]} bands, expected {n} "
                                         f"({', '.join(m.bands) or 'as the first sample'})")
            rasters: list[tuple[Band | Raster, np.ndarray]] = [(r, r.array)]
            per_band = [(r, i) for i in range(n)]
        else:
            bands = read_bands([str(slot["bands"][b]) for b in m.bands], self.storage_options)
            rasters = [(b, b.array[None]) for b in bands]
            per_band = [(b, 0) for b in bands]
        size_of = {i: g.size for g, idx in self._groups[m.name] for i in idx}
        checked: dict[int, np.ndarray] = {}
        for j, (r, arr) in enumerate(rasters):
            want = size_of[0 if "file" in slot else j]
            if arr.shape[-2:] != (want, want) and not m.reproject:
                raise PatchError(r.path, f"{m.name}: {arr.shape[-2]} x {arr.shape[-1]} pixels, "
                                         f"expected {want} x {want} (as the first sample)")
            checked[id(r)] = self._check(m, r, arr, ref)
        out = {}
        for g, idx in self._groups[m.name]:
            parts = []
            for i in idx:
                r, k = per_band[i]
                a = checked[id(r)][k]
                if a.shape != (g.size, g.size):
                    raise PatchError(r.path, f"{m.name}: band {m.bands[i] if m.bands else i + 1}"
                                             f" is {a.shape[0]} x {a.shape[1]}, expected "
                                             f"{g.size} x {g.size} (as the first sample)")
                parts.append(a)
            out[g.name] = np.ascontiguousarray(np.stack(parts))
        return out

    def _check(self, m: ModalityConfig, r: Band | Raster, arr: np.ndarray,
               ref: list[Band | Raster]) -> np.ndarray:
        """dtype, co-registration (or warp), nodata share and NaN of one file's ``(c, h, w)``."""
        want = next(g.dtype for g, _ in self._groups[m.name])
        if arr.dtype != np.dtype(want):
            raise PatchError(r.path, f"{m.name}: dtype {arr.dtype}, expected {want} (as the "
                                     "first sample)")
        if not ref:
            ref.append(r)
        elif problem := self._off_grid(r, ref[0]):
            if not m.reproject:
                raise PatchError(r.path, f"{m.name}: {problem} (set reproject: true on "
                                         f"modality {m.name} to warp it)")
            arr = self._warp(m, r, arr, ref[0])
        nodata = m.nodata if m.nodata is not None else self._nodata.get(m.name)
        if nodata is not None and math.isnan(nodata):
            bad = ~np.isfinite(arr)
            share = bad.reshape(arr.shape[0], -1).mean(axis=1)
            arr = np.where(bad, np.asarray(m.fill, dtype=arr.dtype), arr) if bad.any() else arr
        else:
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                n = int((~np.isfinite(arr)).sum())
                raise PatchError(r.path, f"{m.name}: {n} NaN/inf pixels (declare nodata: nan "
                                         "to count them as nodata)")
            share = ((arr == nodata).reshape(arr.shape[0], -1).mean(axis=1) if nodata
                     is not None else np.zeros(arr.shape[0]))
        worst = float(share.max()) if share.size else 0.0
        if worst > m.max_nodata:
            raise PatchError(r.path, f"{m.name}: {worst:.0%} nodata pixels (value {nodata}), "
                                     f"more than max_nodata {m.max_nodata:g}")
        return arr

    def _off_grid(self, r: Band | Raster, ref: Band | Raster) -> str | None:
        if r.crs != ref.crs:
            return f"CRS {crs_text(r.crs)} differs from the reference {crs_text(ref.crs)} " \
                   f"({ref.path})"
        tol = self.cfg.tolerance
        if tol is None:
            tol = abs(float(ref.transform.a)) / 2 if ref.transform is not None else 1.0
        diff = max(abs(a - b) for a, b in zip(r.bounds, ref.bounds, strict=True))
        if diff > tol:
            return (f"bounds {tuple(round(v, 2) for v in r.bounds)} differ from the reference "
                    f"{tuple(round(v, 2) for v in ref.bounds)} ({ref.path}) by {diff:.2f}, "
                    f"more than the tolerance {tol:g}")
        return None

    def _warp(self, m: ModalityConfig, r: Band | Raster, arr: np.ndarray,
              ref: Band | Raster) -> np.ndarray:
        from rasterio.enums import Resampling
        from rasterio.transform import from_bounds
        from rasterio.warp import reproject

        size = next(g.size for g, _ in self._groups[m.name])
        out = np.zeros((arr.shape[0], size, size), dtype=arr.dtype)
        if r.crs is None or r.transform is None:
            raise PatchError(r.path, f"{m.name}: no CRS or geotransform to reproject from")
        with gdal_env():
            reproject(arr, out, src_transform=r.transform, src_crs=r.crs,
                      dst_transform=from_bounds(*ref.bounds, size, size), dst_crs=ref.crs,
                      resampling=Resampling[m.resampling])
        return out

    def _label(self, item: Mapping[str, Any], ref: list[Band | Raster],
               spec: DatasetSpec) -> np.ndarray:
        if spec.task != "segmentation":
            dtype = np.float32 if spec.task == "regression" else np.uint8
            return np.asarray(item["label"], dtype=dtype)
        mask = read_rasters([str(item["label"])], self.storage_options)[0]
        if ref and (problem := self._off_grid(mask, ref[0])):
            raise PatchError(mask.path, f"mask: {problem}")
        arr = mask.array[0]
        if arr.shape != (spec.label_size, spec.label_size):
            raise PatchError(mask.path, f"mask is {arr.shape[0]} x {arr.shape[1]}, expected "
                                        f"{spec.label_size} x {spec.label_size}")
        if arr.dtype.kind not in "iu":
            raise PatchError(mask.path, f"mask dtype {arr.dtype}, expected integer class "
                                        "indices")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= len(spec.classes)):
            raise PatchError(mask.path, f"mask values {int(arr.min())}..{int(arr.max())} "
                                        f"outside the {len(spec.classes)} classes (0.."
                                        f"{len(spec.classes) - 1})")
        return arr.astype(np.uint8)


def _where(m: ModalityConfig) -> str:
    if m.kind == "table":
        return f"no row in {m.file}"
    return "no file matching its pattern under " + ", ".join(r.path for r in m.roots)


__all__ = ["GROUP_META", "SYNTHETIC_TAG", "FilesSource", "Header", "read_header"]

