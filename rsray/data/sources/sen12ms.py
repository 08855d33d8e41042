"""SEN12MS: Sentinel-1 + Sentinel-2 + MODIS land-cover triplets, 10 simplified IGBP classes.

On disk (the layout of the official ``ROIs<id>_<season>_{lc,s1,s2}.tar.gz`` archives, one
GeoTIFF per modality and patch, 256 x 256 px at 10 m in a UTM CRS)::

    <root>/ROIs1158_spring/s1_<scene>/ROIs1158_spring_s1_<scene>_p<patch>.tif  2 bands float32 dB
    <root>/ROIs1158_spring/s2_<scene>/ROIs1158_spring_s2_<scene>_p<patch>.tif  13 bands uint16
    <root>/ROIs1158_spring/lc_<scene>/ROIs1158_spring_lc_<scene>_p<patch>.tif  4 bands uint16
    (and ROIs1868_summer, ROIs1970_fall, ROIs2017_winter)

Partners are found by swapping ``_s1_``/``_s2_``/``_lc_``. The label comes from land-cover
band 1 (the 17 IGBP classes), simplified to the 10 classes of the SEN12MS classification
code: the share of each class among the patch's pixels gives a single label (the majority
class, task ``multiclass``) or a multi-label vector (every class whose share is at least
``min_share``, task ``multilabel``). The official code uses the per-patch IGBP probability
vectors of ``labels/IGBP_probability_labels.pkl`` instead; pass that file as ``igbp_pickle``
to use them (same simplification, argmax / threshold).

Splits: the official test split is the 26 hold-out scenes, the validation split the 25
validation scenes of the toolbox's history (removed from training here); or a seeded split by
scene. :func:`write_synthetic_sen12ms` writes a synthetic twin in exactly this format in which
five classes are visible only in Sentinel-2 and five only in Sentinel-1.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
    Raster,
    StorageOptions,
    check_same_grid,
    gdal_env,
    get_fs,
    grid_of,
    join_url,
    list_files,
    list_subdirs,
    normalise_root,
    read_bytes,
    read_rasters,
    write_geotiff,
)
from rsray.data.sources._synth import plan_corruptions, truncate_file
from rsray.data.splits import check_fractions, seeded_split
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError

__all__ = [
    "IGBP_CLASSES",
    "IGBP_TO_SEN12MS",
    "SEN12MS",
    "SEN12MS_CLASSES",
    "SYNTHETIC_TAG",
    "TEST_SCENES",
    "VAL_SCENES",
    "Sen12msSynthInfo",
    "describe_synthetic_rules",
    "sen12ms_spec",
    "simplify_igbp",
    "write_synthetic_sen12ms",
]

# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------

IGBP_CLASSES: tuple[str, ...] = (
    "Evergreen Needleleaf Forests", "Evergreen Broadleaf Forests",
    "Deciduous Needleleaf Forests", "Deciduous Broadleaf Forests", "Mixed Forests",
    "Closed Shrublands", "Open Shrublands", "Woody Savannas", "Savannas", "Grasslands",
    "Permanent Wetlands", "Croplands", "Urban and Built-up Lands",
    "Cropland/Natural Vegetation Mosaics", "Permanent Snow and Ice", "Barren", "Water Bodies",
)
"""The 17 IGBP classes of MODIS MCD12Q1 (code = position + 1), as in land-cover band 1."""

SEN12MS_CLASSES: tuple[str, ...] = (
    "Forest", "Shrubland", "Savanna", "Grassland", "Wetlands", "Croplands", "Urban/Built-up",
    "Snow/Ice", "Barren", "Water",
)
"""The 10 simplified IGBP classes of the SEN12MS classification code (index = label
position)."""

IGBP_TO_SEN12MS: dict[int, int] = {
    1: 0, 2: 0, 3: 0, 4: 0, 5: 0,  # forests
    6: 1, 7: 1,  # closed / open shrublands
    8: 2, 9: 2,  # woody savannas / savannas
    10: 3, 11: 4,
    12: 5, 14: 5,  # croplands + cropland/natural vegetation mosaic
    13: 6, 15: 7, 16: 8, 17: 9,
}
"""IGBP code (1-17) -> index into :data:`SEN12MS_CLASSES`."""

_LUT = np.full(256, -1, dtype=np.int16)
for _code, _idx in IGBP_TO_SEN12MS.items():
    _LUT[_code] = _idx


def simplify_igbp(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """17 IGBP values (probabilities, shares or counts, code order) -> the 10 simplified ones.

    Sums the codes of each simplified class (1-5 forest, 6-7 shrubland, 8-9 savanna, 12 + 14
    croplands), as the official ``load_sample`` does with the probability pickle.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (17,):
        raise ValueError(f"expected 17 IGBP values, got shape {v.shape}")
    out = np.zeros(10, dtype=np.float64)
    for code, idx in IGBP_TO_SEN12MS.items():
        out[idx] += v[code - 1]
    return out


# --------------------------------------------------------------------------------------------
# Layout, bands, splits
# --------------------------------------------------------------------------------------------

SEASONS: dict[str, str] = {
    "ROIs1158_spring": "spring", "ROIs1868_summer": "summer", "ROIs1970_fall": "fall",
    "ROIs2017_winter": "winter",
}
"""ROI folder -> season."""
_ROI_RE = re.compile(r"^ROIs\d{4}_(spring|summer|fall|winter)$")
_SCENE_RE = re.compile(r"^(s1|s2|lc)_(\d+)$")

S2_FILE_BANDS: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9",
                                  "B10", "B11", "B12")
"""The 13 bands of an S2 file, in file order (Level-1C reflectance x 10000)."""
S2_LAND_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
"""The 10 bands the SEN12MS classification code uses (``S2_BANDS_LD``); stored by default."""
S2_EXTRA_BANDS: tuple[str, ...] = ("B1", "B9", "B10")
"""The 60 m atmospheric bands, stored only with ``all_s2_bands``."""
S1_BANDS: tuple[str, ...] = ("VV", "VH")
LC_BANDS: tuple[str, ...] = ("IGBP", "LCCS_LC", "LCCS_LU", "LCCS_SH")
PATCH_SIZE = 256

S2_GROUP = BandGroup("s2", S2_LAND_BANDS, PATCH_SIZE, "uint16")
S2_EXTRA_GROUP = BandGroup("s2_60m", S2_EXTRA_BANDS, PATCH_SIZE, "uint16", optional=True)
S1_GROUP = BandGroup("s1", S1_BANDS, PATCH_SIZE, "float32")
_S2_LAND_IDX = [S2_FILE_BANDS.index(b) for b in S2_LAND_BANDS]
_S2_EXTRA_IDX = [S2_FILE_BANDS.index(b) for b in S2_EXTRA_BANDS]

TEST_SCENES: frozenset[tuple[str, int]] = frozenset(
    [("spring", s) for s in (15, 17, 63, 97, 124, 146)]
    + [("summer", s) for s in (15, 19, 43, 72, 79, 104, 131)]
    + [("fall", s) for s in (30, 35, 39, 47, 61, 120, 141, 144)]
    + [("winter", s) for s in (32, 64, 107, 135, 146)]
)
"""The 26 hold-out scenes of ``splits/SEN12MS_holdOutScenes.txt`` (the official test split)."""
VAL_SCENES: frozenset[tuple[str, int]] = frozenset(
    [("spring", s) for s in (44, 45, 77, 112, 113, 117)]
    + [("summer", s) for s in (26, 36, 55, 73, 89, 113)]
    + [("fall", s) for s in (1, 3, 14, 20, 57, 62, 93, 130, 142)]
    + [("winter", s) for s in (69, 77, 103, 144)]
)
"""The 25 validation scenes of the toolbox's ``splits/ValidationScenes.txt`` (they lie inside
the official training list; here they are removed from training)."""

SYNTHETIC_TAG = "RSRAY_SYNTHETIC"
"""GeoTIFF metadata tag (value ``1``) on every file the synthetic writer produces."""
LABEL_MODES = ("single", "multi")
S1_NAN_POLICIES = ("reject", "zero")
SPLIT_MODES = ("official", "seeded")


def sen12ms_spec(label_mode: str = "single", all_s2_bands: bool = False,
                 synthetic: bool = False) -> DatasetSpec:
    """Build the :class:`DatasetSpec` of SEN12MS.

    Args:
        label_mode: ``single`` (task ``multiclass``) or ``multi`` (task ``multilabel``).
        all_s2_bands: add the optional ``s2_60m`` group (B1, B9, B10) to modality ``s2``.
        synthetic: the data come from :func:`write_synthetic_sen12ms`.

    Returns:
        Modality ``s2`` (B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12 [, B1, B9, B10], 256 px
        uint16) and ``s1`` (VV, VH, 256 px float32 dB) over :data:`SEN12MS_CLASSES`.

    Raises:
        ConfigError: ``label_mode`` is not ``single`` or ``multi``.
    """
    if label_mode not in LABEL_MODES:
        raise ConfigError(f"label_mode: {label_mode!r} is not one of {', '.join(LABEL_MODES)}")
    s2_groups = (S2_GROUP, S2_EXTRA_GROUP) if all_s2_bands else (S2_GROUP,)
    return DatasetSpec(
        name="sen12ms",
        task="multiclass" if label_mode == "single" else "multilabel",
        classes=SEN12MS_CLASSES,
        modalities=(ModalitySpec("s2", s2_groups), ModalitySpec("s1", (S1_GROUP,))),
        synthetic=synthetic,
        meta_keys=("season", "scene"),
    )


def _load_igbp_pickle(path: str, storage_options: StorageOptions) -> dict[str, list[float]]:
    """``{S2 file stem: 17 probabilities}`` from the official ``IGBP_probability_labels.pkl``.

    The file is a Python pickle: only give one from a source you trust.
    """
    try:
        raw = read_bytes(path, storage_options)
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: IGBP probability pickle not found") from None
    try:
        # The official label format is a pickle; the docstring and --help warn about trust.
        table = pickle.loads(raw)
    except Exception as exc:
        raise RsrayError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(table, Mapping):
        raise RsrayError(f"{path}: expected a dict of S2 file name -> 17 IGBP probabilities, "
                         f"got {type(table).__name__}")
    out: dict[str, list[float]] = {}
    for key, value in table.items():
        vec = np.asarray(value, dtype=np.float64).ravel()
        name = str(key)
        stem = name[:-4] if name.endswith(".tif") else name
        out[stem] = vec.tolist()
    return out


@dataclass(frozen=True)
class _Triplet:
    roi: str
    scene: int
    patch: int
    files: dict[str, str]  # modality (s1, s2, lc) -> url


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


class SEN12MS:
    """SEN12MS reader: pairs s1/s2/lc files, assigns splits, reads and validates triplets.

    ``discover`` lists the ROI and scene folders (no raster is opened, except the header of
    one S2 file to detect the synthetic tag); ``read`` opens the three GeoTIFFs of one patch.

    Labels: per-patch shares of the 10 simplified classes, computed from the IGBP codes of
    land-cover band 1 (pixels outside 1-17 are ignored; a patch with no valid pixel is
    rejected). ``label_mode="single"`` takes the majority class (ties: the lower class index,
    like ``np.argmax``), ``"multi"`` every class whose share is >= ``min_share``. With
    ``igbp_pickle`` the official probability vectors replace the shares (a patch missing from
    the pickle is rejected).

    Splits:
        * ``official``: scenes of :data:`TEST_SCENES` -> ``test``, of :data:`VAL_SCENES` ->
          ``val``, the rest -> ``train``.
        * ``seeded``: a seeded hash of the scene (``<roi>/<scene>``) with ``split_fractions``,
          so that all patches of a scene share a split (neighbouring patches overlap).
    """

    classes: tuple[str, ...] = SEN12MS_CLASSES
    s2_bands: tuple[str, ...] = S2_FILE_BANDS
    s1_bands: tuple[str, ...] = S1_BANDS
    lc_bands: tuple[str, ...] = LC_BANDS
    rgb_bands: tuple[str, ...] = ("B4", "B3", "B2")
    patch_size: int = PATCH_SIZE

    def __init__(
        self,
        root: str | Path,
        *,
        label_mode: Literal["single", "multi"] = "single",
        min_share: float = 0.1,
        all_s2_bands: bool = False,
        splits: Literal["official", "seeded"] = "official",
        split_seed: int = 0,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        s1_nan: Literal["reject", "zero"] = "reject",
        igbp_pickle: str | None = None,
        synthetic: bool | None = None,
        num_threads: int = 16,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """Describe a SEN12MS copy; nothing is read until :meth:`discover`.

        Args:
            root: folder (local or ``s3://...``) holding the ``ROIs<id>_<season>`` folders.
            label_mode: ``single`` (majority class, one-hot) or ``multi`` (multi-hot).
            min_share: multi-label threshold on a class's pixel share (or probability).
            all_s2_bands: also store B1, B9, B10 (optional group ``s2_60m``); by default only
                the 10 bands of the SEN12MS classification code are stored.
            splits: ``official`` or ``seeded`` (see the class docstring).
            split_seed: seed of the seeded split.
            split_fractions: train, val, test fractions of the seeded split (sum 1).
            s1_nan: ``reject`` a patch whose S1 has NaN/inf (default) or set those pixels to
                0 dB as the official loader does (``np.nan_to_num``).
            igbp_pickle: path of ``IGBP_probability_labels.pkl`` (official labels).
            synthetic: mark the spec as synthetic; ``None`` detects the writer's GeoTIFF tag.
            num_threads: threads listing scene folders in :meth:`discover`.
            storage_options: fsspec options for a remote root (never logged).

        Raises:
            ConfigError: an argument is not one of its allowed values.
        """
        if splits not in SPLIT_MODES:
            raise ConfigError(f"splits: {splits!r} is not one of {', '.join(SPLIT_MODES)}")
        if s1_nan not in S1_NAN_POLICIES:
            raise ConfigError(f"s1_nan: {s1_nan!r} is not one of {', '.join(S1_NAN_POLICIES)}")
        if not 0.0 < float(min_share) <= 1.0:
            raise ConfigError(f"min_share: {min_share} must be in (0, 1]")
        if num_threads < 1:
            raise ConfigError(f"num_threads: {num_threads} must be >= 1")
        self.root = normalise_root(str(root))
        self.label_mode = label_mode
        self.min_share = float(min_share)
        self.all_s2_bands = bool(all_s2_bands)
        self.split_mode = splits
        self.split_seed = int(split_seed)
        self.split_fractions = check_fractions(split_fractions)
        self.s1_nan = s1_nan
        self.igbp_pickle = igbp_pickle
        self.synthetic_override = synthetic
        self.num_threads = int(num_threads)
        self.storage_options = dict(storage_options or {})
        self.spec: DatasetSpec = sen12ms_spec(label_mode, self.all_s2_bands, bool(synthetic))

    def __repr__(self) -> str:  # no storage options: they may hold credentials
        return (f"SEN12MS(root={self.root!r}, label_mode={self.label_mode!r}, "
                f"min_share={self.min_share}, all_s2_bands={self.all_s2_bands}, "
                f"splits={self.split_mode!r})")

    # -- discover ----------------------------------------------------------------------------

    def _scene_files(self, roi: str, folder: str) -> tuple[str, str, list[tuple[int, str]]]:
        """``(modality, folder, [(patch, url)])`` of one ``s1_N``/``s2_N``/``lc_N`` folder."""
        mod, scene = _SCENE_RE.match(folder).groups()  # type: ignore[union-attr]
        pattern = re.compile(rf"^{re.escape(roi)}_{mod}_{scene}_p(\d+)\.tif$")
        url = join_url(self.root, roi, folder)
        found = []
        for name in list_files(url, self.storage_options):
            m = pattern.match(name)
            if m:
                found.append((int(m.group(1)), join_url(url, name)))
        return mod, folder, found

    def _triplets(self) -> tuple[list[_Triplet], int]:
        """Every (roi, scene, patch) seen in any modality, and the number of ROI folders."""
        try:
            rois = [d for d in list_subdirs(self.root, self.storage_options) if _ROI_RE.match(d)]
        except (FileNotFoundError, NotADirectoryError):
            raise DatasetNotFoundError(
                f"{self.root}: SEN12MS folder not found (expected ROIs1158_spring, "
                "ROIs1868_summer, ROIs1970_fall, ROIs2017_winter inside it)") from None
        if not rois:
            raise DatasetNotFoundError(
                f"{self.root}: no ROIs<id>_<season> folder (expected ROIs1158_spring, "
                "ROIs1868_summer, ROIs1970_fall, ROIs2017_winter: the extracted "
                "ROIs*_{lc,s1,s2}.tar.gz archives)")
        jobs: list[tuple[str, str]] = []
        for roi in rois:
            for folder in list_subdirs(join_url(self.root, roi), self.storage_options):
                if _SCENE_RE.match(folder):
                    jobs.append((roi, folder))
        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            listed = list(pool.map(lambda job: (job[0], *self._scene_files(*job)), jobs))
        by_key: dict[tuple[str, int, int], dict[str, str]] = {}
        for roi, mod, folder, files in listed:
            scene = int(folder.split("_")[1])
            for patch, url in files:
                by_key.setdefault((roi, scene, patch), {})[mod] = url
        triplets = [_Triplet(roi, scene, patch, files)
                    for (roi, scene, patch), files in sorted(by_key.items())]
        return triplets, len(rois)

    def _partner_url(self, t: _Triplet, mod: str) -> str:
        return join_url(self.root, t.roi, f"{mod}_{t.scene}",
                        f"{t.roi}_{mod}_{t.scene}_p{t.patch}.tif")

    def _split_of(self, season: str, roi: str, scene: int) -> str:
        if self.split_mode == "seeded":
            return seeded_split(f"{roi}/{scene}", self.split_seed, self.split_fractions)
        if (season, scene) in TEST_SCENES:
            return "test"
        if (season, scene) in VAL_SCENES:
            return "val"
        return "train"

    def _detect_synthetic(self, first_s2: str | None) -> bool:
        if self.synthetic_override is not None:
            return bool(self.synthetic_override)
        if first_s2 is None:
            return False
        import rasterio

        fs, path = get_fs(first_s2, self.storage_options)
        try:  # through fsspec, so that an s3:// root needs no GDAL credentials
            with gdal_env(), fs.open(path, "rb") as f, rasterio.open(f) as src:
                return src.tags().get(SYNTHETIC_TAG) == "1"
        except Exception:  # an unreadable file is rejected later by read(); no tag here
            return False

    def discover(self) -> Discovery:
        """List the ROI/scene folders, pair s1/s2/lc files by name and assign splits.

        Returns:
            Items ``{"patch_id" (S2 file stem), "split", "s1", "s2", "lc" (file URLs),
            "groups": {"season", "scene" (``<season>_<n>``), "roi"}}`` (+ ``"igbp_prob"``
            with ``igbp_pickle``); rejects: an S2 file without its S1 or LC partner, an S1 or
            LC file without its S2 file, a patch absent from (or malformed in) the pickle.

        Raises:
            DatasetNotFoundError: ``root`` or every ROI folder is missing; the pickle is
                missing.
        """
        triplets, n_rois = self._triplets()
        rejects: list[Reject] = []
        probs = (_load_igbp_pickle(self.igbp_pickle, self.storage_options)
                 if self.igbp_pickle else None)
        items: list[dict[str, Any]] = []
        counts = {"s1": 0, "s2": 0, "lc": 0}
        for t in triplets:
            for mod in t.files:
                counts[mod] += 1
            if "s2" not in t.files:
                for mod, url in sorted(t.files.items()):
                    rejects.append({"path": url, "reason": f"{mod.upper()} file without its "
                                    f"S2 partner {self._partner_url(t, 's2')}"})
                continue
            missing = [m for m in ("s1", "lc") if m not in t.files]
            if missing:
                rejects.append({"path": t.files["s2"], "reason": "; ".join(
                    f"missing {m.upper()} partner {self._partner_url(t, m)}" for m in missing)})
                continue
            season = SEASONS.get(t.roi, t.roi.split("_")[-1])
            patch_id = f"{t.roi}_s2_{t.scene}_p{t.patch}"
            item: dict[str, Any] = {
                "patch_id": patch_id,
                "split": self._split_of(season, t.roi, t.scene),
                **{m: t.files[m] for m in ("s1", "s2", "lc")},
                "groups": {"season": season, "scene": f"{season}_{t.scene}", "roi": t.roi},
            }
            if probs is not None:
                vec = probs.get(patch_id)
                if vec is None or len(vec) != 17 or not np.isfinite(vec).all():
                    why = ("not in" if vec is None else
                           f"has {len(vec)} values instead of 17 in" if len(vec) != 17 else
                           "has non-finite values in")
                    rejects.append({"path": t.files["s2"],
                                    "reason": f"{why} the IGBP probability pickle "
                                              f"{self.igbp_pickle}"})
                    continue
                item["igbp_prob"] = vec
            items.append(item)

        synthetic = self._detect_synthetic(items[0]["s2"] if items else None)
        self.spec = dataclasses.replace(self.spec, synthetic=synthetic)
        rejects.sort(key=lambda r: (r["path"], r["reason"]))
        split_counts = {s: sum(it["split"] == s for it in items) for s in ("train", "val", "test")}
        source = ("official SEN12MS hold-out (26 test) and validation (25) scenes"
                  if self.split_mode == "official"
                  else f"seeded by scene (seed={self.split_seed}, "
                       f"fractions={self.split_fractions})")
        info: dict[str, Any] = {
            "dataset": "SEN12MS",
            "split_source": source,
            "counts": split_counts,
            "roi_folders": n_rois,
            "files": counts,
            "items": len(items),
            "rejected_while_pairing": len(rejects),
            "label_mode": self.label_mode,
            "label_source": (f"IGBP probability pickle {self.igbp_pickle}" if probs is not None
                             else "pixel shares of land-cover band 1 (IGBP)"),
            "min_share": self.min_share,
            "all_s2_bands": self.all_s2_bands,
            "s1_nan": self.s1_nan,
            "synthetic": synthetic,
        }
        return Discovery(items=items, rejects=rejects, info=info)

    # -- read --------------------------------------------------------------------------------

    def _label(self, shares: np.ndarray, where: str) -> np.ndarray:
        """One-hot (single) or multi-hot (multi) from the 10 class shares/probabilities."""
        out = np.zeros(len(SEN12MS_CLASSES), dtype=np.uint8)
        if self.label_mode == "single":
            out[int(np.argmax(shares))] = 1
            return out
        out[shares >= self.min_share - 1e-9] = 1
        if not out.any():
            raise PatchError(where, f"no class reaches min_share={self.min_share} (largest "
                                    f"share {float(shares.max()):.3f})")
        return out

    def read(self, item: Mapping[str, Any]) -> Sample:
        """Read and validate one triplet.

        Args:
            item: one of :meth:`discover`'s items.

        Returns:
            Arrays ``s2`` (10, 256, 256) uint16 (+ ``s2_60m`` (3, 256, 256) with
            ``all_s2_bands``) and ``s1`` (2, 256, 256) float32 dB; a 10-class one-hot or
            multi-hot ``uint8`` label; meta ``season``, ``scene``; ``geo``: the S2 grid.

        Raises:
            PatchError: naming the file at fault: missing, unreadable or truncated GeoTIFF,
                wrong band count, shape or dtype kind, CRS or bounds (> 1 m) of S1/LC differing
                from S2, NaN/inf in S1 (with ``s1_nan="reject"``), LC band 1 without any
                valid IGBP code (1-17), no class reaching ``min_share``.
        """
        s2, s1, lc = read_rasters([str(item["s2"]), str(item["s1"]), str(item["lc"])],
                                  self.storage_options)
        _check_raster(s2, "S2", len(S2_FILE_BANDS), "iu")
        _check_raster(s1, "S1", len(S1_BANDS), "f")
        _check_raster(lc, "LC", len(LC_BANDS), "iu")
        check_same_grid(s1, s2, "S2")
        check_same_grid(lc, s2, "S2")

        s1_arr = s1.array.astype(np.float32, copy=False)
        bad = ~np.isfinite(s1_arr)
        if bad.any():
            if self.s1_nan == "reject":
                raise PatchError(s1.path, f"S1 has {int(bad.sum())} NaN/inf pixels (pass "
                                          "s1_nan='zero' / --s1-nan zero to set them to 0 dB "
                                          "as the official loader does)")
            s1_arr = np.where(bad, np.float32(0.0), s1_arr)
        if s2.array.dtype != np.uint16:
            if s2.array.min() < 0 or s2.array.max() > 65535:
                raise PatchError(s2.path, f"S2 values {s2.array.min()}..{s2.array.max()} do "
                                          "not fit uint16 reflectance")
            s2_arr = s2.array.astype(np.uint16)
        else:
            s2_arr = s2.array

        igbp = lc.array[0]
        classes = _LUT[np.clip(igbp, 0, 255).astype(np.int64)]
        valid = classes >= 0
        n_valid = int(valid.sum())
        if "igbp_prob" in item:
            shares = simplify_igbp(item["igbp_prob"])
        else:
            if n_valid == 0:
                found = ", ".join(str(v) for v in np.unique(igbp)[:8])
                raise PatchError(lc.path, f"land-cover band 1 has no valid IGBP code (1-17); "
                                          f"values found: {found}")
            shares = np.bincount(classes[valid], minlength=10)[:10] / n_valid
        label = self._label(shares, lc.path)

        arrays = {"s2": np.ascontiguousarray(s2_arr[_S2_LAND_IDX]), "s1": s1_arr}
        if self.all_s2_bands:
            arrays["s2_60m"] = np.ascontiguousarray(s2_arr[_S2_EXTRA_IDX])
        groups = item.get("groups", {})
        return {
            "patch_id": str(item["patch_id"]),
            "split": str(item.get("split", "")),
            "label": label,
            "arrays": arrays,
            "meta": {"season": str(groups.get("season", "")),
                     "scene": str(groups.get("scene", ""))},
            "geo": grid_of(s2),
        }


def _check_raster(r: Raster, what: str, bands: int, kinds: str) -> None:
    """Band count, 256 x 256 shape and dtype kind (``f`` float, ``iu`` integer)."""
    count, height, width = r.array.shape
    if count != bands:
        raise PatchError(r.path, f"{what} file has {count} bands, expected {bands}")
    if (height, width) != (PATCH_SIZE, PATCH_SIZE):
        raise PatchError(r.path, f"{what} shape ({height}, {width}), expected "
                                 f"({PATCH_SIZE}, {PATCH_SIZE})")
    if r.array.dtype.kind not in kinds:
        want = "floating point (dB)" if kinds == "f" else "integer"
        raise PatchError(r.path, f"{what} dtype {r.array.dtype}, expected {want}")


# --------------------------------------------------------------------------------------------
# Synthetic twin
# --------------------------------------------------------------------------------------------

# (ROI folder, scene, EPSG, upper-left x, upper-left y): per season one official test scene,
# one official validation scene and three training scenes, in UTM zones of both hemispheres.
_SYNTH_SCENES: tuple[tuple[str, int, int, int, int], ...] = (
    ("ROIs1158_spring", 15, 32633, 300000, 5400000),
    ("ROIs1158_spring", 44, 32617, 500000, 4600000),
    ("ROIs1158_spring", 2, 32750, 300000, 7000000),
    ("ROIs1158_spring", 5, 32630, 400000, 4500000),
    ("ROIs1158_spring", 8, 32645, 600000, 3300000),
    ("ROIs1868_summer", 19, 32611, 400000, 3800000),
    ("ROIs1868_summer", 26, 32636, 300000, 6600000),
    ("ROIs1868_summer", 3, 32719, 500000, 6200000),
    ("ROIs1868_summer", 6, 32632, 500000, 5000000),
    ("ROIs1868_summer", 9, 32651, 300000, 3500000),
    ("ROIs1970_fall", 30, 32618, 600000, 4500000),
    ("ROIs1970_fall", 1, 32735, 400000, 7100000),
    ("ROIs1970_fall", 4, 32629, 500000, 4300000),
    ("ROIs1970_fall", 7, 32644, 400000, 2500000),
    ("ROIs1970_fall", 10, 32610, 500000, 5300000),
    ("ROIs2017_winter", 32, 32634, 400000, 6800000),
    ("ROIs2017_winter", 69, 32614, 600000, 3600000),
    ("ROIs2017_winter", 11, 32755, 300000, 6300000),
    ("ROIs2017_winter", 12, 32637, 400000, 6200000),
    ("ROIs2017_winter", 13, 32648, 500000, 4400000),
)
_GRID = 20  # patches per scene side: p = 1 + row * 20 + col, 2560 m apart
_CAPACITY = len(_SYNTH_SCENES) * _GRID * _GRID
_CELLS = 8  # the land-cover map is drawn on 8 x 8 blocks (MODIS' 500 m is blocky at 10 m)

# Ten land bands (S2_LAND_BANDS order) of each class, reflectance x 10000. Classes that S2
# must not separate share the spectrum _S2_SHARED; B1, B9, B10 are derived from them.
_S2_SHARED = (1000, 1050, 1000, 1300, 1900, 2100, 2200, 2300, 2000, 1400)
_S2_SPECTRA: dict[int, tuple[int, ...]] = {
    0: (300, 500, 300, 700, 2000, 2600, 2900, 3000, 1400, 700),  # Forest: dense vegetation
    2: (700, 900, 1100, 1500, 1800, 1900, 2000, 2100, 2900, 2300),  # Savanna: dry, SWIR-bright
    5: (500, 900, 500, 1200, 3000, 3600, 3800, 3900, 1900, 1000),  # Croplands: vigorous green
    7: (8000, 7800, 7500, 7000, 6500, 6200, 6000, 5800, 800, 600),  # Snow/Ice: bright, SWIR-dark
    8: (1500, 2000, 2500, 2800, 3000, 3100, 3200, 3300, 4000, 3500),  # Barren: bright soil
}
# (VV, VH) in dB; classes that S1 must not separate share _S1_SHARED.
_S1_SHARED = (-11.0, -17.0)
_S1_LEVELS: dict[int, tuple[float, float]] = {
    1: (-15.0, -21.0),  # Shrubland: 4 dB darker in both polarisations
    3: (-11.0, -24.0),  # Grassland: low cross-pol (VH 7 dB lower, VV unchanged)
    4: (-6.0, -17.0),  # Wetlands: bright VV (double bounce over water), VH unchanged
    6: (-2.0, -9.0),  # Urban/Built-up: bright both + 4-px bright-point texture
    9: (-22.0, -29.0),  # Water: dark both
}
_SEASON_GAIN = {"spring": 1.0, "summer": 1.06, "fall": 0.95, "winter": 0.9}  # S2 brightness
_SEASON_DB = {"spring": 0.0, "summer": 0.5, "fall": 0.0, "winter": -1.0}  # S1 offset
_IGBP_CODES: dict[int, tuple[int, ...]] = {
    idx: tuple(c for c, i in IGBP_TO_SEN12MS.items() if i == idx) for idx in range(10)
}
# Placeholder LCCS land cover / land use / surface hydrology codes per class (bands 2-4).
_LCCS = {0: (11, 10, 10), 1: (40, 30, 20), 2: (43, 30, 20), 3: (30, 30, 20), 4: (27, 27, 3),
         5: (36, 25, 20), 6: (9, 9, 20), 7: (2, 2, 20), 8: (1, 1, 20), 9: (3, 3, 3)}

_CORRUPTIONS: dict[str, str] = {
    "missing_s1": "S1 file deleted",
    "missing_lc": "LC file deleted",
    "s2_missing": "S2 file not written (S1 and LC orphans)",
    "wrong_band_count": "S2 written with 12 bands",
    "wrong_shape": "S1 written 256 x 255",
    "crs_mismatch": "LC written in the next UTM zone",
    "bounds_mismatch": "S1 shifted 30 m east",
    "nan_s1": "S1 VV with a 10 x 10 block of NaN",
    "truncated": "S2 file cut to half its size",
    "lc_no_igbp": "LC band 1 all 0 (no IGBP code)",
}


def describe_synthetic_rules() -> str:
    """Which classes the synthetic SEN12MS twin shows in which modality, and how."""
    lines = ["Synthetic SEN12MS: a blocky 8 x 8 land-cover map per patch (a dominant class "
             "plus 0-2 others covering 10-22 % each), rendered into S2 and S1:",
             "  visible in S2 only (distinct spectra, identical S1 backscatter "
             f"{_S1_SHARED[0]:g}/{_S1_SHARED[1]:g} dB): "
             + ", ".join(SEN12MS_CLASSES[c] for c in _S2_SPECTRA),
             "  visible in S1 only (distinct backscatter, identical S2 spectrum): "
             + ", ".join(SEN12MS_CLASSES[c] for c in _S1_LEVELS)]
    for c, (vv, vh) in _S1_LEVELS.items():
        lines.append(f"    {SEN12MS_CLASSES[c]}: VV {vv:g} dB, VH {vh:g} dB")
    lines.append("Nuisances: season gain on S2 (winter 0.9 ... summer 1.06) and offset on S1 "
                 "(winter -1 dB), per-patch gain 0.92-1.08 / offset N(0, 0.7) dB, 3 % S2 "
                 "noise, 4-look S1 speckle.")
    lines.append("Labels follow from the IGBP codes of LC band 1 (any code of the class). With "
                 "a uniform dominant class, a single-modality model can reach about 60 % OA "
                 "(its five classes + 1/5 of the others); fusion can reach 100 %.")
    return "\n".join(lines)


@dataclass
class Sen12msSynthInfo:
    """What :func:`write_synthetic_sen12ms` wrote."""

    n: int
    out_dir: str
    seed: int
    rules: str
    class_modality: dict[str, str] = field(default_factory=dict)
    """Class name -> ``s2`` or ``s1`` (the only modality that shows it)."""
    corrupted: dict[str, list[str]] = field(default_factory=dict)
    """Corruption kind -> patch ids (S2 file stems) it was applied to."""


def _draw_map(rng: np.random.Generator) -> np.ndarray:
    """``(8, 8)`` simplified class indices: a dominant class and 0-2 rectangles of others."""
    dominant = int(rng.integers(0, 10))
    grid = np.full((_CELLS, _CELLS), dominant, dtype=np.int64)
    k = int(rng.choice(3, p=[0.3, 0.4, 0.3]))
    others = rng.choice([c for c in range(10) if c != dominant], size=k, replace=False)
    for c in others:
        area = rng.uniform(0.10, 0.22) * _CELLS * _CELLS
        h = int(rng.integers(2, _CELLS))
        w = int(max(1, min(_CELLS, np.floor(area / h))))
        y, x = int(rng.integers(0, _CELLS - h + 1)), int(rng.integers(0, _CELLS - w + 1))
        grid[y:y + h, x:x + w] = int(c)
    return grid


def _render(rng: np.random.Generator, cmap: np.ndarray, season: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S2 (13, 256, 256) uint16, S1 (2, 256, 256) float32 dB, LC (4, 256, 256) uint16."""
    size = PATCH_SIZE
    cell = size // _CELLS
    px = np.repeat(np.repeat(cmap, cell, axis=0), cell, axis=1)
    land = np.array([_S2_SPECTRA.get(c, _S2_SHARED) for c in range(10)], dtype=np.float32)
    gain = _SEASON_GAIN[season] * rng.uniform(0.92, 1.08)
    s2_land = land[px].transpose(2, 0, 1) * np.float32(gain)  # (10, H, W)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = 1 + 0.04 * np.sin(2 * np.pi * (yy * rng.uniform(0.01, 0.04)
                                             + xx * rng.uniform(0.01, 0.04)))
    s2_land = s2_land * texture * (1 + 0.03 * rng.standard_normal(s2_land.shape,
                                                                   dtype=np.float32))
    s2 = np.empty((len(S2_FILE_BANDS), size, size), dtype=np.float32)
    s2[_S2_LAND_IDX] = s2_land
    b2, b8a = s2_land[S2_LAND_BANDS.index("B2")], s2_land[S2_LAND_BANDS.index("B8A")]
    s2[S2_FILE_BANDS.index("B1")] = 0.9 * b2 + 150
    s2[S2_FILE_BANDS.index("B9")] = 0.35 * b8a
    s2[S2_FILE_BANDS.index("B10")] = 15 + 3 * rng.standard_normal((size, size))
    s2_out = np.clip(np.rint(s2), 1, 28000).astype(np.uint16)

    levels = np.array([_S1_LEVELS.get(c, _S1_SHARED) for c in range(10)], dtype=np.float32)
    base = levels[px].transpose(2, 0, 1) + np.float32(_SEASON_DB[season]
                                                       + rng.normal(0.0, 0.7))
    urban = px == 6
    if urban.any():
        points = ((yy.astype(np.int64) // 4 + xx.astype(np.int64) // 4) % 3 == 0) & urban
        base = base + 4.0 * points[None].astype(np.float32)
    speckle = 10 * np.log10(rng.gamma(4.0, 0.25, size=base.shape))
    s1_out = np.clip(base + speckle, -45.0, 15.0).astype(np.float32)

    codes = np.array([rng.choice(_IGBP_CODES[c]) for c in range(10)], dtype=np.uint16)
    lc = np.empty((len(LC_BANDS), size, size), dtype=np.uint16)
    lc[0] = codes[px]
    for b in range(3):
        lc[b + 1] = np.array([_LCCS[c][b] for c in range(10)], dtype=np.uint16)[px]
    return s2_out, s1_out, lc


def write_synthetic_sen12ms(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    corrupt: Mapping[str, int | Sequence[int]] | None = None,
    progress: bool = True,
) -> Sen12msSynthInfo:
    """Write ``n`` synthetic SEN12MS triplets in exactly the SEN12MS on-disk format.

    ``out_dir/ROIs<id>_<season>/{s1,s2,lc}_<scene>/ROIs<id>_<season>_{s1,s2,lc}_<scene>_p<n>.tif``:
    S2 13 bands uint16, S1 2 bands float32 dB, LC 4 bands uint16 (IGBP codes in band 1),
    256 x 256 px at 10 m, uncompressed GeoTIFF in UTM (both hemispheres), every file tagged
    ``RSRAY_SYNTHETIC=1``. Patches cycle through 20 scenes (per season one official test
    scene, one validation scene and three training scenes), so the official split gives about
    60/20/20 %. Labels follow :func:`describe_synthetic_rules`. Patch ``i`` depends only on
    ``seed`` and ``i``.

    Args:
        out_dir: folder to write into (created).
        n: number of triplets (at most 8,000).
        seed: random seed.
        corrupt: corruption kind -> patch index or indices, to test validation. Kinds:
            missing_s1, missing_lc, s2_missing, wrong_band_count, wrong_shape, crs_mismatch,
            bounds_mismatch, nan_s1, truncated, lc_no_igbp.
        progress: print a line about every 10 % to stderr.

    Raises:
        ValueError: ``n`` out of range, or an unknown corruption kind / patch index.
    """
    by_patch = plan_corruptions(corrupt, n, _CAPACITY, _CORRUPTIONS)
    out = Path(out_dir)
    corrupted: dict[str, list[str]] = {}
    step = max(1, n // 10)
    with gdal_env():
        for i in range(n):
            roi, scene, epsg, x0, y0 = _SYNTH_SCENES[i % len(_SYNTH_SCENES)]
            p = i // len(_SYNTH_SCENES)
            ulx, uly = x0 + 2560 * (p % _GRID), y0 - 2560 * (p // _GRID)
            rng = np.random.default_rng([seed, i, 12])
            s2, s1, lc = _render(rng, _draw_map(rng), SEASONS[roi])
            patch_id = f"{roi}_s2_{scene}_p{p + 1}"
            kinds = by_patch.get(i, [])
            for kind in kinds:
                corrupted.setdefault(kind, []).append(patch_id)
            _write_triplet(out, roi, scene, p + 1, epsg, ulx, uly, s2, s1, lc, kinds)
            if progress and ((i + 1) % step == 0 or i + 1 == n):
                print(f"synthetic SEN12MS: {i + 1}/{n} triplets ({100 * (i + 1) // n} %)",
                      file=sys.stderr, flush=True)
    (out / "README.txt").write_text(
        "SYNTHETIC DATA - not SEN12MS.\n\nWritten by rsray.data.sources.sen12ms."
        f"write_synthetic_sen12ms(n={n}, seed={seed}) in the exact SEN12MS on-disk format; "
        f"every GeoTIFF carries the tag {SYNTHETIC_TAG}=1. Scene numbers are real SEN12MS "
        "scene numbers (so the official split applies); locations and pixels are not.\n\n"
        + describe_synthetic_rules() + "\n", encoding="utf-8")
    class_modality = {SEN12MS_CLASSES[c]: "s2" for c in _S2_SPECTRA}
    class_modality.update({SEN12MS_CLASSES[c]: "s1" for c in _S1_LEVELS})
    return Sen12msSynthInfo(n=n, out_dir=str(out), seed=seed, rules=describe_synthetic_rules(),
                            class_modality=class_modality, corrupted=corrupted)


def _write_triplet(out: Path, roi: str, scene: int, patch: int, epsg: int, ulx: float,
                   uly: float, s2: np.ndarray, s1: np.ndarray, lc: np.ndarray,
                   kinds: list[str]) -> None:
    """Write the three GeoTIFFs of one patch, applying the corruptions ``kinds``."""
    tags = {SYNTHETIC_TAG: "1"}
    paths = {}
    for mod in ("s1", "s2", "lc"):
        folder = out / roi / f"{mod}_{scene}"
        folder.mkdir(parents=True, exist_ok=True)
        paths[mod] = folder / f"{roi}_{mod}_{scene}_p{patch}.tif"
    crs = CRS.from_epsg(epsg)
    if "nan_s1" in kinds:
        s1 = s1.copy()
        s1[0, 10:20, 10:20] = np.nan
    if "wrong_shape" in kinds:
        s1 = s1[:, :, :-1]
    if "wrong_band_count" in kinds:
        s2 = s2[:12]
    if "lc_no_igbp" in kinds:
        lc = lc.copy()
        lc[0] = 0
    s1_ulx = ulx + 30 if "bounds_mismatch" in kinds else ulx
    lc_crs = CRS.from_epsg(epsg + 1) if "crs_mismatch" in kinds else crs
    if "s2_missing" not in kinds:
        write_geotiff(paths["s2"], s2, crs, ulx, uly, 10.0, tags=tags)
    write_geotiff(paths["s1"], s1, crs, s1_ulx, uly, 10.0, tags=tags)
    write_geotiff(paths["lc"], lc, lc_crs, ulx, uly, 10.0, tags=tags)
    if "truncated" in kinds:
        truncate_file(paths["s2"])
    if "missing_s1" in kinds:
        paths["s1"].unlink()
    if "missing_lc" in kinds:
        paths["lc"].unlink()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _add_prepare_args(p: Any) -> None:
    p.add_argument("--root", required=True,
                   help="folder (or s3://) holding ROIs1158_spring, ROIs1868_summer, ...")
    p.add_argument("--label-mode", choices=list(LABEL_MODES), default="single",
                   help="single = majority class (multiclass); multi = classes with a pixel "
                        "share >= --min-share (multilabel)")
    p.add_argument("--min-share", type=float, default=0.1,
                   help="multi-label threshold on a class's share (default 0.1, as SEN12MS)")
    p.add_argument("--all-s2-bands", action="store_true",
                   help="also store B1, B9, B10 (default: the 10 bands of the SEN12MS code)")
    p.add_argument("--splits", choices=list(SPLIT_MODES), default="official",
                   help="official = hold-out/validation scenes; seeded = hash of the scene")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--s1-nan", choices=list(S1_NAN_POLICIES), default="reject",
                   help="S1 NaN/inf: reject the patch (default) or set to 0 dB")
    p.add_argument("--igbp-pickle", default=None,
                   help="labels/IGBP_probability_labels.pkl: use the official probabilities "
                        "instead of pixel shares (a pickle: only from a trusted source)")


def _source_from_args(args: Any) -> SEN12MS:
    return SEN12MS(args.root, label_mode=args.label_mode, min_share=args.min_share,
                   all_s2_bands=args.all_s2_bands, splits=args.splits,
                   split_seed=args.split_seed, s1_nan=args.s1_nan, igbp_pickle=args.igbp_pickle)


register_dataset(DatasetEntry(
    name="sen12ms",
    summary="SEN12MS: Sentinel-1 + Sentinel-2 + land-cover triplets, 10 simplified IGBP "
            "classes (single- or multi-label)",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_synthetic_sen12ms(out, n, seed=seed),
    synthetic_source=lambda raw: SEN12MS(raw),
    describe_synthetic=describe_synthetic_rules,
    default_modalities=("s2", "s1"),
))
