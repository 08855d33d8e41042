"""Driver of the flaky-storage test: prepare, read and train against S3 behind a faulty proxy.

``python flaky_s3_run.py RAW SHARDS_URI STORAGE_URI RESULT_JSON``; ``AWS_ENDPOINT_URL`` names
the proxy. Joins the Ray named by ``RAY_ADDRESS`` with that endpoint in its job's environment,
so every Ray Data task and Ray Train worker of this job talks to S3 through the proxy too.
Writes what it read and trained to ``RESULT_JSON`` for the test to check against moto directly.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    """Prepare to S3, read the train and val splits back, train one epoch with S3 storage."""
    from rsray.config import DataConfig, load_config
    from rsray.data.datasets import build_datasets
    from rsray.data.prepare import prepare
    from rsray.data.sources.bigearthnet import BigEarthNetMM
    from rsray.runtime import ensure_ray
    from rsray.train.driver import fit

    raw, shards, storage, result_path = sys.argv[1:5]
    ensure_ray(runtime_env={"env_vars": {"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]}})
    source = BigEarthNetMM(str(Path(raw, "BigEarthNet-S2")), str(Path(raw, "BigEarthNet-S1")))
    t0 = time.monotonic()
    prepare(source, shards, target_shard_mb=2.0)
    print(f"[flaky] prepare done at {time.monotonic() - t0:.0f} s", flush=True)

    manifest, datasets = build_datasets(DataConfig(uri=shards, batch_size=16, augment=False))
    read: dict[str, dict[str, float]] = {}
    for split in ("train", "val"):
        rows, positives = 0, 0.0
        for batch in datasets[split].iter_batches(batch_size=32, batch_format="numpy"):
            rows += len(batch["label"])
            positives += float(np.asarray(batch["label"], dtype=np.float64).sum())
        read[split] = {"rows": rows, "positives": positives}

    print(f"[flaky] splits read at {time.monotonic() - t0:.0f} s", flush=True)
    cfg = load_config(None, [
        f"data.uri={shards}", "data.batch_size=16", "data.augment=false",
        "model.name=test_progressive_fusion", "scaling.num_workers=1",
        "scaling.cpus_per_worker=0.5", "train.max_epochs=1", f"train.storage_path={storage}",
        "train.name=flaky", "train.log_every_n_steps=1000",
    ])
    result = fit(cfg)
    out = {"read": read, "manifest_rows": manifest.splits,
           "error": None if result.error is None else repr(result.error),
           "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, int | float)},
           "checkpoint": result.checkpoint.path if result.checkpoint else None}
    Path(result_path).write_text(json.dumps(out))
    print(f"[flaky] trained and checkpointed at {time.monotonic() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
