"""Sentinel-2 time series of a FLAIR #2 super-area: dates, cloud filter, monthly means, npy files.

:func:`parse_products` reads the acquisition dates, :func:`cloud_shares` and
:func:`select_dates` drop cloudy dates, :func:`monthly_average` makes monthly composites, and
:func:`open_npy` memory-maps the (large) ``.npy`` files once per process.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from rsray.errors import PatchError

__all__ = [
    "BASELINE_CLOUD_THRESHOLD",
    "CLOUD_THRESHOLD",
    "cloud_shares",
    "monthly_average",
    "open_npy",
    "parse_products",
    "select_dates",
]

_PRODUCT_DATE_RE = re.compile(r"_(\d{8})T\d{6}")


# --------------------------------------------------------------------------------------------
# Sentinel-2 helpers: dates, cloud filter, monthly means
# --------------------------------------------------------------------------------------------


def parse_products(path: str) -> list[dt.date]:
    """Acquisition date of every line of a ``_products.txt`` (``..._YYYYMMDDThhmmss_...``).

    Raises:
        PatchError: the file is missing/unreadable, or a line holds no product date.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise PatchError(path, "Sentinel-2 products file missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PatchError(path, f"Sentinel-2 products file unreadable: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    dates = []
    for i, line in enumerate(lines, 1):
        m = _PRODUCT_DATE_RE.search(line)
        try:
            if m is None:
                raise ValueError
            s = m.group(1)
            dates.append(dt.date(int(s[:4]), int(s[4:6]), int(s[6:])))
        except ValueError:
            raise PatchError(path, f"line {i} ({line.strip()[:70]!r}) is not a Sentinel-2 "
                                   "product name with a _YYYYMMDDThhmmss date") from None
    return dates


CLOUD_THRESHOLD = 50
"""Default snow/cloud probability (0-100) from which a pixel is cloudy: 0.5, as the LF-DLM
paper states it ("a specific probability threshold (set to 0.5 in our experiments)")."""
BASELINE_CLOUD_THRESHOLD = 60
"""The FLAIR #2 baseline code's value (``--cloud-threshold 60`` reproduces the baseline)."""


def cloud_shares(masks: np.ndarray, threshold: int = CLOUD_THRESHOLD) -> np.ndarray:
    """Per date, the share of pixels whose snow *or* cloud probability is ``>= threshold``.

    ``masks`` is ``(T, 2, h, w)`` (channel 0 snow, 1 cloud, 0-100). The FLAIR #2 baseline adds
    the snow and cloud pixel counts (a pixel with both counts twice); the union used here
    never exceeds 1.
    """
    covered = (masks >= threshold).any(axis=1)
    return covered.reshape(covered.shape[0], -1).mean(axis=1)


def select_dates(shares: np.ndarray, max_share: float = 0.5,
                 fallback: int = 2) -> tuple[np.ndarray, bool]:
    """Indices of the dates to keep (chronological) and whether the series was all cloudy.

    A date is kept when its cloudy share is below ``max_share``. When none is, the
    ``fallback`` least cloudy dates are kept (ties: earlier first) and the flag is ``True``.
    """
    keep = np.flatnonzero(shares < max_share)
    if keep.size:
        return keep, False
    order = np.argsort(shares, kind="stable")[:max(1, fallback)]
    return np.sort(order), True


def monthly_average(series: np.ndarray, dates: Sequence[dt.date]) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Mean image per calendar month present, chronologically.

    Returns ``(M, C, h, w)`` float64 means and ``(M,)`` day of year of the 15th of each month
    (the date the FLAIR #2 baseline gives a monthly mean).
    """
    months = sorted({(d.year, d.month) for d in dates})
    out = np.empty((len(months), *series.shape[1:]), dtype=np.float64)
    doys = np.empty(len(months), dtype=np.int32)
    for i, (y, m) in enumerate(months):
        idx = [j for j, d in enumerate(dates) if (d.year, d.month) == (y, m)]
        out[i] = series[idx].astype(np.float64).mean(axis=0)
        doys[i] = dt.date(y, m, 15).timetuple().tm_yday
    return out, doys


@lru_cache(maxsize=16)
def _memmap(path: str, mtime_ns: int, size: int) -> np.ndarray:
    del mtime_ns, size  # part of the cache key only: a rewritten file is mapped again
    return np.load(path, mmap_mode="r", allow_pickle=False)


def open_npy(path: str, what: str) -> np.ndarray:
    """Memory-map a ``.npy`` file (cached per process; only touched pages are read).

    Raises:
        PatchError: missing, truncated or not a plain ``.npy`` array.
    """
    try:
        st = os.stat(path)
        return _memmap(path, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        raise PatchError(path, f"Sentinel-2 {what} file missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise PatchError(path, f"Sentinel-2 {what} file unreadable or truncated: {exc}") from None
