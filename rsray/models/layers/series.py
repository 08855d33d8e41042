"""Inputs of image time series and the geometry between a series and an image.

A time-series modality ``m`` arrives as three entries of the input dict (the data pipeline
pads every series of a batch to the same length ``T``)::

    inputs[m]            float (B, T, C, h, w)  the images, padded dates hold anything
    inputs[m + "_mask"]  bool  (B, T)           True where a date is real, False for padding
    inputs[m + "_dates"] float (B, T)           day of year of each date (0 for padding)

:func:`get_series` fetches and checks them. :func:`center_crop` and :func:`footprint_size`
place an aerial patch inside the Sentinel-2 super-patch around it (FLAIR-2: a 512 px aerial
patch at 0.2 m covers 102.4 m, i.e. the central ~10 of the 40 x 40 Sentinel-2 pixels at
10 m).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from rsray.errors import ConfigError

__all__ = [
    "DATES_SUFFIX",
    "MASK_SUFFIX",
    "Series",
    "center_crop",
    "check_positive",
    "footprint_size",
    "get_series",
]

MASK_SUFFIX = "_mask"
"""``inputs[modality + MASK_SUFFIX]`` is the (B, T) boolean mask of real dates."""

DATES_SUFFIX = "_dates"
"""``inputs[modality + DATES_SUFFIX]`` is the (B, T) day of year of each date."""


class Series(NamedTuple):
    """A batch of padded image time series."""

    x: Tensor
    """(B, T, C, h, w) images."""
    mask: Tensor
    """(B, T) bool, True where a date is real."""
    dates: Tensor
    """(B, T) float, day of year of each date."""


def get_series(inputs: Mapping[str, Tensor], modality: str, channels: int) -> Series:
    """Fetch a time-series modality, its mask and its dates from ``inputs`` and check them.

    Args:
        inputs: the model's input dict.
        modality: the series modality name (e.g. ``"s2"``).
        channels: the channel count the model was built for.

    Raises:
        KeyError: an entry is missing (the message lists what was given).
        ValueError: a shape or dtype does not match the contract.
    """
    keys = (modality, modality + MASK_SUFFIX, modality + DATES_SUFFIX)
    missing = [k for k in keys if k not in inputs]
    if missing:
        raise KeyError(
            f"input {missing[0]!r} is missing; a time series needs {list(keys)} "
            f"and got {sorted(inputs)}"
        )
    x, mask, dates = (inputs[k] for k in keys)
    if x.dim() != 5 or x.shape[2] != channels:
        raise ValueError(
            f"input {modality!r} must have shape (B, T, {channels}, h, w), got {tuple(x.shape)}"
        )
    b, t = x.shape[:2]
    if mask.shape != (b, t) or mask.dtype != torch.bool:
        raise ValueError(
            f"input {keys[1]!r} must be a bool tensor of shape ({b}, {t}), "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    if dates.shape != (b, t):
        raise ValueError(f"input {keys[2]!r} must have shape ({b}, {t}), got {tuple(dates.shape)}")
    return Series(x, mask, dates.float())


def check_positive(name: str, value: object) -> float:
    """Check that ``value`` is a positive real number and return it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ConfigError(f"{name}: must be a positive number, got {value!r}")
    return float(value)


def footprint_size(image_size: int, image_gsd: float, series_gsd: float) -> int:
    """Side, in series pixels, of the ground an image of ``image_size`` pixels covers.

    Rounded to the nearest pixel and at least 1: a 512 px aerial patch at 0.2 m in a 10 m
    Sentinel-2 grid gives ``round(10.24) = 10``, the crop the FLAIR-2 baseline takes.
    """
    return max(1, round(image_size * image_gsd / series_gsd))


def center_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Crop the central ``size`` of the last two dimensions (torchvision's rounding).

    Raises:
        ValueError: ``size`` is larger than the input.
    """
    ch, cw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"center crop of {ch}x{cw} does not fit a {h}x{w} map")
    top = round((h - ch) / 2.0)
    left = round((w - cw) / 2.0)
    return x[..., top : top + ch, left : left + cw]
