"""Training losses: weighted BCE, soft Dice, combined loss, cross-entropy (+ Dice), MSE / MAE.

BCE, Dice and the combined loss serve multi-label and binary tasks; cross-entropy (+ multi-class
Dice) serves single-label classification and segmentation; mean squared error (the covariates
paper's regression loss, the default) or mean absolute error serves regression, on targets
standardised with the training split's statistics (see :mod:`rsray.train.tasks`).

The progressive fusion study (GLOBE / LULC) trains with a *combined loss*::

    CL = alpha * L_m-bce + (1 - alpha) * Dice
    L_m-bce = -1/N * sum_i [beta * y_i * log(p_i) + (1 - beta) * (1 - y_i) * log(1 - p_i)]

Every loss here takes raw **logits** of shape ``(N, C)`` or ``(N, C, *spatial)`` and a multi-hot
target of the same shape (any dtype: bool, int or float). They compute in float32 even under
bf16 autocast, and the BCE term uses ``logsigmoid`` so that logits of any magnitude give finite
values and gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsray.config import TrainConfig
from rsray.errors import ConfigError


def _check_shapes(logits: Tensor, target: Tensor) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"loss: logits shape {tuple(logits.shape)} and target shape "
            f"{tuple(target.shape)} differ"
        )
    if logits.ndim < 2:
        raise ValueError(
            f"loss: expected logits of shape (N, C) or (N, C, *spatial), got {tuple(logits.shape)}"
        )


class WeightedBCEWithLogits(nn.Module):
    """Class-balanced binary cross-entropy on logits (the paper's ``L_m-bce``).

    ``loss = -mean(beta * y * log(sigmoid(x)) + (1 - beta) * (1 - y) * log(1 - sigmoid(x)))``,
    averaged over every element (batch, classes and pixels). ``log(sigmoid(x))`` and
    ``log(1 - sigmoid(x)) = log(sigmoid(-x))`` are computed with ``F.logsigmoid``, which is exact
    and finite for logits of any size. With ``beta = 0.5`` the loss is exactly half the standard
    BCE; ``beta > 0.5`` weights positives more.

    Args:
        beta: weight of the positive term, in ``[0, 1]``.
    """

    def __init__(self, beta: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ConfigError(f"WeightedBCEWithLogits.beta: {beta!r} is outside [0, 1]")
        self.beta = float(beta)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: raw scores, ``(N, C)`` or ``(N, C, *spatial)``.
            target: multi-hot labels (or soft labels in ``[0, 1]``) of the same shape.

        Returns:
            A scalar tensor.
        """
        _check_shapes(logits, target)
        x = logits.float()
        y = target.to(x.dtype)
        pos = self.beta * y * F.logsigmoid(x)
        neg = (1.0 - self.beta) * (1.0 - y) * F.logsigmoid(-x)
        return -(pos + neg).mean()

    def extra_repr(self) -> str:
        """Show beta in ``print(module)``."""
        return f"beta={self.beta}"


class SoftDiceLoss(nn.Module):
    """Multi-label soft Dice loss on sigmoid probabilities, averaged over classes.

    For each class ``c`` the sums run over the batch and any spatial dimensions::

        dice_c = (2 * sum(p * y) + smooth) / (sum(p) + sum(y) + smooth)
        loss   = 1 - mean_c(dice_c)

    so the loss lies in ``[0, 1]``. The ``smooth`` term (the paper's ``+1``) keeps a class that
    is absent from the batch well defined: if the model also predicts ``p ~ 0`` for it, its dice
    is ``~1`` (no loss), and predicting it anyway is penalised. With ``smooth = 0`` such a class
    contributes a constant 1 with zero gradient (the denominator is clamped, never NaN).

    Note:
        The paper writes Dice element-wise, ``1 - (2yp + 1) / (y + p + 1)``. Here the sums are
        pooled per class over the batch ("batch Dice"), the usual multi-label/segmentation form;
        the two coincide for a batch holding one element per class.

    Args:
        smooth: additive smoothing in numerator and denominator, ``>= 0``.
        eps: floor of the denominator.
    """

    def __init__(self, smooth: float = 1.0, eps: float = 1e-7) -> None:
        super().__init__()
        if smooth < 0:
            raise ConfigError(f"SoftDiceLoss.smooth: {smooth!r} must be >= 0")
        self.smooth = float(smooth)
        self.eps = float(eps)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: raw scores, ``(N, C)`` or ``(N, C, *spatial)``.
            target: multi-hot labels of the same shape.

        Returns:
            A scalar tensor in ``[0, 1]``.
        """
        _check_shapes(logits, target)
        p = torch.sigmoid(logits.float())
        y = target.to(p.dtype)
        dims = [0, *range(2, p.ndim)]  # everything but the class dimension
        intersection = (p * y).sum(dim=dims)
        denominator = p.sum(dim=dims) + y.sum(dim=dims)
        dice = (2.0 * intersection + self.smooth) / (denominator + self.smooth).clamp_min(self.eps)
        return 1.0 - dice.mean()

    def extra_repr(self) -> str:
        """Show smooth in ``print(module)``."""
        return f"smooth={self.smooth}"


class CombinedLoss(nn.Module):
    """``alpha * WeightedBCEWithLogits(beta) + (1 - alpha) * SoftDiceLoss(smooth)``.

    Args:
        alpha: weight of the BCE term, in ``[0, 1]`` (1: BCE only, 0: Dice only).
        beta: positive-class weight of the BCE term, in ``[0, 1]``.
        smooth: Dice smoothing.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"CombinedLoss.alpha: {alpha!r} is outside [0, 1]")
        self.alpha = float(alpha)
        self.bce = WeightedBCEWithLogits(beta)
        self.dice = SoftDiceLoss(smooth)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: raw scores, ``(N, C)`` or ``(N, C, *spatial)``.
            target: multi-hot labels of the same shape.

        Returns:
            A scalar tensor.
        """
        return self.alpha * self.bce(logits, target) + (1.0 - self.alpha) * self.dice(
            logits, target
        )

    def extra_repr(self) -> str:
        """Show alpha in ``print(module)``."""
        return f"alpha={self.alpha}"


class _BCEWithLogits(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss`` that accepts integer/bool multi-hot targets."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Cast the target to the logits' dtype, then apply the standard BCE with logits."""
        return super().forward(input, target.to(input.dtype))


class MulticlassDiceLoss(nn.Module):
    """Soft Dice on softmax probabilities against one-hot class indices (segmentation).

    Per class ``c``: ``1 - (2 * sum p_c * y_c + smooth) / (sum p_c + sum y_c + smooth)``, sums
    over the batch and all pixels; the loss is the mean over classes.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = float(smooth)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits`` ``(N, K, *spatial)``, ``target`` ``(N, *spatial)`` class indices."""
        if logits.ndim != target.ndim + 1 or logits.shape[2:] != target.shape[1:]:
            raise ValueError(f"dice: logits {tuple(logits.shape)} do not match class-index "
                             f"target {tuple(target.shape)}")
        p = torch.softmax(logits.float(), dim=1)
        y = F.one_hot(target.long(), num_classes=logits.shape[1]).movedim(-1, 1).to(p.dtype)
        dims = [0, *range(2, p.ndim)]
        intersection = (p * y).sum(dim=dims)
        denominator = p.sum(dim=dims) + y.sum(dim=dims)
        return 1.0 - ((2.0 * intersection + self.smooth) / (denominator + self.smooth)).mean()


class CrossEntropyDice(nn.Module):
    """``alpha * CrossEntropy + (1 - alpha) * MulticlassDice`` (alpha = 1: plain CE).

    Takes logits ``(N, K)`` or ``(N, K, H, W)`` and class indices ``(N,)`` or ``(N, H, W)``.
    """

    def __init__(self, alpha: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"CrossEntropyDice.alpha: {alpha!r} is outside [0, 1]")
        self.alpha = float(alpha)
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.dice = MulticlassDiceLoss()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss in float32."""
        logits = logits.float()
        loss = self.alpha * self.ce(logits, target.long())
        if self.alpha < 1.0:
            loss = loss + (1.0 - self.alpha) * self.dice(logits, target)
        return loss

    def extra_repr(self) -> str:
        """Show alpha in ``print(module)``."""
        return f"alpha={self.alpha}"


class RegressionLoss(nn.Module):
    """Mean squared (``mse``) or absolute (``mae``) error over every sample and target.

    Takes predictions and targets of shape ``(N, T)``, computes in float32 (also under bf16
    autocast). With standardised targets each target weighs the same whatever its units.
    """

    def __init__(self, kind: str = "mse") -> None:
        super().__init__()
        if kind not in ("mse", "mae"):
            raise ConfigError(f"RegressionLoss.kind: {kind!r} is not 'mse' or 'mae'")
        self.kind = kind

    def forward(self, preds: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (a scalar)."""
        _check_shapes(preds, target)
        fn = F.mse_loss if self.kind == "mse" else F.l1_loss
        return fn(preds.float(), target.float())

    def extra_repr(self) -> str:
        """Show the kind in ``print(module)``."""
        return f"kind={self.kind}"


LOSSES_BY_TASK = {
    "multilabel": ("bce", "combined"),
    "binary": ("bce", "combined"),
    "multiclass": ("ce", "ce_dice"),
    "segmentation": ("ce_dice", "ce"),
    "regression": ("mse", "mae"),
}
"""Losses each task accepts; the first is what ``train.loss=auto`` picks."""


def resolve_loss_name(train_cfg: TrainConfig, task: str = "multilabel") -> str:
    """``train.loss`` for ``task`` (``auto`` -> the task's default); ConfigError if unfit."""
    allowed = LOSSES_BY_TASK[task]
    name = allowed[0] if train_cfg.loss == "auto" else train_cfg.loss
    if name not in allowed:
        raise ConfigError(f"train.loss: {name!r} does not fit a {task} dataset; choose "
                          + " or ".join(repr(a) for a in ("auto", *allowed)))
    return name


def build_loss(train_cfg: TrainConfig, task: str = "multilabel") -> nn.Module:
    """Build the training loss named by ``train.loss`` for ``task``.

    Args:
        train_cfg: the ``train`` section; ``loss``, ``loss_alpha`` and ``loss_beta`` are read.
        task: ``multilabel``/``binary`` (multi-hot targets) or ``multiclass``/``segmentation``
            (class-index targets).

    Returns:
        ``bce``: an ``nn.BCEWithLogitsLoss`` (mean over elements) that also accepts integer
        targets; ``combined``: :class:`CombinedLoss` ``(loss_alpha, loss_beta)``; ``ce``:
        cross-entropy; ``ce_dice``: :class:`CrossEntropyDice` with ``loss_alpha`` (the
        segmentation default, alpha 0.5 = CE + Dice equally); ``mse`` / ``mae``:
        :class:`RegressionLoss` (regression; ``mse`` is the default).

    Raises:
        ConfigError: for a loss that does not fit the task.
    """
    name = resolve_loss_name(train_cfg, task)
    if name == "bce":
        return _BCEWithLogits()
    if name == "combined":
        return CombinedLoss(alpha=train_cfg.loss_alpha, beta=train_cfg.loss_beta)
    if name == "ce":
        return CrossEntropyDice(alpha=1.0)
    if name in ("mse", "mae"):
        return RegressionLoss(name)
    return CrossEntropyDice(alpha=train_cfg.loss_alpha)


__all__ = ["CombinedLoss", "CrossEntropyDice", "MulticlassDiceLoss", "RegressionLoss",
           "SoftDiceLoss",
           "WeightedBCEWithLogits", "build_loss", "resolve_loss_name"]
