"""Validation metrics of the single-label, binary-head and segmentation tasks (torchmetrics).

Like :class:`rsray.train.metrics.MultilabelMetrics` (multi-label), each class here wraps a
``MetricCollection``: under DDP ``compute()`` gathers every rank's state, so all ranks get the
same numbers over the whole evaluated split, and each returns a flat ``dict[str, float]``.

* :class:`MulticlassMetrics` (single-label scene classification, e.g. SEN12MS with
  ``--label-mode single``): overall accuracy ``oa`` (micro), ``aa`` = the mean of per-class
  recalls (the SEN12MS toolbox's *single-label* ``get_AA``; it is NOT the AA of the SEN12MS
  paper's tables, which is the toolbox's multi-label (TP + TN) / N mean, see
  :class:`rsray.train.metrics.MultilabelMetrics`), Cohen's kappa, macro F1 and
  ``acc_class/<name>`` (here: the recall of that class). A class absent
  from the evaluated data gets ``NaN`` and is left out of ``aa``.
* :class:`BinaryHeadsMetrics` (GLOBE snow/ice and leaves-on-trees): per head accuracy and ROC
  AUC (``acc/<head>``, ``auc/<head>``) and their means ``acc_mean``/``auc_mean``. AUC is ``NaN``
  for a head whose evaluated targets are all one value.
* :class:`RegressionMetrics` (continuous targets, e.g. the covariates regression twin): per
  target RMSE, MAE and R2 (``rmse/<target>``, ``mae/<target>``, ``r2/<target>``) and their
  means over targets ``rmse_mean``, ``mae_mean``, ``r2_mean``. The model predicts standardised
  targets (``(y - mean) / std`` with the training split's statistics, see
  :mod:`rsray.train.tasks`); the metrics undo that, so RMSE and MAE are in each target's own
  units. R2 is ``NaN`` for a target that is constant over the evaluated split.
* :class:`SegmentationMetrics` (FLAIR-2): per-class IoU ``iou/<name>``, ``miou`` over the
  classes not excluded (FLAIR-2 leaves out ``other``) and present in prediction or target,
  pixel accuracy ``oa``, and the full confusion matrix via :meth:`confusion_matrix`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from rsray.train.metrics import _PositiveCount


def _names(num_classes: int, names: Sequence[str] | None, what: str) -> list[str]:
    out = [f"class_{i}" for i in range(num_classes)] if names is None else [str(n) for n in names]
    if len(out) != num_classes:
        raise ValueError(f"{what}: {len(out)} names for {num_classes} classes")
    return out


class _Collection:
    """Shared device handling and reset for the wrappers below."""

    collection: MetricCollection

    def to(self, device: torch.device | str) -> _Collection:
        """Move the metric states to ``device``; return self."""
        self.collection = self.collection.to(device)
        return self

    def reset(self) -> None:
        """Clear all states."""
        self.collection.reset()


class MulticlassMetrics(_Collection):
    """OA, mean per-class recall (``aa``), kappa, macro F1 and per-class recall (single-label)."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = _names(num_classes, class_names, "MulticlassMetrics")
        common = {"num_classes": num_classes}
        self.collection = MetricCollection({
            "oa": MulticlassAccuracy(average="micro", **common),
            "acc_class": MulticlassAccuracy(average=None, **common),
            "kappa": MulticlassCohenKappa(**common),
            "f1_macro": MulticlassF1Score(average="macro", **common),
            "support": _PositiveCount(num_classes),
        })

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        """``logits`` ``(N, K)``, ``target`` ``(N,)`` class indices."""
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ValueError(f"MulticlassMetrics.update: logits {tuple(logits.shape)} and "
                             f"target {tuple(target.shape)}; expected (N, K) and (N,)")
        target = target.long()
        scores = logits.detach().float()
        for name in ("oa", "acc_class", "kappa", "f1_macro"):
            self.collection[name].update(scores, target)
        onehot = torch.nn.functional.one_hot(target, self.num_classes)
        self.collection["support"].update(onehot, onehot)

    def compute(self) -> dict[str, float]:
        """``oa``, ``aa``, ``kappa``, ``f1_macro`` and ``acc_class/<name>``."""
        raw = self.collection.compute()
        present = raw["support"] > 0
        per_class = torch.where(present, raw["acc_class"].float(),
                                torch.full_like(raw["acc_class"].float(), math.nan))
        aa = float(per_class[present].mean()) if bool(present.any()) else math.nan
        out = {"oa": float(raw["oa"]), "aa": aa, "kappa": float(raw["kappa"]),
               "f1_macro": float(raw["f1_macro"])}
        for name, value in zip(self.class_names, per_class.tolist(), strict=True):
            out[f"acc_class/{name}"] = float(value)
        return out


class BinaryHeadsMetrics(_Collection):
    """Accuracy and ROC AUC per binary head (several yes/no labels predicted at once)."""

    def __init__(self, num_heads: int, head_names: Sequence[str] | None = None,
                 threshold: float = 0.5) -> None:
        self.num_heads = num_heads
        self.head_names = _names(num_heads, head_names, "BinaryHeadsMetrics")
        metrics: dict[str, Any] = {"positives": _PositiveCount(num_heads),
                                   "count": _PositiveCount(num_heads)}
        for i in range(num_heads):  # one binary metric per head (works for a single head too)
            metrics[f"acc_{i}"] = BinaryAccuracy(threshold=threshold)
            metrics[f"auc_{i}"] = BinaryAUROC()
        self.collection = MetricCollection(metrics)

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        """``logits`` and 0/1 ``target`` of shape ``(N, heads)``."""
        if logits.shape != target.shape or logits.ndim != 2:
            raise ValueError(f"BinaryHeadsMetrics.update: logits {tuple(logits.shape)} and "
                             f"target {tuple(target.shape)} must both be (N, heads)")
        probs = torch.sigmoid(logits.detach().float())
        t = target.detach().round().long()
        for i in range(self.num_heads):
            self.collection[f"acc_{i}"].update(probs[:, i], t[:, i])
            self.collection[f"auc_{i}"].update(probs[:, i], t[:, i])
        self.collection["positives"].update(probs, t)
        self.collection["count"].update(probs, torch.ones_like(t))

    def compute(self) -> dict[str, float]:
        """``acc/<head>``, ``auc/<head>``, ``acc_mean``, ``auc_mean``."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = self.collection.compute()
        pos, cnt = raw["positives"], raw["count"]
        both = (pos > 0) & (pos < cnt)
        auc_raw = torch.stack([raw[f"auc_{i}"].float() for i in range(self.num_heads)])
        auc = torch.where(both, auc_raw, torch.full_like(auc_raw, math.nan))
        acc = torch.stack([raw[f"acc_{i}"].float() for i in range(self.num_heads)])
        out = {"acc_mean": float(acc.mean()),
               "auc_mean": float(auc[both].mean()) if bool(both.any()) else math.nan}
        for i, name in enumerate(self.head_names):
            out[f"acc/{name}"] = float(acc[i])
            out[f"auc/{name}"] = float(auc[i])
        return out


class RegressionMetrics(_Collection):
    """RMSE, MAE and R2 per target and averaged over targets (in the targets' own units).

    Args:
        num_targets: ``T``, the number of values predicted per sample.
        target_names: one name per target (the ``<name>`` of the per-target keys).
        mean: per-target mean the model's outputs and the targets were standardised with.
        std: per-target standard deviation of that standardisation (``> 0``).
    """

    def __init__(self, num_targets: int, target_names: Sequence[str] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                 ) -> None:
        self.num_targets = num_targets
        self.target_names = _names(num_targets, target_names, "RegressionMetrics")
        self.mean = torch.tensor(list(mean) if mean is not None else [0.0] * num_targets)
        self.std = torch.tensor(list(std) if std is not None else [1.0] * num_targets)
        if self.mean.shape != (num_targets,) or self.std.shape != (num_targets,):
            raise ValueError(f"RegressionMetrics: mean/std need {num_targets} values each")
        if not bool(torch.isfinite(self.mean).all() & (self.std > 0).all()):
            raise ValueError(f"RegressionMetrics: mean {self.mean.tolist()} must be finite and "
                             f"std {self.std.tolist()} positive")
        self.collection = MetricCollection({
            "rmse": MeanSquaredError(squared=False, num_outputs=num_targets),
            "mae": MeanAbsoluteError(num_outputs=num_targets),
            "r2": R2Score(multioutput="raw_values"),
        })

    def to(self, device: torch.device | str) -> RegressionMetrics:
        """Move the metric states and the standardisation to ``device``; return self."""
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        self.collection = self.collection.to(device)
        return self

    def units(self, x: Tensor) -> Tensor:
        """Standardised values ``(N, T)`` -> the targets' own units."""
        return x.float() * self.std.to(x.device) + self.mean.to(x.device)

    @torch.no_grad()
    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds`` and ``target``: standardised values ``(N, T)``."""
        if preds.shape != target.shape or preds.ndim != 2 or preds.shape[1] != self.num_targets:
            raise ValueError(f"RegressionMetrics.update: preds {tuple(preds.shape)} and "
                             f"target {tuple(target.shape)}; expected (N, {self.num_targets})")
        self.collection.update(self.units(preds.detach()), self.units(target.detach()))

    def compute(self) -> dict[str, float]:
        """``rmse_mean``, ``mae_mean``, ``r2_mean`` and per target ``rmse/``, ``mae/``, ``r2/``."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # R2 of a constant target: NaN, handled below
            raw = {k: v.float().reshape(-1) for k, v in self.collection.compute().items()}
        r2 = raw["r2"]
        out = {"rmse_mean": float(raw["rmse"].mean()), "mae_mean": float(raw["mae"].mean()),
               "r2_mean": float(r2[torch.isfinite(r2)].mean()) if bool(torch.isfinite(r2).any())
               else math.nan}
        for i, name in enumerate(self.target_names):
            out[f"rmse/{name}"] = float(raw["rmse"][i])
            out[f"mae/{name}"] = float(raw["mae"][i])
            out[f"r2/{name}"] = float(r2[i]) if bool(torch.isfinite(r2[i])) else math.nan
        return out


class SegmentationMetrics(_Collection):
    """Per-class IoU, mIoU (excluding some classes), pixel accuracy and the confusion matrix.

    Everything derives from one summed confusion matrix, so it is exact over the whole split
    and cheap to sync (``K x K`` counts per rank).
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 exclude_from_mean: Sequence[str] = ()) -> None:
        self.num_classes = num_classes
        self.class_names = _names(num_classes, class_names, "SegmentationMetrics")
        unknown = set(exclude_from_mean) - set(self.class_names)
        if unknown:
            raise ValueError(f"SegmentationMetrics.exclude_from_mean: unknown {sorted(unknown)}")
        self.included = torch.tensor([n not in set(exclude_from_mean) for n in self.class_names])
        self.collection = MetricCollection({
            "confmat": MulticlassConfusionMatrix(num_classes=num_classes),
        })

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        """``logits`` ``(N, K, H, W)``, ``target`` ``(N, H, W)`` class indices."""
        if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(f"SegmentationMetrics.update: logits {tuple(logits.shape)} and "
                             f"target {tuple(target.shape)}; expected (N, K, H, W), (N, H, W)")
        self.collection["confmat"].update(logits.detach().argmax(dim=1), target.long())

    def confusion_matrix(self) -> list[list[int]]:
        """Rows = true class, columns = predicted class, pixel counts."""
        return self.collection["confmat"].compute().long().tolist()

    def compute(self) -> dict[str, float]:
        """``oa``, ``miou``, ``iou/<name>``."""
        cm = self.collection["confmat"].compute().double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
        use = present & self.included.to(present.device)
        out = {"oa": float(tp.sum() / cm.sum().clamp_min(1)),
               "miou": float(iou[use].mean()) if bool(use.any()) else math.nan}
        for name, value in zip(self.class_names, iou.tolist(), strict=True):
            out[f"iou/{name}"] = float(value)
        return out


__all__ = ["BinaryHeadsMetrics", "MulticlassMetrics", "RegressionMetrics", "SegmentationMetrics"]
