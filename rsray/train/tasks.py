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
============== ===================== ===================== ======================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from rsray.config import Config
from rsray.errors import ConfigError
from rsray.train.losses import build_loss
from rsray.train.metrics import MultilabelMetrics
from rsray.train.task_metrics import BinaryHeadsMetrics, MulticlassMetrics, SegmentationMetrics

DEFAULT_METRIC = {
    "multilabel": "ap_macro",
    "multiclass": "oa",
    "binary": "auc_mean",
    "segmentation": "miou",
}


TABLE_METRICS = {
    "multilabel": ("ap_micro", "ap_macro", "f2_micro", "loss"),
    "multiclass": ("oa", "aa", "kappa", "loss"),
    "binary": ("acc_mean", "auc_mean", "loss"),
    "segmentation": ("miou", "oa", "loss"),
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

    def target(self, batch: dict[str, Tensor]) -> Tensor:
        """The tensor the loss and metrics compare logits with."""
        label = batch["label"]
        if self.name == "multiclass":
            return label.argmax(dim=1)
        return label

    def to(self, device: Any) -> Task:
        """Move loss and metric states to ``device``."""
        self.loss = self.loss.to(device)
        self.metrics = self.metrics.to(device)
        return self


def build_task(cfg: Config, task: str, classes: Sequence[str],
               exclude_from_mean: Sequence[str] = ()) -> Task:
    """The :class:`Task` for a manifest's ``task`` and ``classes`` under ``cfg``."""
    k = len(classes)
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
        mode = "min" if metric.endswith("loss") else "max"
    if metric == cfg.train.metric and mode == cfg.train.mode:
        return cfg
    return cfg.with_overrides({"train.metric": metric, "train.mode": mode})


__all__ = ["DEFAULT_METRIC", "TABLE_METRICS", "Task", "build_task", "resolve_for_task",
           "table_metrics"]
