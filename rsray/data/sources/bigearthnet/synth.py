"""The synthetic BigEarthNet-MM twin: v1 on-disk format, labels with a known modality signal.

:func:`write_synthetic_bigearthnet` writes patch folders exactly as the official archives lay
them out; :func:`synth_patches` yields the patches themselves (pixels and labels), which the
BigEarthNet v2 twin writes in its own layout. Which label depends on which modality is told by
:func:`describe_synthetic_rules`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS

from rsray.data.sources._raster import gdal_env, write_geotiff
from rsray.data.sources._synth import plan_corruptions, truncate_file, utm_wkt
from rsray.data.sources.bigearthnet.spec import (
    CLC43_CLASSES,
    LABELS_SUFFIX,
    S2_GROUPS,
    SYNTHETIC_MARKER,
)

__all__ = [
    "ALL_S2_BANDS",
    "CAPACITY",
    "S2_BAND_SIZE",
    "Acquisition",
    "SynthInfo",
    "describe_synthetic_rules",
    "synth_patches",
    "write_synthetic_bigearthnet",
]

# --------------------------------------------------------------------------------------------
# Synthetic twin
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Acquisition:
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
        """EPSG code of the tile's UTM zone (north)."""
        return 32600 + self.zone


# Real MGRS tiles and their upper-left corners (checked on real v1 patches); dates chosen so
# that no synthetic name appears in the official BigEarthNet lists.
_ACQUISITIONS: tuple[Acquisition, ...] = (
    Acquisition("33UUP", 33, 300000, 5400000, "S2A", "20170614T101031", "R022",
                 "S1A", "20170614T165043", "20170614T165108_017033_01C5F1_3A1C"),
    Acquisition("29UPU", 29, 600000, 5900040, "S2A", "20170618T113321", "R080",
                 "S1A", "20170618T064724", "20170618T064749_017085_01C791_5B2E"),
    Acquisition("29SND", 29, 499980, 4400040, "S2A", "20171222T112501", "R037",
                 "S1B", "20171222T064238", "20171222T064303_008826_00FB3C_9D41"),
    Acquisition("35VPK", 35, 600000, 7000020, "S2B", "20170922T93020", "R136",
                 "S1A", "20170922T043256", "20170922T043321_018483_01F22E_0C7A"),
    Acquisition("35VPK", 35, 600000, 7000020, "S2B", "20180206T94151", "R036",
                 "S1B", "20180206T043253", "20180206T043318_009481_01107F_61D9"),
)
_GRID = 90  # col, row in 0..89
CAPACITY = len(_ACQUISITIONS) * _GRID * _GRID
"""The most patches the twin can write (5 acquisitions x 90 x 90 grid cells)."""

# S2 band order used for generation (all 12 bands at 10 m, then resampled to S2_BAND_SIZE).
ALL_S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11",
                "B12")
"""The 12 S2 bands in generation order."""
S2_BAND_SIZE = {b: g.size for g in S2_GROUPS for b in g.bands}
"""S2 band -> its side in pixels (120, 60 or 20)."""
_VEG = dict(zip(ALL_S2_BANDS, (300, 450, 700, 450, 1100, 2400, 2900, 3100, 3200, 3000, 1800, 900),
                strict=True))
_SOIL = dict(zip(ALL_S2_BANDS, (900, 1100, 1400, 1700, 1900, 2100, 2300, 2400, 2500, 2400, 3000,
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

CORRUPTIONS: dict[str, str] = {
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
    s2 = {b: w * _VEG[b] + (1 - w) * _SOIL[b] for b in ALL_S2_BANDS}
    cells = [(r * 40, c * 40, 40) for r in range(3) for c in range(3)]
    order = rng.permutation(9)
    for i, (k, spec) in enumerate(_S2_FACTORS.items()):
        mask = _factor_mask(rng, cells[order[i]], spec["shape"])  # drawn even when off
        if f[k]:
            for b, d in spec["delta"].items():
                s2[b] = s2[b] + d * mask
    s2_out: dict[str, np.ndarray] = {}
    for b in ALL_S2_BANDS:
        a = s2[b] * (1 + 0.03 * rng.standard_normal((120, 120), dtype=np.float32))
        size = S2_BAND_SIZE[b]
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


def _hhmmss(t: str) -> str:
    """``93020`` -> ``09:30:20`` (v1 names drop a leading zero of the hour)."""
    t = t.zfill(6)
    return f"{t[0:2]}:{t[2:4]}:{t[4:6]}"


def synth_patches(
    n: int, seed: int, stream: int = 1, layout_salt: int = 0xBE
) -> Iterator[tuple[int, Acquisition, int, int, list[str], dict[str, np.ndarray],
                    dict[str, np.ndarray], np.random.Generator]]:
    """The synthetic twin's patches one by one (shared by the v1 and v2 writers).

    Yields ``(i, acquisition, col, row, 43-class label names, S2 bands, S1 bands, rng)``:
    locations are a permutation (seeded by ``seed`` and ``layout_salt``) of the 40,500 grid
    cells; patch ``i``'s pixels and labels come from ``rng = default_rng([seed, i, stream])``,
    which the caller may keep drawing from.
    """
    locations = np.random.default_rng([seed, layout_salt]).permutation(CAPACITY)[:n]
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
        progress: show a progress bar (rate, ETA) on stderr.

    Returns:
        A :class:`SynthInfo`.

    Raises:
        ValueError: ``n`` out of range, or an unknown corruption kind / patch index.
    """
    by_patch = plan_corruptions(corrupt, n, CAPACITY, CORRUPTIONS)

    out = Path(out_dir)
    s2_root, s1_root = out / "BigEarthNet-S2", out / "BigEarthNet-S1"
    s2_root.mkdir(parents=True, exist_ok=True)
    s1_root.mkdir(parents=True, exist_ok=True)
    s2_bands = [b for b in ALL_S2_BANDS if include_60m or S2_BAND_SIZE[b] != 20]
    corrupted: dict[str, list[str]] = {}
    from rsray.console import Progress

    bar = Progress(total=n, desc="synthetic BigEarthNet-MM", unit="patch") if progress else None

    with gdal_env():
        for i, acq, col, row, labels, s2_px, s1_px, _ in synth_patches(n, seed):
            kinds = by_patch.get(i, [])
            _write_patch(s2_root, s1_root, acq, col, row, labels, s2_px, s1_px, s2_bands,
                         kinds, corrupted)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

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
    s2_root: Path, s1_root: Path, acq: Acquisition, col: int, row: int, labels: list[str],
    s2_px: dict[str, np.ndarray], s1_px: dict[str, np.ndarray], s2_bands: list[str],
    kinds: list[str], corrupted: dict[str, list[str]],
) -> None:
    """Write one S2 + S1 patch pair, applying the corruptions ``kinds``."""
    s2_name = f"{acq.s2_sat}_MSIL2A_{acq.s2_time}_{col}_{row}"
    s1_name = f"{acq.s1_sat}_IW_GRDH_1SDV_{acq.s1_time}_{acq.tile}_{col}_{row}"
    for kind in kinds:
        corrupted.setdefault(kind, []).append(s2_name)
    ulx, uly = acq.ulx + 1200 * col, acq.uly - 1200 * row
    wkt = utm_wkt(acq.zone)
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
            arr, res = s2_px[b], 1200 / S2_BAND_SIZE[b]
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
            truncate_file(d / f"{s2_name}_B02.tif")
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
        s1_wkt = utm_wkt(zone)
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
