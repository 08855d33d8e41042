"""Ray Train integration: a two-worker run, then a resumed run with the same name."""

import re
import time

from rsray.config import load_config
from rsray.train.driver import fit


def _epoch_line(capfd, pattern: str, wait_s: float = 30.0) -> str:
    """The terminal line matching ``pattern`` (Ray forwards the controller's output shortly)."""
    seen = ""
    deadline = time.monotonic() + wait_s
    while True:
        out, err = capfd.readouterr()
        seen += out + err
        found = re.search(pattern, seen)
        if found or time.monotonic() > deadline:
            assert found, f"no line matching {pattern!r} in:\n{seen[-3000:]}"
            return found.group(0)
        time.sleep(0.5)


def test_two_workers_then_resume(synthetic_shards, tmp_path, ray_session, capfd):
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
    # train.metric=auto (the default) is resolved before the epoch line is built: the line
    # `rsray train` prints names the headline metric and its value
    line = _epoch_line(capfd, r"\[rsray\] epoch 1/1 val_ap_macro ([0-9.]+)[^\n]*")
    assert line.split()[4] == f"{first.metrics['val_ap_macro']:.4f}"
    assert first.metrics["resumed_from_epoch"] == 0
    for key in ("val_ap_micro", "val_ap_macro", "val_f2_micro", "val_hamming_loss", "val_loss"):
        assert key in first.metrics
    assert any(k.startswith("val_ap_class/") for k in first.metrics)
    assert first.checkpoint is not None

    # Same run name, two more epochs: Ray Train V2 restores the run, the loop resumes at
    # epoch 2 from the checkpoint the first run uploaded asynchronously (the default
    # train.checkpoint_upload=async). Checkpoints (train.checkpoint_every=0) only where the
    # metric improves and at the end: ranked by `epoch` with mode=min, epoch 2 gets none.
    # The resumed epochs train from each worker's device-resident share (data.cache=device,
    # CPU memory here) with on-device augmentation: same samples per epoch, same metrics.
    rows = _train_rows(synthetic_shards)
    assert first.metrics["train_samples"] == 2 * (rows // 2)  # Ray Train splits it equally
    second = fit(cfg.with_overrides({"train.max_epochs": 3, "train.metric": "epoch",
                                     "train.mode": "min", "data.cache": "device"}))
    assert second.error is None
    assert second.metrics["resumed_from_epoch"] == 1
    assert second.metrics["train_samples"] == 2 * (rows // 2)
    def keys(metrics: dict) -> set:  # best_<train.metric> follows the ranking metric
        return {k for k in metrics if not k.startswith("best_")}

    assert keys(second.metrics) == keys(first.metrics)
    assert second.metrics["epoch"] == 3 and second.metrics["checkpointed"]
    run = tmp_path / "resume-test"
    assert sorted(p.name for p in run.glob("epoch_*")) == ["epoch_0000", "epoch_0002"]
    for key in ("startup_seconds", "setup_seconds", "train_first_batch_seconds"):
        assert second.metrics[key] >= 0.0, key

    # Issue 12: a run that had finished is recognised from its storage (what `rsray tune
    # --resume` hands Tune for a trial that finished just before the driver was killed).
    from rsray.tune.run import finished_result

    assert finished_result(str(tmp_path), "resume-test", max_epochs=4) is None  # not finished
    done = finished_result(str(tmp_path), "resume-test", max_epochs=3)
    assert done is not None and done["epoch"] == 3 and done["kept_from_checkpoint"]
    assert done["val_loss"] == second.metrics["val_loss"]
    assert done["checkpoint_path"].endswith("epoch_0002")


def _train_rows(shards: str) -> int:
    from rsray.data.shards import read_manifest

    return int(read_manifest(shards).splits["train"])


def test_status_of_a_trial_that_never_reported():
    from rsray.tune.run import trial_status

    assert trial_status(None, {}, 2) == "NO-REPORT"
    assert trial_status("boom", {}, 2) == "ERROR"
    assert trial_status(None, {"epoch": 1}, 2) == "PRUNED"
    assert trial_status(None, {"epoch": 2}, 2) == "DONE"
    assert trial_status(None, {"epoch": 1, "early_stopped": True}, 2) == "EARLY-STOP"


def test_finished_result_reads_meta_only(tmp_path):
    import json

    from rsray.tune.run import finished_result

    run = tmp_path / "trial_x"
    for epoch in (0, 1):
        d = run / f"epoch_{epoch:04d}"
        d.mkdir(parents=True)
        (d / "meta.json").write_text(json.dumps({"epoch": epoch, "metrics": {
            "epoch": epoch + 1, "val_ap_macro": 0.5 + epoch, "early_stopped": False}}))
    assert finished_result(str(tmp_path), "trial_x", 2)["val_ap_macro"] == 1.5
    assert finished_result(str(tmp_path), "trial_missing", 2) is None


def test_unknown_shard_uri_fails_before_ray_starts(tmp_path):
    import ray

    from rsray.errors import DatasetNotFoundError
    from rsray.train.driver import fit

    was_up = ray.is_initialized()
    cfg = load_config(None, [f"data.uri={tmp_path / 'nowhere'}"])
    import pytest

    with pytest.raises(DatasetNotFoundError, match="no shard set here"):
        fit(cfg)
    assert ray.is_initialized() == was_up


def test_last_training_batch_of_one_is_left_out(synthetic_shards, tmp_path, ray_session):
    """A split whose last batch holds one sample trains a BatchNorm model (BatchNorm cannot
    normalise one sample): that sample sits out the epoch instead of crashing the run."""
    rows = _train_rows(synthetic_shards)
    assert rows > 2
    cfg = load_config(None, [
        f"data.uri={synthetic_shards}", f"data.batch_size={rows - 1}",
        "model.name=test_early_fusion_cnn", "data.image_size=32", "scaling.num_workers=1",
        "scaling.cpus_per_worker=1", "train.max_epochs=1",
        f"train.storage_path={tmp_path}", "train.name=last-batch-of-one",
    ])
    result = fit(cfg)
    assert result.error is None, result.error
    assert result.metrics["train_samples"] == rows - 1


def test_has_batch_norm():
    import torch

    from rsray.train.step import has_batch_norm

    assert has_batch_norm(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)))
    assert not has_batch_norm(torch.nn.Linear(2, 2))
