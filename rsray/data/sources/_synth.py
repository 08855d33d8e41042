"""Helpers every synthetic twin's writer shares: corruption plans, UTM georeferencing, damage.

A synthetic twin (``<dataset>/synth.py``) writes data in the dataset's real on-disk format and
can plant named corruptions (``corrupt={"truncated": [3], ...}``) so that tests check each is
rejected by the reader with its path. The helpers here keep those writers alike:

* :func:`plan_corruptions` validates ``n`` and ``corrupt`` and maps patch index -> kinds;
* :func:`utm_wkt` is the WKT1 of WGS 84 / UTM zone N as BigEarthNet's jsons spell it;
* :func:`truncate_file` cuts a written file to half its size (a truncated download).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plan_corruptions", "truncate_file", "utm_wkt"]

_WKT_TEMPLATE = (
    'PROJCS["WGS 84 / UTM zone {zone}N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
    '6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM['
    '"Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY['
    '"EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]],'
    'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER['
    '"central_meridian",{cm}],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",'
    '500000],PARAMETER["false_northing",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS['
    '"Easting",EAST],AXIS["Northing",NORTH],AUTHORITY["EPSG","{epsg}"]]'
)


def utm_wkt(zone: int) -> str:
    """WKT1 of WGS 84 / UTM zone ``zone`` N (EPSG 326xx), as written in BigEarthNet's jsons."""
    return _WKT_TEMPLATE.format(zone=zone, cm=-183 + 6 * zone, epsg=32600 + zone)


def plan_corruptions(
    corrupt: Mapping[str, int | Sequence[int]] | None, n: int, capacity: int,
    known: Mapping[str, str],
) -> dict[int, list[str]]:
    """Check a synthetic writer's ``n`` and ``corrupt``; return patch index -> kinds.

    Args:
        corrupt: corruption kind -> patch index or indices.
        n: number of patches the writer is asked for.
        capacity: the most patches the twin can write.
        known: the twin's corruption kinds -> what each does.

    Raises:
        ValueError: ``n`` outside ``1..capacity``, an unknown kind or a patch index >= ``n``.
    """
    if not 0 < n <= capacity:
        raise ValueError(f"n: {n} must be in 1..{capacity}")
    corrupt = dict(corrupt or {})
    unknown = sorted(set(corrupt) - set(known))
    if unknown:
        raise ValueError(f"corrupt: unknown kind(s) {unknown}; known: {sorted(known)}")
    by_patch: dict[int, list[str]] = {}
    for kind, value in corrupt.items():
        for i in [value] if isinstance(value, int) else list(value):
            if not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"corrupt[{kind!r}]: patch index {i!r} is outside 0..{n - 1}")
            by_patch.setdefault(i, []).append(kind)
    return by_patch


def truncate_file(path: Path) -> None:
    """Cut ``path`` to half its size, as an interrupted download leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
