"""Progressive fusion: an SE encoder-decoder with per-stage fusion and backprojection.

After section 3.2 of the GLOBE progressive fusion study (encoder-decoder with Squeeze-and-
Excitation blocks, fusion layers, backprojective connections), generalised from
photo + metadata to N raster modalities plus an optional metadata vector::

    encoder of modality m (one per modality; (+) adds the previous pass' feedback)

    x_m ─ stem ─(+)─ stage_0 ─ SE ──(+)─ stage_1 ─ SE ── … ── stage_{D-1} ─ SE
                 ▲               │     ▲               │                       │
                 │     (all modalities + metadata embedding at every stage)     │
                 │               ▼     │               ▼                       ▼
                 │            fuse_0   │            fuse_1       …        fuse_{D-1}
                 │               │ F_0 │               │ F_1                   │ F_{D-1}
                 │               ▼     │               ▼                       │
                 └── BP_0 ◄── dec_0 ◄──│──────────── dec_1 ◄──── … ◄──────────┘
                                       └── BP_1 ◄─────┘        (decoder: upsample,
                                                                concat skip, conv, SE)
    logits = Linear(dropout(concat(GAP(dec_0), GAP(F_{D-1}))))

* **Encoder** — per modality: a stem (3x3 conv, stride ``stem_stride``, BN, act) then
  ``depth`` stages of ``blocks_per_stage`` residual blocks (timm's ``BasicBlock`` for
  ``backbone="resnet"``, ``Bottleneck`` for ``"resnet_bottleneck"``, MobileNetV2 inverted
  residuals from ``timm.models._efficientnet_blocks`` for ``"mobilenetv2"``); stage ``i`` has
  ``width * 2**i`` channels and an :class:`~rsray.models.layers.SqueezeExcite` after it.
* **Fusion** — a :class:`~rsray.models.layers.StageFusion` at every stage merges all
  modalities (concat, 1x1 conv, BN, act; optionally gated) and, with ``metadata_dim > 0``,
  injects an MLP embedding of the metadata by FiLM. The fused maps ``F_i`` are the skips.
* **Decoder** — mirrors the encoder: from ``F_{D-1}``, stage ``j = D-2 … 0`` upsamples to
  ``F_j``'s size (bilinear ``interpolate`` to the skip's exact size, so 120x120 inputs work),
  concatenates ``F_j``, applies 3x3 conv + BN + act and an SE block: ``dec_j``.
* **Backprojection** — with ``refine_steps = T > 0`` the encoder runs ``T`` more times; in
  each extra pass, the previous pass' ``dec_j`` is projected (1x1 conv + BN, resized) by a
  per-modality :class:`~rsray.models.layers.BackProjection` and *added to the input of
  encoder stage j* (the stage ``dec_j`` mirrors), then fusion and decoder run again. The
  stems do not change between passes and run once. Weights are shared across passes, so
  ``T`` changes compute, not parameters (beyond the backprojection layers, which exist
  only when ``T > 0``). ``T = 0`` is a plain encoder-decoder.
* **Head** — global average pool of the last ``dec_0`` concatenated with that of the deepest
  fused map, dropout, linear.

Modality encoders are kept separate (robust to a missing/zeroed modality); cross-modal
context reaches them through the backprojected decoder features, which are built from fused
maps. The stage resolutions are ``H/2, H/4, …`` with ``stem_stride=2``; with ``depth=5`` the
deepest map of a 32x32 input is 1x1, so training needs a batch of at least 2 there (BN).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, Bottleneck
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.backprojection import BackProjection
from rsray.models.layers.fusion import (
    MetadataEmbedding,
    StageFusion,
    check_int,
    check_metadata_dim,
    gather_inputs,
    get_metadata,
    validate_modalities,
)
from rsray.models.layers.se import SqueezeExcite
from rsray.models.registry import build_model_with_cfg, register_model

try:  # private timm module: moved before (efficientnet_blocks → _efficientnet_blocks)
    from timm.models._efficientnet_blocks import InvertedResidual
except ImportError:  # pragma: no cover - depends on the timm version
    try:
        from timm.models.efficientnet_blocks import InvertedResidual  # type: ignore[no-redef]
    except ImportError:
        InvertedResidual = None  # type: ignore[assignment,misc]

__all__ = ["BACKBONES", "DecoderStage", "ModalityEncoder", "ProgressiveFusion"]

Backbone = Literal["resnet", "resnet_bottleneck", "mobilenetv2"]
BACKBONES: tuple[str, ...] = ("resnet", "resnet_bottleneck", "mobilenetv2")
"""Encoder block types of :class:`ProgressiveFusion`."""


def _make_block(
    backbone: str, in_chs: int, out_chs: int, stride: int, act_layer: type[nn.Module]
) -> nn.Module:
    """One encoder block of the chosen type, mapping ``in_chs`` → ``out_chs``."""
    if backbone == "mobilenetv2":
        if InvertedResidual is None:  # pragma: no cover - depends on the timm version
            raise ConfigError(
                "backbone: 'mobilenetv2' needs timm's InvertedResidual, which this timm "
                "version does not provide"
            )
        # has_skip is set by timm when in_chs == out_chs and stride == 1
        return InvertedResidual(in_chs, out_chs, stride=stride, exp_ratio=6.0, act_layer=act_layer)
    downsample = None
    if stride != 1 or in_chs != out_chs:
        downsample = nn.Sequential(
            nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_chs),
        )
    if backbone == "resnet":
        block: nn.Module = BasicBlock(
            in_chs, out_chs, stride=stride, downsample=downsample, act_layer=act_layer
        )
    else:
        block = Bottleneck(
            in_chs,
            out_chs // Bottleneck.expansion,
            stride=stride,
            downsample=downsample,
            act_layer=act_layer,
        )
    return block


class ModalityEncoder(nn.Module):
    """The encoder of one modality: stem, then stages, each followed by an SE block.

    Args:
        in_chans: channels of the modality.
        channels: output channels of every stage.
        backbone: block type (see :data:`BACKBONES`).
        blocks_per_stage: blocks in every stage (the first one carries the stride).
        reduction: SE reduction ratio.
        se_min_hidden: smallest SE bottleneck width.
        stem_stride: stride of the stem convolution (1 or 2).
    """

    def __init__(
        self,
        in_chans: int,
        channels: tuple[int, ...],
        backbone: str,
        blocks_per_stage: int,
        reduction: int,
        se_min_hidden: int,
        stem_stride: int,
    ) -> None:
        super().__init__()
        act_layer: type[nn.Module] = nn.ReLU6 if backbone == "mobilenetv2" else nn.ReLU
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, channels[0], 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            act_layer(),
        )
        self.stem_channels = channels[0]
        stages = []
        prev = channels[0]
        for i, c in enumerate(channels):
            blocks = [
                _make_block(
                    backbone, prev if b == 0 else c, c, 2 if (i > 0 and b == 0) else 1, act_layer
                )
                for b in range(blocks_per_stage)
            ]
            stages.append(nn.Sequential(*blocks))
            prev = c
        self.stages = nn.ModuleList(stages)
        self.se = nn.ModuleList(SqueezeExcite(c, reduction, se_min_hidden) for c in channels)

    def forward_stage(self, i: int, x: Tensor) -> Tensor:
        """Run stage ``i`` and its SE block."""
        return self.se[i](self.stages[i](x))


class DecoderStage(nn.Module):
    """Upsample to the skip's size, concatenate the skip, 3x3 conv + BN + act, then SE.

    Args:
        in_chs: channels of the coarser decoder input.
        skip_chs: channels of the fused encoder skip.
        out_chs: output channels.
        reduction: SE reduction ratio.
        se_min_hidden: smallest SE bottleneck width.
        act_layer: activation.
    """

    def __init__(
        self,
        in_chs: int,
        skip_chs: int,
        out_chs: int,
        reduction: int,
        se_min_hidden: int,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs + skip_chs, out_chs, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_chs)
        self.act = act_layer()
        self.se = SqueezeExcite(out_chs, reduction, se_min_hidden)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Decode ``x`` to the resolution of ``skip``."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.act(self.norm(self.conv(torch.cat([x, skip], dim=1))))
        return self.se(x)


class ProgressiveFusion(nn.Module):
    """Progressive fusion encoder-decoder for N modalities (+ metadata); see the module doc.

    Args:
        modalities: modality name → channels, e.g. ``{"s2": 10, "s1": 2}``.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none.
        depth: number of encoder stages (2-5); the decoder has ``depth - 1``.
        width: channels of the first stage (stage ``i`` has ``width * 2**i``).
        reduction: SE reduction ratio (4, 8, 16, 32 are the usual choices).
        se_min_hidden: smallest SE bottleneck width.
        dropout: dropout before the classifier.
        refine_steps: extra encoder passes with backprojected decoder features (0: none).
        backbone: encoder block type: ``"resnet"``, ``"resnet_bottleneck"``,
            ``"mobilenetv2"``.
        blocks_per_stage: blocks per encoder stage.
        gated_fusion: per-pixel learned gates on the modalities in every fusion layer.
        meta_embed_dim: width of the metadata embedding.
        metadata_mode: how metadata enters the fusion layers: ``"film"`` or ``"add"``.
        stem_stride: stride of each modality's stem (2 halves the resolution up front).
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        depth: int = 3,
        width: int = 32,
        reduction: int = 8,
        se_min_hidden: int = 8,
        dropout: float = 0.2,
        refine_steps: int = 1,
        backbone: Backbone = "resnet",
        blocks_per_stage: int = 1,
        gated_fusion: bool = False,
        meta_embed_dim: int = 64,
        metadata_mode: Literal["film", "add"] = "film",
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        num_classes = check_int("num_classes", num_classes, 1)
        depth = check_int("depth", depth, 2, 5)
        width = check_int("width", width, 1)
        reduction = check_int("reduction", reduction, 1)
        se_min_hidden = check_int("se_min_hidden", se_min_hidden, 1)
        refine_steps = check_int("refine_steps", refine_steps, 0)
        blocks_per_stage = check_int("blocks_per_stage", blocks_per_stage, 1)
        meta_embed_dim = check_int("meta_embed_dim", meta_embed_dim, 1)
        stem_stride = check_int("stem_stride", stem_stride, 1, 2)
        if not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {dropout!r}")
        if backbone not in BACKBONES:
            raise ConfigError(f"backbone: must be one of {list(BACKBONES)}, got {backbone!r}")
        if backbone == "resnet_bottleneck" and width % Bottleneck.expansion:
            raise ConfigError(
                f"width: must be a multiple of {Bottleneck.expansion} with "
                f"backbone='resnet_bottleneck', got {width}"
            )
        if metadata_mode not in ("film", "add"):
            raise ConfigError(f"metadata_mode: must be 'film' or 'add', got {metadata_mode!r}")

        self.modalities: tuple[str, ...] = tuple(mods)
        self.in_chans = dict(mods)
        self.num_classes = num_classes
        self.metadata_dim = metadata_dim = check_metadata_dim(metadata_dim)
        self.depth = depth
        self.refine_steps = refine_steps
        self.channels: tuple[int, ...] = tuple(width * 2**i for i in range(depth))
        ch = self.channels

        self.encoders = nn.ModuleDict(
            {
                m: ModalityEncoder(
                    c, ch, backbone, blocks_per_stage, reduction, se_min_hidden, stem_stride
                )
                for m, c in mods.items()
            }
        )
        self.meta_embed = (
            MetadataEmbedding(metadata_dim, meta_embed_dim) if metadata_dim > 0 else None
        )
        emb = meta_embed_dim if metadata_dim > 0 else 0
        self.fusion = nn.ModuleList(
            StageFusion([c] * len(mods), c, gated_fusion, emb, metadata_mode) for c in ch
        )
        # decoder[j] produces dec_j at the resolution/channels of encoder stage j
        self.decoder = nn.ModuleList(
            DecoderStage(ch[j + 1], ch[j], ch[j], reduction, se_min_hidden)
            for j in range(depth - 1)
        )
        # backproj[m][j]: dec_j → input of encoder stage j of modality m (stem output for j=0)
        self.backproj: nn.ModuleDict | None = None
        if refine_steps > 0:
            stage_in = (ch[0], *ch[:-1])
            self.backproj = nn.ModuleDict(
                {
                    m: nn.ModuleList(BackProjection(ch[j], stage_in[j]) for j in range(depth - 1))
                    for m in mods
                }
            )
        self.num_features = ch[0] + ch[-1]
        self.head_drop = nn.Dropout(float(dropout))
        self.head = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Conv2d) and not name.endswith(("fc1", "fc2", "gate")):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        for mod in self.modules():  # keep timm's zero-init of the last BN in residual blocks
            if isinstance(mod, BasicBlock | Bottleneck):
                mod.zero_init_last()

    def _encode(
        self,
        stems: list[Tensor],
        meta_emb: Tensor | None,
        feedback: list[Tensor] | None,
    ) -> list[Tensor]:
        """One encoder pass over all modalities; returns the fused maps ``F_0 … F_{D-1}``."""
        hs = stems
        fused = []
        for i in range(self.depth):
            if feedback is not None and i < self.depth - 1 and self.backproj is not None:
                hs = [
                    h + self.backproj[m][i](feedback[i], (h.shape[-2], h.shape[-1]))
                    for m, h in zip(self.modalities, hs, strict=True)
                ]
            hs = [
                self.encoders[m].forward_stage(i, h)
                for m, h in zip(self.modalities, hs, strict=True)
            ]
            fused.append(self.fusion[i](hs, meta_emb))
        return fused

    def _decode(self, fused: list[Tensor]) -> list[Tensor]:
        """Run the decoder; return ``dec_0 … dec_{D-2}``."""
        y = fused[-1]
        dec: list[Tensor] = [y] * (self.depth - 1)
        for j in reversed(range(self.depth - 1)):
            y = self.decoder[j](y, fused[j])
            dec[j] = y
        return dec

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Pooled features (B, ``num_features``) before dropout and the classifier."""
        xs = gather_inputs(inputs, self.modalities)
        meta = get_metadata(inputs, self.metadata_dim)
        meta_emb = (
            self.meta_embed(meta) if meta is not None and self.meta_embed is not None else None
        )
        stems = [self.encoders[m].stem(x) for m, x in zip(self.modalities, xs, strict=True)]
        feedback: list[Tensor] | None = None
        steps = self.refine_steps if self.backproj is not None else 0
        fused: list[Tensor] = []
        for _ in range(steps + 1):
            fused = self._encode(stems, meta_emb, feedback)
            feedback = self._decode(fused)
        assert feedback is not None
        pooled = [feedback[0].mean(dim=(2, 3)), fused[-1].mean(dim=(2, 3))]
        return torch.cat(pooled, dim=1)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes) from ``{modality: (B, C, H, W)}`` (+ ``"metadata"``)."""
        return self.head(self.head_drop(self.forward_features(inputs)))


def _create(variant: str, defaults: dict[str, Any], kwargs: dict[str, Any]) -> ProgressiveFusion:
    return build_model_with_cfg(ProgressiveFusion, variant, defaults, kwargs)


# --------------------------------------------------------------------------- variants


@register_model
def progressive_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """Progressive fusion with the class defaults (depth 3, width 32, reduction 8)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create("progressive_fusion", {}, kwargs)


@register_model
def progressive_fusion_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """Depth 3, width 32, SE r=8, one refinement pass: CPU-trainable on 120x120 patches."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {"depth": 3, "width": 32, "reduction": 8, "dropout": 0.2, "refine_steps": 1}
    return _create("progressive_fusion_small", defaults, kwargs)


@register_model
def progressive_fusion_base(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """Depth 4, width 64, SE r=16 (the study's first setting), two blocks per stage."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "depth": 4,
        "width": 64,
        "reduction": 16,
        "dropout": 0.3,
        "refine_steps": 1,
        "blocks_per_stage": 2,
    }
    return _create("progressive_fusion_base", defaults, kwargs)


@register_model
def progressive_fusion_mobilenetv2(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """MobileNetV2 inverted residuals, SE r=8, dropout 0.5 (the study's shallower model)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "backbone": "mobilenetv2",
        "depth": 4,
        "width": 32,
        "reduction": 8,
        "dropout": 0.5,
        "refine_steps": 1,
        "blocks_per_stage": 2,
    }
    return _create("progressive_fusion_mobilenetv2", defaults, kwargs)


@register_model
def progressive_fusion_globe(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """GLOBE photo + metadata: ResNet50-style bottleneck encoder, SE r=8, dropout 0.5.

    The study's tuned setting (section 4.2: reduction 16 → 8, dropout 0.5-0.7); the metadata
    vector (``metadata_dim``) is injected by FiLM at every encoder stage.
    """
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "backbone": "resnet_bottleneck",
        "depth": 4,
        "width": 64,
        "reduction": 8,
        "dropout": 0.5,
        "refine_steps": 1,
        "blocks_per_stage": 2,
        "metadata_mode": "film",
    }
    return _create("progressive_fusion_globe", defaults, kwargs)


@register_model
def test_progressive_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """Tiny progressive fusion (depth 2, width 8, one refinement pass) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "depth": 2,
        "width": 8,
        "reduction": 4,
        "se_min_hidden": 2,
        "refine_steps": 1,
        "meta_embed_dim": 8,
    }
    return _create("test_progressive_fusion", defaults, kwargs)
