"""``rsray tune --resume`` keeps what finished (issue 12).

A trial whose run had finished every epoch, but which Tune's saved state still lists as
unfinished (the driver was SIGKILLed between the trial's last report and Tune's next state
save), is relaunched on resume: it must hand Tune its final result from its last checkpoint,
not run nothing and be listed as PRUNED with an earlier epoch.
"""

from __future__ import annotations

import pytest

from rsray.config import load_config


@pytest.mark.slow
def test_resume_keeps_finished_trials(synthetic_shards, tmp_path, ray_session):
    from rsray.tune.run import finished_result, tune_fusion

    cfg = load_config(None, [
        f"data.uri={synthetic_shards}", "data.batch_size=16", "data.augment=false",
        "model.name=test_progressive_fusion", "tune.space=progressive_smoke",
        "tune.num_samples=2", "tune.max_concurrent_trials=1", "train.max_epochs=2",
        "tune.grace_period=2", "scaling.num_workers=1", "scaling.cpus_per_worker=0.5",
        f"train.storage_path={tmp_path}", "tune.name=resume-fault",
        "train.log_every_n_steps=1000", "train.resource_wait_s=120",
    ])
    first = tune_fusion(cfg)
    assert [r.status for r in first.rows] == ["DONE", "DONE"]
    assert all(r.epochs == 2 for r in first.rows)
    trials = tmp_path / "resume-fault" / "trials"
    for row in first.rows:
        kept = finished_result(str(trials), f"trial_{row.trial}", 2)
        assert kept is not None and kept["epoch"] == 2
    # Resuming a complete experiment repeats nothing and loses nothing.
    again = tune_fusion(cfg, resume=True)
    assert sorted((r.trial, r.status, r.epochs) for r in again.rows) == \
        sorted((r.trial, r.status, r.epochs) for r in first.rows)
    assert again.best["trial"] == first.best["trial"]
