"""UNetFormer (Wang et al., ISPRS 2022) with any timm encoder; MaxViT-T as in LF-DLM.

A U-Net-like segmenter whose decoder is made of global-local Transformer blocks (GLTB)::

    image (B, 5, H, W) ─ timm encoder (features_only; MaxViT-T in LF-DLM)
         res1 (H/4)   res2 (H/8)   res3 (H/16)   res4 (H/32)
           │            │             │             └─ 1x1 conv+BN ─ GLTB ─┐
           │            │             └───── weighted sum (WF) ◄── up x2 ─┘
           │            │                         GLTB ─┐
           │            └───────── weighted sum (WF) ◄── up x2
           │                               GLTB ─┐
           └──── feature refinement head (FRH) ◄── up x2
                        3x3 conv ─ dropout ─ 1x1 conv ─ bilinear up x4 ─ logits (B, K, H, W)

A GLTB is ``x + attn(BN(x))`` then ``x + MLP(BN(x))``; its global-local attention adds a
local branch (3x3 and 1x1 conv) to a global branch (multi-head self-attention inside
``window_size`` x ``window_size`` windows with a relative position bias, then
cross-shaped average pooling along both axes so windows exchange context), and projects
the sum with a ``window_size`` separable conv. A WF is ``relu(w0) * conv1x1(skip) +
relu(w1) * up(x)`` (weights normalised) followed by a 3x3 conv; the FRH adds spatial
(depthwise conv) and channel (squeeze-excitation) attention to that. The training-time
auxiliary head of the original is left out (the loss sees the main output only).

LF-DLM replaces UNetFormer's ResNet18 encoder by MaxViT-T (timm ``maxvit_tiny_tf_512``,
~31 M parameters in all) and feeds it 5 channels; with pretrained ImageNet weights the two
extra channels start random (``extra_channel_init="random"``, see
:mod:`rsray.models.layers.encoders`). MaxViT's attention windows are ``img_size / 32``
pixels wide at every stage, so the model is built for an input size (``img_size``, 512
for FLAIR-2) and takes inputs whose sides are multiples of it.

Geographic covariates (Rao & Rolf 2025: hard-coded early fusion beats learned fusion):
``extra_modalities=["dem", "temperature"]`` concatenates those modalities (covariate layers
warped onto the image grid by :mod:`rsray.data.sources.covariates`, resized to the image's
size if they differ) to the image's channels before the encoder, so the encoder's stem takes
``C_image + sum C_extra`` channels; with pretrained weights the extra channels start as
``extra_channel_init`` says, like LF-DLM's fifth aerial channel. A modality a sample lacks
(``<modality>_present`` 0) enters as a learned value per channel
(:class:`~rsray.models.layers.fusion.MissingModalityFill`) instead of its tensor.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import ConvMlp, ConvNormAct, DropPath, RelPosBias, SeparableConvNormAct
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.encoders import ExtraChannelInit, create_timm_encoder
from rsray.models.layers.fusion import (
    MissingModalityFill,
    check_int,
    check_metadata_dim,
    presence,
    validate_modalities,
)

__all__ = [
    "FeatureRefinementHead",
    "GlobalLocalAttention",
    "GlobalLocalBlock",
    "UNetFormer",
    "UNetFormerDecoder",
    "WeightedFusion",
]


def _pad_bottom_right(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Reflect-pad the bottom and right edges (replicate where the map is too small)."""
    if pad_h == 0 and pad_w == 0:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _conv_bn(c_in: int, c_out: int, k: int, act: bool = False) -> ConvNormAct:
    return ConvNormAct(c_in, c_out, k, apply_act=act, act_layer=nn.ReLU6)


class GlobalLocalAttention(nn.Module):
    """UNetFormer's global-local attention on a (B, C, H, W) map (any H, W).

    Args:
        dim: channels.
        num_heads: attention heads (must divide ``dim``).
        window_size: side of the attention windows (even).
        qkv_bias: bias in the query/key/value projection.
    """

    def __init__(
        self, dim: int, num_heads: int = 8, window_size: int = 8, qkv_bias: bool = False
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ws = window_size
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=qkv_bias)
        self.rel_pos = RelPosBias((window_size, window_size), num_heads)
        self.local1 = _conv_bn(dim, dim, 3)
        self.local2 = _conv_bn(dim, dim, 1)
        self.proj = SeparableConvNormAct(dim, dim, kernel_size=window_size, apply_act=False)
        half = window_size // 2 - 1
        self.pool_x = nn.AvgPool2d((window_size, 1), stride=1, padding=(half, 0))
        self.pool_y = nn.AvgPool2d((1, window_size), stride=1, padding=(0, half))

    def _window_attention(self, x: Tensor) -> Tensor:
        b, c, hp, wp = x.shape
        ws, nh = self.ws, self.num_heads
        gh, gw = hp // ws, wp // ws
        qkv = self.qkv(x).view(b, 3, nh, c // nh, gh, ws, gw, ws)
        # → (3, B * windows, heads, ws*ws, head_dim)
        qkv = qkv.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, b * gh * gw, nh, ws * ws, c // nh)
        q, k, v = qkv.unbind(0)
        attn = self.rel_pos((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).view(b, gh, gw, nh, ws, ws, c // nh)
        return out.permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, hp, wp)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, C, H, W)."""
        h, w = x.shape[-2:]
        local = self.local2(x) + self.local1(x)
        xp = _pad_bottom_right(x, (-h) % self.ws, (-w) % self.ws)
        out = self._window_attention(xp)[..., :h, :w]
        out = self.pool_x(_pad_bottom_right(out, 1, 0)) + self.pool_y(_pad_bottom_right(out, 0, 1))
        out = out + local
        return self.proj(_pad_bottom_right(out, 1, 1))[..., :h, :w]


class GlobalLocalBlock(nn.Module):
    """GLTB: ``x + drop_path(attn(BN(x)))`` then ``x + drop_path(mlp(BN(x)))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = GlobalLocalAttention(dim, num_heads, window_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=nn.ReLU6, drop=drop)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, C, H, W)."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class WeightedFusion(nn.Module):
    """Merge an encoder skip with the up-sampled decoder map by learned normalised weights."""

    def __init__(self, skip_channels: int, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.pre_conv = nn.Conv2d(skip_channels, channels, 1, bias=False)
        self.weights = nn.Parameter(torch.ones(2))
        self.eps = eps
        self.post_conv = _conv_bn(channels, channels, 3, act=True)

    def fuse(self, x: Tensor, skip: Tensor) -> Tensor:
        """``w0 * conv(skip) + w1 * up(x)`` with ``w = relu(weights) / sum``."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        w = F.relu(self.weights)
        w = w / (w.sum() + self.eps)
        return w[0] * self.pre_conv(skip) + w[1] * x

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Decoder map ``x`` (B, C, h, w) and ``skip`` (B, C_skip, 2h, 2w) → (B, C, 2h, 2w)."""
        return self.post_conv(self.fuse(x, skip))


class FeatureRefinementHead(WeightedFusion):
    """Weighted fusion followed by pixel (depthwise) and channel (SE) attention, residual."""

    def __init__(self, skip_channels: int, channels: int, eps: float = 1e-8) -> None:
        super().__init__(skip_channels, channels, eps)
        self.pixel_attn = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.Sigmoid()
        )
        hidden = max(channels // 16, 1)
        self.channel_attn = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.shortcut = _conv_bn(channels, channels, 1)
        self.proj = SeparableConvNormAct(channels, channels, kernel_size=3, apply_act=False)
        self.act = nn.ReLU6()

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Decoder map ``x`` and ``skip`` → refined (B, C, H_skip, W_skip)."""
        x = self.post_conv(self.fuse(x, skip))
        shortcut = self.shortcut(x)
        x = self.pixel_attn(x) * x + self.channel_attn(x) * x
        return self.act(self.proj(x) + shortcut)


class UNetFormerDecoder(nn.Module):
    """The UNetFormer decoder over four encoder maps (strides 4, 8, 16, 32)."""

    def __init__(
        self,
        encoder_channels: Sequence[int],
        num_classes: int,
        decode_channels: int = 64,
        num_heads: int = 8,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = encoder_channels
        dc = decode_channels

        def block() -> GlobalLocalBlock:
            return GlobalLocalBlock(dc, num_heads, window_size, mlp_ratio, drop_path=drop_path)

        self.pre_conv = _conv_bn(c4, dc, 1)
        self.b4 = block()
        self.p3 = WeightedFusion(c3, dc)
        self.b3 = block()
        self.p2 = WeightedFusion(c2, dc)
        self.b2 = block()
        self.p1 = FeatureRefinementHead(c1, dc)
        self.head = nn.Sequential(
            _conv_bn(dc, dc, 3, act=True), nn.Dropout2d(dropout), nn.Conv2d(dc, num_classes, 1)
        )

    def forward(self, features: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        """Four encoder maps, highest resolution first → logits at ``size``."""
        res1, res2, res3, res4 = features
        x = self.b4(self.pre_conv(res4))
        x = self.b3(self.p3(x, res3))
        x = self.b2(self.p2(x, res2))
        x = self.head(self.p1(x, res1))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UNetFormer(nn.Module):
    """UNetFormer on one image modality.

    Args:
        modalities: modality name → channels; must contain ``image_modality`` (others are
            ignored, so a dataset's full modality dict can be passed).
        num_classes: classes of the logits.
        metadata_dim: must be 0 (UNetFormer takes no metadata).
        image_modality: the modality read (``inputs[m]``, (B, C, H, W)).
        extra_modalities: further image modalities (covariate layers: ``dem``, ...)
            concatenated to ``image_modality``'s channels at the input (early fusion).
        backbone: timm encoder name (``maxvit_tiny_tf_512`` for LF-DLM, ``resnet18`` for the
            original UNetFormer).
        img_size: input size the encoder is built for (MaxViT-family encoders only; their
            attention windows are ``img_size / 32``); ``None`` for encoders without one.
        pretrained: load timm's ImageNet weights (needs the Hugging Face hub, or
            ``pretrained_file``); pretrained weights cannot be downloaded on an offline
            machine, hence the default ``False``.
        pretrained_file: a local checkpoint of the full timm model (implies ``pretrained``).
        extra_channel_init: ``"random"`` (LF-DLM) or ``"repeat"`` (timm's default) for input
            channels beyond RGB when loading weights.
        backbone_kwargs: further ``timm.create_model`` arguments (a smaller MaxViT config).
        out_indices: the four encoder levels (strides 4, 8, 16, 32) in timm's numbering.
        decode_channels: decoder width (64 in UNetFormer).
        num_heads: attention heads in the decoder's GLTBs.
        window_size: decoder attention window (even).
        mlp_ratio: hidden width of the GLTB MLPs relative to ``decode_channels``.
        dropout: dropout before the classifier.
        drop_path: stochastic depth in the GLTBs.
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        image_modality: str = "aerial",
        extra_modalities: Sequence[str] = (),
        backbone: str = "maxvit_tiny_tf_512",
        img_size: int | None = 512,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        extra_channel_init: ExtraChannelInit = "random",
        backbone_kwargs: Mapping[str, Any] | None = None,
        out_indices: Sequence[int] = (1, 2, 3, 4),
        decode_channels: int = 64,
        num_heads: int = 8,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        if check_metadata_dim(metadata_dim):
            raise ConfigError("metadata_dim: UNetFormer takes no metadata; use metadata_dim=0")
        if image_modality not in mods:
            raise ConfigError(
                f"image_modality: {image_modality!r} is not in modalities {list(mods)}"
            )
        self.num_classes = check_int("num_classes", num_classes, 1)
        decode_channels = check_int("decode_channels", decode_channels, 1)
        num_heads = check_int("num_heads", num_heads, 1)
        window_size = check_int("window_size", window_size, 2)
        if decode_channels % num_heads:
            raise ConfigError(
                f"num_heads: must divide decode_channels ({decode_channels}), got {num_heads}"
            )
        if window_size % 2:
            raise ConfigError(f"window_size: must be even, got {window_size}")
        if len(tuple(out_indices)) != 4:
            raise ConfigError(f"out_indices: four encoder levels are needed, got {out_indices}")
        for name, value in (("dropout", dropout), ("drop_path", drop_path)):
            if not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}: must be in [0, 1), got {value!r}")
        extras = tuple(extra_modalities)
        bad = [m for m in extras if m not in mods or m == image_modality]
        if bad or len(set(extras)) != len(extras):
            raise ConfigError(f"extra_modalities: {list(extras)} must be distinct modalities of "
                              f"{list(mods)} other than {image_modality!r}")
        self.image_modality = image_modality
        self.extra_modalities = extras
        self.modalities: tuple[str, ...] = (image_modality, *extras)
        self.image_chans = mods[image_modality]
        self.in_chans = self.image_chans + sum(mods[m] for m in extras)
        self.backbone_name = backbone
        self.img_size = None if img_size is None else check_int("img_size", img_size, 32)
        kwargs = dict(backbone_kwargs or {})
        if self.img_size is not None:
            kwargs["img_size"] = self.img_size
        self.encoder = create_timm_encoder(
            backbone,
            in_chans=self.in_chans,
            out_indices=out_indices,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            extra_channel_init=extra_channel_init,
            backbone_kwargs=kwargs,
        )
        reductions = self.encoder.feature_info.reduction()
        if list(reductions) != [4, 8, 16, 32]:
            raise ConfigError(
                f"out_indices: {tuple(out_indices)} selects levels of strides {reductions} in "
                f"{backbone!r}; UNetFormer needs strides 4, 8, 16, 32"
            )
        self.decoder = UNetFormerDecoder(
            self.encoder.feature_info.channels(),
            self.num_classes,
            decode_channels=decode_channels,
            num_heads=num_heads,
            window_size=window_size,
            mlp_ratio=float(mlp_ratio),
            dropout=float(dropout),
            drop_path=float(drop_path),
        )
        self.missing = MissingModalityFill({m: (mods[m], 1, 1) for m in self.modalities})

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes, H, W) from ``inputs[image_modality]`` (B, C, H, W)."""
        try:
            x = inputs[self.image_modality]
        except KeyError:
            raise KeyError(
                f"input modality {self.image_modality!r} is missing; the model needs "
                f"{list(self.modalities)} and got {sorted(inputs)}"
            ) from None
        if x.dim() != 4 or x.shape[1] != self.image_chans:
            raise ValueError(
                f"input {self.image_modality!r} must have shape (B, {self.image_chans}, H, W), "
                f"got {tuple(x.shape)}"
            )
        size = (int(x.shape[-2]), int(x.shape[-1]))
        parts = [x, *(self._extra(inputs, m, size) for m in self.extra_modalities)]
        parts = self.missing(parts, presence(inputs, self.modalities))  # missing: stand-ins
        x = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        if size[0] % 32 or size[1] % 32:
            raise ValueError(
                f"input {self.image_modality!r}: height and width must be multiples of 32, "
                f"got {size}"
            )
        try:
            features = self.encoder(x)
        except AssertionError as e:  # timm's window partition checks
            raise ValueError(
                f"input {self.image_modality!r} of size {size} does not fit encoder "
                f"{self.backbone_name!r} built for img_size={self.img_size} ({e}); build the "
                "model with img_size equal to the input size"
            ) from e
        return self.decoder(features, size)

    def _extra(self, inputs: Mapping[str, Tensor], name: str, size: tuple[int, int]) -> Tensor:
        """An extra modality (B, C, h, w), bilinearly resized to the image's ``size``."""
        if name not in inputs:
            raise KeyError(f"input modality {name!r} is missing; the model needs "
                           f"{list(self.modalities)} and got {sorted(inputs)}")
        y = inputs[name]
        if y.dim() != 4 or y.shape[0] != inputs[self.image_modality].shape[0]:
            raise ValueError(f"input {name!r} must have shape (B, C, H, W) with the image's "
                             f"batch size, got {tuple(y.shape)}")
        if tuple(y.shape[-2:]) != size:
            y = F.interpolate(y.float(), size=size, mode="bilinear", align_corners=False)
        return y.to(inputs[self.image_modality].dtype)


# --------------------------------------------------------------------------- configurations

TINY_MAXVIT: dict[str, Any] = {
    "backbone": "maxvit_tiny_tf_512",
    "img_size": 64,
    "backbone_kwargs": {
        "embed_dim": (8, 16, 32, 64),
        "depths": (1, 1, 1, 1),
        "stem_width": 8,
        "transformer_dim_head": 8,
    },
    "decode_channels": 16,
    "num_heads": 2,
    "window_size": 4,
}
"""A tiny UNetFormer: MaxViT-T's block design through timm's cfg machinery (widths 8-64,
one block per stage, 8-dim heads), 64 px inputs. Used by the ``test_*`` variants."""

RESNET18: dict[str, Any] = {"backbone": "resnet18", "img_size": None}
"""The original UNetFormer encoder (ResNet18)."""
