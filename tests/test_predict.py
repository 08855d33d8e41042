"""``predict``: Parquet predictions from a pool of Ray Data actors, consistent with training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch
from torchmetrics.functional.classification import multilabel_average_precision

from rsray.cli import main
from rsray.data.shards import read_manifest
from rsray.evaluate import predict
from rsray.evaluate.predict import PREDICTIONS_META
from rsray.train.checkpoint import META_FILE


def test_predict_writes_parquet_matching_validation(synthetic_shards, trained_checkpoint,
                                                    tmp_path, ray_session):
    ckpt = trained_checkpoint
    trained = json.loads((Path(ckpt) / META_FILE).read_text())["metrics"]

    out = tmp_path / "pred"
    assert predict(ckpt, synthetic_shards, "val", str(out), concurrency=2) == str(out)
    table = pads.dataset(str(out), format="parquet").to_table().to_pandas()
    manifest = read_manifest(synthetic_shards)
    assert len(table) == manifest.splits["val"]
    assert table["patch_id"].is_unique
    assert set(table.columns) == {"patch_id", "target", "probs", "group"}
    # the group of the bootstrap: the MGRS tile of each patch's S1 name (BigEarthNet v1)
    rows = pads.dataset(manifest.shard_paths("val"), format="parquet").to_table(
        columns=["patch_id", "meta_s1_patch"]).to_pandas()
    tile = dict(zip(rows["patch_id"], rows["meta_s1_patch"].str.split("_").str[-3],
                    strict=True))
    assert (table["group"] == table["patch_id"].map(tile)).all()
    assert table["group"].str.fullmatch(r"\d\d[A-Z]{3}").all()
    probs = np.stack(table["probs"].to_numpy())
    target = np.stack(table["target"].to_numpy())
    assert probs.shape == target.shape == (len(table), len(manifest.classes))
    assert ((probs >= 0) & (probs <= 1)).all()
    # the same numbers training reported for this epoch
    ap_micro = multilabel_average_precision(torch.from_numpy(probs),
                                            torch.from_numpy(target).long(),
                                            num_labels=probs.shape[1], average="micro")
    assert float(ap_micro) == pytest.approx(trained["val_ap_micro"], rel=1e-5)
    info = json.loads((out / PREDICTIONS_META).read_text())
    assert info["split"] == "val" and info["task"] == "multilabel" and info["synthetic"]
    assert info["group"] == "MGRS tile"
    # in this process (concurrency 0, what a study trial uses): the same rows and numbers
    here = tmp_path / "pred_here"
    predict(ckpt, synthetic_shards, "val", str(here), concurrency=0)
    local = pads.dataset(str(here), format="parquet").to_table().to_pandas()
    both = table.merge(local, on="patch_id", suffixes=("", "_here"))
    assert len(both) == len(local) == len(table)
    np.testing.assert_allclose(np.stack(both["probs"]), np.stack(both["probs_here"]), atol=1e-6)
    assert (both["group"] == both["group_here"]).all()
    assert json.loads((here / PREDICTIONS_META).read_text())["split"] == "val"

    # the CLI, with S1 dropped: same samples, other probabilities
    dropped = tmp_path / "pred_drop"
    assert main(["predict", ckpt, "--data", synthetic_shards, "--split", "val",
                 "--out", str(dropped), "--drop-modality", "s1", "--concurrency", "1"]) == 0
    other = pads.dataset(str(dropped), format="parquet").to_table().to_pandas()
    merged = table.merge(other, on="patch_id", suffixes=("", "_drop"))
    assert len(merged) == len(table)
    assert not np.allclose(np.stack(merged["probs"]), np.stack(merged["probs_drop"]))
    assert main(["predict", ckpt, "--data", synthetic_shards, "--split", "nope",
                 "--out", str(tmp_path / "x")]) == 2
