"""Flaky object storage: prepare to S3, reading a split from S3 and a checkpoint upload to S3.

Promised (issue 12): with connection resets, stalled connections, ``503 SlowDown`` answers
and responses cut mid-stream on a share of the requests (bounded in count and time, from
:class:`~faults.flaky_proxy.FlakyProxy` on 127.0.0.1 between rsray and moto), every step
completes and nothing is lost or corrupted: the shard set verifies (sha256 of every shard,
checked against moto directly), every row of each split is read back, and the checkpoint of
the epoch trained from S3 is complete on S3 and is the one Ray Train reported. rsray relies on
botocore's and s3fs's retries here (:func:`rsray.storage.storage_options`).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from rsray.config import DataConfig
from rsray.data.datasets import load_shard_set
from rsray.storage import get_fs

from .conftest import driver_log
from .flaky_proxy import KINDS, FlakyProxy


@pytest.mark.slow
def test_prepare_read_and_checkpoint_through_a_flaky_store(synthetic_raw, synthetic_shards,
                                                           s3_bucket, tmp_path, driver):
    proxy = FlakyProxy(int(os.environ["RSRAY_TEST_S3_PORT"]), every=3, per_kind=3,
                       window_s=600, stall_s=2.0).start()
    shards, storage = f"{s3_bucket}/flaky/shards", f"{s3_bucket}/flaky/runs"
    result_path = tmp_path / "result.json"
    try:
        proc = driver("flaky_s3_run.py", str(synthetic_raw), shards, storage, str(result_path),
                      env={"AWS_ENDPOINT_URL": proxy.url})
        rc = proc.wait(timeout=900)
    finally:
        proxy.stop()
    assert rc == 0, driver_log(proc)
    # The faults really happened, every kind of them.
    assert all(proxy.stats[k] >= 1 for k in KINDS), dict(proxy.stats)
    out = json.loads(result_path.read_text())

    # Checked against moto directly (the session's endpoint, no proxy): complete and intact.
    manifest = load_shard_set(DataConfig(uri=shards))  # verifies every shard's sha256
    complete = load_shard_set(DataConfig(uri=synthetic_shards))
    assert manifest.splits == complete.splits == out["manifest_rows"]
    fs, _ = get_fs(shards)
    for split in ("train", "val"):
        labels = [np.asarray(pq.read_table(fs.open(p, "rb"), columns=["label"])
                             .column("label").to_pylist(), dtype=np.float64)
                  for p in manifest.shard_paths(split)]
        assert out["read"][split] == {"rows": manifest.splits[split],
                                      "positives": float(np.concatenate(labels).sum())}

    # One epoch trained from S3; its checkpoint is on S3, complete and the one reported.
    assert out["error"] is None and out["metrics"]["epoch"] == 1
    assert out["checkpoint"] and out["checkpoint"].endswith("epoch_0000")
    fs, _ = get_fs(storage)
    fs.invalidate_cache()
    local = tmp_path / "ckpt"
    fs.get(out["checkpoint"], str(local), recursive=True)
    state = torch.load(local / "state.pt", weights_only=True)
    meta = json.loads((local / "meta.json").read_text())
    assert state["epoch"] == meta["epoch"] == 0
    assert meta["metrics"]["val_loss"] == pytest.approx(out["metrics"]["val_loss"])
    assert all(torch.isfinite(v).all() for v in state["model"].values()
               if v.is_floating_point())
