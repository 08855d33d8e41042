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

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from rsray.data.schema import (
    BandGroup,
    DatasetSpec,
    Discovery,
    Reject,
    Sample,
)
from rsray.data.sources._raster import (
    GeoPoint,
    grid_of,
    lat_lon,
)
from rsray.data.sources.bigearthnet.bands import read_band_groups
from rsray.data.sources.bigearthnet.official import (
    _EXCLUSION_FILES,
    _SPLIT_FILES,
    _bigearthnet_common_version,
    _load_name_list,
    _official_lists_available,
)
from rsray.data.sources.bigearthnet.spec import (
    BIGEARTHNET_19_CLASSES,
    CLC43_TO_19,
    LABELS_SUFFIX,
    S1_GROUPS,
    S2_GROUPS,
    SYNTHETIC_MARKER,
    bigearthnet_spec,
    labels_to_multihot,
)
from rsray.data.splits import SPLIT_NAMES, check_fractions, seeded_split
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError
from rsray.storage import (
    StorageOptions,
    join_url,
    list_subdirs,
    read_bytes,
)
from rsray.storage import normalise as normalise_root

__all__ = ["BigEarthNetMM"]


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
        self.split_fractions = check_fractions(split_fractions)
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


def _tile_of(s1_name: str) -> str:
    """MGRS tile of a v1 S1 patch name (``S1A_IW_GRDH_1SDV_<time>_<tile>_<col>_<row>``)."""
    parts = s1_name.split("_")
    return parts[-3] if len(parts) >= 3 else ""
