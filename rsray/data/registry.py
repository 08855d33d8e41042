"""The dataset registry: what ``rsray prepare <name>`` and ``rsray synth <name>`` can do.

Each dataset package under :mod:`rsray.data.sources` ends its ``__init__.py`` with one
:func:`register_dataset` call that describes how the command line reaches it::

    register_dataset(DatasetEntry(
        name="sen12ms",
        summary="SEN12MS S1 + S2 triplets, 10 simplified IGBP classes",
        add_prepare_args=_add_args,          # argparse flags of `rsray prepare sen12ms`
        source_from_args=_source_from_args,  # argparse.Namespace -> Source
        write_synthetic=write_synthetic_sen12ms,   # (out, n, seed) -> None, real on-disk format
        synthetic_source=lambda raw: SEN12MS(raw),  # Source reading what write_synthetic wrote
        describe_synthetic=describe_synthetic_rules,  # () -> str
        default_modalities=("s2", "s1"),
        test_model="test_early_fusion_cnn",         # tiny model for the contract test
        corruptions=tuple(CORRUPTIONS),             # what the twin can plant ...
        write_corrupted=lambda out, n, seed, corrupt: write_synthetic_sen12ms(
            out, n, seed=seed, corrupt=corrupt, progress=False),  # ... and how
    ))

so a new dataset is one package (``sources/<name>/{reader,synth,__init__}.py``, see
``sources/TEMPLATE.md``) plus one line in :data:`DATASET_MODULES`; the dataset contract test
then covers it with nothing extra to write. The synthetic writer is optional
(``write_synthetic``/``synthetic_source`` default to ``None``): a reader alone is enough to
prepare real files.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsray.data.schema import Source
from rsray.errors import ConfigError

DATASET_MODULES = (
    "rsray.data.sources.bigearthnet",
    "rsray.data.sources.globe",
    "rsray.data.sources.sen12ms",
    "rsray.data.sources.bigearthnet_v2",
    "rsray.data.sources.flair2",
    "rsray.data.sources.covariates.regression",
    "rsray.data.sources.files",
)
"""Modules that register a dataset when imported (one package per dataset)."""


@dataclass(frozen=True)
class DatasetEntry:
    """How the command line prepares and synthesises one dataset."""

    name: str
    summary: str
    add_prepare_args: Callable[[argparse.ArgumentParser], None]
    """Adds the dataset's own ``rsray prepare <name>`` flags (input folders, options)."""
    source_from_args: Callable[[argparse.Namespace], Source]
    """Builds the :class:`~rsray.data.schema.Source` from the parsed flags."""
    write_synthetic: Callable[[str | Path, int, int], Any] | None = None
    """``(out_folder, n, seed)``: writes a synthetic twin in the real on-disk format. Optional:
    a dataset without one is prepared from real files only (no ``rsray synth``, no
    ``--smoke-test`` twin, no contract-test twin checks)."""
    synthetic_source: Callable[[Path], Source] | None = None
    """Source over a folder written by ``write_synthetic`` (given together with it)."""
    describe_synthetic: Callable[[], str] = lambda: ""
    """Human-readable rules linking the synthetic inputs to their labels."""
    default_modalities: tuple[str, ...] = ()
    """Modalities a training config uses by default for this dataset."""
    test_model: str = "test_early_fusion_cnn"
    """A tiny registered model (``test_*``) that takes :attr:`default_modalities`; the dataset
    contract test (``tests/test_dataset_contract.py``) does one forward pass with it."""
    test_model_params: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of :attr:`test_model` (``metadata_dim`` is added by the test)."""
    corruptions: tuple[str, ...] = ()
    """Corruption kinds the synthetic twin can plant (``write_corrupted``'s ``corrupt`` keys)."""
    write_corrupted: Callable[[Path, int, int, dict[str, int]], Any] | None = None
    """``(out_folder, n, seed, {kind: patch index})``: the twin with planted corruptions."""
    shared_file_corruptions: tuple[str, ...] = ()
    """Kinds that damage a file several patches share (e.g. a zone's time series): every patch
    reading it is rejected, naming that one file."""
    tolerated_corruptions: dict[str, str] = field(default_factory=dict)
    """Kinds the reader keeps by design, kind -> why (e.g. padded at the border, flagged)."""
    extra: dict[str, Any] = field(default_factory=dict)


_DATASETS: dict[str, DatasetEntry] = {}
_loaded = False


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset (called at import time by each dataset file)."""
    if entry.name in _DATASETS and _DATASETS[entry.name] is not entry:
        raise ValueError(f"dataset {entry.name!r} is registered twice")
    _DATASETS[entry.name] = entry
    return entry


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in DATASET_MODULES:
            importlib.import_module(module)
        _loaded = True


def list_datasets() -> list[str]:
    """Names of every registered dataset."""
    _load()
    return sorted(_DATASETS)


def get_dataset(name: str) -> DatasetEntry:
    """The entry called ``name`` (ConfigError listing the known ones otherwise)."""
    _load()
    if name not in _DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; rsray knows " + ", ".join(list_datasets()))
    return _DATASETS[name]


def add_common_prepare_args(p: argparse.ArgumentParser) -> None:
    """Flags every ``rsray prepare <dataset>`` has."""
    p.add_argument("--out", required=True, help="shard set URI: local path or s3://bucket/prefix")
    p.add_argument("--shard-mb", type=float, default=128, help="target shard size (MiB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing shard set")
    p.add_argument("--holdout", action="append", default=[], metavar="KEY=VALUES",
                   help="move matching samples to an 'ood' split for out-of-distribution "
                        "evaluation, e.g. country=Serbia,Portugal or lat=40:50 (repeatable)")
    from rsray.data.sources.covariates import add_covariate_args

    add_covariate_args(p)  # --covariate NAME=PATH[:RESAMPLING], --indices ndvi,ndwi, ...


def require_twin(entry: DatasetEntry) -> tuple[Callable[[str | Path, int, int], Any],
                                                Callable[[Path], Source]]:
    """The entry's synthetic writer and source (ConfigError when it registered none)."""
    if entry.write_synthetic is None or entry.synthetic_source is None:
        raise ConfigError(f"dataset {entry.name!r} has no synthetic twin; prepare its real "
                          f"files with `rsray prepare {entry.name} ...` and pass --data")
    return entry.write_synthetic, entry.synthetic_source


__all__ = ["DATASET_MODULES", "DatasetEntry", "add_common_prepare_args", "get_dataset",
           "list_datasets", "register_dataset", "require_twin"]
