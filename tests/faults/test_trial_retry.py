"""A one-worker trial's process SIGKILLed mid-run with ``train.max_failures=1``.

Promised: a one-worker trial trains in its own process (``scaling.trial_mode=auto`` -> local),
so no Ray Train controller replaces its worker: Tune retries the trial, which resumes from the
newest checkpoint in its folder (``resumed_from_epoch`` >= the epochs checkpointed before the
kill, not 0) and finishes every epoch; the leaderboard lists it DONE with its final metric.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from rsray.config import load_config

EPOCHS = 3


def _checkpoints(trials: Path) -> list[str]:
    return sorted(p.parent.name for p in trials.glob("trial_*/epoch_*/meta.json"))


@pytest.mark.slow
def test_killed_local_trial_is_retried_and_resumes(synthetic_shards: str, tmp_path: Path,
                                                   ray_session) -> None:
    from ray.util.state import list_actors

    from rsray.tune.run import tune_fusion

    cfg = load_config(None, [
        f"data.uri={synthetic_shards}", "data.batch_size=2", "data.augment=false",
        "model.name=test_progressive_fusion", "tune.space=progressive_smoke",
        "tune.num_samples=1", "tune.max_concurrent_trials=1", "tune.grace_period=1",
        "scaling.num_workers=1", "scaling.cpus_per_worker=0.5", f"train.max_epochs={EPOCHS}",
        "train.max_failures=1", f"train.num_to_keep={EPOCHS}", "train.checkpoint_every=1",
        f"train.storage_path={tmp_path}", "tune.name=retry", "train.log_every_n_steps=1000",
    ])
    trials = tmp_path / "retry" / "trials"
    killed: dict[str, object] = {}
    done = threading.Event()

    def trial_pids() -> list[int]:
        actors = list_actors(filters=[("state", "=", "ALIVE")])
        killed["actors"] = sorted({a.class_name for a in actors})
        return [a.pid for a in actors if "ImplicitFunc" in a.class_name
                or "trial_driver" in a.class_name]

    def kill_after_first_checkpoint() -> None:
        pids: list[int] = []
        while not _checkpoints(trials):
            if done.wait(0.05):
                return
            if not pids:  # the trial's process, found while its first epoch trains
                pids = trial_pids()
        pids = pids or trial_pids()
        killed["checkpointed"] = _checkpoints(trials)
        killed["pids"] = pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    try:
        outcome = tune_fusion(cfg)
    finally:
        done.set()
        killer.join(timeout=30)

    assert killed.get("pids"), f"no trial process was found to kill: {killed}"
    assert len(killed["checkpointed"]) < EPOCHS, killed  # the kill landed before the end
    [row] = outcome.rows
    assert row.status == "DONE" and row.epochs == EPOCHS, row
    run = next(trials.glob("trial_*"))
    assert sorted(p.name for p in run.glob("epoch_*")) == \
        [f"epoch_{e:04d}" for e in range(EPOCHS)]
    last = json.loads((run / f"epoch_{EPOCHS - 1:04d}" / "meta.json").read_text())
    assert last["epoch"] == EPOCHS - 1
    # the retry resumed from a checkpoint written before the kill, not from scratch
    assert last["metrics"]["resumed_from_epoch"] >= len(killed["checkpointed"]) >= 1
    assert Path(row.checkpoint).parent == run and (Path(row.checkpoint) / "meta.json").is_file()
