"""Ray Train integration: a two-worker run, then a resumed run with the same name."""

from rsray.config import load_config
from rsray.train.driver import fit


def test_two_workers_then_resume(synthetic_shards, tmp_path, ray_session):
    cfg = load_config(None, [
        f"data.uri={synthetic_shards}",
        "data.batch_size=8",
        "model.name=test_progressive_fusion",
        "scaling.num_workers=2",
        "scaling.cpus_per_worker=0.5",
        "train.max_epochs=1",
        f"train.storage_path={tmp_path}",
        "train.name=resume-test",
        "train.loss=combined",
        "optim.scheduler=step",
    ])
    first = fit(cfg)
    assert first.error is None
    assert first.metrics["epoch"] == 1
    assert first.metrics["resumed_from_epoch"] == 0
    for key in ("val_ap_micro", "val_ap_macro", "val_f2_micro", "val_hamming_loss", "val_loss"):
        assert key in first.metrics
    assert any(k.startswith("val_ap_class/") for k in first.metrics)
    assert first.checkpoint is not None

    # Same run name, one more epoch: Ray Train V2 restores the run, the loop resumes at epoch 2.
    second = fit(cfg.with_overrides({"train.max_epochs": 2}))
    assert second.error is None
    assert second.metrics["resumed_from_epoch"] == 1
    assert second.metrics["epoch"] == 2
