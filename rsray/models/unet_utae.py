"""The FLAIR-2 baseline (U-T&T): a U-Net on the aerial image, U-TAE features injected into it.

Garioud et al. 2023 (FLAIR #2 datapaper; IGNF/FLAIR-2 ``src/backbones/txt_model.py``), the
baseline LF-DLM compares against (57.58 % mIoU)::

    s2 (B, T, 10, 40, 40) ─ U-TAE (no class head) ─ F (B, 64, 40, 40)
        ├─ centre crop to the aerial footprint (10 x 10) ─┐ per encoder level l:
        │                          1x1 conv → C_l, bilinear to the level's size ─┐
        └─ spatial mean (B, 64) ─ 3-layer MLP → C_l, broadcast over the level ───┴─ sum = S_l
    aerial (B, 5, 512, 512) ─ ResNet34 encoder (timm) ─ E_l, l = 1..5 (strides 2..32)
                                        E_l + S_l ─ U-Net decoder ─ logits (B, K, 512, 512)

The U-Net decoder follows segmentation_models_pytorch's (which the baseline uses): at each
level, nearest up-sampling to the skip's size, concatenation, two 3x3 conv + BN + ReLU;
channels 256, 128, 64, 32, 16; a 3x3 conv gives the class scores.

Differences from the baseline code, on purpose: the collapsed (spatially averaged) U-TAE
features are taken per sample (the baseline uses the first sample of the batch for the
whole batch); the baseline's auxiliary U-TAE loss (cropped U-TAE features → 1x1 conv →
nearest up-sampling, trained against the labels) is left out, as the training loop has
one output per model, so U-TAE learns only through the injected features; the optional
aerial-metadata MLP is not included. ``drop_series`` is the baseline's
``drop_utae_modality`` (the probability of training a batch without the injection).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.backbones import TINY_RESNET
from rsray.models.layers.encoders import ExtraChannelInit, create_timm_encoder
from rsray.models.layers.fusion import (
    MissingModalityFill,
    check_int,
    check_metadata_dim,
    presence,
    validate_modalities,
)
from rsray.models.layers.series import center_crop, check_positive, footprint_size, get_series
from rsray.models.layers.utae import FLAIR2_UTAE, SMALL_UTAE, TINY_UTAE, UTAE
from rsray.models.registry import build_model_with_cfg, register_model

__all__ = ["SeriesInjection", "UNetDecoder", "UNetUTAE"]

TASK = "segmentation"
"""Models of this family output per-pixel logits (B, num_classes, H, W)."""


class UNetDecoder(nn.Module):
    """U-Net decoder over encoder maps of decreasing resolution (highest first).

    Block ``i`` up-samples (nearest) to the next skip's size, or to the input size after the
    last skip, concatenates the skip and applies two 3x3 conv + BN + ReLU.

    Args:
        encoder_channels: channels of the encoder maps, highest resolution first.
        decoder_channels: output channels of each block, one per encoder map.
    """

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int]) -> None:
        super().__init__()
        enc = list(encoder_channels)
        dec = [check_int("decoder_channels", c, 1) for c in decoder_channels]
        if len(dec) != len(enc):
            raise ConfigError(
                f"decoder_channels: one width per encoder level ({len(enc)}) is needed, "
                f"got {len(dec)}"
            )
        skips = [*enc[-2::-1], 0]  # skip of each block, deepest first; none after the last
        ins = [enc[-1], *dec[:-1]]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(c_in + c_skip, c_out, 3),
                ConvNormAct(c_out, c_out, 3),
            )
            for c_in, c_skip, c_out in zip(ins, skips, dec, strict=True)
        )
        self.out_channels = dec[-1]

    def forward(self, features: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        """Encoder maps (highest resolution first) → (B, decoder_channels[-1], *size)."""
        x = features[-1]
        skips = list(features[-2::-1])
        for i, block in enumerate(self.blocks):
            skip = skips[i] if i < len(skips) else None
            x = F.interpolate(x, size=skip.shape[-2:] if skip is not None else size)
            if skip is not None:
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        return x


def _mlp_widths(c_in: int, c_out: int) -> list[int]:
    """Widths of the baseline's 3-layer MLP from ``c_in`` to ``c_out``: linear steps."""
    if c_in == c_out:
        return [c_in, 2 * c_in, 2 * c_in, c_out]
    step = abs(c_in - c_out) // 3
    sign = 1 if c_out > c_in else -1
    return [c_in, c_in + sign * step, c_in + 2 * sign * step, c_out]


class SeriesInjection(nn.Module):
    """Map U-TAE features onto one encoder level: cropped (1x1 conv) + collapsed (MLP).

    Args:
        in_channels: channels of the U-TAE feature map.
        out_channels: channels of the encoder level.
        dropout: dropout in the MLP.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        widths = _mlp_widths(in_channels, out_channels)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers += [nn.Dropout(dropout), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, cropped: Tensor, pooled: Tensor, size: torch.Size) -> Tensor:
        """Cropped map (B, C, c, c) and pooled vector (B, C) → (B, out_channels, *size)."""
        spatial = F.interpolate(self.conv(cropped), size=size, mode="bilinear", align_corners=False)
        return spatial + self.mlp(pooled)[:, :, None, None]


class UNetUTAE(nn.Module):
    """U-Net (timm encoder) on the image + U-TAE on the series, mid fusion (FLAIR-2 U-T&T).

    Args:
        modalities: modality name → channels; must contain both modalities.
        num_classes: classes.
        metadata_dim: must be 0.
        image_modality: the aerial modality (``inputs[m]``, (B, C, H, W)).
        series_modality: the series modality (``inputs[m]``, ``m + "_mask"``, ``m + "_dates"``).
        backbone: timm encoder of the U-Net (``resnet34`` in the baseline).
        pretrained: load timm's ImageNet weights into the encoder (the baseline does, via
            segmentation_models_pytorch; needs the Hugging Face hub or ``pretrained_file``).
        pretrained_file: a local checkpoint of the full timm model (implies ``pretrained``).
        extra_channel_init: ``"repeat"`` (what the baseline's library does) or ``"random"``.
        backbone_kwargs: further ``timm.create_model`` arguments.
        decoder_channels: U-Net decoder widths, one per encoder level, deepest first.
        series: keyword arguments of :class:`~rsray.models.utae.UTAE` (the baseline's:
            widths 64,64,128,128).
        fusion_levels: encoder levels (0 = highest resolution) that receive the U-TAE
            features; ``None``: all of them, as the baseline does.
        fusion_dropout: dropout in the injection MLPs (0.3 in the baseline).
        drop_series: probability, per training batch, of skipping the injection.
        crop_size: side of the centre crop of the U-TAE map, in series pixels; ``None``:
            the aerial footprint ``round(H * image_gsd / series_gsd)`` (10 for FLAIR-2).
        image_gsd, series_gsd: ground sampling distances (m).
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        image_modality: str = "aerial",
        series_modality: str = "s2",
        backbone: str = "resnet34",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        extra_channel_init: ExtraChannelInit = "repeat",
        backbone_kwargs: Mapping[str, Any] | None = None,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        series: Mapping[str, Any] | None = None,
        fusion_levels: Sequence[int] | None = None,
        fusion_dropout: float = 0.3,
        drop_series: float = 0.0,
        crop_size: int | None = None,
        image_gsd: float = 0.2,
        series_gsd: float = 10.0,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        if check_metadata_dim(metadata_dim):
            raise ConfigError("metadata_dim: the U-Net + U-TAE model takes no metadata")
        for name, m in (("image_modality", image_modality), ("series_modality", series_modality)):
            if m not in mods:
                raise ConfigError(f"{name}: {m!r} is not in modalities {list(mods)}")
        if image_modality == series_modality:
            raise ConfigError("image_modality, series_modality: must be different modalities")
        for name, value in (("fusion_dropout", fusion_dropout), ("drop_series", drop_series)):
            if not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}: must be in [0, 1), got {value!r}")
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.image_modality = image_modality
        self.series_modality = series_modality
        self.modalities: tuple[str, ...] = (image_modality, series_modality)
        self.in_chans = mods[image_modality]
        self.series_chans = mods[series_modality]
        self.crop_size = None if crop_size is None else check_int("crop_size", crop_size, 1)
        self.image_gsd = check_positive("image_gsd", image_gsd)
        self.series_gsd = check_positive("series_gsd", series_gsd)
        self.drop_series = float(drop_series)

        self.encoder = create_timm_encoder(
            backbone,
            in_chans=self.in_chans,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            extra_channel_init=extra_channel_init,
            backbone_kwargs=backbone_kwargs,
        )
        enc = list(self.encoder.feature_info.channels())
        self.decoder = UNetDecoder(enc, decoder_channels)
        self.head = nn.Conv2d(self.decoder.out_channels, self.num_classes, 3, padding=1)

        series_kw = dict(series or {})
        if "in_channels" in series_kw:
            raise ConfigError("series: in_channels is set from modalities; remove it")
        try:
            self.utae = UTAE(in_channels=self.series_chans, **series_kw)
        except TypeError as e:
            raise ConfigError(f"series: UTAE rejected the arguments: {e}") from e
        levels = range(len(enc)) if fusion_levels is None else fusion_levels
        self.fusion_levels = tuple(check_int("fusion_levels", lv, 0, len(enc) - 1) for lv in levels)
        if len(set(self.fusion_levels)) != len(self.fusion_levels):
            raise ConfigError(f"fusion_levels: repeated levels in {list(self.fusion_levels)}")
        self.inject = nn.ModuleDict(
            {
                str(lv): SeriesInjection(self.utae.out_channels, enc[lv], float(fusion_dropout))
                for lv in self.fusion_levels
            }
        )
        self.missing = MissingModalityFill({image_modality: (self.in_chans, 1, 1)})

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes, H, W) at the image resolution."""
        x = inputs.get(self.image_modality)
        if x is None:
            raise KeyError(
                f"input modality {self.image_modality!r} is missing; the model needs "
                f"{list(self.modalities)} and got {sorted(inputs)}"
            )
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"input {self.image_modality!r} must have shape (B, {self.in_chans}, H, W), "
                f"got {tuple(x.shape)}"
            )
        size = (int(x.shape[-2]), int(x.shape[-1]))
        series = get_series(inputs, self.series_modality, self.series_chans)
        present = presence(inputs, (self.image_modality, self.series_modality))
        # missing image: its stand-in; missing series: no injection
        x = self.missing([x], None if present is None else present[:, :1])[0]
        has_series = None if present is None else (present[:, 1] != 0)[:, None, None, None]
        feats = list(self.encoder(x))
        if not (self.training and self.drop_series > 0 and torch.rand(()) < self.drop_series):
            fmap = self.utae(series.x, series.mask, series.dates)
            if self.crop_size is None:
                crop = (
                    min(footprint_size(size[0], self.image_gsd, self.series_gsd), fmap.shape[-2]),
                    min(footprint_size(size[1], self.image_gsd, self.series_gsd), fmap.shape[-1]),
                )
            else:
                crop = (self.crop_size, self.crop_size)
            cropped = center_crop(fmap, crop)
            pooled = fmap.mean(dim=(-2, -1))
            for lv in self.fusion_levels:
                add = self.inject[str(lv)](cropped, pooled, feats[lv].shape[-2:])
                if has_series is not None:
                    add = torch.where(has_series, add, add.new_zeros(()))
                feats[lv] = feats[lv] + add
        return self.head(self.decoder(feats, size))


# --------------------------------------------------------------------------- variants

def _create(
    variant: str,
    defaults: Mapping[str, Any],
    modalities: dict[str, int],
    num_classes: int,
    metadata_dim: int,
    kwargs: dict[str, Any],
) -> UNetUTAE:
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return build_model_with_cfg(UNetUTAE, variant, defaults, kwargs)


_BASELINE: dict[str, Any] = {"backbone": "resnet34", "series": FLAIR2_UTAE}


@register_model
def unet_utae(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetUTAE:
    """The FLAIR-2 baseline: U-Net-ResNet34 + U-TAE (64,64,128,128), mid fusion (~27 M)."""
    return _create("unet_utae", _BASELINE, modalities, num_classes, metadata_dim, kwargs)


@register_model
def unet_utae_resnet34(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetUTAE:
    """The FLAIR-2 baseline (U-T&T), under its encoder's name."""
    return _create("unet_utae_resnet34", _BASELINE, modalities, num_classes, metadata_dim, kwargs)


@register_model
def unet_utae_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetUTAE:
    """A smaller baseline: U-Net-ResNet18 + a narrow U-TAE."""
    cfg = {"backbone": "resnet18", "series": SMALL_UTAE}
    return _create("unet_utae_resnet18", cfg, modalities, num_classes, metadata_dim, kwargs)


@register_model
def test_unet_utae(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetUTAE:
    """A tiny U-Net + U-TAE for tests."""
    cfg = {
        "backbone": "resnet18",
        "backbone_kwargs": TINY_RESNET,
        "decoder_channels": (16, 16, 8, 8, 8),
        "series": TINY_UTAE,
    }
    return _create("test_unet_utae", cfg, modalities, num_classes, metadata_dim, kwargs)
