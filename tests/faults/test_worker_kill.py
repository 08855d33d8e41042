"""A training worker SIGKILLed mid-epoch with ``train.max_failures=1``.

Promised (issue 12): Ray Train replaces the dead worker, the loop restores the last
checkpoint (``resumed_from_epoch`` is the number of epochs checkpointed before the kill, not
0), and the run finishes every epoch: one checkpoint per epoch, each holding its epoch, no
error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading

import pytest

from rsray.config import load_config
from rsray.train.driver import fit

EPOCHS = 3


def _epoch_dirs(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.glob("epoch_*") if (p / "meta.json").exists())


def _registered(run_dir) -> list[str]:
    """Checkpoints Ray Train has registered (a checkpoint uploaded but not yet registered when
    the worker dies is, rightly, not resumed from)."""
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    text = snapshot.read_text() if snapshot.exists() else ""
    return sorted(set(re.findall(r"epoch_\d{4}", text)))


@pytest.mark.slow
def test_worker_killed_mid_epoch_resumes_from_last_checkpoint(synthetic_shards, tmp_path,
                                                             ray_session):
    from ray.util.state import list_actors

    cfg = load_config(None, [
        f"data.uri={synthetic_shards}", "data.batch_size=8", "data.augment=false",
        "model.name=test_progressive_fusion", "scaling.num_workers=1",
        "scaling.cpus_per_worker=0.5", f"train.max_epochs={EPOCHS}", "train.max_failures=1",
        f"train.num_to_keep={EPOCHS}", "train.checkpoint_every=1", f"train.storage_path={tmp_path}",
        "train.name=worker-kill", "train.log_every_n_steps=1000",
    ])
    run_dir = tmp_path / "worker-kill"
    killed: dict[str, object] = {}

    done = threading.Event()

    def kill_after_first_checkpoint() -> None:
        while not _registered(run_dir):
            if done.wait(0.1):
                return
        workers = list_actors(filters=[("class_name", "=", "RayTrainWorker"),
                                       ("state", "=", "ALIVE")])
        killed["checkpointed"] = _registered(run_dir)
        killed["pids"] = [w.pid for w in workers]
        for w in workers:
            os.kill(w.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    try:
        result = fit(cfg)
    finally:
        done.set()
        killer.join(timeout=30)

    assert killed.get("pids"), "no training worker was found to kill"
    assert result.error is None
    # It resumed from the last checkpoint written before the kill, and finished every epoch.
    assert len(killed["checkpointed"]) < EPOCHS, killed  # the kill landed before the end
    assert result.metrics["resumed_from_epoch"] >= len(killed["checkpointed"]) >= 1
    assert result.metrics["epoch"] == EPOCHS
    assert _epoch_dirs(run_dir) == [f"epoch_{e:04d}" for e in range(EPOCHS)]
    for e in range(EPOCHS):
        assert json.loads((run_dir / f"epoch_{e:04d}" / "meta.json").read_text())["epoch"] == e
