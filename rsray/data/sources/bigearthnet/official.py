"""The official BigEarthNet v1 split and exclusion lists, bundled in the bigearthnet-common wheel.

Read once per process; absent when the wheel is not installed (then splits are seeded).
"""

from __future__ import annotations

import bz2
import importlib.metadata
import importlib.util
from functools import cache
from pathlib import Path

__all__: list[str] = []  # helpers of the reader, not a public API


# --------------------------------------------------------------------------------------------
# Official split lists (bundled in the bigearthnet-common wheel)
# --------------------------------------------------------------------------------------------

_SPLIT_FILES = {"train": "train.csv.bz2", "val": "val.csv.bz2", "test": "test.csv.bz2"}
_EXCLUSION_FILES = {
    "cloud_and_shadow": "patches_with_cloud_and_shadow.csv.bz2",
    "seasonal_snow": "patches_with_seasonal_snow.csv.bz2",
    "no_19_class_targets": "patches_with_no_19_class_targets.csv.bz2",
}


def _bigearthnet_common_dir() -> Path | None:
    """Folder of the installed ``bigearthnet_common`` package (found without importing it)."""
    try:
        spec = importlib.util.find_spec("bigearthnet_common")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _bigearthnet_common_version() -> str:
    try:
        return importlib.metadata.version("bigearthnet-common")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@cache
def _load_name_list(filename: str) -> frozenset[str]:
    """One S2 patch name per line (CRLF in the wheel), no header."""
    folder = _bigearthnet_common_dir()
    if folder is None or not (folder / filename).is_file():
        raise FileNotFoundError(filename)
    with bz2.open(folder / filename, "rt", encoding="utf-8") as f:
        return frozenset(s for line in f if (s := line.strip()))


def _official_lists_available() -> bool:
    folder = _bigearthnet_common_dir()
    return folder is not None and all(
        (folder / f).is_file() for f in (*_SPLIT_FILES.values(), *_EXCLUSION_FILES.values()))
