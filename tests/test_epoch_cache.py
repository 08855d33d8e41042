"""Issue 11: the cheap finiteness guard, splits kept in memory across epochs, checkpoint cadence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rsray.data.finalize import finalize_batch
from rsray.data.plan import DecodePlan, GroupPlan, ModalityPlan
from rsray.errors import ShardIntegrityError


def _plan(**kw) -> DecodePlan:
    s2 = ModalityPlan("s2", (GroupPlan("s2_10m", (2, 8, 8), "uint16"),), ("a", "b"),
                      (100.0, 100.0), (10.0, 10.0))
    s1 = ModalityPlan("s1", (GroupPlan("s1", (1, 8, 8), "float32"),), ("vv",), (0.0,), (1.0,))
    return DecodePlan((s2, s1), 3, 8, "bilinear", **kw)


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    return {"label": torch.zeros(n, 3, dtype=torch.uint8),
            "s2_10m": torch.full((n, 2, 8, 8), 7, dtype=torch.int32).to(torch.uint16),
            "s1": torch.zeros(n, 1, 8, 8), "drop_s2": torch.zeros(n, dtype=torch.uint8),
            "drop_s1": torch.zeros(n, dtype=torch.uint8)}


@pytest.mark.parametrize("full", [False, True])
def test_finite_guard_catches_nan_in_float_groups(full):
    plan = _plan(check_finite=full)
    out = finalize_batch(_batch(), plan)
    assert out["s2"].shape == (4, 2, 8, 8) and torch.isfinite(out["s1"]).all()
    bad = _batch()
    bad["s1"][2, 0, 3, 3] = float("nan")
    with pytest.raises(ShardIntegrityError, match="modality s1: non-finite"):
        finalize_batch(bad, plan)


def test_huge_finite_values_are_not_reported():
    # a sum that overflows to inf is confirmed element-wise before anything is raised
    batch = _batch()
    batch["s1"][:] = 3e38
    out = finalize_batch(batch, _plan())
    assert torch.isfinite(out["s1"]).all()


def test_integer_groups_are_never_scanned(monkeypatch):
    calls = []
    real = torch.isfinite

    def spy(x):
        calls.append(x.shape)
        return real(x)

    monkeypatch.setattr(torch, "isfinite", spy)
    finalize_batch(_batch(), dataclasses.replace(_plan(), modalities=_plan().modalities[:1]))
    assert calls == []


def test_checkpoint_cadence():
    from rsray.train.checkpoint import should_checkpoint

    def picked(every, improved=(), last=9):
        return [e for e in range(last + 1)
                if should_checkpoint(e, improved=e in improved, last=e == last, every=every)]

    assert picked(0) == [9]
    assert picked(0, improved=(0, 3)) == [0, 3, 9]
    assert picked(4, improved=(0,)) == [0, 3, 7, 9]
    assert picked(1) == list(range(10))


def test_cached_split_is_read_once(synthetic_shards, tmp_path, ray_session):
    """Two passes (two epochs) over a cached split read no shard: the files are gone."""
    import shutil

    from rsray.config import DataConfig
    from rsray.data.datasets import load_shard_set, training_datasets
    from rsray.data.plan import DataPlan
    from rsray.train.batches import model_batches

    shards = tmp_path / "shards"
    shutil.copytree(synthetic_shards, shards)
    cfg = DataConfig(uri=str(shards), batch_size=16, cache="memory", modality_dropout=0.5,
                     verify_checksums=False)
    manifest = load_shard_set(cfg)
    plan = DataPlan.build(manifest, cfg)
    data = training_datasets(plan, manifest)
    assert set(data.cached) == {"train", "val"} and data.augment is not None
    for split in ("train", "val"):
        assert data.datasets[split] is data.cached[split].dataset
    for f in shards.rglob("*.parquet"):
        f.unlink()
    it = data.datasets["train"].streaming_split(1)[0]  # what a Ray Train worker gets
    rng = np.random.default_rng(0)
    epochs = []
    for _ in range(2):
        batches = list(model_batches(it, plan.train, batch_size=16, device=torch.device("cpu"),
                                     augment=data.augment, rng=rng))
        assert sum(b.data["label"].shape[0] for b in batches) == manifest.splits["train"]
        epochs.append(torch.cat([b.data["s2"] for b in batches]))
        assert batches[0].nbytes["s2"] > 0
    assert not torch.equal(epochs[0], epochs[1])  # augmented anew every epoch
    val = list(data.datasets["val"].iter_batches(batch_size=64))
    assert sum(len(b["label"]) for b in val) == manifest.splits["val"]


def test_cache_auto_streams_what_does_not_fit(synthetic_shards, ray_session):
    from rsray.config import DataConfig
    from rsray.data.datasets import load_shard_set, training_datasets
    from rsray.data.plan import DataPlan

    cfg = DataConfig(uri=synthetic_shards, cache="auto", cache_fraction=1e-9,
                     verify_checksums=False)
    manifest = load_shard_set(cfg)
    data = training_datasets(DataPlan.build(manifest, cfg), manifest)
    assert data.cached == {} and data.augment is None  # Ray Data augments the stream
    # a one-worker run reads every epoch of each split through one execution of its stream
    assert set(data.streams) == set(data.datasets)
    assert data.streams["train"].augment_with is not None  # as Ray Data augments the stream
    assert all(data.streams[s].augment_with is None for s in data.streams if s != "train")


def test_early_stopping_watches_its_own_metric_and_survives_a_resume() -> None:
    """LF-DLM stops on the validation loss while its best model is ranked by val mIoU."""
    from rsray.config import Config
    from rsray.errors import ConfigError
    from rsray.train.loop import _State, update_early_stopping
    from rsray.train.tasks import early_stopping_metric

    cfg = Config().with_overrides({"train.metric": "val_miou", "train.mode": "max",
                                   "train.early_stopping_patience": 2,
                                   "train.early_stopping_metric": "val_loss"})
    assert early_stopping_metric(cfg) == ("val_loss", "min")
    state = _State()
    epochs = [{"val_miou": 0.1, "val_loss": 1.0}, {"val_miou": 0.2, "val_loss": 0.9},
              {"val_miou": 0.3, "val_loss": 0.95}, {"val_miou": 0.4, "val_loss": 0.91}]
    stops = [update_early_stopping(state, r, cfg) for r in epochs]
    # mIoU rises every epoch, but the loss has not improved on 0.9 for two epochs: stop
    assert stops == [False, False, False, True]
    assert state.stop_best == 0.9 and state.stop_stale == 2
    # without its own metric, early stopping follows train.metric (which kept improving)
    plain = cfg.with_overrides({"train.early_stopping_metric": ""})
    assert early_stopping_metric(plain) == ("val_miou", "max")
    fresh = _State()
    assert not any(update_early_stopping(fresh, r, plain) for r in epochs)
    # a resumed run continues the count from the checkpoint's state
    resumed = _State(3, 0.3, 0, stop_best=0.9, stop_stale=1)
    assert update_early_stopping(resumed, epochs[3], cfg)
    with pytest.raises(ConfigError, match="val_lossy"):
        update_early_stopping(_State(), epochs[0],
                              cfg.with_overrides({"train.early_stopping_metric": "val_lossy"}))
