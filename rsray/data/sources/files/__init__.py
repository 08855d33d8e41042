"""Your own data, described in YAML: ``rsray prepare files DATASET.yaml --out URI``.

A folder of rasters per modality (flat chips, a folder per sample with a file per band, a
folder per sample per date) plus a label table or masks becomes a shard set like the built-in
datasets', with the same validation. :mod:`.config` parses the YAML (and TerraTorch's
data-module keys), :mod:`.listing` finds the files, :mod:`.labels` reads the labels,
:mod:`.reader` is the source, :mod:`.synth` writes test folders in each layout.
"""

from __future__ import annotations

from typing import Any

from rsray.data.registry import DatasetEntry, register_dataset
from rsray.data.sources.files.config import FilesConfig, config_from_dict, load_files_config
from rsray.data.sources.files.reader import SYNTHETIC_TAG, FilesSource
from rsray.data.sources.files.synth import (
    CORRUPTIONS,
    LAYOUTS,
    describe_synthetic_rules,
    write_files_dataset,
)
from rsray.data.sources.files.terratorch import TERRATORCH_KEYS

__all__ = ["CORRUPTIONS", "LAYOUTS", "SYNTHETIC_TAG", "TERRATORCH_KEYS", "FilesConfig",
           "FilesSource", "config_from_dict", "describe_synthetic_rules", "load_files_config",
           "write_files_dataset"]


def _add_prepare_args(p: Any) -> None:
    p.add_argument("description", metavar="DATASET.yaml",
                   help="the YAML describing your modalities, labels, splits and groups, a "
                        "local path or an s3:// URL (see docs/own-data.md)")
    p.add_argument("--threads", type=int, default=16,
                   help="threads reading headers and label files while discovering (16)")


def _source_from_args(args: Any) -> FilesSource:
    return FilesSource(args.description, threads=args.threads)


register_dataset(DatasetEntry(
    name="files",
    summary="your own dataset described in YAML: folders of rasters per modality + a label "
            "table or masks",
    add_prepare_args=_add_prepare_args,
    source_from_args=_source_from_args,
    write_synthetic=lambda out, n, seed: write_files_dataset(out, n, seed, progress=False),
    synthetic_source=lambda raw: FilesSource(raw / "dataset.yaml"),
    describe_synthetic=describe_synthetic_rules,
    default_modalities=("s2", "s1"),
    corruptions=tuple(CORRUPTIONS),
    write_corrupted=lambda out, n, seed, corrupt: write_files_dataset(
        out, n, seed, corrupt=corrupt, progress=False),
))
