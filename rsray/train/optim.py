"""Optimisers and per-epoch learning-rate schedules from :class:`~rsray.config.OptimConfig`.

Weight decay is applied only to weight matrices and convolution kernels. Biases, the
parameters of normalisation layers (BatchNorm, LayerNorm, GroupNorm, ...), every other 1-D
parameter (e.g. layer-scale gammas) and whatever the model lists in ``no_weight_decay()``
(timm ViTs: ``pos_embed``, ``cls_token``) go into a second parameter group with
``weight_decay=0`` — decaying them only shrinks scales and offsets, which hurts accuracy. This
is timm's ``param_groups_weight_decay`` rule. Adam and RMSprop use coupled L2 (the progressive
fusion study's "L2"); AdamW decoupled decay. ``optim.metadata_weight_decay`` gives the weights
of the metadata layers (any module named ``meta`` or ``meta_*``) their own penalty — the GLOBE
study's "L2 regularizer was applied to metadata".

Every scheduler here is meant to be stepped **once per epoch**, after the epoch's optimiser
steps (``scheduler.step()`` at the end of the epoch loop).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, StepLR

from rsray.config import OptimConfig
from rsray.errors import ConfigError
from rsray.train.checkpoint import unwrap_model

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


def is_metadata_param(name: str) -> bool:
    """Whether parameter ``name`` belongs to a metadata layer (a module ``meta`` / ``meta_*``)."""
    return any(part == "meta" or part.startswith("meta_") for part in name.split(".")[:-1])


def param_groups(
    model: nn.Module, weight_decay: float, metadata_weight_decay: float | None = None
) -> list[dict[str, object]]:
    """Split trainable parameters into decayed, metadata-decayed and non-decayed groups.

    Args:
        model: the model; DDP / ``torch.compile`` wrappers are looked through.
        weight_decay: decay of the first group.
        metadata_weight_decay: decay of the weights of metadata layers
            (:func:`is_metadata_param`); ``None``: they are in the first group.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay},
        {"params": metadata, "weight_decay": metadata_weight_decay},
        {"params": not_decayed, "weight_decay": 0.0}]``, empty groups left out.
    """
    inner = unwrap_model(model)  # names without DDP "module." / compile "_orig_mod."
    skip_names: set[str] = set()
    if hasattr(inner, "no_weight_decay"):
        skip_names = set(inner.no_weight_decay())

    no_decay_ids: set[int] = set()
    for module in inner.modules():
        if isinstance(module, _NORM_TYPES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))

    decay: list[nn.Parameter] = []
    meta: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for name, param in inner.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if (
            param.ndim <= 1
            or name.endswith(".bias")
            or id(param) in no_decay_ids
            or name in skip_names
        ):
            no_decay.append(param)
        elif metadata_weight_decay is not None and is_metadata_param(name):
            meta.append(param)
        else:
            decay.append(param)
    groups: list[dict[str, object]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if meta:
        groups.append({"params": meta, "weight_decay": float(metadata_weight_decay or 0.0)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Build the optimiser named by ``optim.name``.

    Args:
        model: the model whose trainable parameters are optimised.
        cfg: the ``optim`` section (``name``, ``lr``, ``weight_decay``,
            ``metadata_weight_decay``).

    Returns:
        ``Adam`` / ``AdamW`` / ``RMSprop`` over the parameter groups of :func:`param_groups`
        (no decay on biases and normalisation parameters).

    Raises:
        ConfigError: for an unknown optimiser or a model without trainable parameters.
    """
    groups = param_groups(model, cfg.weight_decay, cfg.metadata_weight_decay)
    if not groups:
        raise ConfigError("optim: the model has no trainable parameters")
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr)
    raise ConfigError(
        f"optim.name: {cfg.name!r} is not allowed; choose one of 'adam', 'adamw', 'rmsprop'"
    )


class TriangularLR:
    """Per-epoch triangular cyclic factor for :class:`~torch.optim.lr_scheduler.LambdaLR`.

    The factor starts at ``min_ratio`` (epoch 0), rises linearly to 1 at epoch
    ``half_cycle``, falls back to ``min_ratio`` at ``2 * half_cycle``, and repeats — torch's
    ``CyclicLR(mode="triangular")`` formula, but counted in epochs instead of optimiser steps
    and without momentum cycling (which ``CyclicLR`` needs switched off for Adam).
    A callable object rather than a lambda so the scheduler's state dict and pickling work.

    Args:
        min_ratio: lowest factor, in ``(0, 1]``.
        half_cycle: epochs from the lowest to the highest LR, ``>= 1`` (may be fractional:
            2.5 is one full cycle every 5 epochs).
    """

    def __init__(self, min_ratio: float, half_cycle: float) -> None:
        self.min_ratio = float(min_ratio)
        self.half_cycle = float(half_cycle)

    def __call__(self, epoch: int) -> float:
        """Return the LR factor for ``epoch`` (0-based)."""
        cycle = math.floor(1 + epoch / (2 * self.half_cycle))
        x = abs(epoch / self.half_cycle - 2 * cycle + 1)
        return self.min_ratio + (1.0 - self.min_ratio) * max(0.0, 1.0 - x)


class PolyLR:
    """Per-epoch polynomial decay factor for :class:`~torch.optim.lr_scheduler.LambdaLR`.

    ``lr_e = (lr - end_lr) * (1 - e / last) ** power + end_lr`` (Keras' ``PolynomialDecay``),
    so epoch 0 trains at ``lr`` and epoch ``last`` (the final one) at ``end_lr``.

    Args:
        lr: the peak LR (``optim.lr``).
        end_lr: the final LR.
        power: the polynomial's power.
        last: the epoch that reaches ``end_lr`` (``max_epochs - 1``), ``>= 1``.
    """

    def __init__(self, lr: float, end_lr: float, power: float, last: int) -> None:
        self.end_ratio = float(end_lr) / float(lr)
        self.power = float(power)
        self.last = max(int(last), 1)

    def __call__(self, epoch: int) -> float:
        """Return the LR factor for ``epoch`` (0-based)."""
        frac = 1.0 - min(epoch, self.last) / self.last
        return (1.0 - self.end_ratio) * frac**self.power + self.end_ratio


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: OptimConfig,
    max_epochs: int,
    steps_per_epoch: int | None = None,
) -> LRScheduler | None:
    """Build the per-epoch LR schedule named by ``optim.scheduler``.

    Call ``scheduler.step()`` once at the end of every epoch. Epoch ``e`` (0-based) trains with:

    - ``cosine``: ``lr * (1 + cos(pi * e / max_epochs)) / 2`` (``CosineAnnealingLR``,
      ``T_max=max_epochs``, down to 0 after the last epoch);
    - ``step``: ``lr * gamma ** (e // step_size)`` (``StepLR``);
    - ``cyclic``: triangular between ``lr * cyclic_min_ratio`` (epoch 0) and ``lr``, one full
      cycle every ``cycle_length`` epochs (0: ``2 * step_size``) (:class:`TriangularLR`);
    - ``poly``: ``(lr - poly_end_lr) * (1 - e / (max_epochs - 1)) ** poly_power + poly_end_lr``
      (:class:`PolyLR`; LF-DLM's decay from 1e-4 to 1e-7);
    - ``none``: no scheduler, ``None`` is returned.

    Args:
        optimizer: the optimiser whose groups' ``lr`` is scheduled.
        cfg: the ``optim`` section.
        max_epochs: planned number of epochs (``train.max_epochs``).
        steps_per_epoch: accepted for a future per-step schedule (warm-up); unused now.

    Returns:
        The scheduler, or ``None`` for ``none``.

    Raises:
        ConfigError: for an unknown schedule or ``max_epochs < 1``.
    """
    del steps_per_epoch
    if max_epochs < 1:
        raise ConfigError(f"train.max_epochs: {max_epochs} must be >= 1 to build a schedule")
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=0.0)
    if cfg.scheduler == "step":
        return StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "cyclic":
        period = cfg.cycle_length or 2 * cfg.step_size
        return LambdaLR(optimizer, lr_lambda=TriangularLR(cfg.cyclic_min_ratio, period / 2))
    if cfg.scheduler == "poly":
        poly = PolyLR(cfg.lr, cfg.poly_end_lr, cfg.poly_power, max_epochs - 1)
        return LambdaLR(optimizer, lr_lambda=poly)
    raise ConfigError(
        f"optim.scheduler: {cfg.scheduler!r} is not allowed; choose one of "
        "'none', 'cosine', 'step', 'cyclic', 'poly'"
    )


__all__ = [
    "PolyLR",
    "TriangularLR",
    "build_optimizer",
    "build_scheduler",
    "is_metadata_param",
    "param_groups",
]
