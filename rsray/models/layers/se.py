"""Squeeze-and-Excitation (Hu et al., 2018) with a configurable reduction ratio.

``s = sigmoid(W2 · relu(W1 · GAP(x)))``, ``y = x * s``: a global-average-pooled channel
descriptor goes through a bottleneck of ``max(channels // reduction, min_hidden)`` units and
gates every channel. The progressive fusion study compares reduction ratios 16 and 8; Ray Tune
samples 4/8/16/32 through the models' ``reduction`` argument. The floor ``min_hidden``
defaults to 1 (Hu et al.'s plain ``C / r``), so every ratio gives a different bottleneck on
every stage with at least ``32`` channels; a floor of 8 (an earlier default) made r = 8, 16
and 32 build the same network on 64-channel stages, and a Tune search over r sample one
model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rsray.errors import ConfigError

__all__ = ["SqueezeExcite", "se_hidden_width"]


def se_hidden_width(channels: int, reduction: int, min_hidden: int = 1) -> int:
    """Width of the SE bottleneck: ``max(channels // reduction, min_hidden)``.

    Args:
        channels: channels of the feature map being recalibrated.
        reduction: the reduction ratio ``r`` of the paper (4, 8, 16, 32 are typical).
        min_hidden: the bottleneck never gets narrower than this (default 1: never zero).

    Raises:
        ConfigError: ``channels``, ``reduction`` or ``min_hidden`` is below 1.
    """
    if channels < 1:
        raise ConfigError(f"SqueezeExcite: channels must be >= 1, got {channels}")
    if reduction < 1:
        raise ConfigError(f"reduction: the SE reduction ratio must be >= 1, got {reduction}")
    if min_hidden < 1:
        raise ConfigError(f"se_min_hidden: must be >= 1, got {min_hidden}")
    return max(channels // reduction, min_hidden)


class SqueezeExcite(nn.Module):
    """Channel recalibration by squeeze (global average pool) and excitation (gated MLP).

    Args:
        channels: input and output channels.
        reduction: reduction ratio ``r``; the bottleneck has ``channels // r`` units.
        min_hidden: lower bound of the bottleneck width.
        act_layer: activation inside the bottleneck (ReLU in the paper).
        gate_layer: gating non-linearity (sigmoid in the paper).

    Attributes:
        hidden: the bottleneck width actually used.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        min_hidden: int = 1,
        act_layer: type[nn.Module] = nn.ReLU,
        gate_layer: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.reduction = reduction
        self.hidden = se_hidden_width(channels, reduction, min_hidden)
        self.fc1 = nn.Conv2d(channels, self.hidden, kernel_size=1, bias=True)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(self.hidden, channels, kernel_size=1, bias=True)
        self.gate = gate_layer()

    def forward(self, x: Tensor) -> Tensor:
        """Recalibrate ``x`` (B, C, H, W) channel by channel; same shape out."""
        s = torch.mean(x, dim=(2, 3), keepdim=True)
        s = self.fc2(self.act(self.fc1(s)))
        return x * self.gate(s)

    def extra_repr(self) -> str:
        """Show the widths in ``print(model)``."""
        return f"channels={self.channels}, reduction={self.reduction}, hidden={self.hidden}"
