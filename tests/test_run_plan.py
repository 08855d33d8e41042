"""The resolved run: every decision made once from a config and a manifest (no Ray).

Manifests are built in memory in the format ``rsray prepare`` writes (modalities with band
groups, per-band training statistics, ``info.label``); nothing here reads shards.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch

from rsray.config import Config
from rsray.data.schema import BandGroup, DatasetSpec, ModalitySpec
from rsray.data.shards import Manifest
from rsray.errors import ConfigError
from rsray.train.run_plan import RunPlan, WorkerInput

CLS = DatasetSpec(
    "tiny", "multilabel", ("a", "b", "c"),
    (ModalitySpec("opt", (BandGroup("opt_hi", ("B1", "B2"), 8, "uint16"),
                          BandGroup("opt_lo", ("B3",), 4, "uint16"))),
     ModalitySpec("sar", (BandGroup("sar", ("VV", "VH"), 8, "float32"),)),
     ModalitySpec("meta", (BandGroup("meta", ("lat", "lon"), 0, "float32", kind="vector"),))),
)
SEG = DatasetSpec(
    "tinyseg", "segmentation", ("x", "y", "other"),
    (ModalitySpec("aerial", (BandGroup("aerial", ("R", "G"), 8, "uint8"),)),),
    label_size=8,
)


def _manifest(spec: DatasetSpec, **label: Any) -> Manifest:
    groups = {m.name: {"bands": list(m.bands), "groups": {g.name: g.to_dict() for g in m.groups}}
              for m in spec.modalities}
    stats = {m.name: {b: {"mean": 1.0, "std": 2.0} for b in m.bands} for m in spec.modalities}
    info = {"label": {**spec.label_info, **label}}
    return Manifest(spec.name, spec.task, list(spec.classes), groups, [], stats, info=info,
                    uri="/data/tiny")


def _cfg(**overrides: Any) -> Config:
    return Config().with_overrides({"data.uri": "/data/tiny", "data.image_size": 8,
                                    "model.name": "test_early_fusion_cnn", **overrides})


def test_auto_metric_mode_and_loss_are_resolved_once_per_task() -> None:
    run = RunPlan.build(_cfg(), _manifest(CLS))
    assert (run.metric, run.mode, run.loss, run.task) == ("val_ap_macro", "max", "bce",
                                                          "multilabel")
    assert run.config.train.metric == "val_ap_macro"  # what the workers and Tune read
    seg = RunPlan.build(_cfg(**{"data.eval_splits": ["test"]}),
                        _manifest(SEG, exclude_from_mean=["other"]))
    assert (seg.metric, seg.mode, seg.loss) == ("test_miou", "max", "ce_dice")
    assert seg.exclude_from_mean == ("other",) and seg.label_info["size"] == 8
    mine = RunPlan.build(_cfg(**{"train.metric": "val_loss"}), _manifest(CLS))
    assert (mine.metric, mine.mode) == ("val_loss", "min")
    stop = RunPlan.build(_cfg(**{"train.early_stopping_metric": "val_hamming_loss"}),
                         _manifest(CLS))
    assert stop.early_stopping == ("val_hamming_loss", "min")


def test_model_gets_its_channels_classes_and_metadata_dim_in_one_place() -> None:
    run = RunPlan.build(_cfg(**{"model.params": {"drop_rate": 0.1}}), _manifest(CLS))
    assert run.channels == {"opt": 3, "sar": 2} and run.metadata_dim == 2
    assert run.model_kwargs() == {"modalities": {"opt": 3, "sar": 2}, "num_classes": 3,
                                  "drop_rate": 0.1, "metadata_dim": 2}
    model = run.build_model()
    assert model.metadata_dim == 2
    batch = {"opt": torch.zeros(2, 3, 8, 8), "sar": torch.zeros(2, 2, 8, 8),
             "metadata": torch.zeros(2, 2)}
    assert model(batch).shape == (2, 3)
    without = RunPlan.build(_cfg(**{"data.modalities": ["opt", "sar"]}), _manifest(CLS))
    assert "metadata_dim" not in without.model_kwargs()


def test_decode_plans_and_placement_are_decided_at_build() -> None:
    run = RunPlan.build(_cfg(**{"data.train_fraction": 0.5, "data.cache": "device",
                                "data.augment_on": "device", "data.modality_dropout": 0.2}),
                        _manifest(CLS))
    assert run.train_plan.train_fraction == 0.5 and run.eval_plan.train_fraction == 1.0
    assert run.data.splits == ("train", "val") and run.data.eval_splits == ("val",)
    assert run.data.resident and not run.data.streams_augmented  # workers augment on device
    assert run.data.augment is not None and run.data.augment["modality_dropout"] == 0.2
    off = RunPlan.build(_cfg(**{"data.augment": False}), _manifest(CLS))
    assert off.data.augment is None and not off.data.streams_augmented
    host = RunPlan.build(_cfg(), _manifest(CLS))
    assert host.data.streams_augmented and not host.data.resident


def test_settings_that_do_not_fit_the_data_fail_at_build() -> None:
    with pytest.raises(ConfigError, match=r"data\.augment_ops"):
        RunPlan.build(_cfg(**{"data.augment_ops": {"nir": ["hflip"]}}), _manifest(CLS))
    with pytest.raises(ConfigError, match=r"train\.loss"):
        RunPlan.build(_cfg(**{"train.loss": "ce_dice"}), _manifest(CLS))
    with pytest.raises(ConfigError, match=r"data\.modalities"):
        RunPlan.build(_cfg(**{"data.modalities": ["s2"]}), _manifest(CLS))
    # the config sits below the model registry: the name is checked here, before Ray starts
    bad = _cfg(**{"model.name": "no_such_net"})
    with pytest.raises(ConfigError, match=r"model\.name: 'no_such_net' is not allowed"):
        RunPlan.build(bad, _manifest(CLS))


def test_plan_is_frozen_picklable_and_rebuilt_from_a_checkpoint() -> None:
    manifest = _manifest(CLS)
    run = RunPlan.build(_cfg(), manifest, experiment="exp", trial="trial_1")
    with pytest.raises(AttributeError):
        run.task = "binary"  # type: ignore[misc]
    given = pickle.loads(pickle.dumps(WorkerInput(run=run, augment=run.data.augment)))
    assert given.run == run and (given.run.experiment, given.run.trial) == ("exp", "trial_1")
    meta = run.checkpoint_meta()
    again = RunPlan.build(Config.from_dict(meta["config"]), manifest)
    assert again.with_tags(experiment="exp", trial="trial_1") == run
    assert meta["channels"] == run.channels and meta["task"] == "multilabel"
