"""GLOBE Observer's vocabulary: directions, labels, metadata features, photo paths, the spec.

:func:`globe_spec` builds the :class:`~rsray.data.schema.DatasetSpec` of a layout
(``directions`` or ``stacked``) and feature list; :func:`photo_rel_path` maps a photo URL to
its path under a local mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from urllib.parse import urlparse

from rsray.data.schema import BandGroup, DatasetSpec, ModalitySpec
from rsray.data.sources._http import is_http_url
from rsray.errors import ConfigError

__all__ = [
    "CLASSES",
    "DEFAULT_CACHE",
    "DIRECTIONS",
    "FEATURES",
    "HORIZONTAL",
    "LAYOUTS",
    "META_KEYS",
    "MUC_LEVEL1",
    "SYNTHETIC_ORGANIZATION",
    "globe_spec",
    "photo_rel_path",
]


# --------------------------------------------------------------------------------------------
# Constants: directions, labels, features
# --------------------------------------------------------------------------------------------

DIRECTIONS: tuple[str, ...] = ("north", "south", "east", "west", "up", "down")
"""Photo directions, in channel/modality order."""
_DIR_COLUMN = {"north": "North", "south": "South", "east": "East", "west": "West",
               "up": "Upward", "down": "Downward"}
HORIZONTAL: tuple[str, ...] = ("north", "south", "east", "west")

CLASSES: tuple[str, ...] = ("snow_ice", "leaves_on_trees")
"""The two binary heads."""
LABEL_COLUMNS: dict[str, str] = {"snow_ice": "landcoversSnowIce",
                                 "leaves_on_trees": "landcoversLeavesOnTrees"}

CONDITIONS: tuple[tuple[str, str], ...] = (
    ("raining_snowing", "landcoversRainingSnowing"),
    ("dry_ground", "landcoversDryGround"),
    ("muddy", "landcoversMuddy"),
    ("standing_water", "landcoversStandingWater"),
)
"""Boolean surface/weather conditions recorded with the observation (not the labels)."""

MUC_LEVEL1: tuple[str, ...] = (
    "forest", "woodland", "shrubland", "dwarf_shrubland", "herbaceous", "barren", "wetland",
    "open_water", "cultivated", "urban",
)
"""GLOBE's Modified UNESCO Classification, first digit 0-9 (closed forest, woodland, ...)."""

FEATURES: tuple[str, ...] = (
    "latitude", "longitude", "abs_latitude", "latlon_missing",
    "elevation_m", "elevation_missing",
    "doy_sin", "doy_cos", "winterness",
    "solar_hour_sin", "solar_hour_cos", "time_missing",
    *(name for name, _ in CONDITIONS), *(f"{name}_missing" for name, _ in CONDITIONS),
    *(f"muc_{c}" for c in MUC_LEVEL1), "muc_missing",
    *(f"cover_{c}" for c in MUC_LEVEL1), "cover_missing",
    *(f"photo_{d}" for d in DIRECTIONS),
)
"""The metadata vector, in order (every value finite; missing values imputed + indicator):

* ``latitude``, ``longitude`` (site coordinates, degrees), ``abs_latitude``; ``latlon_missing``
  (then all three are 0);
* ``elevation_m`` (site elevation; missing -> training-split median, ``elevation_missing``);
* ``doy_sin``, ``doy_cos``: day of year of ``measuredDate`` on the unit circle
  (``2 pi (doy - 1) / 365.25``), so 31 December is next to 1 January;
* ``winterness``: ``cos(2 pi (doy - 15) / 365.25) * sign(lat) * min(|lat| / 30, 1)``: +1 in
  mid-January north / mid-July south of 30 degrees, -1 half a year later, 0 at the equator;
* ``solar_hour_sin/cos``: local solar time of ``landcoversMeasuredAt`` (UTC + longitude / 15 h)
  on the unit circle; ``time_missing``;
* ``raining_snowing``, ``dry_ground``, ``muddy``, ``standing_water``: 0/1, missing -> 0 with
  ``<name>_missing`` = 1;
* ``muc_<class>``: one-hot of the first digit of ``landcoversMucCode``; ``muc_missing``;
* ``cover_<class>``: share (0-1) of each MUC class in the North/South/East/West
  classifications (``70% MUC 91 [...]`` entries, averaged over the directions that have
  any; percentages need not sum to 100); ``cover_missing``;
* ``photo_<dir>``: 1 when that direction's photo was read, 0 when it is a zero image.

Left out: identifiers (``organizationId``, ``siteId``, ``pid``, ``landcoversUserid``,
``landcoversLandCoverId``: arbitrary codes a model would memorise sites by), free text
(captions, field notes, extra data), record bookkeeping dates, the GPS fix of the
observation (within metres of the site coordinates) and, of course, the two labels.
``raining_snowing`` is weather at observation time, not snow on the ground; drop it (or any
feature) with ``exclude_features`` if a study needs to.
"""

LAYOUTS: tuple[str, ...] = ("directions", "stacked")
SYNTHETIC_ORGANIZATION = "rsray SYNTHETIC twin"
"""``organizationName`` of every synthetic record (the twin's marker)."""
META_KEYS: tuple[str, ...] = ("site_id", "measured_date", "country_code", "missing_photos")
DEFAULT_CACHE = "~/.cache/rsray/globe_photos"
_PHOTO_PREFIX = "/system/photos/"
_NOT_A_PHOTO = {"": "no photo", "rejected": "photo rejected by GLOBE review",
                "pending": "photo pending GLOBE review", "null": "no photo",
                "none": "no photo", "nan": "no photo"}
_REQUIRED = ("measuredDate", "latitude", "longitude", *LABEL_COLUMNS.values(),
             *(f"landcovers{c}PhotoUrl" for c in _DIR_COLUMN.values()))


def photo_rel_path(url: str) -> str:
    """Path of a photo inside a mirror folder: the URL path after ``/system/photos/``.

    ``https://data.globe.gov/system/photos/2021/01/22/2095382/original.jpg`` ->
    ``2021/01/22/2095382/original.jpg``; other URLs give their whole path without the
    leading ``/``; a value that is not a URL is returned unchanged.
    """
    if not is_http_url(url) and not url.startswith("file://"):
        return url
    path = urlparse(url).path
    i = path.find(_PHOTO_PREFIX)
    return path[i + len(_PHOTO_PREFIX):] if i >= 0 else path.lstrip("/")


def globe_spec(
    photo_size: int = 128,
    layout: Literal["directions", "stacked"] = "directions",
    features: Sequence[str] = FEATURES,
    synthetic: bool = False,
) -> DatasetSpec:
    """The :class:`DatasetSpec` of GLOBE Observer land cover.

    Args:
        photo_size: side of the stored square photos (pixels).
        layout: ``directions`` (one modality per direction) or ``stacked`` (one ``photos``
            modality of six groups); group names and bands (``north_R`` ...) are the same.
        features: names of the metadata vector (a subset of :data:`FEATURES`, in order).
        synthetic: the data come from :func:`write_synthetic_globe`.

    Raises:
        ConfigError: bad size, layout or feature list.
    """
    if not isinstance(photo_size, int) or photo_size < 8:
        raise ConfigError(f"photo_size: {photo_size!r} must be an integer >= 8")
    if layout not in LAYOUTS:
        raise ConfigError(f"layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    if not features:
        raise ConfigError("features: the metadata vector needs at least one feature")
    groups = {d: BandGroup(d, (f"{d}_R", f"{d}_G", f"{d}_B"), photo_size, "uint8")
              for d in DIRECTIONS}
    if layout == "directions":
        photos = tuple(ModalitySpec(d, (groups[d],)) for d in DIRECTIONS)
    else:
        photos = (ModalitySpec("photos", tuple(groups[d] for d in DIRECTIONS)),)
    meta = ModalitySpec("metadata", (BandGroup("metadata", tuple(features), 1, "float32",
                                               kind="vector"),))
    return DatasetSpec(name="globe", task="binary", classes=CLASSES, modalities=(*photos, meta),
                       synthetic=synthetic, meta_keys=META_KEYS)
