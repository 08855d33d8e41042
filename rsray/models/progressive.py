"""Progressive fusion: SE encoder-decoder, fusion at every decoder stage, backprojection.

After section 3.2 of the GLOBE progressive fusion study (progressive-fusion-globe-lulc.txt),
generalised from photo + metadata to N raster modalities plus an optional metadata vector.
``fusion_at="decoder"`` (the default, the paper's 3.2.1: "fusion layers integrate multimodal
features ... by merging information from different modalities at each stage of the
decoder. After each decoder stage, the feature maps ... are backprojected to corresponding
layers in the encoder")::

    modality m: stem ─ E_0 ─ E_1 ─ … ─ E_{D-1}         (timm CNN stages, each + SE)
                        │ e_0   │ e_1          │ e_{D-1}
    decoder of m:       │       ▼              ▼
           d_j^m = Dec_j^m(up(d_{j+1}^m), e_j^m)        (upsample, concat skip, convs, SE)
                 F_j = Fuse_j(d_j^1 … d_j^M, metadata)  (fusion layer at decoder stage j)
      for t < refine_steps:                             (feedback while the decoder runs)
           e_j^m = E_j^m(in_j^m + BP_j^m(F_j))          (enters encoder stage j, j = D-2 … 0)
           d_j^m = Dec_j^m(up(d_{j+1}^m), e_j^m);  F_j = Fuse_j(...)
    logits = Linear(dropout(concat(GAP(F_0), GAP(F_{D-1}))))

``in_j^m`` is the input encoder stage ``j`` received on the way down (the stem output for
``j = 0``); ``F_{D-1}`` fuses the deepest encoder features. Decoder stage ``j`` therefore
feeds encoder stage ``j`` back *as the decoder progresses*: stage ``j`` is re-run with the
feedback before decoder stage ``j - 1`` starts, and the refined skip immediately rebuilds
``d_j``, which the next decoder stage consumes. ``refine_steps = 0`` is a plain
encoder-decoder without backprojection layers. Weights are shared across the repeats, so
``refine_steps`` changes compute, not parameters.

``fusion_at="encoder"`` keeps the earlier design: a fusion layer after every encoder stage
(``F_i = Fuse_i(e_i^1 … e_i^M)``), one shared decoder over the fused maps, and the decoder
output ``dec_j`` backprojected into encoder stage ``j`` the same way.

* **Encoders** — one per modality, from timm (:func:`~rsray.models.layers.split_timm_stages`:
  ``resnet50``, ``mobilenetv2_100``, any CNN whose feature levels are module boundaries); the
  first feature level is the stem, the next ``depth`` levels are the stages. ``pretrained``
  loads timm's weights (timm's cache / the hub), ``pretrained_file`` a local checkpoint;
  both off by default. ``width`` rescales a timm ResNet (stage ``i`` gets ``width * 2**i``
  base channels) for CPU-sized variants.
* **SE** — a :class:`~rsray.models.layers.SqueezeExcite` after every encoder stage and after
  every upsampling in the decoder (3.2.1: "SE blocks are then inserted after each upsampling
  operation in the decoder"), ratio ``reduction``, floor ``se_min_hidden`` (default 1, so
  every ratio of the search space builds a different network).
* **Metadata** — an MLP embedding injected by FiLM (or addition) in every fusion layer.
* **Missing modalities** — where a sample's ``<modality>_present`` bit is 0, every fusion
  layer takes that modality's learned stand-in (:class:`~rsray.models.layers.fusion.
  MissingModalityFill`) instead of its decoder (or encoder) features.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Literal

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.backbones import TINY_RESNET, check_timm_name
from rsray.models.layers.backprojection import BackProjection
from rsray.models.layers.fusion import (
    MetadataEmbedding,
    StageFusion,
    check_int,
    check_metadata_dim,
    gather_inputs,
    get_metadata,
    presence,
    validate_modalities,
)
from rsray.models.layers.se import SqueezeExcite
from rsray.models.layers.stages import split_timm_stages
from rsray.models.registry import build_model_with_cfg, register_model

__all__ = ["FUSION_AT", "DecoderStage", "ModalityEncoder", "ProgressiveFusion"]

FUSION_AT: tuple[str, ...] = ("decoder", "encoder")
"""Where :class:`ProgressiveFusion` places its fusion layers."""


class ModalityEncoder(nn.Module):
    """One modality's timm CNN as stem + ``depth`` stages, an SE block after every stage.

    Args:
        backbone: timm model name.
        in_chans: channels of the modality.
        depth: stages used after the stem.
        reduction: SE reduction ratio.
        se_min_hidden: smallest SE bottleneck width.
        pretrained: load timm's pretrained weights.
        pretrained_file: a local checkpoint of the timm model.
        backbone_kwargs: further arguments for ``timm.create_model``.

    Attributes:
        channels: output channels of every stage.
        in_channels: input channels of every stage (stage 0: the stem's output).
    """

    def __init__(
        self,
        backbone: str,
        in_chans: int,
        depth: int | None,
        reduction: int,
        se_min_hidden: int,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        cut = split_timm_stages(
            backbone,
            in_chans=in_chans,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            backbone_kwargs=backbone_kwargs,
        )
        available = len(cut.stages)
        depth = available if depth is None else depth
        if not 2 <= depth <= available:
            raise ConfigError(
                f"depth: timm model {backbone!r} has {available} stages after its stem, so "
                f"depth must be 2..{available}; got {depth}"
            )
        self.stem = cut.stem
        self.stages = nn.ModuleList(cut.stages[:depth])
        self.channels: tuple[int, ...] = tuple(cut.channels[:depth])
        self.in_channels: tuple[int, ...] = (cut.stem_channels, *self.channels[:-1])
        self.se = nn.ModuleList(
            SqueezeExcite(c, reduction, se_min_hidden) for c in self.channels
        )

    def forward_stage(self, i: int, x: Tensor) -> Tensor:
        """Run stage ``i`` and its SE block."""
        return self.se[i](self.stages[i](x))


class DecoderStage(nn.Module):
    """Upsample to the skip's size, SE, concatenate the skip, 1x1 + 3x3 conv-BN-act, SE.

    Args:
        in_chs: channels of the coarser decoder input.
        skip_chs: channels of the skip.
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
        self.up_se = SqueezeExcite(in_chs, reduction, se_min_hidden)
        self.reduce = nn.Sequential(
            nn.Conv2d(in_chs + skip_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
            act_layer(),
        )
        self.conv = nn.Sequential(
            nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_chs),
            act_layer(),
        )
        self.se = SqueezeExcite(out_chs, reduction, se_min_hidden)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Decode ``x`` to the resolution of ``skip``."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.up_se(x)
        return self.se(self.conv(self.reduce(torch.cat([x, skip], dim=1))))


def _resnet_width(backbone: str, width: int | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Backbone kwargs that rescale a timm ResNet to base width ``width``."""
    if width is None:
        return kwargs
    width = check_int("width", width, 1)
    check_timm_name(backbone)
    module = getattr(timm.models.model_entrypoint(backbone), "__module__", "")
    if not module.endswith(".resnet"):
        raise ConfigError(
            f"width: only timm ResNets can be rescaled by width; backbone {backbone!r} is not "
            "one (leave width unset, or pass backbone_kwargs)"
        )
    out = {"channels": tuple(width * 2**i for i in range(4)), "stem_width": width}
    out.update(kwargs)
    return out


class ProgressiveFusion(nn.Module):
    """Progressive fusion encoder-decoder for N modalities (+ metadata); see the module doc.

    Args:
        modalities: modality name → channels, e.g. ``{"s2": 10, "s1": 2}``.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none.
        backbone: timm CNN for every modality's encoder (``resnet50``, ``mobilenetv2_100``,
            ...).
        depth: encoder stages used after the stem (2 … what the backbone has; ``None``: all);
            the decoder has ``depth - 1`` stages.
        width: base width of a timm ResNet backbone (``None``: timm's own widths).
        reduction: SE reduction ratio (4, 8, 16, 32 are the usual choices).
        se_min_hidden: smallest SE bottleneck width (1: the plain ``C // r``).
        dropout: dropout before the classifier.
        refine_steps: backprojection repeats at every decoder stage (0: none).
        fusion_at: ``"decoder"`` (fusion layer at every decoder stage, the paper) or
            ``"encoder"`` (after every encoder stage, one shared decoder).
        gated_fusion: per-pixel learned gates on the modalities in every fusion layer.
        meta_embed_dim: width of the metadata embedding.
        metadata_mode: how metadata enters the fusion layers: ``"film"`` or ``"add"``.
        pretrained: load timm's pretrained encoder weights (timm's cache or the hub).
        pretrained_file: a local checkpoint of the timm backbone (implies ``pretrained``).
        backbone_kwargs: further arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        backbone: str = "resnet50",
        depth: int | None = None,
        width: int | None = None,
        reduction: int = 8,
        se_min_hidden: int = 1,
        dropout: float = 0.2,
        refine_steps: int = 1,
        fusion_at: Literal["decoder", "encoder"] = "decoder",
        gated_fusion: bool = False,
        meta_embed_dim: int = 64,
        metadata_mode: Literal["film", "add"] = "film",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        num_classes = check_int("num_classes", num_classes, 1)
        if depth is not None:
            depth = check_int("depth", depth, 2)
        reduction = check_int("reduction", reduction, 1)
        se_min_hidden = check_int("se_min_hidden", se_min_hidden, 1)
        refine_steps = check_int("refine_steps", refine_steps, 0)
        meta_embed_dim = check_int("meta_embed_dim", meta_embed_dim, 1)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
            raise ConfigError(f"dropout: must be in [0, 1), got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {dropout!r}")
        if fusion_at not in FUSION_AT:
            raise ConfigError(f"fusion_at: must be one of {list(FUSION_AT)}, got {fusion_at!r}")
        if metadata_mode not in ("film", "add"):
            raise ConfigError(f"metadata_mode: must be 'film' or 'add', got {metadata_mode!r}")
        kwargs = _resnet_width(backbone, width, dict(backbone_kwargs or {}))

        self.modalities: tuple[str, ...] = tuple(mods)
        self.in_chans = dict(mods)
        self.num_classes = num_classes
        self.metadata_dim = metadata_dim = check_metadata_dim(metadata_dim)
        self.refine_steps = refine_steps
        self.fusion_at = fusion_at
        self.encoders = nn.ModuleDict(
            {
                m: ModalityEncoder(
                    backbone, c, depth, reduction, se_min_hidden, pretrained, pretrained_file,
                    kwargs,
                )
                for m, c in mods.items()
            }
        )
        first = self.encoders[self.modalities[0]]
        self.depth = len(first.channels)
        self.channels: tuple[int, ...] = first.channels
        ch, d = self.channels, self.depth
        self.meta_embed = (
            MetadataEmbedding(metadata_dim, meta_embed_dim) if metadata_dim > 0 else None
        )
        emb = meta_embed_dim if metadata_dim > 0 else 0
        n = len(mods)
        # fusion[i] merges the modalities at level i (decoder stage i, or encoder stage i)
        self.fusion = nn.ModuleList(
            StageFusion([c] * n, c, gated_fusion, emb, metadata_mode) for c in ch
        )

        def decoder() -> nn.ModuleList:
            return nn.ModuleList(
                DecoderStage(ch[j + 1], ch[j], ch[j], reduction, se_min_hidden)
                for j in range(d - 1)
            )

        # decoder[m][j] (per modality, fusion_at="decoder") or decoder[j] (shared) makes d_j
        self.decoder: nn.Module = (
            nn.ModuleDict({m: decoder() for m in mods}) if fusion_at == "decoder" else decoder()
        )
        # backproj[m][j]: level-j features → input of encoder stage j of modality m
        self.backproj: nn.ModuleDict | None = None
        if refine_steps > 0:
            self.backproj = nn.ModuleDict(
                {
                    m: nn.ModuleList(
                        BackProjection(ch[j], self.encoders[m].in_channels[j]) for j in range(d - 1)
                    )
                    for m in mods
                }
            )
        self.num_features = ch[0] + ch[-1]
        self.head_drop = nn.Dropout(float(dropout))
        self.head = nn.Linear(self.num_features, num_classes)

    def _feedback(self, j: int, source: Tensor, ins: list[Tensor]) -> list[Tensor]:
        """Re-run encoder stage ``j`` of every modality with ``source`` backprojected into it."""
        assert self.backproj is not None
        return [
            self.encoders[m].forward_stage(
                j, x + self.backproj[m][j](source, (x.shape[-2], x.shape[-1]))
            )
            for m, x in zip(self.modalities, ins, strict=True)
        ]

    def forward_levels(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """Return the fused (decoder mode) or decoded (encoder mode) maps of levels 0 … D-1."""
        xs = gather_inputs(inputs, self.modalities)
        meta = get_metadata(inputs, self.metadata_dim)
        emb = self.meta_embed(meta) if meta is not None and self.meta_embed is not None else None
        mods = self.modalities
        present = presence(inputs, mods)  # a missing modality enters each fusion as its stand-in
        # ins[i][k]: input of encoder stage i of modality k; enc[i][k]: its output
        stems = [self.encoders[m].stem(x) for m, x in zip(mods, xs, strict=True)]
        ins: list[list[Tensor]] = [stems]
        enc: list[list[Tensor]] = []
        for i in range(self.depth):
            enc.append(
                [self.encoders[m].forward_stage(i, h) for m, h in zip(mods, ins[i], strict=True)]
            )
            ins.append(enc[i])
        steps = self.refine_steps if self.backproj is not None else 0
        out: list[Tensor] = [enc[0][0]] * self.depth
        if self.fusion_at == "decoder":
            assert isinstance(self.decoder, nn.ModuleDict)
            out[-1] = self.fusion[-1](enc[-1], emb, present)
            ys = enc[-1]
            for j in reversed(range(self.depth - 1)):
                dec = [self.decoder[m][j](y, e) for m, y, e in zip(mods, ys, enc[j], strict=True)]
                fused = self.fusion[j](dec, emb, present)
                for _ in range(steps):
                    enc[j] = self._feedback(j, fused, ins[j])
                    dec = [
                        self.decoder[m][j](y, e) for m, y, e in zip(mods, ys, enc[j], strict=True)
                    ]
                    fused = self.fusion[j](dec, emb, present)
                out[j] = fused
                ys = dec
            return out
        assert isinstance(self.decoder, nn.ModuleList)
        skips = [self.fusion[i](enc[i], emb, present) for i in range(self.depth)]
        out[-1] = y = skips[-1]
        for j in reversed(range(self.depth - 1)):
            dec_j = self.decoder[j](y, skips[j])
            for _ in range(steps):
                enc[j] = self._feedback(j, dec_j, ins[j])
                skips[j] = self.fusion[j](enc[j], emb, present)
                dec_j = self.decoder[j](y, skips[j])
            out[j] = y = dec_j
        return out

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Pooled features (B, ``num_features``) before dropout and the classifier."""
        levels = self.forward_levels(inputs)
        return torch.cat([levels[0].mean(dim=(2, 3)), levels[-1].mean(dim=(2, 3))], dim=1)

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
    """Progressive fusion around any timm CNN (``backbone=``, default ``resnet50``)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create("progressive_fusion", {}, kwargs)


@register_model
def progressive_fusion_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """CPU-sized: timm ResNet with one BasicBlock per stage, width 32, depth 3, SE r=8."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "backbone": "resnet18",
        "backbone_kwargs": {"layers": (1, 1, 1, 1)},
        "width": 32,
        "depth": 3,
        "reduction": 8,
        "dropout": 0.2,
        "refine_steps": 1,
    }
    return _create("progressive_fusion_small", defaults, kwargs)


@register_model
def progressive_fusion_base(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """Timm ``resnet18`` encoders (4 stages), SE r=16 (the study's first setting)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {"backbone": "resnet18", "reduction": 16, "dropout": 0.3, "refine_steps": 1}
    return _create("progressive_fusion_base", defaults, kwargs)


@register_model
def progressive_fusion_mobilenetv2(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """Timm ``mobilenetv2_100`` encoders, SE r=8, dropout 0.5 (the study's shallower model)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "backbone": "mobilenetv2_100",
        "reduction": 8,
        "dropout": 0.5,
        "refine_steps": 1,
    }
    return _create("progressive_fusion_mobilenetv2", defaults, kwargs)


@register_model
def progressive_fusion_globe(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """GLOBE photo + metadata: timm ``resnet50`` encoder, SE r=8, dropout 0.5.

    The study's tuned setting (section 4.2: reduction 16 → 8, dropout 0.5-0.7); the metadata
    vector (``metadata_dim``) is injected by FiLM in every decoder-stage fusion layer. The
    paper starts from pretrained ResNet50 weights: ``pretrained=True`` (timm's cache) or
    ``pretrained_file=...`` (a local checkpoint); off by default.
    """
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "backbone": "resnet50",
        "reduction": 8,
        "dropout": 0.5,
        "refine_steps": 1,
        "metadata_mode": "film",
    }
    return _create("progressive_fusion_globe", defaults, kwargs)


@register_model
def test_progressive_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """Tiny progressive fusion (tiny timm ResNet, depth 2, one feedback step) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "backbone": "resnet18",
        "backbone_kwargs": TINY_RESNET,
        "depth": 2,
        "reduction": 4,
        "refine_steps": 1,
        "meta_embed_dim": 8,
    }
    return _create("test_progressive_fusion", defaults, kwargs)


@register_model
def test_progressive_fusion_encoder(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ProgressiveFusion:
    """Tiny progressive fusion with fusion after every encoder stage, for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "backbone": "resnet18",
        "backbone_kwargs": TINY_RESNET,
        "depth": 2,
        "reduction": 4,
        "refine_steps": 1,
        "fusion_at": "encoder",
        "meta_embed_dim": 8,
    }
    return _create("test_progressive_fusion_encoder", defaults, kwargs)
