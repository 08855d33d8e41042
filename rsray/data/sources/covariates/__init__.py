"""Geographic covariates: layers and spectral indices added to any georeferenced dataset.

Not a dataset of its own: :mod:`.reader` wraps any source (``--covariate NAME=PATH``,
``--indices ndvi,ndwi`` on every ``rsray prepare <dataset>``), :mod:`.synth` writes synthetic
DEM / climate / land-cover layers over a raw folder's patches (``rsray synth covariates
--like RAW``), :mod:`.targets` turns any source into a regression dataset with per-patch
targets from a CSV (``--targets TABLE.csv``), and :mod:`.regression` registers the
``covariates_regression`` twin, whose ``lst`` target depends on the temperature layer.
"""

from __future__ import annotations

from rsray.data.sources.covariates.args import (
    add_covariate_args,
    layers_from_args,
    wrap_from_args,
)
from rsray.data.sources.covariates.layer import (
    DEFAULT_INDEX_BANDS,
    FILLED_META_KEY,
    INDICES,
    CovariateLayer,
)
from rsray.data.sources.covariates.reader import WithCovariates
from rsray.data.sources.covariates.synth import (
    LANDCOVER_CODES,
    SIGNAL_LABELS,
    CovariateSynthInfo,
    Footprint,
    SyntheticFields,
    describe_synthetic_covariates,
    find_footprints,
    footprints_from_bigearthnet,
    footprints_from_rasters,
    synth_covariates_from_args,
    write_synthetic_covariates,
)
from rsray.data.sources.covariates.targets import WithTargets, read_targets_table
from rsray.data.sources.covariates.warp import (
    bounds_in,
    normalized_difference,
    resize_bilinear,
    warp_layer,
)

__all__ = [
    "DEFAULT_INDEX_BANDS",
    "FILLED_META_KEY",
    "INDICES",
    "LANDCOVER_CODES",
    "SIGNAL_LABELS",
    "CovariateLayer",
    "CovariateSynthInfo",
    "Footprint",
    "SyntheticFields",
    "WithCovariates",
    "WithTargets",
    "add_covariate_args",
    "bounds_in",
    "describe_synthetic_covariates",
    "find_footprints",
    "footprints_from_bigearthnet",
    "footprints_from_rasters",
    "layers_from_args",
    "normalized_difference",
    "read_targets_table",
    "resize_bilinear",
    "synth_covariates_from_args",
    "warp_layer",
    "wrap_from_args",
    "write_synthetic_covariates",
]
