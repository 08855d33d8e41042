"""The dataset contract, run over every entry of the dataset registry (as timm's test_models
runs over its model registry): a new dataset is tested end to end with nothing extra to write.

For each entry of :func:`rsray.data.registry.list_datasets`:

* the entry is complete (a ``test_*`` model, corruption kinds, a corrupted-twin writer);
* its synthetic twin (small n) is discovered and every discovered patch reads;
* every corruption the twin can plant (issue 12's bad raw inputs: truncated GeoTIFF, wrong
  dtype or shape, NaN band, CRS or bounds mismatch, missing or malformed label file, unknown
  class, missing companion file, ...) is rejected with a path inside the raw folder and a
  reason, while every other patch is kept (:data:`BAD_RAW_INPUTS` maps issue 12's cases to
  each twin's kinds);
* ``rsray synth``'s path (:func:`~rsray.data.prepare.synthetic_shards`) prepares shards whose
  manifest is consistent, one batch streams through the pipeline, and the entry's ``test_*``
  model does a forward and backward pass on the default modalities (one shared Ray session).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rsray.data.registry import get_dataset, list_datasets
from rsray.errors import PatchError

DATASETS = list_datasets()
TWINS = [n for n in DATASETS if get_dataset(n).write_synthetic is not None]
"""Datasets with a synthetic twin (the writer is optional; the twin checks need one)."""
N_READ = 4  # patches of the small twins read without Ray
N_PREPARE = 16  # patches prepared with Ray (enough for a non-empty train split everywhere)

# Issue 12's bad raw inputs -> the twin's corruption kind(s) that plant it, per dataset. A case
# that cannot occur in a dataset's format is absent (e.g. GLOBE has no GeoTIFF, SEN12MS and
# FLAIR-2 have no class names on disk).
BAD_RAW_INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "bigearthnet": {
        "truncated GeoTIFF": ("truncated",), "wrong dtype": ("wrong_dtype",),
        "wrong shape": ("wrong_shape",), "NaN band": ("nan_s1",),
        "CRS mismatch": ("crs_mismatch",), "bounds mismatch": ("bounds_mismatch",),
        "missing label file": ("missing_json",), "malformed label file": ("bad_json",
                                                                          "labels_not_list"),
        "unknown class name": ("unknown_label",),
        "missing companion file": ("missing_band", "s2_only", "s1_only"),
    },
    "bigearthnet_v2": {
        "truncated GeoTIFF": ("truncated",), "wrong dtype": ("wrong_dtype",),
        "wrong shape": ("wrong_shape", "ref_map_shape"),
        "NaN band": ("nan_s1",), "CRS mismatch": ("crs_mismatch",),
        "bounds mismatch": ("bounds_mismatch",), "missing label file": ("not_in_metadata",),
        "malformed label file": ("bad_split", "ref_map_code"),
        "unknown class name": ("unknown_label",),
        "missing companion file": ("missing_band", "s1_missing", "s2_missing"),
    },
    "covariates_regression": {
        "truncated GeoTIFF": ("truncated",), "missing label file": ("missing_row",),
        "malformed label file": ("bad_value", "nan_target", "duplicate_row"),
        "missing companion file": ("s2_only",),
    },
    "files": {
        "truncated GeoTIFF": ("truncated",), "wrong dtype": ("wrong_dtype",),
        "wrong shape": ("wrong_shape",), "NaN band": ("nan_band", "nodata"),
        "CRS mismatch": ("wrong_crs",), "bounds mismatch": ("shifted_bounds",),
        "missing label file": ("files_without_label",),
        "malformed label file": ("unknown_label",), "unknown class name": ("unknown_label",),
        "missing companion file": ("missing_band", "missing_modality", "label_without_files"),
    },
    "flair2": {
        "truncated GeoTIFF": ("truncated",), "wrong dtype": ("wrong_dtype",),
        "wrong shape": ("wrong_bands", "wrong_size"),
        "NaN band": ("nan",), "CRS mismatch": ("mask_crs",), "bounds mismatch": ("mask_shift",),
        "missing label file": ("missing_mask",), "malformed label file": ("bad_codes",),
        "missing companion file": ("no_centroid", "products_mismatch"),
    },
    "globe": {
        "malformed label file": ("malformed_row", "bad_label", "bad_date", "bad_time",
                                 "bad_latitude"),
        "missing label file": ("no_label",), "truncated image": ("corrupt_jpeg",),
        "missing companion file": ("absent_file", "missing_photo", "rejected_photo",
                                   "pending_photo"),
    },
    "sen12ms": {
        "truncated GeoTIFF": ("truncated",), "wrong dtype": ("wrong_dtype",),
        "wrong shape": ("wrong_shape", "wrong_band_count"),
        "NaN band": ("nan_s1",), "CRS mismatch": ("crs_mismatch",),
        "bounds mismatch": ("bounds_mismatch",), "malformed label file": ("lc_no_igbp",),
        "missing label file": ("missing_lc",),
        "missing companion file": ("missing_s1", "s2_missing"),
    },
}

_clean: dict[str, tuple[Path, int, int]] = {}


def _read_all(name: str, root: Path) -> tuple[int, list[tuple[str, str]]]:
    """Discover ``root`` with the entry's synthetic source; (patches read, rejections)."""
    src = get_dataset(name).synthetic_source(root)
    disc = src.discover()
    rejected = [(str(r["path"]), str(r["reason"])) for r in disc.rejects]
    ok = 0
    for item in disc.items:
        try:
            src.read(item)
            ok += 1
        except PatchError as exc:
            rejected.append((exc.path, exc.reason))
    return ok, rejected


def _clean_twin(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """The small clean twin of ``name`` (written once): root, patches read, rejections."""
    if name not in _clean:
        root = tmp_path_factory.mktemp(f"{name}_clean")
        get_dataset(name).write_corrupted(root, N_READ, 2, {})
        ok, rejected = _read_all(name, root)
        _clean[name] = (root, ok, len(rejected))
    return _clean[name]


@pytest.mark.parametrize("name", DATASETS)
def test_entry_is_complete(name: str):
    from rsray.models import list_models

    entry = get_dataset(name)
    assert entry.summary and entry.default_modalities
    assert entry.test_model.startswith("test_") and entry.test_model in list_models()
    assert (entry.write_synthetic is None) == (entry.synthetic_source is None)
    if entry.write_synthetic is None:  # a reader alone: nothing twin-related to check
        return
    assert entry.write_corrupted is not None and entry.corruptions
    assert set(entry.tolerated_corruptions) <= set(entry.corruptions)
    assert set(entry.shared_file_corruptions) <= set(entry.corruptions)
    assert entry.describe_synthetic()
    # issue 12's table names only kinds the twin has, and every kind is in the table or
    # deliberately tolerated
    table = BAD_RAW_INPUTS[name]
    listed = {k for kinds in table.values() for k in kinds}
    assert listed <= set(entry.corruptions)


@pytest.mark.parametrize("name", TWINS)
def test_twin_discovers_and_reads(name: str, tmp_path_factory: pytest.TempPathFactory):
    root, ok, n_rejected = _clean_twin(name, tmp_path_factory)
    src = get_dataset(name).synthetic_source(root)
    disc = src.discover()
    assert src.spec.synthetic and ok == len(disc.items) >= N_READ - n_rejected
    assert ok >= 1


CASES = [(name, kind) for name in TWINS for kind in get_dataset(name).corruptions]


@pytest.mark.parametrize(("name", "kind"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_every_corruption_is_rejected_with_its_path(
        name: str, kind: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    entry = get_dataset(name)
    _, clean_ok, clean_rejected = _clean_twin(name, tmp_path_factory)
    entry.write_corrupted(tmp_path, N_READ, 2, {kind: 1})
    ok, rejected = _read_all(name, tmp_path)
    new = len(rejected) - clean_rejected
    if kind in entry.tolerated_corruptions:
        assert (ok, new) == (clean_ok, 0), entry.tolerated_corruptions[kind]
        return
    assert new >= 1, f"{name}: corruption {kind!r} was not rejected"
    for path, reason in rejected:
        assert path.startswith(str(tmp_path)) and reason, (path, reason)
    if kind in entry.shared_file_corruptions:
        assert ok < clean_ok and len({p for p, _ in rejected[clean_rejected:]}) >= 1
    else:
        assert ok == clean_ok - 1, f"{name}: {kind!r} cost {clean_ok - ok} patches, not 1"


def test_bad_raw_inputs_cover_issue_12(tmp_path: Path):
    """Each of issue 12's bad-input cases is planted in every dataset whose format has it."""
    geotiff = {"bigearthnet", "bigearthnet_v2", "files", "flair2", "sen12ms"}
    for name in TWINS:
        cases = set(BAD_RAW_INPUTS[name])
        assert {"malformed label file", "missing label file", "missing companion file"} <= cases
        if name in geotiff:
            assert {"truncated GeoTIFF", "wrong dtype", "wrong shape", "NaN band",
                    "CRS mismatch", "bounds mismatch"} <= cases, name


@pytest.mark.parametrize("name", TWINS)
def test_prepare_stream_and_forward(name: str, tmp_path_factory: pytest.TempPathFactory,
                                    ray_session):
    import torch

    from rsray.config import Config, DataConfig
    from rsray.data.datasets import build_datasets
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import synthetic_shards
    from rsray.data.shards import read_manifest
    from rsray.models import create_model
    from rsray.train.tasks import build_task

    entry = get_dataset(name)
    uri = synthetic_shards(name, tmp_path_factory.mktemp(name), N_PREPARE, seed=1)
    m = read_manifest(uri)
    assert m.dataset == name and m.synthetic and m.classes
    assert sum(m.splits.values()) + len(m.rejects) >= 1 and m.splits.get("train", 0) >= 4
    assert all(Path(p).is_file() for s in m.splits for p in m.shard_paths(s))
    image_mods = [x for x in entry.default_modalities if x != "metadata"]
    assert set(image_mods) <= set(m.modalities)

    cfg = DataConfig(uri=uri, batch_size=4, image_size=64, modalities=image_mods)
    manifest, datasets = build_datasets(cfg, splits=("train",))
    plan = make_plan(manifest, cfg)
    batch = finalize_batch(datasets["train"].take_batch(batch_size=4, batch_format="numpy"),
                           plan)
    params: dict[str, Any] = dict(entry.test_model_params)
    if plan.metadata_dim:
        params["metadata_dim"] = plan.metadata_dim
    model = create_model(entry.test_model, modalities=plan.channels,
                         num_classes=len(manifest.classes), **params)
    inputs = {k: v for k, v in batch.items()
              if k.split("_")[0] in plan.channels or k == "metadata"}
    inputs = {k: v for k, v in inputs.items() if k != "label"}
    logits = model(inputs)
    assert logits.shape[0] == batch["label"].shape[0] and torch.isfinite(logits).all()
    exclude = (m.info.get("label") or {}).get("exclude_from_mean", [])
    task = build_task(Config(), manifest.task, manifest.classes, exclude)
    loss = task.loss(logits, task.target(batch))
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.parameters())
