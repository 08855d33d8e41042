"""Reading a patch's band files (one GeoTIFF per band, ``.tif`` or ``.tiff``) into band groups.

:func:`read_band_groups` reads the bands of each group in parallel and checks their shape,
dtype and grid; the v2 reader uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rsray.data.schema import BandGroup
from rsray.data.sources._raster import (
    Band,
    check_same_grid,
    read_bands,
)
from rsray.errors import PatchError
from rsray.storage import (
    StorageOptions,
    join_url,
)

__all__ = [
    "BAND_EXTENSIONS",
    "read_band_groups",
]


def read_band_groups(
    groups: Sequence[tuple[BandGroup, str, str]],
    storage_options: StorageOptions = None,
    s1_dtype: str = "float32",
) -> tuple[dict[str, np.ndarray], Band]:
    """Read, validate and stack BigEarthNet's single-band files (v1 and v2 layouts).

    Args:
        groups: ``(band group, folder, file stem)``; band ``b`` is ``<folder>/<stem>_<b>.tif``
            or, as some reBEN copies name them, ``.tiff`` (both are accepted, also mixed).
            The group called ``s1`` holds float32 dB, the others uint16. The first band read
            (S2 B02, or S1 VV without S2) is the reference grid of the patch.
        storage_options: fsspec options for remote folders.
        s1_dtype: dtype of the returned ``s1`` array (``float32`` or ``float16``).

    Returns:
        Group name -> ``(bands, size, size)`` array, and the reference band.

    Raises:
        PatchError: naming the file at fault: missing, unreadable or truncated, wrong dtype
            or shape, NaN/inf in a float band, CRS or bounds (> 1 m) differing from the
            reference band; S1 values that do not fit ``s1_dtype``.
    """
    urls = [join_url(d, f"{stem}_{b}") for g, d, stem in groups for b in g.bands]
    bands = iter(_read_tif_or_tiff(urls, storage_options))
    ref: Band | None = None
    ref_name = ""
    arrays: dict[str, np.ndarray] = {}
    for g, folder, _ in groups:
        is_s1 = g.name == "s1"
        want_dtype = "float32" if is_s1 else "uint16"
        layers = []
        for band_name in g.bands:
            band = next(bands)
            if band.array.dtype != np.dtype(want_dtype):
                raise PatchError(band.path, f"dtype {band.array.dtype}, expected "
                                            f"{want_dtype} for band {band_name}")
            if band.array.shape != (g.size, g.size):
                raise PatchError(band.path, f"shape {band.array.shape}, expected "
                                            f"({g.size}, {g.size}) for band {band_name}")
            if band.array.dtype.kind == "f" and not np.isfinite(band.array).all():
                bad = int((~np.isfinite(band.array)).sum())
                raise PatchError(band.path, f"band {band_name} has {bad} NaN/inf pixels")
            if ref is None:
                ref, ref_name = band, f"{'S1' if is_s1 else 'S2'} {band_name}"
            else:
                check_same_grid(band, ref, ref_name)
            layers.append(band.array)
        arr = np.stack(layers)
        if is_s1 and s1_dtype != "float32":
            arr = arr.astype(s1_dtype)
            if not np.isfinite(arr).all():
                raise PatchError(folder, f"S1 values do not fit {s1_dtype}")
        arrays[g.name] = arr
    if ref is None:
        raise ValueError("read_band_groups: no band to read")
    return arrays, ref


BAND_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff")
"""File name endings of a band GeoTIFF, in the order they are looked for."""


def _read_tif_or_tiff(stems: Sequence[str], storage_options: StorageOptions) -> list[Band]:
    """Read ``<stem>.tif`` for every stem, falling back to ``<stem>.tiff`` where it is missing.

    Once a folder's band is found as ``.tiff``, that folder's later bands are looked for as
    ``.tiff`` first (a folder normally uses one ending), so a ``.tiff`` patch costs one retry.

    Raises:
        PatchError: naming the ``.tif`` path when a band exists under neither name, or the
            first other fault :func:`read_bands` finds.
    """
    ext = [0] * len(stems)  # index into BAND_EXTENSIONS per stem
    tried: list[set[int]] = [set() for _ in stems]
    while True:
        urls = [s + BAND_EXTENSIONS[e] for s, e in zip(stems, ext, strict=True)]
        try:
            return read_bands(urls, storage_options)
        except PatchError as exc:
            if exc.reason != "missing band file" or exc.path not in urls:
                raise
            i = urls.index(exc.path)
            tried[i].add(ext[i])
            left = [e for e in range(len(BAND_EXTENSIONS)) if e not in tried[i]]
            if not left:
                raise PatchError(stems[i] + BAND_EXTENSIONS[0], "missing band file (no "
                                 + " or ".join(BAND_EXTENSIONS) + ")") from None
            ext[i] = left[0]
            folder = stems[i].rsplit("/", 1)[0]
            for j in range(i + 1, len(stems)):
                if not tried[j] and stems[j].rsplit("/", 1)[0] == folder:
                    ext[j] = ext[i]
