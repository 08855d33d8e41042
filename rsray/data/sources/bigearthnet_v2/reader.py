"""BigEarthNet v2.0 (reBEN): Sentinel-2 + Sentinel-1 patches, 19-class multi-label.

On disk (the layout of ``BigEarthNet-S2.tar.zst``, ``BigEarthNet-S1.tar.zst``,
``Reference_Maps.tar.zst`` and the two parquet files)::

    <root>/BigEarthNet-S2/<S2 product>/<patch_id>/<patch_id>_{B01..B09,B8A,B11,B12}.tif
    <root>/BigEarthNet-S1/<S1 product>/<s1_name>/<s1_name>_{VV,VH}.tif
    <root>/Reference_Maps/<S2 product>/<patch_id>/<patch_id>_reference_map.tif
    <root>/metadata.parquet
    <root>/metadata_for_patches_with_snow_cloud_or_shadow.parquet

``patch_id`` is ``S2{A|B}_MSIL2A_<date>T<time>_N9999_R<orbit>_T<tile>_<cc>_<rr>`` (col/row
zero-padded); its S2 product folder is the id minus the last two ``_`` fields, and the S1
product folder is ``s1_name`` minus its last three. Unlike v1 there are no json files: labels
(19-class names), split (``train``/``validation``/``test``, geography-based), country and the
S1 partner come from ``metadata.parquet``. Bands, sizes and dtypes are v1's (S2 GeoTIFFs now set
``nodata=0``), so band reading is shared with :mod:`rsray.data.sources.bigearthnet`.

:class:`BigEarthNetV2` pairs the folders through the metadata (a patch the metadata does not
know is rejected with the reason; when nothing pairs at all it raises an error saying that the
images and the metadata do not describe each other) and reads one patch at a time.
:func:`write_synthetic_bigearthnet_v2` writes a synthetic twin in this layout, with a
``metadata.parquet`` describing its own images (countries included).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rsray.data.schema import BandGroup, DatasetSpec, Discovery, Reject, Sample
from rsray.data.sources._raster import (
    Band,
    GeoPoint,
    check_same_grid,
    grid_of,
    lat_lon,
    read_bands,
)
from rsray.data.sources.bigearthnet.bands import read_band_groups
from rsray.data.sources.bigearthnet.spec import (
    BIGEARTHNET_19_CLASSES,
    S1_DTYPES,
)
from rsray.data.sources.bigearthnet_v2.metadata import (
    _REFERENCE_CODES,
    METADATA_NAME,
    MODALITIES,
    REFERENCE_MAP_SIZE,
    SNOW_CLOUD_NAME,
    MetadataRow,
    bigearthnet_v2_spec,
    metadata_items,
    read_metadata,
    s1_product,
    s2_product,
)
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError
from rsray.storage import (
    StorageOptions,
    get_fs,
    join_url,
    list_subdirs,
)
from rsray.storage import normalise as normalise_root

__all__ = ["BigEarthNetV2", "check_reference_map"]


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


class BigEarthNetV2:
    """BigEarthNet v2 (reBEN) reader: pairs folders through ``metadata.parquet``, reads patches.

    ``discover`` reads the metadata and lists the product and patch folders (two levels per
    archive; no band file is opened except one header per MGRS tile for ``lat``/``lon``);
    ``read`` runs in Ray tasks and reads one patch.

    Pairing and rejects:
        * an S2 folder not in the metadata -> rejected (``not in metadata.parquet``), unless
          it is in the snow/cloud/shadow companion parquet, which is excluded by default
          (counted in ``info["excluded_snow_cloud"]``; ``include_snow_cloud`` adds those rows);
        * an S2 folder whose metadata ``s1_name`` folder is absent -> rejected;
        * an S1 folder named by no metadata row, or whose S2 partner is absent -> rejected;
        * metadata rows without any folder on disk are ignored (a partial download is
          normal; only the rows naming a folder on disk are even converted).
        * if nothing pairs at all, :meth:`discover` raises :class:`~rsray.errors.RsrayError`
          saying that the images and the metadata do not describe each other.

    Splits come from the metadata (``train``/``validation``/``test`` -> ``train``/``val``/
    ``test``). Hold-out keys (``item["groups"]``): ``country``, ``tile`` (from the patch id)
    and ``lat``/``lon`` of the patch centre (tile origin from one band header per tile).

    Reference maps are not a training target here (the task stays multi-label); when
    ``Reference_Maps`` holds the patch's map and ``check_reference_maps`` is on, ``read``
    checks that it is a uint16 120 x 120 raster on the patch's grid with known CLC codes.
    """

    classes: tuple[str, ...] = BIGEARTHNET_19_CLASSES
    patch_size_m: int = 1200

    def __init__(
        self,
        root: str | Path,
        *,
        metadata: str | None = None,
        snow_cloud_metadata: str | None = None,
        include_snow_cloud: bool = False,
        modalities: Sequence[str] = MODALITIES,
        include_60m: bool = False,
        s1_dtype: Literal["float32", "float16"] = "float32",
        check_reference_maps: bool = True,
        synthetic: bool | None = None,
        num_threads: int = 16,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """Describe a BigEarthNet v2 copy; nothing is read until :meth:`discover`.

        Args:
            root: folder (local or ``s3://...``) holding ``BigEarthNet-S2``,
                ``BigEarthNet-S1``, ``Reference_Maps`` and the parquet files.
            metadata: the metadata parquet (default ``<root>/metadata.parquet``).
            snow_cloud_metadata: the companion parquet of patches with seasonal snow, cloud
                or shadow (default ``<root>/metadata_for_patches_with_snow_cloud_or_shadow
                .parquet``; optional).
            include_snow_cloud: train/evaluate on the companion's patches too.
            modalities: ``("s2", "s1")`` (default), ``("s2",)`` or ``("s1",)``; only the
                folders of these modalities are needed.
            include_60m: also read B01 and B09 (group ``s2_60m``).
            s1_dtype: dtype of the stored S1 array.
            check_reference_maps: validate a patch's reference map when it is present.
            synthetic: mark the spec as synthetic; ``None`` reads the parquet's marker.
            num_threads: threads listing product folders.
            storage_options: fsspec options for a remote root (never logged).

        Raises:
            ConfigError: an argument is not one of its allowed values.
        """
        if s1_dtype not in S1_DTYPES:
            raise ConfigError(f"s1_dtype: {s1_dtype!r} is not one of {', '.join(S1_DTYPES)}")
        if num_threads < 1:
            raise ConfigError(f"num_threads: {num_threads} must be >= 1")
        self.root = normalise_root(str(root))
        self.metadata = metadata or join_url(self.root, METADATA_NAME)
        self.snow_cloud_metadata = snow_cloud_metadata or join_url(self.root, SNOW_CLOUD_NAME)
        self.include_snow_cloud = bool(include_snow_cloud)
        self.modalities = tuple(modalities)
        self.include_60m = bool(include_60m)
        self.s1_dtype = s1_dtype
        self.check_reference_maps = bool(check_reference_maps)
        self.synthetic_override = synthetic
        self.num_threads = int(num_threads)
        self.storage_options = dict(storage_options or {})
        self.spec: DatasetSpec = bigearthnet_v2_spec(self.modalities, self.include_60m,
                                                     s1_dtype, bool(synthetic))

    def __repr__(self) -> str:  # no storage options: they may hold credentials
        return (f"BigEarthNetV2(root={self.root!r}, metadata={self.metadata!r}, "
                f"modalities={self.modalities}, include_60m={self.include_60m}, "
                f"include_snow_cloud={self.include_snow_cloud})")

    @property
    def s2_root(self) -> str:
        """``<root>/BigEarthNet-S2``."""
        return join_url(self.root, "BigEarthNet-S2")

    @property
    def s1_root(self) -> str:
        """``<root>/BigEarthNet-S1``."""
        return join_url(self.root, "BigEarthNet-S1")

    @property
    def maps_root(self) -> str:
        """``<root>/Reference_Maps``."""
        return join_url(self.root, "Reference_Maps")

    # -- discover ----------------------------------------------------------------------------

    def _patch_dirs(self, root: str, what: str, required: bool) -> dict[str, str]:
        """``{patch folder name: url}`` of a ``<root>/<product>/<patch>`` archive."""
        try:
            products = list_subdirs(root, self.storage_options)
        except (FileNotFoundError, NotADirectoryError):
            if not required:
                return {}
            raise DatasetNotFoundError(
                f"{root}: {what} folder not found (expected <product>/<patch> folders, as in "
                "the extracted BigEarthNet v2 archives)") from None

        def patches(product: str) -> list[tuple[str, str]]:
            url = join_url(root, product)
            return [(p, join_url(url, p)) for p in list_subdirs(url, self.storage_options)]

        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            listed = list(pool.map(patches, products))
        return dict(pair for group in listed for pair in group)

    def _read_tables(
        self, patch_ids: Collection[str], s1_names: Collection[str]
    ) -> tuple[list[MetadataRow], list[MetadataRow], bool]:
        """Rows of the metadata and of the snow/cloud companion naming a folder on disk."""
        rows, synthetic = read_metadata(self.metadata, self.storage_options,
                                        patch_ids=patch_ids, s1_names=s1_names)
        extra: list[MetadataRow] = []
        fs, path = get_fs(self.snow_cloud_metadata, self.storage_options)
        if fs.isfile(path):
            extra, _ = read_metadata(self.snow_cloud_metadata, self.storage_options,
                                     patch_ids=patch_ids, s1_names=s1_names)
        elif self.include_snow_cloud:
            raise DatasetNotFoundError(f"{self.snow_cloud_metadata}: snow/cloud/shadow "
                                       "metadata not found (include_snow_cloud needs it)")
        return rows, extra, synthetic

    def discover(self) -> Discovery:
        """Read the metadata, list the archives, pair the patches.

        Returns:
            Items ``{"patch_id", "split", "labels" (19-class indices), "s1_name", "s2_dir",
            "s1_dir", "ref_map" (when present), "groups": {"country", "tile", "lat",
            "lon"}}`` sorted by ``patch_id``; rejects with path and reason (see the class
            docstring); info with counts.

        Raises:
            DatasetNotFoundError: the metadata parquet or a needed archive folder is missing.
            RsrayError: no image folder pairs with any metadata row.
        """
        use_s2, use_s1 = "s2" in self.modalities, "s1" in self.modalities
        s2_dirs = (self._patch_dirs(self.s2_root, "BigEarthNet-S2", required=True)
                   if use_s2 else {})
        s1_dirs = (self._patch_dirs(self.s1_root, "BigEarthNet-S1", required=True)
                   if use_s1 else {})
        maps = (self._patch_dirs(self.maps_root, "Reference_Maps", required=False)
                if self.check_reference_maps and use_s2 else {})
        rows, extra, synthetic_table = self._read_tables(s2_dirs.keys(), s1_dirs.keys())

        table = rows + extra if self.include_snow_cloud else rows
        excluded_ids = set() if self.include_snow_cloud else {r.patch_id for r in extra}
        excluded_s1 = set() if self.include_snow_cloud else {r.s1_name for r in extra}
        items_all, rejects = metadata_items(table, self.metadata)
        by_id = {it["patch_id"]: it for it in items_all}
        by_s1 = {it["s1_name"]: it["patch_id"] for it in items_all}
        known_ids = {r.patch_id for r in table}
        known_s1 = {r.s1_name for r in table}

        items: list[dict[str, Any]] = []
        excluded = Counter[str]()
        for patch_id, s2_dir in sorted(s2_dirs.items()):
            if patch_id in excluded_ids:
                excluded["s2"] += 1
                continue
            if patch_id not in known_ids:
                rejects.append({"path": s2_dir, "reason": "S2 patch not in metadata.parquet "
                                f"({self.metadata}): no labels, split or S1 partner"})
                continue
            it = by_id.get(patch_id)
            if it is None:  # its metadata row was rejected above
                continue
            if use_s1 and it["s1_name"] not in s1_dirs:
                s1_dir = join_url(self.s1_root, s1_product(it["s1_name"]), it["s1_name"])
                rejects.append({"path": s2_dir, "reason": f"S1 patch {it['s1_name']} named by "
                                f"metadata.parquet is missing ({s1_dir})"})
                continue
            items.append(it)
        if use_s1:
            for s1_name, s1_dir in sorted(s1_dirs.items()):
                patch_id = by_s1.get(s1_name)
                if s1_name in excluded_s1:
                    excluded["s1"] += 1
                elif patch_id is None:
                    if s1_name not in known_s1:
                        rejects.append({"path": s1_dir, "reason": "S1 patch not named by any "
                                        f"row of metadata.parquet ({self.metadata})"})
                elif not use_s2:
                    items.append(by_id[patch_id])
                elif patch_id not in s2_dirs:
                    s2_dir = join_url(self.s2_root, s2_product(patch_id), patch_id)
                    rejects.append({"path": s1_dir, "reason": f"S1 patch whose S2 partner "
                                    f"{patch_id} (metadata.parquet) is missing ({s2_dir})"})

        for it in items:
            pid = it["patch_id"]
            if use_s2:
                it["s2_dir"] = s2_dirs[pid]
                if pid in maps:
                    it["ref_map"] = join_url(maps[pid], f"{pid}_reference_map.tif")
            if use_s1:
                it["s1_dir"] = s1_dirs[it["s1_name"]]
        items.sort(key=lambda it: it["patch_id"])
        rejects.sort(key=lambda r: (r["path"], r["reason"]))
        if not items:
            raise RsrayError(self._nothing_pairs(len(table), len(s2_dirs), len(s1_dirs),
                                                 rejects, excluded))
        located = self._add_lat_lon(items)

        synthetic = (synthetic_table if self.synthetic_override is None
                     else bool(self.synthetic_override))
        self.spec = dataclasses.replace(self.spec, synthetic=synthetic)
        counts = Counter(it["split"] for it in items)
        info: dict[str, Any] = {
            "dataset": "BigEarthNet v2.0 (reBEN)",
            "split_source": f"metadata {self.metadata}",
            "counts": {s: counts.get(s, 0) for s in ("train", "val", "test")},
            "metadata_rows_matching_folders": len(rows),
            "snow_cloud_rows_matching_folders": len(extra),
            "include_snow_cloud": self.include_snow_cloud,
            "excluded_snow_cloud": dict(excluded),
            "s2_folders": len(s2_dirs),
            "s1_folders": len(s1_dirs),
            "reference_maps": sum("ref_map" in it for it in items),
            "items": len(items),
            "with_lat_lon": located,
            "rejected_while_pairing": len(rejects),
            "countries": dict(Counter(it["groups"]["country"] for it in items)),
            "modalities": list(self.modalities),
            "synthetic": synthetic,
        }
        return Discovery(items=items, rejects=rejects, info=info)

    def _nothing_pairs(self, rows: int, n_s2: int, n_s1: int, rejects: list[Reject],
                       excluded: Counter[str]) -> str:
        lines = [f"{self.root}: no BigEarthNet v2 patch could be paired: the images and the "
                 f"metadata ({self.metadata}) do not describe each other ({rows} of its rows "
                 "name a folder on disk).",
                 f"  on disk: {n_s2} S2 and {n_s1} S1 patch folder(s) "
                 f"(modalities {', '.join(self.modalities)}); "
                 f"{sum(excluded.values())} excluded as snow/cloud/shadow"]
        lines += [f"  - {r['path']}: {r['reason']}" for r in rejects[:8]]
        if len(rejects) > 8:
            lines.append(f"  ... {len(rejects) - 8} more")
        lines.append("  Use the metadata.parquet distributed with these images (--metadata), "
                     "or restrict --modalities to the archive you have.")
        return "\n".join(lines)

    def _add_lat_lon(self, items: list[dict[str, Any]]) -> int:
        """Add ``groups["lat"/"lon"]`` from one band header per MGRS tile; returns how many.

        Patches sit on their tile's 1200 m grid (``ulx = tile_ulx + 1200 col``, ``uly =
        tile_uly - 1200 row``), so one georeferenced band per tile locates all of them.
        """
        by_tile: dict[str, list[dict[str, Any]]] = {}
        for it in items:
            by_tile.setdefault(it["groups"]["tile"], []).append(it)
        origins: dict[str, tuple[str, float, float]] = {}
        for tile, members in by_tile.items():
            for it in members[:3]:  # a broken first file must not lose the whole tile
                try:
                    band = read_bands([self._ref_url(it)], self.storage_options)[0]
                except PatchError:
                    continue
                col, row = _col_row(it["patch_id"])
                if band.crs is None or band.transform is None:
                    continue
                origins[tile] = (band.crs.to_wkt(), band.transform.c - 1200 * col,
                                 band.transform.f + 1200 * row)
                break
        points: list[GeoPoint | None] = []
        for it in items:
            o = origins.get(it["groups"]["tile"])
            col, row = _col_row(it["patch_id"])
            points.append(None if o is None else
                          (o[0], o[1] + 1200 * col + 600, o[2] - 1200 * row - 600))
        located = 0
        for it, ll in zip(items, lat_lon(points), strict=True):
            if ll is not None:
                it["groups"]["lat"], it["groups"]["lon"] = ll
                located += 1
        return located

    def _ref_url(self, it: Mapping[str, Any]) -> str:
        if "s2_dir" in it:
            return join_url(it["s2_dir"], f"{it['patch_id']}_B02.tif")
        return join_url(it["s1_dir"], f"{it['s1_name']}_VV.tif")

    # -- read --------------------------------------------------------------------------------

    def read(self, item: Mapping[str, Any]) -> Sample:
        """Read and validate one patch.

        Returns:
            Arrays of the chosen modalities (``s2_10m`` (4, 120, 120), ``s2_20m`` (6, 60, 60)
            [, ``s2_60m`` (2, 20, 20)] uint16; ``s1`` (2, 120, 120)); the 19-class multi-hot
            label from the metadata; meta ``s1_patch``, ``country``, ``tile``; ``geo``: the
            grid of S2 B02 (S1 VV without S2).

        Raises:
            PatchError: naming the file at fault (see
                :func:`~rsray.data.sources.bigearthnet.read_band_groups`), or a reference map
                that is not uint16 120 x 120 on the patch's grid with known CLC codes.
        """
        patch_id = str(item["patch_id"])
        label = np.zeros(len(BIGEARTHNET_19_CLASSES), dtype=np.uint8)
        label[list(item["labels"])] = 1
        groups: list[tuple[BandGroup, str, str]] = []
        if "s2" in self.modalities:
            groups += [(g, str(item["s2_dir"]), patch_id)
                       for g in self.spec.modality("s2").groups]
        if "s1" in self.modalities:
            groups += [(g, str(item["s1_dir"]), str(item["s1_name"]))
                       for g in self.spec.modality("s1").groups]
        arrays, ref = read_band_groups(groups, self.storage_options, self.s1_dtype)
        if self.check_reference_maps and item.get("ref_map"):
            check_reference_map(str(item["ref_map"]), ref, self.storage_options)
        g = item.get("groups", {})
        return {
            "patch_id": patch_id,
            "split": str(item.get("split", "")),
            "label": label,
            "arrays": arrays,
            "meta": {"s1_patch": str(item.get("s1_name", "")),
                     "country": str(g.get("country", "")), "tile": str(g.get("tile", ""))},
            "geo": grid_of(ref),
        }


def _col_row(patch_id: str) -> tuple[int, int]:
    col, row = patch_id.rsplit("_", 2)[1:]
    return int(col), int(row)


def check_reference_map(url: str, ref: Band, storage_options: StorageOptions) -> None:
    """Check a reference map: uint16, 120 x 120, on ``ref``'s grid, CLC codes/999/0 only.

    Raises:
        PatchError: naming the map and what is wrong with it.
    """
    band = read_bands([url], storage_options)[0]
    if band.array.dtype != np.uint16:
        raise PatchError(url, f"reference map dtype {band.array.dtype}, expected uint16")
    want = (REFERENCE_MAP_SIZE, REFERENCE_MAP_SIZE)
    if band.array.shape != want:
        raise PatchError(url, f"reference map shape {band.array.shape}, expected {want}")
    check_same_grid(band, ref, "patch")
    unknown = sorted(set(np.unique(band.array).tolist()) - _REFERENCE_CODES)
    if unknown:
        raise PatchError(url, f"reference map has unknown CLC code(s) {unknown[:8]}")
