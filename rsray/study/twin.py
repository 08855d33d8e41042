"""A study's synthetic twin: its source (reader over the generated raw files) and its manifest.

The runner generates the twin and prepares it (:func:`rsray.study.runner.resolve_data`); the
checks of ``rsray study --check`` need only what the twin *will* hold — task, classes,
modalities and their bands — which :func:`twin_manifest` derives from the dataset's
:class:`~rsray.data.schema.DatasetSpec` without writing or reading any file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rsray.data.schema import Source
from rsray.data.shards import Manifest
from rsray.study.spec import StudySpec

TWIN_SPLITS = ("train", "val", "test")
"""Splits of a prepared twin (plus ``ood`` when the cell has a hold-out rule)."""

TWIN_TRAIN_SHARE = 0.6
"""Share of a twin's samples in its training split (the synthetic writers' 60/20/20 split)."""


def covariate_args(layers: Path) -> argparse.Namespace:
    """The ``rsray prepare`` covariate flags of the covariate twin (layers under ``layers``)."""
    return argparse.Namespace(
        covariate=[f"dem={layers / 'dem.tif'}:bilinear",
                   f"temperature={layers / 'temperature.tif'}",
                   f"wind={layers / 'wind.tif'}",
                   f"landcover={layers / 'landcover.tif'}:nearest"],
        covariate_opt=["temperature.modality=climate", "wind.modality=climate",
                       "landcover.categories=10,20,30,40,50,60,80"],
        indices="ndvi,ndwi", indices_bands="", covariate_dtype="float32", indices_from="s2")


def twin_source(spec: StudySpec, raw: Path, layers: Path) -> Source:
    """The reader over the twin's raw files (with covariate layers when the spec asks)."""
    from rsray.data.registry import get_dataset, require_twin

    source = require_twin(get_dataset(spec.data.dataset))[1](raw)
    if spec.data.covariates:
        from rsray.data.sources.covariates import wrap_from_args

        source = wrap_from_args(source, covariate_args(layers))
    return source


def twin_manifest(spec: StudySpec, holdout: str = "") -> tuple[Manifest, list[str]]:
    """What the twin's manifest will say, and its splits, without generating it.

    Band statistics are placeholders (mean 0, std 1): enough to choose modalities and bands
    and to size the model's inputs, which is all the checks use them for.
    """
    source = twin_source(spec, Path("twin") / "raw", Path("twin") / "layers")
    ds = source.spec
    modalities: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, dict[str, float]]] = {}
    for m in ds.modalities:
        modalities[m.name] = {"bands": list(m.bands),
                              "groups": {g.name: g.to_dict() for g in m.groups}}
        stats[m.name] = {b: {"mean": 0.0, "std": 1.0} for b in m.bands}
    manifest = Manifest(dataset=ds.name, task=ds.task, classes=list(ds.classes),
                        modalities=modalities, shards=[], band_stats=stats, synthetic=True,
                        info={"label": dict(ds.label_info)},
                        uri=f"<synthetic {spec.data.dataset} twin>")
    return manifest, [*TWIN_SPLITS, *(["ood"] if holdout else [])]


__all__ = ["TWIN_SPLITS", "TWIN_TRAIN_SHARE", "covariate_args", "twin_manifest", "twin_source"]
