"""Backprojective connection: decoder features fed back into an encoder stage input.

In the progressive fusion study's encoder-decoder (section 3.2.1), "after each decoder stage,
the processed feature maps are sent back to specific encoder layers", giving early layers a
preview of what the deeper layers learned. :class:`BackProjection` is one such connection::

    decoder features (B, C_dec, h, w)
        └─ 1x1 conv → BN → resize to (H, W) ──►  (B, C_enc, H, W), added to the encoder input

The projection runs at the decoder resolution and is resized afterwards (bilinear), so it
is cheap whichever way the resolutions differ. Sizes need not be powers of two.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BackProjection"]


class BackProjection(nn.Module):
    """Project decoder features to an encoder stage's channels and size.

    Args:
        dec_channels: channels of the decoder features fed back.
        enc_channels: channels of the encoder stage input they are added to.
        norm_layer: normalisation after the 1x1 projection.
        mode: interpolation used to reach the encoder resolution.
    """

    def __init__(
        self,
        dec_channels: int,
        enc_channels: int,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        mode: str = "bilinear",
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dec_channels, enc_channels, kernel_size=1, bias=False)
        self.norm = norm_layer(enc_channels)
        self.mode = mode

    def forward(self, dec: Tensor, size: tuple[int, int]) -> Tensor:
        """Return the feedback for an encoder input of spatial ``size`` (H, W)."""
        x = self.norm(self.proj(dec))
        if tuple(x.shape[-2:]) != tuple(size):
            align = False if self.mode in ("bilinear", "bicubic") else None
            x = F.interpolate(x, size=size, mode=self.mode, align_corners=align)
        return x
