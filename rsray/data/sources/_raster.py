"""Small fsspec + rasterio helpers shared by the sources that read folders of GeoTIFFs.

Paths are local paths or fsspec URLs (``s3://bucket/prefix/...``). Local files are opened by
rasterio directly; remote files are fetched through fsspec (concurrently, with the
filesystem's own credentials and endpoint) and handed to rasterio as in-memory bytes, so GDAL
never needs cloud credentials of its own.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import rasterio
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.session import DummySession

from rsray.errors import PatchError
from rsray.storage import StorageOptions, get_fs, is_local


def gdal_env() -> rasterio.Env:
    """Return a rasterio environment that never hands cloud credentials to GDAL.

    Without it, every ``rasterio.open`` builds a boto3 session when AWS variables are set
    (about 13 ms per file); remote bytes come through fsspec anyway.
    """
    return rasterio.Env(session=DummySession())


@dataclass(frozen=True)
class Band:
    """One single-band raster as read from disk."""

    path: str
    """The file (local path or URL) it came from."""
    array: np.ndarray
    """``(height, width)`` pixels in the file's own dtype."""
    crs: CRS | None
    bounds: BoundingBox
    transform: Affine | None = None
    """Pixel-to-CRS affine of the file."""


@dataclass(frozen=True)
class Raster:
    """One multi-band raster as read from disk (all its bands)."""

    path: str
    """The file (local path or URL) it came from."""
    array: np.ndarray
    """``(bands, height, width)`` pixels in the file's own dtype."""
    crs: CRS | None
    bounds: BoundingBox
    transform: Affine | None = None
    """Pixel-to-CRS affine of the file."""


def grid_of(r: Band | Raster) -> dict[str, Any]:
    """The reference grid of a raster as a JSON-serialisable ``sample["geo"]`` dict.

    ``{"crs": WKT, "transform": [a, b, c, d, e, f], "width": W, "height": H}``; the
    covariates layer reprojects GeoTIFF layers onto it.
    """
    height, width = r.array.shape[-2:]
    return {"crs": r.crs.to_wkt() if r.crs is not None else "",
            "transform": [float(v) for v in tuple(r.transform or Affine.identity())[:6]],
            "width": int(width), "height": int(height)}


def _band_from(src: DatasetReader, path: str) -> Band:
    if src.count != 1:
        raise PatchError(path, f"has {src.count} bands, expected a single-band GeoTIFF")
    arr = src.read(1)
    return Band(path=path, array=arr, crs=src.crs, bounds=src.bounds, transform=src.transform)


def _raster_from(src: DatasetReader, path: str) -> Raster:
    return Raster(path=path, array=src.read(), crs=src.crs, bounds=src.bounds,
                  transform=src.transform)


_T = TypeVar("_T", Band, Raster)


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc)
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text


def _read_local(path: str, convert: Callable[[DatasetReader, str], _T], missing: str) -> _T:
    try:
        with rasterio.open(path) as src:
            return convert(src, path)
    except PatchError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        if not os.path.exists(path):
            raise PatchError(path, missing) from None
        raise PatchError(path, f"unreadable or truncated GeoTIFF: {_describe(exc)}") from None


def _read_blob(path: str, blob: bytes, convert: Callable[[DatasetReader, str], _T]) -> _T:
    try:
        with MemoryFile(blob) as mem, mem.open() as src:
            return convert(src, path)
    except PatchError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        raise PatchError(path, f"unreadable or truncated GeoTIFF: {_describe(exc)}") from None


def _read_many(urls: Sequence[str], storage_options: StorageOptions,
               convert: Callable[[DatasetReader, str], _T], missing: str) -> list[_T]:
    if not urls:
        return []
    with warnings.catch_warnings(), gdal_env():
        # A file without geotransform is caught by the caller's bounds check; GDAL's
        # warning would only add noise to the logs.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        fs, _ = get_fs(urls[0], storage_options)
        if is_local(fs):
            return [_read_local(get_fs(u, storage_options)[1], convert, missing) for u in urls]
        paths = [get_fs(u, storage_options)[1] for u in urls]
        blobs = fs.cat(paths, on_error="return")
        out = []
        for url, path in zip(urls, paths, strict=True):
            blob = blobs.get(path)
            if blob is None or isinstance(blob, FileNotFoundError):
                raise PatchError(url, missing)
            if isinstance(blob, BaseException):
                raise PatchError(url, f"could not be fetched: {type(blob).__name__}: {blob}")
            out.append(_read_blob(url, blob, convert))
        return out


def read_bands(urls: Sequence[str], storage_options: StorageOptions = None) -> list[Band]:
    """Read single-band GeoTIFFs (band 1 of each), in the order given.

    Remote files are fetched concurrently with one ``fs.cat`` call.

    Raises:
        PatchError: naming the first file that is missing, unreadable, truncated or has more
            than one band.
    """
    return _read_many(urls, storage_options, _band_from, "missing band file")


def read_rasters(urls: Sequence[str], storage_options: StorageOptions = None) -> list[Raster]:
    """Read multi-band GeoTIFFs (every band of each), in the order given.

    Remote files are fetched concurrently with one ``fs.cat`` call.

    Raises:
        PatchError: naming the first file that is missing, unreadable or truncated.
    """
    return _read_many(urls, storage_options, _raster_from, "missing file")


def crs_text(crs: CRS | None) -> str:
    """Short human-readable CRS: ``EPSG:32633`` when it has a code, else the start of its text."""
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:80]


def check_same_grid(r: Band | Raster, ref: Band | Raster, ref_name: str,
                    tol_m: float = 1.0) -> None:
    """Check that ``r`` has the CRS and bounds (within ``tol_m``) of the reference raster.

    Raises:
        PatchError: naming ``r``'s file, the CRS or bounds it has and those of ``ref_name``.
    """
    if r.crs != ref.crs:
        raise PatchError(r.path, f"CRS {crs_text(r.crs)} differs from the {ref_name} CRS "
                                 f"{crs_text(ref.crs)} ({ref.path})")
    diff = max(abs(a - b) for a, b in zip(r.bounds, ref.bounds, strict=True))
    if diff > tol_m:
        raise PatchError(r.path, f"bounds {tuple(round(v, 2) for v in r.bounds)} differ "
                                 f"from the {ref_name} bounds "
                                 f"{tuple(round(v, 2) for v in ref.bounds)} by {diff:.1f} m "
                                 f"(> {tol_m:g} m)")


def write_geotiff(path: str | os.PathLike[str], arr: np.ndarray, crs: CRS, ulx: float,
                  uly: float, res: float, *, nodata: float | None = None,
                  compress: str | None = None, tags: Mapping[str, str] | None = None) -> None:
    """Write a north-up GeoTIFF: ``(H, W)`` as one band or ``(bands, H, W)`` (synthetic twins).

    Uncompressed and striped unless ``compress`` is given (``deflate`` for reference maps);
    ``tags`` go into the dataset's GDAL metadata.
    """
    data = arr[None] if arr.ndim == 2 else arr
    opts: dict[str, Any] = {"compress": compress} if compress else {}
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype.name, crs=crs, nodata=nodata,
                       transform=Affine(res, 0.0, ulx, 0.0, -res, uly), tiled=False,
                       interleave="band", **opts) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)


GeoPoint = tuple[str, float, float]
"""``(CRS as WKT or "EPSG:xxxx", x, y)``: a point in a projected CRS."""


def lat_lon(points: Sequence[GeoPoint | None]) -> list[tuple[float, float] | None]:
    """WGS 84 ``(lat, lon)`` of each point (5 decimals), one transform per distinct CRS.

    ``None`` where the point is ``None`` or its CRS cannot be parsed or transformed (such a
    sample simply carries no ``lat``/``lon`` hold-out keys).
    """
    from rasterio.errors import CRSError
    from rasterio.warp import transform

    out: list[tuple[float, float] | None] = [None] * len(points)
    by_crs: dict[str, list[tuple[int, float, float]]] = {}
    for i, p in enumerate(points):
        if p is not None:
            by_crs.setdefault(p[0], []).append((i, float(p[1]), float(p[2])))
    for text, pts in by_crs.items():
        try:
            lons, lats = transform(CRS.from_user_input(text), "EPSG:4326",
                                   [x for _, x, _ in pts], [y for _, _, y in pts])
        except (CRSError, RasterioError, ValueError):
            continue
        for (i, _, _), lat, lon in zip(pts, lats, lons, strict=True):
            if np.isfinite(lat) and np.isfinite(lon):
                out[i] = (round(float(lat), 5), round(float(lon), 5))
    return out
