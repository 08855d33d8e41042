"""Tasks: what a dataset's labels mean for the loss, the metrics and the headline metric.

A shard set's manifest names its task; :func:`build_task` turns it into the pieces the
training loop needs, so the loop itself has no per-task branches:

============== ===================== ===================== ======================
task           target the loss sees  metrics               ``train.metric=auto``
============== ===================== ===================== ======================
multilabel     multi-hot ``(N, K)``  AP micro/macro, F2,   ``val_ap_macro``
                                     Hamming, AP per class
multiclass     class index ``(N,)``  OA, AA, kappa, F1,    ``val_oa``
                                     class-wise accuracy
binary         0/1 ``(N, heads)``    accuracy + ROC AUC    ``val_auc_mean``
                                     per head
segmentation   ``(N, H, W)`` indices IoU per class, mIoU,  ``val_miou``
                                     pixel OA, confusion
regression     standardised floats   RMSE, MAE, R2 per     ``val_r2_mean``
               ``(N, T)``            target and means
============== ===================== ===================== ======================

Regression: the model's ``num_classes`` is the number of targets ``T`` (the manifest's
``classes`` are the target names), so every classification head, unchanged, outputs ``T``
values. The loss (``train.loss``: ``mse``, the default, or ``mae``) compares them with the
targets standardised by the training split's per-target mean and standard deviation, which
``rsray prepare`` records in the manifest (``info.label.target_stats``); the metrics and
``rsray predict`` undo the standardisation, so RMSE / MAE are in the targets' own units.

Which way a metric is better (:func:`metric_mode`): losses, RMSE and MAE are minimised,
everything else (AP, accuracy, AUC, mIoU, R2) maximised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rsray.config import Config
from rsray.errors import ConfigError
from rsray.train.losses import build_loss
from rsray.train.metrics import MultilabelMetrics
from rsray.train.task_metrics import (
    BinaryHeadsMetrics,
    MulticlassMetrics,
    RegressionMetrics,
    SegmentationMetrics,
)

DEFAULT_METRIC = {
    "multilabel": "ap_macro",
    "multiclass": "oa",
    "binary": "auc_mean",
    "segmentation": "miou",
    "regression": "r2_mean",
}

LOWER_IS_BETTER = ("loss", "rmse", "rmse_mean", "mae", "mae_mean")
"""Metric names (after the split prefix, before any ``/<class>``) that are minimised."""


def metric_mode(metric: str) -> str:
    """``min`` for a loss or an error (``val_loss``, ``val_rmse_mean``, ``test_mae/<t>``).

    Everything else (AP, accuracy, AUC, mIoU, R2) is ``max``.
    """
    return "min" if metric.split("/")[0].endswith(LOWER_IS_BETTER) else "max"


TABLE_METRICS = {
    "multilabel": ("ap_micro", "ap_macro", "f2_micro", "loss"),
    "multiclass": ("oa", "aa", "kappa", "loss"),
    "binary": ("acc_mean", "auc_mean", "loss"),
    "segmentation": ("miou", "oa", "loss"),
    "regression": ("r2_mean", "rmse_mean", "mae_mean", "loss"),
}
"""Per task, the metrics a leaderboard shows (prefixed with each evaluation split)."""


def table_metrics(task: str, eval_splits: Sequence[str]) -> list[str]:
    """Leaderboard columns: the task's table metrics for every evaluation split."""
    return [f"{s}_{m}" for s in eval_splits for m in TABLE_METRICS[task]]


@dataclass
class Task:
    """Loss, metrics and target extraction of one task."""

    name: str
    loss: nn.Module
    metrics: Any
    """An object with ``to(device)``, ``update(logits, target)``, ``compute()``, ``reset()``."""
    target_mean: Tensor | None = None
    """Regression: per-target training mean ``(T,)`` the targets are standardised with."""
    target_std: Tensor | None = None
    """Regression: per-target training standard deviation ``(T,)``."""

    def target(self, batch: dict[str, Tensor]) -> Tensor:
        """The tensor the loss and metrics compare logits with."""
        label = batch["label"]
        if self.name == "multiclass":
            return label.argmax(dim=1)
        if self.name == "regression" and self.target_mean is not None:
            assert self.target_std is not None
            return (label.float() - self.target_mean.to(label.device)) / self.target_std.to(
                label.device)
        return label

    def check_output(self, logits: Tensor, target: Tensor, model_name: str) -> None:
        """One clear error when a segmentation model's map is not the label's size.

        Raises:
            ConfigError: naming the model, both sizes and the setting that fixes it.
        """
        if self.name != "segmentation" or logits.shape[-2:] == target.shape[-2:]:
            return
        got, want = tuple(logits.shape[-2:]), tuple(target.shape[-2:])
        raise ConfigError(
            f"model {model_name}: predicts {got[0]} x {got[1]} maps for {want[0]} x {want[1]} "
            f"labels (data.image_size); a series-only model needs model.params.output_size="
            f"{want[-1]} (and crop_size for the label's footprint)")

    def to(self, device: Any) -> Task:
        """Move loss and metric states to ``device``."""
        self.loss = self.loss.to(device)
        self.metrics = self.metrics.to(device)
        if self.target_mean is not None and self.target_std is not None:
            self.target_mean, self.target_std = (self.target_mean.to(device),
                                                 self.target_std.to(device))
        return self


def target_standardisation(label_info: Mapping[str, Any] | None, classes: Sequence[str]
                           ) -> tuple[list[float], list[float]]:
    """Per-target ``(mean, std)`` from a manifest's ``info.label.target_stats``.

    A target whose training standard deviation is 0 (constant) keeps std 1.

    Raises:
        ConfigError: the statistics are missing or do not name every target (a regression shard
            set written before ``target_stats`` existed: prepare it again).
    """
    stats = (label_info or {}).get("target_stats") or {}
    missing = [c for c in classes if c not in stats]
    if missing:
        raise ConfigError(f"regression targets {missing} have no training statistics "
                          "(manifest info.label.target_stats); prepare the shard set again")
    mean = [float(stats[c]["mean"]) for c in classes]
    std = [float(stats[c]["std"]) for c in classes]
    std = [s if math.isfinite(s) and s > 1e-12 else 1.0 for s in std]
    return mean, std


def build_task(cfg: Config, task: str, classes: Sequence[str],
               exclude_from_mean: Sequence[str] = (),
               label_info: Mapping[str, Any] | None = None) -> Task:
    """The :class:`Task` for a manifest's ``task`` and ``classes`` under ``cfg``.

    ``label_info`` is the manifest's ``info.label``; regression needs its ``target_stats``
    (without it the targets are not standardised: mean 0, std 1).
    """
    k = len(classes)
    if task == "regression":
        mean, std = (target_standardisation(label_info, classes) if label_info is not None
                     else ([0.0] * k, [1.0] * k))
        return Task(task, build_loss(cfg.train, task), RegressionMetrics(k, classes, mean, std),
                    torch.tensor(mean), torch.tensor(std))
    if task == "multilabel":
        metrics: Any = MultilabelMetrics(k, classes)
    elif task == "multiclass":
        metrics = MulticlassMetrics(k, classes)
    elif task == "binary":
        metrics = BinaryHeadsMetrics(k, classes)
    elif task == "segmentation":
        metrics = SegmentationMetrics(k, classes, exclude_from_mean)
    else:
        raise ConfigError(f"unknown task {task!r}; rsray knows " + ", ".join(DEFAULT_METRIC))
    return Task(task, build_loss(cfg.train, task), metrics)


def resolve_for_task(cfg: Config, task: str, eval_split: str | None = None) -> Config:
    """Fill ``train.metric``/``train.mode`` when they are ``auto``; check the loss fits.

    The headline metric is taken on the first evaluation split (``data.eval_splits[0]``).
    """
    from rsray.train.losses import resolve_loss_name

    resolve_loss_name(cfg.train, task)
    split = eval_split or cfg.data.eval_splits[0]
    metric = cfg.train.metric
    if metric == "auto":
        metric = f"{split}_{DEFAULT_METRIC[task]}"
    mode = cfg.train.mode
    if mode == "auto":
        mode = metric_mode(metric)
    if metric == cfg.train.metric and mode == cfg.train.mode:
        return cfg
    return cfg.with_overrides({"train.metric": metric, "train.mode": mode})


def early_stopping_metric(cfg: Config) -> tuple[str, str]:
    """``(metric, mode)`` that early stopping watches.

    ``train.early_stopping_metric``, or ``train.metric`` when it is empty; another metric
    than ``train.metric`` is minimised when it is a loss, else maximised.
    """
    metric = cfg.train.early_stopping_metric or cfg.train.metric
    if metric == cfg.train.metric:
        return metric, cfg.train.mode
    return metric, metric_mode(metric)


__all__ = ["DEFAULT_METRIC", "LOWER_IS_BETTER", "TABLE_METRICS", "Task", "build_task",
           "early_stopping_metric", "metric_mode", "resolve_for_task", "table_metrics",
           "target_standardisation"]
