"""``covariates_regression``: a regression twin whose target depends on a covariate layer.

The geographic-covariates paper (Rao & Rolf 2025, ``geo-covariates-data-efficiency-ood.txt``)
trains regression tasks with an MSE loss on optical imagery with and without covariate layers
(DEM, temperature, ...). This twin makes a case where the covariates must help, with a rule
fixed before any model was compared:

* the raw folder is a synthetic BigEarthNet-MM twin (``BigEarthNet-S2/``, ``BigEarthNet-S1/``:
  real MGRS tiles across Europe, generated pixels, see
  :func:`~rsray.data.sources.bigearthnet.write_synthetic_bigearthnet`), the synthetic covariate
  layers over its patches (``layers/dem.tif``, ``layers/temperature.tif``, ...; see
  :mod:`.synth`) and ``targets.csv`` (``patch_id,lst,greenness``, read by
  :class:`~.targets.WithTargets`);
* per patch, ``T_air`` = the mean over the patch footprint of the temperature field that
  ``temperature.tif`` is drawn from (deg C; about 6 +- 6 over the twin's tiles) and ``NDVI`` =
  the patch mean of ``(B08 - B04) / (B08 + B04)`` of its S2 10 m bands (about 0.43 +- 0.03);
* ``lst`` (a land-surface-temperature-like target, deg C) =
  ``T_air + 150 * (0.45 - NDVI) + e1``, ``e1 ~ N(0, 1)``: about 60 % of its variance comes
  from the temperature layer, which the S2 pixels do not carry (they are drawn independently
  of where the patch lies), about 40 % from S2, 2 % is noise. S2 alone can explain at most
  about 0.4 of it (R2), S2 + temperature about 0.98;
* ``greenness`` = ``100 * NDVI + e2``, ``e2 ~ N(0, 0.5)``: S2 only, the control target (the
  covariates should not change it).

The noise of patch ``i`` is drawn from ``default_rng([seed, i, 0x7E6])``: a larger ``n`` adds
patches without changing the others. Modalities of the prepared shards: ``s2``, ``s1`` and the
layers ``dem`` and ``temperature`` warped onto each patch (1 band each, 120 x 120).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.schema import Source
from rsray.data.sources._synth import utm_wkt
from rsray.data.sources.covariates.layer import CovariateLayer
from rsray.data.sources.covariates.reader import WithCovariates
from rsray.data.sources.covariates.synth import SyntheticFields, write_synthetic_covariates
from rsray.data.sources.covariates.targets import WithTargets
from rsray.errors import DatasetNotFoundError

__all__ = ["LAYERS", "TARGETS", "TARGETS_FILE", "describe_regression_twin", "regression_source",
           "twin_targets", "write_regression_twin"]

TARGETS = ("lst", "greenness")
TARGETS_FILE = "targets.csv"
LAYERS = ("dem", "temperature")
"""Covariate layers the dataset's shards carry (each its own modality)."""
LST_NDVI_GAIN, LST_NDVI_REF, LST_NOISE = 150.0, 0.45, 1.0
GREEN_GAIN, GREEN_NOISE = 100.0, 0.5
CORRUPTIONS: dict[str, str] = {
    "missing_row": "the patch has no row in targets.csv",
    "bad_value": "its lst cell is not a number",
    "nan_target": "its lst cell is nan",
    "duplicate_row": "a second, different row for the patch",
    "s2_only": "its Sentinel-1 partner folder is missing (BigEarthNet pairing)",
    "truncated": "its S2 B02 GeoTIFF is cut to half (BigEarthNet reader)",
}
_BEN_KINDS = ("s2_only", "truncated")


def describe_regression_twin() -> str:
    """The rule linking the twin's inputs to its targets."""
    return (
        "Synthetic covariates_regression: BigEarthNet-MM twin patches + synthetic covariate "
        "layers + targets.csv. Per patch, T_air = mean of the temperature layer's field over the "
        "patch (deg C), NDVI = patch mean of (B08 - B04) / (B08 + B04) of the S2 10 m bands. "
        f"lst = T_air + {LST_NDVI_GAIN:g} * ({LST_NDVI_REF:g} - NDVI) + N(0, {LST_NOISE:g}^2) "
        "(about 60 % of its variance from the temperature layer, which S2 does not carry, 40 % "
        f"from S2); greenness = {GREEN_GAIN:g} * NDVI + N(0, {GREEN_NOISE:g}^2) (S2 only, the "
        "control). S2 alone explains at most about R2 0.4 of lst; S2 + temperature about 0.98.")


def _footprint_t_air(fields: SyntheticFields, zone: int, ulx: float, uly: float,
                     k: int = 12) -> float:
    """Mean of the temperature field over a 1200 m UTM footprint (``k x k`` cell centres)."""
    step = 1200.0 / k
    xs, ys = np.meshgrid(ulx + step * (np.arange(k) + 0.5), uly - step * (np.arange(k) + 0.5))
    lon, lat = transform(CRS.from_wkt(utm_wkt(zone)), CRS.from_epsg(4326), xs.ravel(), ys.ravel())
    return float(fields.temperature(np.asarray(lon), np.asarray(lat)).mean())


def twin_targets(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Per patch of the twin: ``patch_id``, ``t_air``, ``ndvi``, ``lst``, ``greenness``."""
    from rsray.data.sources.bigearthnet import synth_patches

    fields = SyntheticFields(seed)
    rows = []
    for i, acq, col, row, _labels, s2_px, _s1, _rng in synth_patches(n, seed):
        b04, b08 = s2_px["B04"].astype(np.float64), s2_px["B08"].astype(np.float64)
        ndvi = float(((b08 - b04) / np.maximum(b08 + b04, 1e-6)).mean())
        t_air = _footprint_t_air(fields, acq.zone, acq.ulx + 1200 * col, acq.uly - 1200 * row)
        e1, e2 = np.random.default_rng([seed, i, 0x7E6]).normal(size=2)
        rows.append({
            "patch_id": f"{acq.s2_sat}_MSIL2A_{acq.s2_time}_{col}_{row}",  # the S2 folder name
            "t_air": t_air, "ndvi": ndvi,
            "lst": t_air + LST_NDVI_GAIN * (LST_NDVI_REF - ndvi) + LST_NOISE * float(e1),
            "greenness": GREEN_GAIN * ndvi + GREEN_NOISE * float(e2)})
    return rows


def write_regression_twin(out_dir: str | Path, n: int, seed: int = 0, *,
                          corrupt: Mapping[str, int] | None = None,
                          progress: bool = True) -> Path:
    """Write the twin (``n`` patches) to ``out_dir``: BigEarthNet folders, layers, targets.

    Args:
        out_dir: raw folder to write (created).
        n: number of patches.
        seed: seed of the pixels, the layers' fields and the noise.
        corrupt: corruption kind (:data:`CORRUPTIONS`) -> patch index, to test validation.
        progress: print progress lines to stderr.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    from rsray.data.sources.bigearthnet import write_synthetic_bigearthnet

    corrupt = dict(corrupt or {})
    unknown = set(corrupt) - set(CORRUPTIONS)
    if unknown:
        raise ValueError(f"covariates_regression: unknown corruption(s) {sorted(unknown)}; "
                         f"kinds: {', '.join(CORRUPTIONS)}")
    out = Path(out_dir)
    write_synthetic_bigearthnet(out, n, seed=seed, include_60m=False, progress=progress,
                                corrupt={k: v for k, v in corrupt.items() if k in _BEN_KINDS})
    write_synthetic_covariates(out, out / "layers", seed=seed, progress=progress)
    rows = twin_targets(n, seed)
    with (out / TARGETS_FILE).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["patch_id", *TARGETS])
        for i, r in enumerate(rows):
            cells = [f"{r[t]:.6f}" for t in TARGETS]
            if corrupt.get("missing_row") == i:
                continue
            if corrupt.get("bad_value") == i:
                cells[0] = "warm"
            if corrupt.get("nan_target") == i:
                cells[0] = "nan"
            w.writerow([r["patch_id"], *cells])
            if corrupt.get("duplicate_row") == i:
                w.writerow([r["patch_id"], *[f"{r[t] + 1:.6f}" for t in TARGETS]])
    (out / "README.txt").write_text(
        "SYNTHETIC DATA - covariates_regression twin (not BigEarthNet, not real covariates).\n\n"
        f"Written by rsray.data.sources.covariates.write_regression_twin(n={n}, seed={seed}).\n\n"
        + describe_regression_twin() + "\n", encoding="utf-8")
    return out


def regression_source(raw: str | Path) -> Source:
    """The twin's source: S2 + S1 patches with ``targets.csv`` and the ``dem``/``temperature``.

    Raises:
        DatasetNotFoundError: ``raw`` lacks the BigEarthNet folders or the layers.
    """
    raw = Path(raw)
    for need in ("BigEarthNet-S2", "BigEarthNet-S1", *(f"layers/{la}.tif" for la in LAYERS)):
        if not (raw / need).exists():
            raise DatasetNotFoundError(f"{raw / need}: missing (a covariates_regression raw "
                                       "folder has BigEarthNet-S2/, BigEarthNet-S1/, layers/ "
                                       f"and {TARGETS_FILE})")
    from rsray.data.sources.bigearthnet import BigEarthNetMM

    inner = WithTargets(BigEarthNetMM(str(raw / "BigEarthNet-S2"), str(raw / "BigEarthNet-S1")),
                        raw / TARGETS_FILE, TARGETS, name="covariates_regression")
    layers = [CovariateLayer(la, str(raw / "layers" / f"{la}.tif")) for la in LAYERS]
    return WithCovariates(inner, layers)


def _add_prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", required=True, help="folder written by `rsray synth "
                   "covariates_regression` (BigEarthNet-S2/, BigEarthNet-S1/, layers/, "
                   f"{TARGETS_FILE})")


register_dataset(DatasetEntry(
    name="covariates_regression",
    summary="regression twin: S2 + S1 patches, DEM and temperature layers, 2 targets (lst "
            "depends on the temperature layer)",
    add_prepare_args=_add_prepare_args,
    source_from_args=lambda args: regression_source(args.raw),
    write_synthetic=lambda out, n, seed: write_regression_twin(out, n, seed),
    synthetic_source=regression_source,
    describe_synthetic=describe_regression_twin,
    default_modalities=("s2", "temperature", "dem"),
    test_model="test_early_fusion_cnn",
    corruptions=tuple(CORRUPTIONS),
    write_corrupted=lambda out, n, seed, corrupt: write_regression_twin(
        out, n, seed, corrupt=corrupt, progress=False),
))
