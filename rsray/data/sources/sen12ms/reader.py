"""SEN12MS: Sentinel-1 + Sentinel-2 + MODIS land-cover triplets, 10 simplified IGBP classes.

On disk (the layout of the official ``ROIs<id>_<season>_{lc,s1,s2}.tar.gz`` archives, one
GeoTIFF per modality and patch, 256 x 256 px at 10 m in a UTM CRS)::

    <root>/ROIs1158_spring/s1_<scene>/ROIs1158_spring_s1_<scene>_p<patch>.tif  2 bands float32 dB
    <root>/ROIs1158_spring/s2_<scene>/ROIs1158_spring_s2_<scene>_p<patch>.tif  13 bands uint16
    <root>/ROIs1158_spring/lc_<scene>/ROIs1158_spring_lc_<scene>_p<patch>.tif  4 bands uint16
    (and ROIs1868_summer, ROIs1970_fall, ROIs2017_winter)

Partners are found by swapping ``_s1_``/``_s2_``/``_lc_``. The label comes from land-cover
band 1 (the 17 IGBP classes), simplified to the 10 classes of the SEN12MS classification
code: the share of each class among the patch's pixels gives a multi-label vector (default:
every class whose share is at least ``min_share`` = 0.1, task ``multilabel``, the SEN12MS
toolbox's multi-label definition) or a single label (the majority class, task
``multiclass``). The official code uses the per-patch IGBP probability vectors of
``labels/IGBP_probability_labels.pkl`` instead; pass that file as ``igbp_pickle`` to use them
(same simplification, threshold / argmax).

Splits: the official test split is the 26 hold-out scenes, the validation split the 25
validation scenes of the toolbox's history (removed from training here); or a seeded split by
scene. :func:`write_synthetic_sen12ms` writes a synthetic twin in exactly this format in which
five classes are visible only in Sentinel-2 and five only in Sentinel-1.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rsray.data.schema import (
    BandGroup,
    DatasetSpec,
    Discovery,
    ModalitySpec,
    Reject,
    Sample,
)
from rsray.data.sources._raster import Raster, check_same_grid, gdal_env, grid_of, read_rasters
from rsray.data.splits import check_fractions, seeded_split
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError
from rsray.storage import (
    StorageOptions,
    get_fs,
    join_url,
    list_files,
    list_subdirs,
    read_bytes,
)
from rsray.storage import (
    normalise as normalise_root,
)

__all__ = [
    "IGBP_CLASSES",
    "IGBP_TO_SEN12MS",
    "S2_FILE_BANDS",
    "SEN12MS",
    "SEN12MS_CLASSES",
    "SYNTHETIC_TAG",
    "TEST_SCENES",
    "VAL_SCENES",
    "sen12ms_spec",
    "simplify_igbp",
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


def sen12ms_spec(label_mode: str = "multi", all_s2_bands: bool = False,
                 synthetic: bool = False) -> DatasetSpec:
    """Build the :class:`DatasetSpec` of SEN12MS.

    Args:
        label_mode: ``multi`` (default, task ``multilabel``) or ``single`` (``multiclass``).
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
        label_mode: Literal["single", "multi"] = "multi",
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
            label_mode: ``multi`` (default: multi-hot of every class whose share is at least
                ``min_share``, the SEN12MS toolbox's multi-label definition behind the deep
                fusion seed's numbers) or ``single`` (majority class, one-hot).
            min_share: multi-label threshold on a class's pixel share (or probability);
                0.1 as the toolbox's ``--threshold 0.1``.
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
