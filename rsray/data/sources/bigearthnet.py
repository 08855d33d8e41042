"""BigEarthNet-MM (BigEarthNet v1.0, Sentinel-2 + Sentinel-1), 19-class multi-label.

On disk (one folder per patch, the layout of the official ``BigEarthNet-S2-v1.0`` /
``BigEarthNet-S1-v1.0`` archives)::

    <s2_root>/S2B_MSIL2A_20170924T93020_69_24/
        S2B_MSIL2A_20170924T93020_69_24_{B01..B09,B8A,B11,B12}.tif   uint16, 120/60/20 px
        S2B_MSIL2A_20170924T93020_69_24_labels_metadata.json
    <s1_root>/S1A_IW_GRDH_1SDV_20170925T043256_35VPK_69_24/
        ..._VV.tif  ..._VH.tif                                      float32 dB, 120 px
        ..._labels_metadata.json        ("corresponding_s2_patch" names the S2 folder)

:class:`BigEarthNetMM` pairs the two archives, assigns splits (the official v1 lists shipped in
the ``bigearthnet-common`` package, or a seeded hash), and reads and validates one patch at a
time. :func:`write_synthetic_bigearthnet` writes a synthetic twin in exactly this format, whose
labels depend on S2 only, on S1 only, or on both (see :func:`describe_synthetic_rules`).
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rasterio.crs import CRS

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.schema import (
    BandGroup,
    DatasetSpec,
    Discovery,
    ModalitySpec,
    Reject,
    Sample,
)
from rsray.data.sources._raster import (
    Band,
    GeoPoint,
    StorageOptions,
    check_same_grid,
    gdal_env,
    grid_of,
    join_url,
    lat_lon,
    list_subdirs,
    normalise_root,
    read_bands,
    read_bytes,
    write_geotiff,
)
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError

__all__ = [
    "BIGEARTHNET_19_CLASSES",
    "CLC43_CLASSES",
    "CLC43_CODES",
    "CLC43_TO_19",
    "S1_GROUPS",
    "S2_GROUPS",
    "SPLIT_NAMES",
    "SYNTHETIC_MARKER",
    "BigEarthNetMM",
    "SynthInfo",
    "bigearthnet_spec",
    "describe_synthetic_rules",
    "labels_to_multihot",
    "plan_corruptions",
    "read_band_groups",
    "seeded_split",
    "synth_patches",
    "write_synthetic_bigearthnet",
]

# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------

BIGEARTHNET_19_CLASSES: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
"""The 19 BigEarthNet classes in their original order (index = position in the multi-hot)."""

# (CLC level-3 code, name as written in the v1 jsons, 19-class index or None when dropped)
_CLC43: tuple[tuple[int, str, int | None], ...] = (
    (111, "Continuous urban fabric", 0),
    (112, "Discontinuous urban fabric", 0),
    (121, "Industrial or commercial units", 1),
    (122, "Road and rail networks and associated land", None),
    (123, "Port areas", None),
    (124, "Airports", None),
    (131, "Mineral extraction sites", None),
    (132, "Dump sites", None),
    (133, "Construction sites", None),
    (141, "Green urban areas", None),
    (142, "Sport and leisure facilities", None),
    (211, "Non-irrigated arable land", 2),
    (212, "Permanently irrigated land", 2),
    (213, "Rice fields", 2),
    (221, "Vineyards", 3),
    (222, "Fruit trees and berry plantations", 3),
    (223, "Olive groves", 3),
    (231, "Pastures", 4),
    (241, "Annual crops associated with permanent crops", 3),
    (242, "Complex cultivation patterns", 5),
    (243, "Land principally occupied by agriculture, with significant areas of natural "
          "vegetation", 6),
    (244, "Agro-forestry areas", 7),
    (311, "Broad-leaved forest", 8),
    (312, "Coniferous forest", 9),
    (313, "Mixed forest", 10),
    (321, "Natural grassland", 11),
    (322, "Moors and heathland", 12),
    (323, "Sclerophyllous vegetation", 12),
    (324, "Transitional woodland/shrub", 13),
    (331, "Beaches, dunes, sands", 14),
    (332, "Bare rock", None),
    (333, "Sparsely vegetated areas", 11),
    (334, "Burnt areas", None),
    (411, "Inland marshes", 15),
    (412, "Peatbogs", 15),
    (421, "Salt marshes", 16),
    (422, "Salines", 16),
    (423, "Intertidal flats", None),
    (511, "Water courses", 17),
    (512, "Water bodies", 17),
    (521, "Coastal lagoons", 18),
    (522, "Estuaries", 18),
    (523, "Sea and ocean", 18),
)

CLC43_CLASSES: tuple[str, ...] = tuple(name for _, name, _ in _CLC43)
"""The 43 CLC level-3 names used in v1 jsons, in the original BigEarthNet order."""
CLC43_CODES: dict[str, int] = {name: code for code, name, _ in _CLC43}
"""CLC level-3 name -> CLC code (needed for v2 reference maps)."""
CLC43_TO_19: dict[str, int | None] = {name: idx for _, name, idx in _CLC43}
"""CLC level-3 name -> index into :data:`BIGEARTHNET_19_CLASSES`; ``None`` for the 11 dropped
classes (roads, ports, airports, mines, dumps, construction, green urban, sport, bare rock,
burnt areas, intertidal flats)."""

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

# --------------------------------------------------------------------------------------------
# Bands and spec
# --------------------------------------------------------------------------------------------

S2_10M = BandGroup("s2_10m", ("B02", "B03", "B04", "B08"), 120, "uint16")
S2_20M = BandGroup("s2_20m", ("B05", "B06", "B07", "B8A", "B11", "B12"), 60, "uint16")
S2_60M = BandGroup("s2_60m", ("B01", "B09"), 20, "uint16", optional=True)
S2_GROUPS: tuple[BandGroup, ...] = (S2_10M, S2_20M, S2_60M)
"""Sentinel-2 band groups in channel order; the 60 m group is optional (``include_60m``)."""
S1_GROUPS: tuple[BandGroup, ...] = (BandGroup("s1", ("VV", "VH"), 120, "float32"),)
"""Sentinel-1 band group as stored in v1 (float32 dB); ``s1_dtype`` may store it as float16."""

META_KEYS: tuple[str, ...] = ("s1_patch", "acquisition_date")
SYNTHETIC_MARKER = "rsray_synthetic"
"""Extra json key (value ``true``) that marks a patch written by the synthetic generator."""
LABELS_SUFFIX = "_labels_metadata.json"
S1_DTYPES = ("float32", "float16")


def bigearthnet_spec(
    include_60m: bool = False, s1_dtype: str = "float32", synthetic: bool = False
) -> DatasetSpec:
    """Build the :class:`DatasetSpec` of BigEarthNet-MM.

    Args:
        include_60m: add the ``s2_60m`` group (B01, B09, 20 x 20 px).
        s1_dtype: stored dtype of the ``s1`` group, ``float32`` (as on disk) or ``float16``
            (halves the S1 bytes in the shards; dB values fit with ~0.01 dB error).
        synthetic: the data come from :func:`write_synthetic_bigearthnet`.

    Returns:
        Modality ``s2`` (B02, B03, B04, B08, B05, B06, B07, B8A, B11, B12 [, B01, B09]) and
        modality ``s1`` (VV, VH); task ``multilabel`` over :data:`BIGEARTHNET_19_CLASSES`.

    Raises:
        ConfigError: ``s1_dtype`` is not one of ``float32``, ``float16``.
    """
    if s1_dtype not in S1_DTYPES:
        raise ConfigError(f"s1_dtype: {s1_dtype!r} is not one of {', '.join(S1_DTYPES)}")
    s2_groups = S2_GROUPS if include_60m else tuple(g for g in S2_GROUPS if g is not S2_60M)
    s1_groups = tuple(dataclasses.replace(g, dtype=s1_dtype) for g in S1_GROUPS)
    kwargs: dict[str, Any] = {}
    if "meta_keys" in {f.name for f in dataclasses.fields(DatasetSpec)}:
        kwargs["meta_keys"] = META_KEYS
    return DatasetSpec(
        name="bigearthnet",
        task="multilabel",
        classes=BIGEARTHNET_19_CLASSES,
        modalities=(ModalitySpec("s2", s2_groups), ModalitySpec("s1", s1_groups)),
        synthetic=synthetic,
        **kwargs,
    )


def labels_to_multihot(labels: Iterable[str]) -> np.ndarray:
    """Multi-hot ``uint8`` vector over the 19 classes from v1 CLC level-3 names.

    Dropped classes (e.g. ``Airports``) contribute nothing; the result may be all zeros.

    Raises:
        KeyError: a name is not one of the 43 CLC level-3 names.
    """
    out = np.zeros(len(BIGEARTHNET_19_CLASSES), dtype=np.uint8)
    for name in labels:
        idx = CLC43_TO_19[name]
        if idx is not None:
            out[idx] = 1
    return out


def seeded_split(
    patch_id: str, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> str:
    """Deterministic split of one patch from a hash of its name.

    ``u = sha256(f"{seed}:{patch_id}")`` read as a number in ``[0, 1)``; the patch goes to
    ``train`` if ``u < f_train``, to ``val`` if ``u < f_train + f_val``, else to ``test``.
    A patch's split depends only on its own name and the seed, so adding or removing
    patches never moves another patch to a different split.
    """
    digest = hashlib.sha256(f"{seed}:{patch_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"split_fractions: {fractions!r} is not three numbers") from None
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"split_fractions: {fractions!r} must be three non-negative "
                          "fractions (train, val, test) summing to 1")
    return fr[0], fr[1], fr[2]


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


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


def _s1_json_partner(
    url: str, storage_options: StorageOptions
) -> tuple[str | None, str, bool, GeoPoint | None]:
    """``(corresponding_s2_patch or None, reason when None, synthetic marker, centre)``.

    The centre ``(projection WKT, x, y)`` comes from the json's ``coordinates`` (``None``
    when they are absent or not numbers).
    """
    try:
        raw = read_bytes(url, storage_options)
    except FileNotFoundError:
        return None, "S1 labels json missing", False, None
    except OSError as exc:
        return None, f"S1 labels json unreadable: {type(exc).__name__}: {exc}", False, None
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"S1 labels json is not valid JSON: {exc}", False, None
    if not isinstance(meta, dict):
        return None, "S1 labels json is not a JSON object", False, None
    partner = meta.get("corresponding_s2_patch")
    synthetic = meta.get(SYNTHETIC_MARKER) is True
    if not isinstance(partner, str) or not partner:
        return None, "S1 labels json has no 'corresponding_s2_patch'", synthetic, None
    return partner, "", synthetic, _json_centre(meta)


def _json_centre(meta: Mapping[str, Any]) -> GeoPoint | None:
    """Centre of a v1 json's ``coordinates`` (S1 spells the last key ``lly``) in its CRS."""
    c, proj = meta.get("coordinates"), meta.get("projection")
    if not isinstance(c, dict) or not isinstance(proj, str):
        return None
    try:
        x = (float(c["ulx"]) + float(c["lrx"])) / 2
        y = (float(c["uly"]) + float(c.get("lly", c.get("lry")))) / 2
    except (KeyError, TypeError, ValueError):
        return None
    return proj, x, y


class BigEarthNetMM:
    """BigEarthNet-MM v1 reader: pairs S2 and S1 patches, assigns splits, reads and validates.

    ``discover`` runs on the driver and only lists folders and reads the S1 jsons;
    ``read`` runs in Ray tasks and reads all bands of one patch with rasterio. The instance
    holds only plain attributes and pickles cheaply.

    Splits:
        * ``official``: the v1 ``train``/``val``/``test`` lists bundled in the
          ``bigearthnet-common`` package. Patches in none of them are rejected
          (``not in any official split``) and counted in ``info["unassigned"]``.
        * ``seeded``: :func:`seeded_split` on the S2 patch name with ``split_seed`` and
          ``split_fractions``; stable when patches are added.
        * ``auto``: ``official`` when the official lists name at least one discovered S2 patch
          and the data are not synthetic, else ``seeded``.

    Exclusions: with ``apply_exclusions`` the patches listed as cloudy/shadowy, seasonal-snow or
    without 19-class target (``bigearthnet-common`` lists) are dropped, whatever the split
    mode; they are counted in ``info["excluded"]``, not rejected. Without it they are kept;
    as the official splits do not contain them, they then get a seeded split
    (``info["seeded_fallback"]``).
    """

    s2_bands: tuple[str, ...] = tuple(b for g in S2_GROUPS for b in g.bands)
    """Every S2 band in channel order (B01/B09 last, only read with ``include_60m``)."""
    s1_bands: tuple[str, ...] = S1_GROUPS[0].bands
    rgb_bands: tuple[str, ...] = ("B04", "B03", "B02")
    classes: tuple[str, ...] = BIGEARTHNET_19_CLASSES
    split_names: tuple[str, ...] = SPLIT_NAMES
    patch_size_m: int = 1200

    def __init__(
        self,
        s2_root: str,
        s1_root: str,
        *,
        include_60m: bool = False,
        s1_dtype: Literal["float32", "float16"] = "float32",
        splits: Literal["auto", "official", "seeded"] = "auto",
        split_seed: int = 0,
        split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
        apply_exclusions: bool = True,
        synthetic: bool | None = None,
        num_threads: int = 16,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """Describe a BigEarthNet-MM copy; nothing is read until :meth:`discover`.

        Args:
            s2_root: folder (local or ``s3://...``) holding the S2 patch folders
                (``BigEarthNet-v1.0`` / ``BigEarthNet-S2``).
            s1_root: folder holding the S1 patch folders (``BigEarthNet-S1-v1.0``).
            include_60m: also read B01 and B09 (group ``s2_60m``, 20 x 20 px).
            s1_dtype: dtype of the returned S1 array, ``float32`` or ``float16``.
            splits: ``auto``, ``official`` or ``seeded`` (see the class docstring).
            split_seed: seed of the seeded split.
            split_fractions: train, val, test fractions of the seeded split (sum 1).
            apply_exclusions: drop the patches of the official cloud/shadow, seasonal snow
                and no-19-class-target lists.
            synthetic: mark the spec as synthetic (``True``/``False``); ``None`` detects the
                ``rsray_synthetic`` json key during :meth:`discover`.
            num_threads: threads reading S1 jsons in :meth:`discover`.
            storage_options: fsspec options for remote roots (endpoint, profile, ...). Prefer
                the environment or a profile for credentials; they are never logged.

        Raises:
            ConfigError: an argument is not one of its allowed values.
        """
        if splits not in ("auto", "official", "seeded"):
            raise ConfigError(f"splits: {splits!r} is not one of auto, official, seeded")
        if num_threads < 1:
            raise ConfigError(f"num_threads: {num_threads} must be >= 1")
        self.s2_root = normalise_root(str(s2_root))
        self.s1_root = normalise_root(str(s1_root))
        self.include_60m = bool(include_60m)
        self.s1_dtype = s1_dtype
        self.split_mode = splits
        self.split_seed = int(split_seed)
        self.split_fractions = _check_fractions(split_fractions)
        self.apply_exclusions = bool(apply_exclusions)
        self.synthetic_override = synthetic
        self.num_threads = int(num_threads)
        self.storage_options = dict(storage_options or {})
        self.spec: DatasetSpec = bigearthnet_spec(include_60m, s1_dtype, bool(synthetic))

    def __repr__(self) -> str:  # no storage options: they may hold credentials
        return (f"BigEarthNetMM(s2_root={self.s2_root!r}, s1_root={self.s1_root!r}, "
                f"include_60m={self.include_60m}, s1_dtype={self.s1_dtype!r}, "
                f"splits={self.split_mode!r})")

    @property
    def s2_groups(self) -> tuple[BandGroup, ...]:
        """The S2 band groups this instance reads."""
        return self.spec.modality("s2").groups

    # -- discover ----------------------------------------------------------------------------

    def _list(self, root: str, what: str) -> list[str]:
        try:
            return list_subdirs(root, self.storage_options)
        except (FileNotFoundError, NotADirectoryError):
            raise DatasetNotFoundError(
                f"{root}: {what} folder not found (expected one sub-folder per patch, as in "
                f"the BigEarthNet v1 archives)") from None

    def discover(self) -> Discovery:
        """List and pair the S1 and S2 patch folders, then assign splits.

        Returns:
            Items ``{"patch_id", "split", "s2_dir", "s1_dir", "s1_name", "groups"}`` sorted
            by ``patch_id`` (``groups``: ``tile``, the MGRS tile of the S1 name, and ``lat``/
            ``lon`` of the patch centre from the S1 json, for ``--holdout tile=...``/
            ``lat=lo:hi``);
            rejects (S1 json missing/invalid/without partner, S1 without S2, S2 without S1,
            S2 claimed by several S1 patches, not in any official split); info with
            ``split_source``, ``excluded``, ``counts``, ``unassigned`` and folder counts.

        Raises:
            DatasetNotFoundError: a root folder does not exist.
        """
        s2_names = self._list(self.s2_root, "S2")
        s1_names = self._list(self.s1_root, "S1")
        s2_set = set(s2_names)
        rejects: list[Reject] = []

        def partner(name: str) -> tuple[str | None, str, bool, GeoPoint | None]:
            url = join_url(self.s1_root, name, name + LABELS_SUFFIX)
            return _s1_json_partner(url, self.storage_options)

        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            partners = list(pool.map(partner, s1_names))

        synthetic_jsons = sum(1 for _, _, syn, _ in partners if syn)
        claims: dict[str, list[str]] = {}
        for s1_name, (s2_name, reason, _, _) in zip(s1_names, partners, strict=True):
            s1_dir = join_url(self.s1_root, s1_name)
            if s2_name is None:
                rejects.append({"path": join_url(s1_dir, s1_name + LABELS_SUFFIX),
                                "reason": reason})
            elif s2_name not in s2_set:
                rejects.append({"path": s1_dir, "reason": f"S1 patch without S2 patch {s2_name}"})
            else:
                claims.setdefault(s2_name, []).append(s1_name)

        pairs: dict[str, str] = {}
        for s2_name in s2_names:
            claimants = claims.get(s2_name, [])
            if len(claimants) == 1:
                pairs[s2_name] = claimants[0]
                continue
            s2_dir = join_url(self.s2_root, s2_name)
            if not claimants:
                rejects.append({"path": s2_dir, "reason": "S2 patch without S1 patch"})
                continue
            for s1_name in claimants:
                others = ", ".join(c for c in claimants if c != s1_name)
                rejects.append({"path": join_url(self.s1_root, s1_name),
                                "reason": f"S1 patch claims S2 patch {s2_name}, which is also "
                                          f"claimed by {others}"})
            rejects.append({"path": s2_dir,
                            "reason": f"S2 patch claimed by {len(claimants)} S1 patches "
                                      f"({', '.join(claimants)}); cannot pair it"})

        synthetic = (synthetic_jsons > 0 if self.synthetic_override is None
                     else bool(self.synthetic_override))
        self.spec = dataclasses.replace(self.spec, synthetic=synthetic)

        split_of, split_info, split_rejects = self._assign_splits(sorted(pairs), s2_names,
                                                                  synthetic)
        rejects.extend(split_rejects)
        centres = dict(zip(s1_names, (c for *_, c in partners), strict=True))
        kept = [s2 for s2 in sorted(pairs) if s2 in split_of]
        where = lat_lon([centres[pairs[s2]] for s2 in kept])
        items = [
            {
                "patch_id": s2_name,
                "split": split_of[s2_name],
                "s2_dir": join_url(self.s2_root, s2_name),
                "s1_dir": join_url(self.s1_root, pairs[s2_name]),
                "s1_name": pairs[s2_name],
                "groups": {"tile": _tile_of(pairs[s2_name]),
                           **({"lat": ll[0], "lon": ll[1]} if ll else {})},
            }
            for s2_name, ll in zip(kept, where, strict=True)
        ]
        rejects.sort(key=lambda r: (r["path"], r["reason"]))
        info: dict[str, Any] = {
            "dataset": "BigEarthNet-MM v1.0",
            **split_info,
            "s2_folders": len(s2_names),
            "s1_folders": len(s1_names),
            "paired": len(pairs),
            "items": len(items),
            "rejected_while_pairing": len(rejects),
            "synthetic": synthetic,
            "synthetic_jsons": synthetic_jsons,
            "include_60m": self.include_60m,
            "s1_dtype": self.s1_dtype,
        }
        return Discovery(items=items, rejects=rejects, info=info)

    def _seeded_source(self) -> str:
        return f"seeded(seed={self.split_seed}, fractions={self.split_fractions})"

    def _assign_splits(
        self, paired: list[str], all_s2: list[str], synthetic: bool
    ) -> tuple[dict[str, str], dict[str, Any], list[Reject]]:
        """Split of every kept patch, the split part of ``info``, and split rejects."""
        available = _official_lists_available()
        mode = self.split_mode
        note = ""
        if mode == "official" and not available:
            raise ConfigError("splits='official' needs the split lists of the "
                              "'bigearthnet-common' package: pip install bigearthnet-common")
        split_lists: dict[str, frozenset[str]] = {}
        if mode == "auto":
            if synthetic:
                mode, note = "seeded", "auto: synthetic data, official lists do not apply"
            elif not available:
                mode, note = "seeded", "auto: bigearthnet-common is not installed"
            else:
                split_lists = {k: _load_name_list(f) for k, f in _SPLIT_FILES.items()}
                known = set().union(*split_lists.values(),
                                    *(_load_name_list(f) for f in _EXCLUSION_FILES.values()))
                if any(name in known for name in all_s2):
                    mode = "official"
                else:
                    mode = "seeded"
                    note = "auto: the official lists name none of the discovered patches"
        if mode == "official" and not split_lists:
            split_lists = {k: _load_name_list(f) for k, f in _SPLIT_FILES.items()}

        exclusion_lists: dict[str, frozenset[str]] = {}
        if self.apply_exclusions and available:
            exclusion_lists = {k: _load_name_list(f) for k, f in _EXCLUSION_FILES.items()}
        excluded = {k: 0 for k in _EXCLUSION_FILES} if exclusion_lists else {}

        split_of: dict[str, str] = {}
        rejects: list[Reject] = []
        unassigned = 0
        seeded_fallback = 0
        for name in paired:
            hit = next((k for k, names in exclusion_lists.items() if name in names), None)
            if hit is not None:
                excluded[hit] += 1
                continue
            if mode == "seeded":
                split_of[name] = seeded_split(name, self.split_seed, self.split_fractions)
                continue
            split = next((k for k, names in split_lists.items() if name in names), None)
            if split is not None:
                split_of[name] = split
            elif not self.apply_exclusions and self._in_exclusion_list(name):
                split_of[name] = seeded_split(name, self.split_seed, self.split_fractions)
                seeded_fallback += 1
            else:
                unassigned += 1
                rejects.append({"path": join_url(self.s2_root, name),
                                "reason": "not in any official split"})

        counts = Counter(split_of.values())
        if mode == "official":
            source = f"official bigearthnet-common {_bigearthnet_common_version()}"
            if seeded_fallback:
                source += f" + {self._seeded_source()} for excluded-list patches kept"
        else:
            source = self._seeded_source()
        info: dict[str, Any] = {
            "split_source": source,
            "split_mode": self.split_mode,
            "excluded": excluded,
            "exclusions_applied": bool(exclusion_lists),
            "counts": {s: counts.get(s, 0) for s in SPLIT_NAMES},
            "unassigned": unassigned,
            "seeded_fallback": seeded_fallback,
        }
        if note:
            info["split_note"] = note
        return split_of, info, rejects

    @staticmethod
    def _in_exclusion_list(name: str) -> bool:
        return any(name in _load_name_list(f) for f in _EXCLUSION_FILES.values())

    # -- read --------------------------------------------------------------------------------

    def _labels_json(self, url: str, which: str) -> dict[str, Any]:
        try:
            raw = read_bytes(url, self.storage_options)
        except FileNotFoundError:
            raise PatchError(url, f"{which} labels json missing") from None
        except OSError as exc:
            raise PatchError(url, f"{which} labels json unreadable: {exc}") from None
        try:
            meta = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PatchError(url, f"{which} labels json is not valid JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise PatchError(url, f"{which} labels json is not a JSON object")
        labels = meta.get("labels")
        if not isinstance(labels, list):
            raise PatchError(url, f"{which} labels json: 'labels' is not a list "
                                  f"(got {type(labels).__name__})")
        for name in labels:
            if not isinstance(name, str) or name not in CLC43_TO_19:
                raise PatchError(url, f"{which} labels json: unknown CLC class name {name!r}")
        return meta

    def read(self, item: Mapping[str, Any]) -> Sample:
        """Read and validate one patch.

        Args:
            item: one of :meth:`discover`'s items.

        Returns:
            Arrays ``s2_10m`` (4, 120, 120) uint16, ``s2_20m`` (6, 60, 60) uint16, optional
            ``s2_60m`` (2, 20, 20) uint16, ``s1`` (2, 120, 120) in ``s1_dtype``; a 19-class
            multi-hot ``uint8`` label; meta ``s1_patch`` and ``acquisition_date``; ``geo``: the
            S2 10 m grid (of B02), onto which covariate layers are warped.

        Raises:
            PatchError: naming the file at fault: labels json missing/invalid/unknown class,
                S1 labels differing from S2 labels, no 19-class target, missing, unreadable or
                truncated band file, wrong shape or dtype, NaN/inf in S1, CRS or bounds
                (> 1 m) differing from S2 B02.
        """
        patch_id = str(item["patch_id"])
        s1_name = str(item["s1_name"])
        s2_dir, s1_dir = str(item["s2_dir"]), str(item["s1_dir"])

        s2_json = join_url(s2_dir, patch_id + LABELS_SUFFIX)
        s1_json = join_url(s1_dir, s1_name + LABELS_SUFFIX)
        s2_meta = self._labels_json(s2_json, "S2")
        s1_meta = self._labels_json(s1_json, "S1")
        if sorted(s1_meta["labels"]) != sorted(s2_meta["labels"]):
            raise PatchError(s1_json, f"S1 labels {s1_meta['labels']} differ from the S2 labels "
                                      f"{s2_meta['labels']} of {patch_id}")
        label = labels_to_multihot(s2_meta["labels"])
        if not label.any():
            raise PatchError(s2_json, f"no 19-class target (labels {s2_meta['labels']} all map "
                                      "to dropped classes)")

        groups: list[tuple[BandGroup, str, str]] = [(g, s2_dir, patch_id)
                                                    for g in self.s2_groups]
        groups += [(g, s1_dir, s1_name) for g in self.spec.modality("s1").groups]
        arrays, ref = read_band_groups(groups, self.storage_options, self.s1_dtype)

        return {
            "patch_id": patch_id,
            "split": str(item.get("split", "")),
            "label": label,
            "arrays": arrays,
            "meta": {"s1_patch": s1_name,
                     "acquisition_date": str(s2_meta.get("acquisition_date", ""))},
            "geo": grid_of(ref),
        }


def read_band_groups(
    groups: Sequence[tuple[BandGroup, str, str]],
    storage_options: StorageOptions = None,
    s1_dtype: str = "float32",
) -> tuple[dict[str, np.ndarray], Band]:
    """Read, validate and stack BigEarthNet's single-band files (v1 and v2 layouts).

    Args:
        groups: ``(band group, folder, file stem)``; band ``b`` is ``<folder>/<stem>_<b>.tif``.
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
    urls = [join_url(d, f"{stem}_{b}.tif") for g, d, stem in groups for b in g.bands]
    bands = iter(read_bands(urls, storage_options))
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


def _tile_of(s1_name: str) -> str:
    """MGRS tile of a v1 S1 patch name (``S1A_IW_GRDH_1SDV_<time>_<tile>_<col>_<row>``)."""
    parts = s1_name.split("_")
    return parts[-3] if len(parts) >= 3 else ""


# --------------------------------------------------------------------------------------------
# Synthetic twin
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Acquisition:
    """One synthetic S2 tile acquisition and its S1 partner scene (real tiles, unreal dates)."""

    tile: str
    zone: int
    ulx: int
    uly: int
    s2_sat: str
    s2_time: str
    orbit: str
    s1_sat: str
    s1_time: str
    s1_scene_tail: str

    @property
    def epsg(self) -> int:
        return 32600 + self.zone


# Real MGRS tiles and their upper-left corners (checked on real v1 patches); dates chosen so
# that no synthetic name appears in the official BigEarthNet lists.
_ACQUISITIONS: tuple[_Acquisition, ...] = (
    _Acquisition("33UUP", 33, 300000, 5400000, "S2A", "20170614T101031", "R022",
                 "S1A", "20170614T165043", "20170614T165108_017033_01C5F1_3A1C"),
    _Acquisition("29UPU", 29, 600000, 5900040, "S2A", "20170618T113321", "R080",
                 "S1A", "20170618T064724", "20170618T064749_017085_01C791_5B2E"),
    _Acquisition("29SND", 29, 499980, 4400040, "S2A", "20171222T112501", "R037",
                 "S1B", "20171222T064238", "20171222T064303_008826_00FB3C_9D41"),
    _Acquisition("35VPK", 35, 600000, 7000020, "S2B", "20170922T93020", "R136",
                 "S1A", "20170922T043256", "20170922T043321_018483_01F22E_0C7A"),
    _Acquisition("35VPK", 35, 600000, 7000020, "S2B", "20180206T94151", "R036",
                 "S1B", "20180206T043253", "20180206T043318_009481_01107F_61D9"),
)
_GRID = 90  # col, row in 0..89
_CAPACITY = len(_ACQUISITIONS) * _GRID * _GRID

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


def _utm_wkt(zone: int) -> str:
    """WKT1 of WGS 84 / UTM zone N, as written in the v1 jsons."""
    return _WKT_TEMPLATE.format(zone=zone, cm=-183 + 6 * zone, epsg=32600 + zone)


# S2 band order used internally for generation (all 12 bands at 10 m, then resampled).
_ALL_S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
_BAND_RES = {b: g.size for g in S2_GROUPS for b in g.bands}
_VEG = dict(zip(_ALL_S2, (300, 450, 700, 450, 1100, 2400, 2900, 3100, 3200, 3000, 1800, 900),
                strict=True))
_SOIL = dict(zip(_ALL_S2, (900, 1100, 1400, 1700, 1900, 2100, 2300, 2400, 2500, 2400, 3000,
                           2500), strict=True))

# Latent factors: (name, modality, probability, band/level signature, mask shape)
_S2_FACTORS: dict[str, dict[str, Any]] = {
    "a0": {"p": 0.4, "shape": "rect", "what": "NDVI-like contrast: B07/B08/B8A up, B04 down",
           "delta": {"B07": 1400, "B08": 1800, "B8A": 1600, "B04": -300}},
    "a1": {"p": 0.4, "shape": "stripes", "what": "8-px stripes bright in B03/B04/B11",
           "delta": {"B03": 600, "B04": 900, "B11": 1200}},
    "a2": {"p": 0.4, "shape": "rect", "what": "bright in B02/B03/B04 and SWIR B11/B12",
           "delta": {"B02": 1500, "B03": 1500, "B04": 1500, "B11": 2500, "B12": 2500}},
    "a3": {"p": 0.5, "shape": "rect", "what": "red-edge bump in B05/B06",
           "delta": {"B05": 1500, "B06": 1000}},
    "a4": {"p": 0.7, "shape": "disk", "what": "disk with B02 up and B12 down",
           "delta": {"B02": 1200, "B12": -600}},
}
_S1_FACTORS: dict[str, dict[str, Any]] = {
    "b0": {"p": 0.4, "what": "bright VV (+9 dB) and VH (+5 dB) block"},
    "b1": {"p": 0.4, "what": "dark block, VV ~ -24 dB, VH ~ -31 dB"},
    "b2": {"p": 0.5, "what": "VH raised by 6 dB, VV unchanged (cross-pol ratio)"},
    "b3": {"p": 0.7, "what": "8-px checkerboard texture of +-2.5 dB in VV"},
}

# (19-class name, rule kind, rule, CLC names emitted for it)
_RULES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("Coniferous forest", "s2", "a0", ("Coniferous forest",)),
    ("Arable land", "s2", "a1",
     ("Non-irrigated arable land", "Permanently irrigated land", "Rice fields")),
    ("Beaches, dunes, sands", "s2", "a2", ("Beaches, dunes, sands",)),
    ("Urban fabric", "s1", "b0", ("Continuous urban fabric", "Discontinuous urban fabric")),
    ("Inland waters", "s1", "b1", ("Water courses", "Water bodies")),
    ("Inland wetlands", "s2 xor s1", "a3 xor b2", ("Inland marshes", "Peatbogs")),
    ("Transitional woodland, shrub", "s2 and s1", "a4 and b3", ("Transitional woodland/shrub",)),
)
_DISTRACTORS = ("Road and rail networks and associated land", "Airports", "Bare rock",
                "Sport and leisure facilities", "Intertidal flats")
_DISTRACTOR_P = 0.25

_CORRUPTIONS: dict[str, str] = {
    "missing_band": "S2 B05 file deleted",
    "truncated": "S2 B02 file cut to half its size",
    "wrong_shape": "S2 B05 written 120 x 120 instead of 60 x 60",
    "wrong_dtype": "S2 B03 written as float32",
    "nan_s1": "S1 VV with a block of NaN",
    "crs_mismatch": "S1 written in the next UTM zone",
    "bounds_mismatch": "S1 shifted 20 m east",
    "bad_json": "S2 labels json is not valid JSON",
    "missing_json": "S2 labels json deleted",
    "labels_not_list": "S2 'labels' is a string",
    "unknown_label": "S1 and S2 labels include an unknown CLC name",
    "label_mismatch": "S1 labels differ from S2 labels",
    "no_target": "labels only of dropped classes",
    "s1_bad_json": "S1 labels json is not valid JSON",
    "s1_no_partner": "S1 json without 'corresponding_s2_patch'",
    "s1_only": "S2 folder not written",
    "s2_only": "S1 folder not written",
    "duplicate_s1": "a second S1 folder claims the same S2 patch",
}


def describe_synthetic_rules() -> str:
    """Which of the 19 classes the synthetic twin makes visible in which modality, and how."""
    lines = ["Synthetic BigEarthNet-MM: labels from latent per-patch factors "
             "(a* drawn into S2 pixels only, b* into S1 pixels only).",
             "S2 factors (each in its own random cell of a 3x3 grid of 40-px cells):"]
    for k, f in _S2_FACTORS.items():
        lines.append(f"  {k} (p={f['p']}, {f['shape']}): {f['what']}")
    lines.append("S1 factors (each in its own random quadrant of 60 px):")
    for k, f in _S1_FACTORS.items():
        lines.append(f"  {k} (p={f['p']}): {f['what']}")
    lines.append("Classes (all other 12 classes never occur):")
    for cls, kind, rule, names in _RULES:
        lines.append(f"  [{kind:>9}] {cls} = {rule}   (emitted as: {' | '.join(names)})")
    lines.append(f"Distractor: with p={_DISTRACTOR_P} one dropped CLC class (e.g. Airports) is "
                 "added to the labels; it maps to no 19-class target. Patches whose factors give "
                 "no target are redrawn.")
    lines.append("A single-modality model can at best learn its own 3 (S2) or 2 (S1) classes and "
                 "the AND class partially; the XOR class needs both modalities.")
    return "\n".join(lines)


@dataclass
class SynthInfo:
    """What :func:`write_synthetic_bigearthnet` wrote."""

    n: int
    """Patches written (before corruptions that remove folders)."""
    out_dir: str
    seed: int
    s2_root: str
    s1_root: str
    rules: str
    """:func:`describe_synthetic_rules` text."""
    class_modality: dict[str, str] = field(default_factory=dict)
    """19-class name -> ``s2``, ``s1``, ``s2 xor s1`` or ``s2 and s1`` (classes that occur)."""
    corrupted: dict[str, list[str]] = field(default_factory=dict)
    """Corruption kind -> S2 patch names it was applied to."""


def _factor_mask(rng: np.random.Generator, cell: tuple[int, int, int], shape: str) -> np.ndarray:
    """Boolean 120 x 120 mask of one factor inside its cell ``(y0, x0, size)``."""
    y0, x0, size = cell
    mask = np.zeros((120, 120), dtype=bool)
    lo = size // 2
    h, w = int(rng.integers(lo, size + 1)), int(rng.integers(lo, size + 1))
    y, x = y0 + int(rng.integers(0, size - h + 1)), x0 + int(rng.integers(0, size - w + 1))
    if shape == "disk":
        r = min(h, w) / 2
        yy, xx = np.mgrid[0:120, 0:120]
        mask = (yy - (y + h / 2)) ** 2 + (xx - (x + w / 2)) ** 2 <= r * r
    elif shape == "stripes":
        horizontal = bool(rng.integers(0, 2))
        idx = np.arange(120)
        stripe = (idx // 4) % 2 == 0
        region = np.zeros((120, 120), dtype=bool)
        region[y:y + h, x:x + w] = True
        mask = region & (stripe[:, None] if horizontal else stripe[None, :])
    else:
        mask[y:y + h, x:x + w] = True
    return mask


def _draw_factors(rng: np.random.Generator) -> tuple[dict[str, bool], list[str]]:
    """Latent factors and the 43-class label list of one patch (redrawn until a target)."""
    while True:
        f = {k: bool(rng.random() < v["p"]) for k, v in {**_S2_FACTORS, **_S1_FACTORS}.items()}
        on = {
            "a0": f["a0"], "a1": f["a1"], "a2": f["a2"], "b0": f["b0"], "b1": f["b1"],
            "a3 xor b2": f["a3"] != f["b2"], "a4 and b3": f["a4"] and f["b3"],
        }
        names = [str(names_[int(rng.integers(0, len(names_)))])
                 for _, _, rule, names_ in _RULES if on[rule]]
        if names:
            break
    if rng.random() < _DISTRACTOR_P:
        names.append(_DISTRACTORS[int(rng.integers(0, len(_DISTRACTORS)))])
    names.sort(key=CLC43_CLASSES.index)  # the real jsons list labels in CLC order
    return f, names


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    n = a.shape[0] // k
    return a.reshape(n, k, n, k).mean(axis=(1, 3))


def _synth_pixels(
    rng: np.random.Generator, f: Mapping[str, bool]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """S2 bands (uint16 at native size) and S1 bands (float32 dB) of one patch."""
    yy, xx = np.mgrid[0:120, 0:120].astype(np.float32)
    fy, fx = rng.uniform(-0.02, 0.02, size=2)
    w = 0.5 + 0.2 * np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
    w = w.astype(np.float32)
    s2 = {b: w * _VEG[b] + (1 - w) * _SOIL[b] for b in _ALL_S2}
    cells = [(r * 40, c * 40, 40) for r in range(3) for c in range(3)]
    order = rng.permutation(9)
    for i, (k, spec) in enumerate(_S2_FACTORS.items()):
        mask = _factor_mask(rng, cells[order[i]], spec["shape"])  # drawn even when off
        if f[k]:
            for b, d in spec["delta"].items():
                s2[b] = s2[b] + d * mask
    s2_out: dict[str, np.ndarray] = {}
    for b in _ALL_S2:
        a = s2[b] * (1 + 0.03 * rng.standard_normal((120, 120), dtype=np.float32))
        size = _BAND_RES[b]
        if size != 120:
            a = _block_mean(a, 120 // size)
        s2_out[b] = np.clip(np.rint(a), 1, 15000).astype(np.uint16)

    vv = np.full((120, 120), rng.normal(-11.0, 1.0), dtype=np.float32)
    vh = vv - 7.0 + np.float32(rng.normal(0.0, 1.0))
    quads = [(0, 0, 60), (0, 60, 60), (60, 0, 60), (60, 60, 60)]
    order = rng.permutation(4)
    masks = {k: _factor_mask(rng, quads[order[i]], "rect") for i, k in enumerate(_S1_FACTORS)}
    if f["b0"]:
        vv = vv + 9.0 * masks["b0"]
        vh = vh + 5.0 * masks["b0"]
    if f["b1"]:
        vv = np.where(masks["b1"], -24.0, vv)
        vh = np.where(masks["b1"], -31.0, vh)
    if f["b2"]:
        vh = vh + 6.0 * masks["b2"]
    if f["b3"]:
        checker = (((yy // 4) + (xx // 4)) % 2) * 2 - 1
        vv = vv + 2.5 * checker * masks["b3"]
    s1_out: dict[str, np.ndarray] = {}
    for name, base in (("VV", vv), ("VH", vh)):
        speckle = 10 * np.log10(rng.gamma(4.0, 0.25, size=(120, 120)))  # 4-look speckle
        s1_out[name] = np.clip(base + speckle, -40.0, 10.0).astype(np.float32)
    return s2_out, s1_out


def _write_tif(path: Path, arr: np.ndarray, epsg_wkt: str, ulx: float, uly: float,
               res: float) -> None:
    write_geotiff(path, arr, CRS.from_wkt(epsg_wkt), ulx, uly, res)


def plan_corruptions(
    corrupt: Mapping[str, int | Sequence[int]] | None, n: int, capacity: int,
    known: Mapping[str, str],
) -> dict[int, list[str]]:
    """Check a synthetic writer's ``n`` and ``corrupt``; return patch index -> kinds.

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


def _hhmmss(t: str) -> str:
    """``93020`` -> ``09:30:20`` (v1 names drop a leading zero of the hour)."""
    t = t.zfill(6)
    return f"{t[0:2]}:{t[2:4]}:{t[4:6]}"


def synth_patches(
    n: int, seed: int, stream: int = 1, layout_salt: int = 0xBE
) -> Iterator[tuple[int, _Acquisition, int, int, list[str], dict[str, np.ndarray],
                    dict[str, np.ndarray], np.random.Generator]]:
    """The synthetic twin's patches one by one (shared by the v1 and v2 writers).

    Yields ``(i, acquisition, col, row, 43-class label names, S2 bands, S1 bands, rng)``:
    locations are a permutation (seeded by ``seed`` and ``layout_salt``) of the 40,500 grid
    cells; patch ``i``'s pixels and labels come from ``rng = default_rng([seed, i, stream])``,
    which the caller may keep drawing from.
    """
    locations = np.random.default_rng([seed, layout_salt]).permutation(_CAPACITY)[:n]
    for i in range(n):
        loc = int(locations[i])
        acq = _ACQUISITIONS[loc // (_GRID * _GRID)]
        col, row = (loc % (_GRID * _GRID)) // _GRID, loc % _GRID
        rng = np.random.default_rng([seed, i, stream])
        factors, labels = _draw_factors(rng)
        s2_px, s1_px = _synth_pixels(rng, factors)
        yield i, acq, col, row, labels, s2_px, s1_px, rng


def write_synthetic_bigearthnet(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    include_60m: bool = True,
    corrupt: Mapping[str, int | Sequence[int]] | None = None,
    progress: bool = True,
) -> SynthInfo:
    """Write ``n`` synthetic BigEarthNet-MM patches in exactly the v1 on-disk format.

    Layout ``out_dir/BigEarthNet-S2/<S2 name>/`` and ``out_dir/BigEarthNet-S1/<S1 name>/``;
    band files, sizes, dtypes, uncompressed striped GeoTIFF, UTM CRS, 1200 m footprint at
    ``ulx = tile_ulx + 1200 * col``, ``uly = tile_uly - 1200 * row`` on real MGRS tiles, json
    keys as in v1 (S1 spells ``lly``) plus ``"rsray_synthetic": true``, and a ``README.txt``.
    Labels follow :func:`describe_synthetic_rules`. Patch ``i`` depends only on ``seed`` and
    ``i``: same seed, same bytes; a larger ``n`` adds patches without changing the others.

    Args:
        out_dir: folder to write into (created).
        n: number of patches (at most 40,500).
        seed: random seed.
        include_60m: write B01 and B09 too (the real archives have them).
        corrupt: corruption kind -> patch index or indices, to test validation. Kinds:
            missing_band, truncated, wrong_shape, wrong_dtype, nan_s1, crs_mismatch,
            bounds_mismatch, bad_json, missing_json, labels_not_list, unknown_label,
            label_mismatch, no_target, s1_bad_json, s1_no_partner, s1_only, s2_only,
            duplicate_s1.
        progress: print a line about every 10 % to stderr.

    Returns:
        A :class:`SynthInfo`.

    Raises:
        ValueError: ``n`` out of range, or an unknown corruption kind / patch index.
    """
    by_patch = plan_corruptions(corrupt, n, _CAPACITY, _CORRUPTIONS)

    out = Path(out_dir)
    s2_root, s1_root = out / "BigEarthNet-S2", out / "BigEarthNet-S1"
    s2_root.mkdir(parents=True, exist_ok=True)
    s1_root.mkdir(parents=True, exist_ok=True)
    s2_bands = [b for b in _ALL_S2 if include_60m or _BAND_RES[b] != 20]
    corrupted: dict[str, list[str]] = {}
    step = max(1, n // 10)

    with gdal_env():
        for i, acq, col, row, labels, s2_px, s1_px, _ in synth_patches(n, seed):
            kinds = by_patch.get(i, [])
            _write_patch(s2_root, s1_root, acq, col, row, labels, s2_px, s1_px, s2_bands,
                         kinds, corrupted)
            if progress and ((i + 1) % step == 0 or i + 1 == n):
                print(f"synthetic BigEarthNet-MM: {i + 1}/{n} patches "
                      f"({100 * (i + 1) // n} %)", file=sys.stderr, flush=True)

    (out / "README.txt").write_text(
        "SYNTHETIC DATA - not BigEarthNet.\n\n"
        "Written by rsray.data.sources.bigearthnet.write_synthetic_bigearthnet("
        f"n={n}, seed={seed}, include_60m={include_60m}) in the exact BigEarthNet v1.0 "
        "(BigEarthNet-MM) on-disk format. Every labels json carries "
        f'"{SYNTHETIC_MARKER}": true. Pixels are generated; tile names and corners are real, '
        "dates are not.\n\n" + describe_synthetic_rules() + "\n",
        encoding="utf-8")
    return SynthInfo(
        n=n, out_dir=str(out), seed=seed, s2_root=str(s2_root), s1_root=str(s1_root),
        rules=describe_synthetic_rules(),
        class_modality={cls: kind for cls, kind, _, _ in _RULES},
        corrupted=corrupted,
    )


def _write_patch(
    s2_root: Path, s1_root: Path, acq: _Acquisition, col: int, row: int, labels: list[str],
    s2_px: dict[str, np.ndarray], s1_px: dict[str, np.ndarray], s2_bands: list[str],
    kinds: list[str], corrupted: dict[str, list[str]],
) -> None:
    """Write one S2 + S1 patch pair, applying the corruptions ``kinds``."""
    s2_name = f"{acq.s2_sat}_MSIL2A_{acq.s2_time}_{col}_{row}"
    s1_name = f"{acq.s1_sat}_IW_GRDH_1SDV_{acq.s1_time}_{acq.tile}_{col}_{row}"
    for kind in kinds:
        corrupted.setdefault(kind, []).append(s2_name)
    ulx, uly = acq.ulx + 1200 * col, acq.uly - 1200 * row
    wkt = _utm_wkt(acq.zone)
    s2_date, s2_t = acq.s2_time.split("T")
    s1_date, s1_t = acq.s1_time.split("T")
    s2_labels: Any = list(labels)
    s1_labels: Any = list(labels)
    if "unknown_label" in kinds:
        s2_labels = s1_labels = [*labels, "Moon craters"]
    if "no_target" in kinds:
        s2_labels = s1_labels = ["Airports", "Bare rock"]
    if "label_mismatch" in kinds:
        s1_labels = [*labels[:-1], "Sea and ocean" if labels[-1] != "Sea and ocean"
                     else "Salines"]
    if "labels_not_list" in kinds:
        s2_labels = ", ".join(labels)

    if "s1_only" not in kinds:
        d = s2_root / s2_name
        d.mkdir(exist_ok=True)
        for b in s2_bands:
            arr, res = s2_px[b], 1200 / _BAND_RES[b]
            if b == "B05" and "wrong_shape" in kinds:
                arr = np.repeat(np.repeat(arr, 2, axis=0), 2, axis=1)
            if b == "B03" and "wrong_dtype" in kinds:
                arr = arr.astype(np.float32)
            _write_tif(d / f"{s2_name}_{b}.tif", arr, wkt, ulx, uly, res)
        meta = {
            "labels": s2_labels,
            "coordinates": {"ulx": ulx, "uly": uly, "lrx": ulx + 1200, "lry": uly - 1200},
            "projection": wkt,
            "tile_source": f"{acq.s2_sat}_MSIL1C_{acq.s2_time}_N0205_{acq.orbit}_T{acq.tile}_"
                           f"{s2_date}T{s2_t.zfill(6)[:2]}5959.SAFE",
            "acquisition_date": f"{s2_date[:4]}-{s2_date[4:6]}-{s2_date[6:]} {_hhmmss(s2_t)}",
            SYNTHETIC_MARKER: True,
        }
        _write_json(d / f"{s2_name}{LABELS_SUFFIX}", meta, broken="bad_json" in kinds)
        if "missing_band" in kinds:
            (d / f"{s2_name}_B05.tif").unlink()
        if "truncated" in kinds:
            p = d / f"{s2_name}_B02.tif"
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        if "missing_json" in kinds:
            (d / f"{s2_name}{LABELS_SUFFIX}").unlink()

    if "s2_only" in kinds:
        return
    s1_names = [s1_name]
    if "duplicate_s1" in kinds:
        s1_names.append(f"{acq.s1_sat}_IW_GRDH_1SDV_{s1_date}T{int(s1_t) + 1:06d}_{acq.tile}_"
                        f"{col}_{row}")
    for name in s1_names:
        d = s1_root / name
        d.mkdir(exist_ok=True)
        zone, s1_ulx = acq.zone, ulx
        if "crs_mismatch" in kinds:
            zone = acq.zone + 1
        if "bounds_mismatch" in kinds:
            s1_ulx = ulx + 20
        s1_wkt = _utm_wkt(zone)
        for b in ("VV", "VH"):
            arr = s1_px[b]
            if b == "VV" and "nan_s1" in kinds:
                arr = arr.copy()
                arr[10:20, 10:20] = np.nan
            _write_tif(d / f"{name}_{b}.tif", arr, s1_wkt, s1_ulx, uly, 10.0)
        meta = {
            "labels": s1_labels,
            "coordinates": {"ulx": s1_ulx, "uly": uly, "lrx": s1_ulx + 1200, "lly": uly - 1200},
            "projection": s1_wkt,
            "corresponding_s2_patch": s2_name,
            "scene_source": f"{acq.s1_sat}_IW_GRDH_1SDV_{acq.s1_time}_{acq.s1_scene_tail}",
            "acquisition_time": f"{s1_date[:4]}-{s1_date[4:6]}-{s1_date[6:]}T{_hhmmss(s1_t)}",
            SYNTHETIC_MARKER: True,
        }
        if "s1_no_partner" in kinds:
            del meta["corresponding_s2_patch"]
        _write_json(d / f"{name}{LABELS_SUFFIX}", meta, broken="s1_bad_json" in kinds)


def _write_json(path: Path, meta: Mapping[str, Any], *, broken: bool = False) -> None:
    text = json.dumps(meta)
    if broken:
        text = text[: len(text) // 2]
    path.write_text(text, encoding="utf-8")


def _add_prepare_args(p: Any) -> None:
    p.add_argument("--s2-root", required=True, help="folder (or s3://) of BigEarthNet-S2 patches")
    p.add_argument("--s1-root", required=True, help="folder (or s3://) of BigEarthNet-S1 patches")
    p.add_argument("--include-60m", action="store_true", help="also store B01 and B09")
    p.add_argument("--s1-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--splits", choices=["auto", "official", "seeded"], default="auto",
                   help="official = bigearthnet-common's lists; seeded = hash split")
    p.add_argument("--split-seed", type=int, default=0)


def _source_from_args(args: Any) -> BigEarthNetMM:
    return BigEarthNetMM(args.s2_root, args.s1_root, include_60m=args.include_60m,
                         s1_dtype=args.s1_dtype, splits=args.splits, split_seed=args.split_seed)


register_dataset(DatasetEntry(
    name="bigearthnet",
    summary="BigEarthNet-MM v1.0: Sentinel-2 + Sentinel-1 patch folders, 19-class multi-label",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_synthetic_bigearthnet(out, n, seed=seed),
    synthetic_source=lambda raw: BigEarthNetMM(str(raw / "BigEarthNet-S2"),
                                               str(raw / "BigEarthNet-S1")),
    describe_synthetic=describe_synthetic_rules,
    default_modalities=("s2", "s1"),
))
