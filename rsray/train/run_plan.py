"""The resolved run: every decision a run makes from its config and its shard set, made once.

:meth:`RunPlan.build` takes a :class:`~rsray.config.Config` and the shard set's
:class:`~rsray.data.shards.Manifest` and resolves what every consumer needs: the task, the
headline metric and its mode (``train.metric=auto`` becomes ``val_ap_macro``, ``val_miou``...),
the loss, the decode plans and the cache / augmentation placement
(:class:`~rsray.data.plan.DataPlan`), the classes, the channels, the label information and the
model's constructor arguments (:meth:`RunPlan.build_model`). The plan is frozen and picklable:
the driver builds it, Ray Train workers receive it (:class:`WorkerInput`), Tune trials and
study stages build their own from their trial's config, and evaluation, prediction, the
benchmarks and the recipes build one for the shard set they run on. A checkpoint stores the
resolved config (:meth:`RunPlan.checkpoint_meta`), from which the same plan is built again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rsray.config import Config
from rsray.data.plan import DataPlan, DecodePlan
from rsray.data.shards import Manifest
from rsray.data.stream import SplitStream


@dataclass(frozen=True)
class RunPlan:
    """A run of one config on one shard set, resolved (see the module docstring)."""

    config: Config
    """The config with ``train.metric`` / ``train.mode`` resolved (never ``auto``)."""
    data: DataPlan
    """Decode plans per split, cache policy and augmentation placement."""
    task: str
    """The shard set's task: ``multilabel``, ``multiclass``, ``binary``, ``segmentation`` or
    ``regression``."""
    classes: tuple[str, ...]
    """Class names (regression: target names), the model's ``num_classes``."""
    loss: str
    """The loss ``train.loss`` resolves to for the task."""
    label_info: Mapping[str, Any] = field(default_factory=dict)
    """The manifest's ``info.label`` (segmentation size, regression target statistics...)."""
    exclude_from_mean: tuple[str, ...] = ()
    """Classes left out of mean metrics (segmentation: FLAIR-2's 'other' classes)."""
    synthetic: bool = False
    """The shard set is a synthetic twin."""
    experiment: str = ""
    """Tag of the run's metrics: the experiment (``tune.name``, a study) it belongs to."""
    trial: str = ""
    """Tag of the run's metrics: the run (trial) name."""

    @classmethod
    def build(cls, cfg: Config, manifest: Manifest, *, experiment: str | None = None,
              trial: str | None = None) -> RunPlan:
        """Resolve ``cfg`` against ``manifest`` (one-line errors for settings that do not fit).

        Raises:
            ConfigError: an unknown ``model.name``, or a modality, band, augmentation or loss
                setting that does not fit the shard set.
            ShardIntegrityError: the manifest lacks what a setting needs (band statistics).
        """
        from rsray.config import check_choice
        from rsray.models import list_models
        from rsray.train.losses import resolve_loss_name
        from rsray.train.tasks import resolve_for_task

        check_choice("model", "name", cfg.model.name, list_models())
        task = manifest.task
        cfg = resolve_for_task(cfg, task)
        label = dict(manifest.info.get("label", {}))
        return cls(
            config=cfg, data=DataPlan.build(manifest, cfg.data), task=task,
            classes=tuple(manifest.classes), loss=resolve_loss_name(cfg.train, task),
            label_info=label, exclude_from_mean=tuple(label.get("exclude_from_mean", ())),
            synthetic=bool(manifest.synthetic), experiment=experiment or cfg.train.name,
            trial=trial or cfg.train.name)

    def with_tags(self, *, experiment: str | None = None, trial: str | None = None) -> RunPlan:
        """The same plan with other metric tags (``None`` keeps a tag)."""
        return dataclasses.replace(self, experiment=experiment or self.experiment,
                                   trial=trial or self.trial)

    @property
    def metric(self) -> str:
        """The headline metric (``train.metric`` resolved): checkpoints, early stopping, Tune."""
        return self.config.train.metric

    @property
    def mode(self) -> str:
        """``max`` or ``min``: which way :attr:`metric` is better."""
        return self.config.train.mode

    @property
    def early_stopping(self) -> tuple[str, str]:
        """``(metric, mode)`` early stopping watches.

        ``train.early_stopping_metric``, or :attr:`metric` when it is empty; another metric is
        minimised when it is a loss or an error, else maximised.
        """
        from rsray.train.tasks import early_stopping_metric

        return early_stopping_metric(self.config)

    @property
    def train_plan(self) -> DecodePlan:
        """Decode plan of the training split (``data.train_fraction`` applied)."""
        return self.data.train

    @property
    def eval_plan(self) -> DecodePlan:
        """Decode plan of the evaluation splits."""
        return self.data.eval

    @property
    def channels(self) -> dict[str, int]:
        """Raster modality -> channels, in the order the model concatenates them."""
        return self.data.eval.channels

    @property
    def metadata_dim(self) -> int:
        """Length of the ``metadata`` vector (vector modalities); 0 without one."""
        return self.data.eval.metadata_dim

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`rsray.models.create_model` for this run.

        ``modalities`` (:attr:`channels`), ``num_classes``, ``model.params``, and
        ``metadata_dim`` when the shard set has vector modalities.
        """
        kwargs: dict[str, Any] = {"modalities": dict(self.channels),
                                  "num_classes": len(self.classes), **self.config.model.params}
        if self.metadata_dim:
            kwargs["metadata_dim"] = self.metadata_dim
        return kwargs

    def build_model(self) -> Any:
        """The run's model (``model.name`` with :meth:`model_kwargs`), untrained."""
        from rsray.models import create_model

        return create_model(self.config.model.name, **self.model_kwargs())

    def build_task(self) -> Any:
        """The run's :class:`~rsray.train.tasks.Task`: loss, metrics and target extraction."""
        from rsray.train.tasks import build_task

        return build_task(self.config, self.task, list(self.classes), self.exclude_from_mean,
                          dict(self.label_info))

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a checkpoint stores about its run (``meta.json``): enough to build it again."""
        return {"config": self.config.to_dict(), "channels": dict(self.channels),
                "classes": list(self.classes), "task": self.task}


@dataclass(frozen=True)
class WorkerInput:
    """What every Ray Train worker of a run receives (``train_loop_config={"input": ...}``)."""

    run: RunPlan
    augment: dict[str, Any] | None = None
    """The workers augment each training batch with these arguments
    (:attr:`rsray.data.datasets.TrainingData.augment`); ``None`` when Ray Data did or
    augmentation is off."""
    trainer_built: float = 0.0
    """``time.time()`` when the driver built the trainer (the run's start-up cost starts)."""
    streams: dict[str, SplitStream] = field(default_factory=dict)
    """The streamed splits (:attr:`rsray.data.datasets.TrainingData.streams`): a run with one
    worker reads all its passes of each through one long-lived execution
    (:class:`~rsray.data.stream.PassStream`) instead of a new one per epoch."""


__all__ = ["RunPlan", "WorkerInput"]
