"""TerraTorch's ``GenericMultiModalDataModule`` keys, translated into the files YAML.

A TerraTorch data section (``modalities`` as a list, per-split ``*_data_root`` per modality,
``image_grep``, ``label_grep``, split files, ``means``/``stds``, ``allow_missing_modalities``)
works as a dataset description with at most a few renamed keys; :data:`TERRATORCH_KEYS` is
the mapping the documentation shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsray.data.sources.files.config import SPLITS, _Where

TERRATORCH_KEYS: dict[str, str] = {
    "modalities": "modalities (a mapping name -> files, instead of a list of names)",
    "train_data_root": "modalities.<m>.roots.train",
    "val_data_root": "modalities.<m>.roots.val",
    "test_data_root": "modalities.<m>.roots.test",
    "image_grep": "modalities.<m>.glob",
    "label_grep": "labels.mask (glob)",
    "train_label_data_root": "labels.mask roots.train",
    "val_label_data_root": "labels.mask roots.val",
    "test_label_data_root": "labels.mask roots.test",
    "train_split": "splits.files.train",
    "val_split": "splits.files.val",
    "test_split": "splits.files.test",
    "means": "means",
    "stds": "stds",
    "allow_missing_modalities": "allow_missing_modalities",
    "class_names": "labels.classes",
    "no_data_replace": "modalities.<m>.fill",
    "dataset_bands": "modalities.<m>.bands",
}
"""TerraTorch ``GenericMultiModalDataModule`` key -> the rsray key it becomes."""

_TT_IGNORED = {"batch_size", "num_workers", "num_classes", "task", "constant_scale",
               "rgb_modality", "rgb_indices", "expand_temporal_dimension", "concat_bands",
               "drop_last", "reduce_zero_label", "output_bands", "no_label_replace",
               "train_transform", "val_transform", "test_transform", "predict_data_root",
               "predict_transform", "image_modalities", "label_grep_suffix", "channel_position"}
"""TerraTorch keys about the data loader or the model, not about the files (ignored here)."""


def from_terratorch(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Translate a TerraTorch data-module section into this module's form.

    ``modalities: [S2L2A, S1GRD]`` with ``train_data_root: {S2L2A: ..}`` (and val/test),
    ``image_grep: {S2L2A: "*_S2L2A.tif"}``, ``label_grep``, ``train_split``... Modality names
    are lower-cased (``S2L2A`` -> ``s2l2a``).
    """
    w = _Where(source)
    init = raw.get("init_args", raw)
    names = [str(n) for n in init["modalities"]]
    low = {n: n.lower().replace("_", "").replace("-", "") for n in names}
    grep = init.get("image_grep") or {}
    bands = init.get("dataset_bands") or {}
    fill = init.get("no_data_replace")
    mods: dict[str, Any] = {}
    for n in names:
        roots = {s: (init.get(f"{s}_data_root") or {}).get(n) for s in SPLITS}
        roots = {s: r for s, r in roots.items() if r}
        if not roots:
            raise w.err(f"train_data_root.{n}", "no data root for this modality")
        g = grep.get(n) if isinstance(grep, dict) else grep
        m: dict[str, Any] = {"roots": roots, "glob": g or "*.tif"}
        if bands.get(n):
            m["bands"] = [str(b) for b in bands[n]]
        if fill is not None:
            m["fill"] = fill
        mods[low[n]] = m
    out: dict[str, Any] = {"name": raw.get("name") or Path(source).stem, "modalities": mods}
    label_roots = {s: init.get(f"{s}_label_data_root") for s in SPLITS
                   if init.get(f"{s}_label_data_root")}
    labels: dict[str, Any] = dict(raw.get("labels") or {})
    if init.get("label_grep") or label_roots:
        labels = {"mask": {"roots": label_roots, "glob": init.get("label_grep", "*.tif")},
                  "classes": list(init.get("class_names") or labels.get("classes") or [])}
    elif init.get("class_names"):
        labels["classes"] = list(init["class_names"])
    out["labels"] = labels
    split_files = {s: init[f"{s}_split"] for s in SPLITS if init.get(f"{s}_split")}
    if split_files:
        out["splits"] = {"files": split_files}
    for key in ("means", "stds"):
        if init.get(key):
            out[key] = {low.get(k, k): v for k, v in init[key].items()}
    if "allow_missing_modalities" in init:
        out["allow_missing_modalities"] = init["allow_missing_modalities"]
    for key in ("groups", "tolerance"):
        if key in raw:
            out[key] = raw[key]
    unknown = set(init) - set(TERRATORCH_KEYS) - _TT_IGNORED - {"init_args", "name", "labels",
                                                                 "groups", "tolerance",
                                                                 "class_path"}
    if unknown:
        raise w.err(sorted(unknown)[0], "not a TerraTorch data-module key rsray knows; known: "
                                        + ", ".join(sorted(TERRATORCH_KEYS)))
    return out


__all__ = ["TERRATORCH_KEYS", "from_terratorch"]
