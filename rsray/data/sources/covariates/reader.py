"""Geographic covariates: GeoTIFF layers and spectral indices as extra modalities of any dataset.

:class:`WithCovariates` wraps any :class:`~rsray.data.schema.Source`. Its ``read`` calls the
inner source's ``read``, then

* warps every :class:`CovariateLayer` (a DEM, a land-cover map, temperature, wind speed, ...;
  a local GeoTIFF/VRT or an ``s3://`` GeoTIFF) onto the patch's grid with
  :func:`rasterio.warp.reproject` (bilinear for continuous layers, nearest for categorical
  ones; any :class:`rasterio.enums.Resampling` name per layer). The grid comes from the
  sample's ``geo`` entry (:class:`~rsray.data.schema.GeoRef`), which georeferenced readers
  return: its CRS, affine transform and size. Only the window of the layer around the patch is
  read, so continental DEMs are fine; remote layers are read through fsspec (ranged reads,
  the filesystem's own credentials), never through GDAL's cloud drivers;
* computes normalised-difference indices (NDVI, NDWI, NDMI, NDBI) from the bands of an image
  modality (``s2`` by default; band names from the source's spec, e.g. B04/B08 for NDVI),
  bringing bands of another size to the index grid with bilinear interpolation.

Modalities added to the spec (one band group each, ``float32`` or ``float16``, ``size x size``
pixels, ``size`` = the inner spec's largest image group unless given):

* one modality per layer, named after the layer (``dem``, ``temperature``, ...), unless layers
  share a ``modality`` name (``climate`` = temperature + wind); fusion models take any dict of
  modalities, so early fusion (``data.modalities=[s2,dem,climate]`` with ``early_fusion_*``)
  and learned per-modality fusion both work on the same shards;
* a categorical layer with ``categories`` becomes one 0/1 channel per class code
  (``landcover_10``, ``landcover_20``, ...); without ``categories`` it stays one channel of
  raw codes (then use ``nearest``);
* ``indices`` (``NDVI``, ``NDWI``, ... in the order asked).

Validation: a layer file that is missing, unreadable, has no CRS or no geotransform stops
``discover`` with an error naming the file; so does a dataset whose reader gives no ``geo``.
Per patch (a :class:`~rsray.errors.PatchError` naming the layer file and the patch, which
``rsray prepare`` lists as a reject): the layer does not cover the patch (outside its bounds,
or every pixel nodata), more than ``max_missing`` of the patch has no data, NaN values the layer
does not declare as nodata, a truncated file (a block cannot be read), codes outside
``categories``. Up to ``max_missing`` of missing pixels are filled (``fill``, or the mean / most
common code of the patch's valid pixels; one-hot channels stay 0) and recorded in the
``covariates_filled`` meta column (``dem:0.031``; empty when nothing was filled) and as the
sample flag ``covariates_filled``, which ``rsray prepare`` counts per split in the manifest's
``info.flags``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from affine import Affine
from rasterio.io import DatasetReader

from rsray.data.schema import BandGroup, DatasetSpec, Discovery, ModalitySpec, Sample, Source
from rsray.data.sources.covariates.layer import (
    _NAME_RE,
    DEFAULT_INDEX_BANDS,
    DTYPES,
    FILLED_META_KEY,
    INDICES,
    CovariateLayer,
)
from rsray.data.sources.covariates.warp import (
    _open_layer,
    _patch_grid,
    normalized_difference,
    resize_bilinear,
    warp_layer,
)
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError
from rsray.storage import normalise as normalise_root

__all__ = ["WithCovariates"]


# --------------------------------------------------------------------------------------------
# Layer files
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The wrapper
# --------------------------------------------------------------------------------------------


class WithCovariates:
    """A :class:`~rsray.data.schema.Source` plus covariate layers and spectral indices.

    ``discover`` runs the inner source's ``discover``, opens every layer (an unusable layer
    stops here, naming the file) and reads the first readable sample to check that the reader
    gives a georeference. ``read`` runs the inner ``read`` and adds one array per new
    modality. The instance pickles without its open files (each Ray task reopens them once).
    """

    def __init__(
        self,
        source: Source,
        layers: Sequence[CovariateLayer] = (),
        indices: Sequence[str] = (),
        *,
        size: int | None = None,
        dtype: str = "float32",
        index_modality: str = "s2",
        index_bands: Mapping[str, str] | None = None,
        indices_name: str = "indices",
        reflectance_offset: float = 0.0,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """Describe the extra modalities; nothing is opened until :meth:`discover`/:meth:`read`.

        Args:
            source: the dataset reader to extend.
            layers: GeoTIFF layers (see :class:`CovariateLayer`).
            indices: names from :data:`INDICES` (``ndvi``, ``ndwi``, ``ndmi``, ``ndbi``).
            size: pixels per side of the new modalities; ``None`` = the largest image band
                group of the source (BigEarthNet: 120, the S2 10 m grid).
            dtype: stored dtype, ``float32`` or ``float16`` (half the bytes; DEM metres keep
                ~0.5 m precision up to 1000 m, ~2 m up to 4000 m).
            index_modality: the image modality whose bands the indices use.
            index_bands: role -> band name overrides of :data:`DEFAULT_INDEX_BANDS`.
            indices_name: name of the indices modality.
            reflectance_offset: added to the index bands before the ratio (e.g. -1000 for
                Sentinel-2 L2A products of processing baseline 04.00 and later).
            storage_options: fsspec options for ``s3://`` layers (endpoint, profile, ...).

        Raises:
            ConfigError: unknown index, missing index band, a name clashing with the source's
                modalities or band groups, duplicate channels, bad size or dtype.
        """
        self.source = source
        self.layers = tuple(layers)
        self.indices = tuple(str(i).lower() for i in indices)
        self.dtype = dtype
        self.index_modality = index_modality
        self.index_bands = {**DEFAULT_INDEX_BANDS, **dict(index_bands or {})}
        self.indices_name = indices_name
        self.reflectance_offset = float(reflectance_offset)
        self.storage_options = dict(storage_options or {})
        self.layers = tuple(dataclasses.replace(la, path=normalise_root(la.path))
                            for la in self.layers)
        inner = source.spec
        if dtype not in DTYPES:
            raise ConfigError(f"covariates dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        if not self.layers and not self.indices:
            raise ConfigError("WithCovariates: give at least one layer or one index")
        images = [g.size for g in inner.groups if g.kind == "image"]
        if size is None:
            if not images:
                raise ConfigError(f"{inner.name} has no image band group; pass size=")
            size = max(images)
        if size < 1:
            raise ConfigError(f"covariates size {size} must be >= 1")
        self.size = int(size)
        self._index_sources = self._check_indices(inner)
        self._modalities = self._build_modalities(inner)
        self._layer_modalities = tuple(m for m in self._modalities
                                       if not (self.indices and m.name == self.indices_name))
        self._open: dict[str, DatasetReader] = {}

    def __repr__(self) -> str:
        return (f"WithCovariates({self.source!r}, layers={[la.name for la in self.layers]}, "
                f"indices={list(self.indices)})")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}  # open files do not travel to Ray tasks
        return state

    # -- spec --------------------------------------------------------------------------------

    def _check_indices(self, inner: DatasetSpec) -> dict[str, tuple[str, int]]:
        """Role -> ``(group name, channel in group)`` of every band the indices need."""
        unknown = [i for i in self.indices if i not in INDICES]
        if unknown:
            raise ConfigError(f"indices: {unknown} unknown; rsray computes "
                              + ", ".join(INDICES))
        if len(set(self.indices)) != len(self.indices):
            raise ConfigError(f"indices: {list(self.indices)} names an index twice")
        if not self.indices:
            return {}
        try:
            modality = inner.modality(self.index_modality)
        except KeyError as exc:
            raise ConfigError(f"indices: {exc.args[0]}") from None
        out: dict[str, tuple[str, int]] = {}
        for role in sorted({r for i in self.indices for r in INDICES[i]}):
            band = self.index_bands[role]
            names = _band_aliases(band)
            where = [(g, g.bands.index(b)) for b in names for g in modality.groups
                     if b in g.bands]
            if not where:
                raise ConfigError(
                    f"indices {', '.join(self.indices)}: the {role} band {band!r} is not in "
                    f"modality {modality.name} of {inner.name} (bands: "
                    f"{', '.join(modality.bands)}); set index_bands={{'{role}': ...}}")
            group, channel = where[0]
            if group.kind != "image":
                raise ConfigError(f"indices: band {band} of {inner.name} is in a {group.kind} "
                                  f"group ({group.name}); indices need image bands")
            out[role] = (group.name, channel)
        return out

    def _build_modalities(self, inner: DatasetSpec) -> tuple[ModalitySpec, ...]:
        taken = {m.name for m in inner.modalities} | {g.name for g in inner.groups}
        by_modality: dict[str, list[CovariateLayer]] = {}
        for layer in self.layers:
            by_modality.setdefault(layer.modality_name, []).append(layer)
        new: list[ModalitySpec] = []
        for name, layers in by_modality.items():
            sizes = {la.size or self.size for la in layers}
            if len(sizes) > 1:
                raise ConfigError(f"covariate modality {name}: its layers "
                                  f"{[la.name for la in layers]} ask for sizes {sorted(sizes)}; "
                                  "layers of one modality share one size")
            bands = tuple(c for la in layers for c in la.channels)
            if len(set(bands)) != len(bands):
                raise ConfigError(f"covariate modality {name}: channel names repeat: {bands}")
            new.append(ModalitySpec(name, (BandGroup(name, bands, sizes.pop(), self.dtype),)))
        if self.indices:
            bands = tuple(i.upper() for i in self.indices)
            new.append(ModalitySpec(self.indices_name,
                                    (BandGroup(self.indices_name, bands, self.size,
                                               self.dtype),)))
        seen: set[str] = set()
        for m in new:
            if m.name in taken or m.name in seen:
                raise ConfigError(f"covariate modality {m.name!r} clashes with a modality or "
                                  f"band group of {inner.name} ({', '.join(sorted(taken))}) or "
                                  "another covariate; rename the layer or set modality=")
            if not _NAME_RE.match(m.name):
                raise ConfigError(f"covariate modality name {m.name!r} is not a valid name")
            seen.add(m.name)
        return tuple(new)

    @property
    def spec(self) -> DatasetSpec:
        """The source's spec (as refined by its ``discover``) plus the covariate modalities."""
        inner = self.source.spec
        meta = inner.meta_keys + ((FILLED_META_KEY,) if self.layers else ())
        return dataclasses.replace(inner, modalities=inner.modalities + self._modalities,
                                   meta_keys=meta)

    # -- discover ----------------------------------------------------------------------------

    def _dataset(self, layer: CovariateLayer) -> DatasetReader:
        ds = self._open.get(layer.path)
        if ds is None or ds.closed:
            ds = _open_layer(layer, self.storage_options)
            self._open[layer.path] = ds
        return ds

    def close(self) -> None:
        """Close the open layer files."""
        for ds in self._open.values():
            ds.close()
        self._open.clear()

    def discover(self) -> Discovery:
        """The source's discovery, after checking every layer and the georeference.

        Raises:
            DatasetNotFoundError: a layer file does not exist.
            RsrayError: a layer file is unreadable, has no CRS/geotransform or lacks the band
                asked for; or the dataset's reader gives no ``geo`` (covariate layers need it).
        """
        disc = self.source.discover()
        layer_info = []
        for layer in self.layers:
            try:
                ds = self._dataset(layer)
            except PatchError as exc:
                err = DatasetNotFoundError if exc.reason.endswith("file not found") else RsrayError
                raise err(str(exc)) from None
            layer_info.append({**layer.describe(), "crs": ds.crs.to_string(),
                               "resolution": [abs(ds.transform.a), abs(ds.transform.e)],
                               "bounds": list(ds.bounds), "dtype": ds.dtypes[layer.band - 1]})
        if self.layers:
            self._check_georeferenced(disc.items)
        disc.info = {**disc.info, "covariates": {
            "layers": layer_info, "indices": list(self.indices),
            "index_modality": self.index_modality if self.indices else "",
            "size": self.size, "dtype": self.dtype,
            "modalities": {m.name: list(m.bands) for m in self._modalities}}}
        return disc

    def _check_georeferenced(self, items: Sequence[Mapping[str, Any]], tries: int = 5) -> None:
        """Read up to ``tries`` samples until one reads; it must carry a valid ``geo``."""
        for item in items[:tries]:
            try:
                sample = self.source.read(item)
            except PatchError:
                continue
            pid = str(sample.get("patch_id", item.get("patch_id")))
            if "geo" not in sample:
                raise RsrayError(
                    f"{self.source.spec.name}: the {type(self.source).__name__} reader gives no "
                    f"georeference (sample['geo']) for {pid}, so covariate layers cannot be "
                    "warped onto its patches. Use --indices alone, or make the reader return "
                    "sample['geo'] (see rsray/data/sources/covariates/reader.py)")
            try:
                _patch_grid(sample["geo"], pid)
            except PatchError as exc:
                raise RsrayError(f"{self.source.spec.name}: the {type(self.source).__name__} "
                                 f"reader returns an unusable georeference: {exc}") from None
            return

    # -- read --------------------------------------------------------------------------------

    def read(self, item: Mapping[str, Any]) -> Sample:
        """Read the inner sample and add the covariate and index arrays.

        Raises:
            PatchError: from the inner reader; a sample without ``geo`` (naming the patch); a
                layer problem for this patch (naming the layer file and the patch).
        """
        sample = self.source.read(item)
        pid = str(sample["patch_id"])
        arrays = dict(sample["arrays"])
        meta = dict(sample["meta"])
        extra: dict[str, Any] = {}
        if self.layers:
            if "geo" not in sample:
                raise PatchError(pid, f"the {type(self.source).__name__} reader gave no "
                                      "georeference (sample['geo']); covariate layers need one")
            crs, transform, width, height = _patch_grid(sample["geo"], pid)
            filled: list[str] = []
            for m in self._layer_modalities:
                group = m.groups[0]
                dst = transform @ Affine.scale(width / group.size, height / group.size)
                channels = []
                for layer in (la for la in self.layers if la.modality_name == m.name):
                    warped = warp_layer(self._dataset(layer), layer, crs, dst, group.size, pid)
                    channels += self._finish(layer, warped, pid, filled)
                arrays[group.name] = self._cast(np.stack(channels), group.name, pid)
            meta[FILLED_META_KEY] = ";".join(filled)
            if filled:  # counted per split in the manifest's info.flags by prepare
                extra["flags"] = {**(sample.get("flags") or {}), FILLED_META_KEY: True}
        if self.indices:
            arrays[self.indices_name] = self._cast(self._indices(sample["arrays"], pid),
                                                   self.indices_name, pid)
        return {**sample, "arrays": arrays, "meta": meta, **extra}  # type: ignore[typeddict-item]

    def _finish(self, layer: CovariateLayer, x: np.ndarray, pid: str,
                filled: list[str]) -> list[np.ndarray]:
        """Coverage check, fill and (categorical) one-hot channels of one warped layer."""
        what = f"covariate layer '{layer.name}'"
        missing = np.isnan(x)
        share = float(missing.mean())
        if share >= 1.0:
            raise PatchError(layer.path, f"{what} does not cover patch {pid}: every pixel is "
                                         "nodata there")
        if share > layer.max_missing:
            raise PatchError(layer.path, f"{what}: {share:.1%} of patch {pid} has no data "
                                         f"(nodata or outside the layer); max_missing is "
                                         f"{layer.max_missing:.1%}")
        valid = x[~missing]
        if layer.categories:
            codes = np.asarray(layer.categories, dtype=np.float64)
            bad = np.unique(valid[~np.isin(valid, codes)])
            if bad.size:
                raise PatchError(layer.path, f"{what}: patch {pid} has code(s) "
                                             f"{[_num(v) for v in bad[:10]]} not in the layer's "
                                             f"categories {list(layer.categories)}")
            out = [(x == c).astype(np.float32) for c in codes]  # missing pixels: all zeros
        else:
            if share > 0:
                x = x.copy()
                x[missing] = self._fill_value(layer, valid)
            out = [x]
        if share > 0:
            filled.append(f"{layer.name}:{share:.4f}")
        return out

    @staticmethod
    def _fill_value(layer: CovariateLayer, valid: np.ndarray) -> float:
        if layer.fill is not None:
            return layer.fill
        if layer.categorical:
            vals, counts = np.unique(valid, return_counts=True)
            return float(vals[np.argmax(counts)])
        return float(valid.mean())

    def _indices(self, arrays: Mapping[str, np.ndarray], pid: str) -> np.ndarray:
        bands: dict[str, np.ndarray] = {}
        for role, (group, channel) in self._index_sources.items():
            arr = np.asarray(arrays[group])[channel]
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise PatchError(pid, f"band {self.index_bands[role]} ({group}) has NaN/inf "
                                      "values; cannot compute indices")
            bands[role] = resize_bilinear(arr, self.size)
        return np.stack([normalized_difference(bands[INDICES[i][0]], bands[INDICES[i][1]],
                                               self.reflectance_offset)
                         for i in self.indices])

    def _cast(self, arr: np.ndarray, group: str, pid: str) -> np.ndarray:
        out = arr.astype(self.dtype)
        if not np.isfinite(out).all():
            raise PatchError(pid, f"{group}: values do not fit {self.dtype} (or are not finite)"
                                  f"; range {np.nanmin(arr):.4g}..{np.nanmax(arr):.4g}")
        return out


def _band_aliases(band: str) -> tuple[str, ...]:
    """``band`` and its Sentinel-2 spelling variants: ``B04`` <-> ``B4`` (SEN12MS), ``B8A``."""
    m = re.fullmatch(r"B0*(\d+)(A?)", band)
    if not m:
        return (band,)
    n, a = int(m.group(1)), m.group(2)
    return tuple(dict.fromkeys((band, f"B{n:02d}{a}", f"B{n}{a}")))


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


# --------------------------------------------------------------------------------------------
# Command line (every `rsray prepare <dataset>`)
# --------------------------------------------------------------------------------------------
