"""Multi-label validation metrics (BigEarthNet-MM and SEN12MS) built on torchmetrics.

The metrics are the ones the ViT-fusion thesis reports: average precision (micro and macro),
F2 (micro) and Hamming loss, plus AP per class; and the SEN12MS toolbox's multi-label
definitions (schmitt-muc/SEN12MS ``classification/metrics.py``, which the deep-fusion SEN12MS
paper's OA/AA tables come from): class-wise accuracy ``acc_class/<name>`` = (TP + TN) / N per
class, ``aa`` = their mean, the sample-wise ``oa`` = mean over samples of
|predicted AND true| / |predicted OR true|, ``acc_micro`` = sum(TP + TN) / (N * C), ``f1_micro``
and ``f2_micro``. Because (TP + TN) / N counts true negatives, a rare class (Snow/Ice) scores
near 100 % for every model and AA sits far above OA, as in the paper.

They are ``torchmetrics`` metrics, so under DDP (Ray Train workers) ``compute()`` gathers the
state of every rank before reducing: every
rank gets the same numbers, computed over the whole validation split.

Classes without a positive example
----------------------------------
Average precision is undefined for a class with no positive target in the evaluated data.
torchmetrics 1.9 warns and scores such a class **0**, and its ``average="macro"`` then
includes that 0, which drags the macro AP down for reasons unrelated to the model. Here
instead, ``ap_class/<name>`` is ``NaN`` for such a class and ``ap_macro`` is the mean over the
classes that have at least one positive (``NaN`` if none has). When every class has a positive
(the normal case on a full validation split) ``ap_macro`` is exactly torchmetrics' macro AP.
The positive counts are a summed metric state, so the decision is also made over all ranks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MultilabelAccuracy,
    MultilabelAveragePrecision,
    MultilabelF1Score,
    MultilabelFBetaScore,
    MultilabelHammingDistance,
)

_NO_POSITIVES_WARNING = "No positive samples found in target"


class _PositiveCount(Metric):
    """Number of positive targets per class (summed across DDP ranks)."""

    full_state_update = False
    higher_is_better = None
    is_differentiable = False

    positives: Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.add_state("positives", default=torch.zeros(num_classes), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add the positives of one batch (``preds`` is ignored; kept for the collection API)."""
        del preds
        dims = [0, *range(2, target.ndim)]
        self.positives += (target > 0).sum(dim=dims).to(self.positives.dtype)

    def compute(self) -> Tensor:
        """Return the positive count of every class."""
        return self.positives


class _SampleJaccard(Metric):
    """The SEN12MS toolbox's multi-label OA: mean over samples of |P & T| / |P | T|.

    A sample with neither a true nor a predicted label (the toolbox divides 0 by 0) counts as
    1: nothing to find and nothing claimed. SEN12MS samples always have a true label.
    """

    full_state_update = False

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.add_state("ratio_sum", default=torch.zeros((), dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds`` probabilities ``(N, C)``, ``target`` 0/1 ``(N, C)``."""
        p = preds > self.threshold
        t = target > 0
        inter = (p & t).sum(dim=1).double()
        union = (p | t).sum(dim=1).double()
        ratio = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
        self.ratio_sum += ratio.sum()
        self.count += ratio.numel()

    def compute(self) -> Tensor:
        """The mean ratio (NaN before any update)."""
        return self.ratio_sum / self.count if self.count > 0 else torch.tensor(math.nan)


class MultilabelMetrics:
    """AP, F1/F2, Hamming loss and the SEN12MS toolbox's OA/AA for multi-label classification.

    Example::

        metrics = MultilabelMetrics(19, class_names).to(device)
        for batch in val_loader:
            metrics.update(model(batch), batch["label"])
        values = metrics.compute()  # {"ap_micro": ..., "ap_class/Urban fabric": ...}
        metrics.reset()

    Args:
        num_classes: number of labels ``C``.
        class_names: one name per class, used in the ``ap_class/<name>`` keys; defaults to
            ``class_0 ... class_{C-1}``.
        threshold: probability above which a label counts as predicted (F2, Hamming loss).
        ap_thresholds: ``None`` computes exact AP from every stored prediction (memory grows
            with the split: ``N * C`` floats per rank); an int uses that many equally spaced
            thresholds, constant memory, slightly approximate.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        threshold: float = 0.5,
        ap_thresholds: int | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"MultilabelMetrics.num_classes: {num_classes} must be >= 1")
        names = (
            [f"class_{i}" for i in range(num_classes)]
            if class_names is None
            else [str(n) for n in class_names]
        )
        if len(names) != num_classes:
            raise ValueError(
                f"MultilabelMetrics.class_names: {len(names)} names for {num_classes} classes"
            )
        if len(set(names)) != len(names):
            raise ValueError("MultilabelMetrics.class_names: names must be unique")
        self.num_classes = num_classes
        self.class_names = names
        common = {"num_labels": num_classes}
        self.collection = MetricCollection(
            {
                "ap_micro": MultilabelAveragePrecision(
                    average="micro", thresholds=ap_thresholds, **common
                ),
                "ap_macro": MultilabelAveragePrecision(
                    average="macro", thresholds=ap_thresholds, **common
                ),
                "ap_class": MultilabelAveragePrecision(
                    average=None, thresholds=ap_thresholds, **common
                ),
                "f2_micro": MultilabelFBetaScore(
                    beta=2.0, average="micro", threshold=threshold, **common
                ),
                "hamming_loss": MultilabelHammingDistance(
                    average="micro", threshold=threshold, **common
                ),
                "f1_micro": MultilabelF1Score(average="micro", threshold=threshold, **common),
                "acc_micro": MultilabelAccuracy(average="micro", threshold=threshold, **common),
                "acc_class": MultilabelAccuracy(average=None, threshold=threshold, **common),
                "oa": _SampleJaccard(threshold),
                "positives": _PositiveCount(num_classes),
            }
        )

    @property
    def device(self) -> torch.device:
        """Device the metric states live on."""
        return self.collection.device

    def to(self, device: torch.device | str) -> MultilabelMetrics:
        """Move the metric states to ``device`` (where the logits will be); return self."""
        self.collection = self.collection.to(device)
        return self

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add one batch.

        Args:
            logits: raw model scores ``(N, C)``. The sigmoid is applied here, explicitly:
                torchmetrics' own "apply sigmoid if outside [0, 1]" check is per batch and
                would misread a batch of logits that all happen to lie in ``[0, 1]``.
            target: multi-hot labels ``(N, C)``, any dtype holding 0/1.
        """
        if logits.shape != target.shape or logits.ndim != 2:
            raise ValueError(
                f"MultilabelMetrics.update: expected logits and target of shape (N, "
                f"{self.num_classes}), got {tuple(logits.shape)} and {tuple(target.shape)}"
            )
        probs = torch.sigmoid(logits.detach().float())
        self.collection.update(probs, target.detach().round().long())

    def compute(self) -> dict[str, float]:
        """Reduce over every update since the last reset (and over all DDP ranks).

        Returns:
            ``ap_micro``, ``ap_macro``, ``f2_micro``, ``hamming_loss``, ``f1_micro``,
            ``acc_micro``, ``oa``, ``aa``, one ``ap_class/<name>`` and one
            ``acc_class/<name>`` per class, as Python floats. Classes without a positive target
            get ``NaN`` and are left out of ``ap_macro`` (see the module docstring).
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NO_POSITIVES_WARNING)
            raw = self.collection.compute()
        present = raw["positives"] > 0
        per_class = raw["ap_class"].float()
        per_class = torch.where(present, per_class, torch.full_like(per_class, math.nan))
        if bool(present.all()):
            ap_macro = float(raw["ap_macro"])
        elif bool(present.any()):
            ap_macro = float(per_class[present].mean())
        else:
            ap_macro = math.nan
        out: dict[str, float] = {
            "ap_micro": float(raw["ap_micro"]),
            "ap_macro": ap_macro,
            "f2_micro": float(raw["f2_micro"]),
            "hamming_loss": float(raw["hamming_loss"]),
            "f1_micro": float(raw["f1_micro"]),
            "acc_micro": float(raw["acc_micro"]),
            "oa": float(raw["oa"]),
            "aa": float(raw["acc_class"].float().mean()),
        }
        for name, value in zip(self.class_names, per_class.tolist(), strict=True):
            out[f"ap_class/{name}"] = float(value)
        for name, value in zip(self.class_names, raw["acc_class"].tolist(), strict=True):
            out[f"acc_class/{name}"] = float(value)
        return out

    def reset(self) -> None:
        """Clear all states (call at the start of every evaluation)."""
        self.collection.reset()


__all__ = ["MultilabelMetrics"]
