"""One covariate layer (a GeoTIFF to warp onto every patch) and the index/dtype vocabulary.

:class:`CovariateLayer` checks its own fields (name, resampling, categories) when built;
:data:`INDICES` and :data:`DEFAULT_INDEX_BANDS` name the spectral indices and their bands.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from rsray.errors import ConfigError

__all__ = ["DEFAULT_INDEX_BANDS", "DTYPES", "FILLED_META_KEY", "INDICES", "CovariateLayer"]


INDICES: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),
    "ndwi": ("green", "nir"),
    "ndmi": ("nir", "swir1"),
    "ndbi": ("swir1", "nir"),
}
"""Index name -> ``(a, b)`` band roles of ``(a - b) / (a + b)``: NDVI (vegetation, Rouse
1974), NDWI (open water, McFeeters 1996), NDMI (moisture, Gao 1996), NDBI (built-up, Zha
2003)."""
DEFAULT_INDEX_BANDS: dict[str, str] = {"red": "B04", "green": "B03", "nir": "B08",
                                       "swir1": "B11"}
"""Sentinel-2 band of each role (10 m B03/B04/B08, 20 m B11)."""
FILLED_META_KEY = "covariates_filled"
"""Meta column: ``layer:share`` of every layer whose missing pixels were filled."""
DTYPES = ("float32", "float16")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CONTINUOUS_RESAMPLING = ("bilinear", "cubic", "cubic_spline", "lanczos", "average")
_CATEGORICAL_RESAMPLING = ("nearest", "mode")
_ALLOWED_RESAMPLING = (*_CATEGORICAL_RESAMPLING, *_CONTINUOUS_RESAMPLING, "min", "max", "med")


@dataclass(frozen=True)
class CovariateLayer:
    """One GeoTIFF layer to warp onto every patch.

    Args (fields):
        name: channel name (letters, digits, ``_``; starts with a letter), e.g. ``dem``.
        path: local GeoTIFF / VRT, or ``s3://...`` GeoTIFF (read through fsspec).
        resampling: a :class:`rasterio.enums.Resampling` name: ``bilinear`` (continuous, the
            default), ``nearest`` or ``mode`` (categorical), ``cubic``, ``average``, ...
        nodata: value marking missing data; ``None`` takes the file's own nodata (and its mask).
            Use ``nan`` when NaN marks missing data in a file that does not say so.
        band: 1-based band of the file to use.
        modality: modality the layer's channels go to; empty = the layer's name.
        categories: class codes of a categorical layer: one 0/1 channel per code
            (``<name>_<code>``); needs ``nearest`` or ``mode``. Empty = one channel of values.
        max_missing: share of a patch's pixels that may lack data (outside the layer or
            nodata); those are filled. Above it the patch is rejected.
        fill: value for missing pixels; ``None`` = the mean of the patch's valid pixels
            (``nearest``/``mode``: their most common value).
        size: pixels per side of this layer's modality; 0 = the wrapper's ``size``.
    """

    name: str
    path: str
    resampling: str = "bilinear"
    nodata: float | None = None
    band: int = 1
    modality: str = ""
    categories: tuple[int, ...] = ()
    max_missing: float = 0.0
    fill: float | None = None
    size: int = 0

    def __post_init__(self) -> None:
        where = f"covariate layer {self.name!r} ({self.path})"
        if not _NAME_RE.match(self.name):
            raise ConfigError(f"covariate layer name {self.name!r}: use letters, digits and _ "
                              "(starting with a letter); it becomes a channel/column name")
        if self.modality and not _NAME_RE.match(self.modality):
            raise ConfigError(f"{where}: modality {self.modality!r} is not a valid name")
        if not self.path:
            raise ConfigError(f"covariate layer {self.name!r}: empty path")
        if self.resampling not in _ALLOWED_RESAMPLING:
            raise ConfigError(f"{where}: resampling {self.resampling!r} is not one of "
                              + ", ".join(_ALLOWED_RESAMPLING))
        if self.categories:
            if len(set(self.categories)) != len(self.categories):
                raise ConfigError(f"{where}: categories {list(self.categories)} repeat a code")
            if self.resampling not in _CATEGORICAL_RESAMPLING:
                raise ConfigError(f"{where}: a categorical layer (categories given) needs "
                                  f"nearest or mode resampling, not {self.resampling} (it "
                                  "would invent codes between classes)")
        if self.band < 1:
            raise ConfigError(f"{where}: band {self.band} must be >= 1")
        if not 0.0 <= self.max_missing < 1.0:
            raise ConfigError(f"{where}: max_missing {self.max_missing} must be in [0, 1)")
        if self.size < 0:
            raise ConfigError(f"{where}: size {self.size} must be >= 0")
        if self.fill is not None and not math.isfinite(self.fill):
            raise ConfigError(f"{where}: fill {self.fill} must be a finite number")

    @property
    def modality_name(self) -> str:
        """The modality this layer's channels go to."""
        return self.modality or self.name

    @property
    def channels(self) -> tuple[str, ...]:
        """Channel names: the layer's name, or ``<name>_<code>`` per category."""
        if self.categories:
            return tuple(f"{self.name}_{c}" for c in self.categories)
        return (self.name,)

    @property
    def categorical(self) -> bool:
        """Values are class codes (nearest/mode resampling)."""
        return self.resampling in _CATEGORICAL_RESAMPLING

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary for the manifest."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}
