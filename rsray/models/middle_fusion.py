"""Middle fusion: per-modality timm backbones up to a stage, merged, finished by a shared trunk.

The SEN12MS deep-fusion study's "DFNN1" (deep-fusion-sen12ms-resnet.txt, section 3.2): one
ResNet101 per modality and a third one for the fused data; "after the 2nd hidden layer, the
tensors are averaged together and the forward pass finishes using the third network"::

    s2 (B, 10, H, W) ─ stages 0..k of backbone_s2 ─┐
    s1 (B,  2, H, W) ─ stages 0..k of backbone_s1 ─┴─ merge ─ stages k+1.. of the trunk ─ head
                                                        (mean, or concat + 1x1 conv)

Stages follow timm's ``feature_info``: stage ``i`` ends where feature ``i`` is taken. For a
timm ResNet, stage 0 is the stem convolution (stride 2), stage 1 the max-pool and ``layer1``,
stages 2-4 ``layer2``-``layer4``; ``fusion_stage=2`` is the paper's setting. For the
EfficientNet family (``mobilenetv2_100``, ``efficientnet_b0``, ...), stage 0 is the stem and the
first block group, and the final 1x1 ``conv_head`` always belongs to the trunk. Each branch and
the trunk hold only the layers they run, so every parameter is trained.

``merge="mean"`` averages the branch maps (the paper; the branches share the architecture, so
channels agree); ``merge="concat"`` concatenates them and maps back to the stage's channels
with a 1x1 convolution, BN and ReLU. Maps of different sizes are resized (bilinear) to the
first modality's. With ``metadata_dim > 0`` an MLP embedding of the metadata is concatenated
with the trunk's pooled features before the classifier.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import ResNet
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.backbones import (
    TINY_RESNET,
    check_head_args,
    create_timm_backbone,
    one_file,
)
from rsray.models.layers.fusion import (
    MetadataEmbedding,
    check_int,
    check_metadata_dim,
    gather_inputs,
    get_metadata,
    presence,
    validate_modalities,
)
from rsray.models.registry import build_model_with_cfg, register_model

__all__ = ["MiddleFusionCNN", "split_timm_stages"]

TASK = "classification"

# The modules ``forward_features`` runs, in order, per supported timm model class. A name
# ending in ".*" is a Sequential whose children are listed one by one.
_BODY: dict[type[nn.Module], tuple[str, ...]] = {
    ResNet: ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"),
    EfficientNet: ("conv_stem", "bn1", "blocks.*", "conv_head", "bn2"),
}


def split_timm_stages(model: nn.Module) -> tuple[list[list[tuple[str, nn.Module]]], list[int]]:
    """Cut a timm CNN's feature extractor into stages at its ``feature_info`` points.

    Args:
        model: a timm ``ResNet`` or ``EfficientNet`` (MobileNetV2 is one).

    Returns:
        ``(stages, channels)``: ``stages[i]`` is the ordered ``(name, module)`` list from the
        end of stage ``i - 1`` to feature point ``i``, and a last extra entry holds what
        ``forward_features`` runs after the last feature point (EfficientNet's ``conv_head``
        and ``bn2``; empty for ResNet). ``channels[i]`` is the width of feature ``i``.

    Raises:
        ConfigError: the model's class is not one of the supported families.
    """
    body = next((names for cls, names in _BODY.items() if isinstance(model, cls)), None)
    if body is None:
        supported = ", ".join(cls.__name__ for cls in _BODY)
        raise ConfigError(
            f"backbone: middle fusion splits timm {supported} models into stages; "
            f"{type(model).__name__} is not supported (try resnet18/50/101 or mobilenetv2_100)"
        )
    flat: list[tuple[str, nn.Module]] = []
    for name in body:
        if name.endswith(".*"):
            parent = name[:-2]
            flat += [(f"{parent}.{c}", m) for c, m in model.get_submodule(parent).named_children()]
        else:
            flat.append((name, model.get_submodule(name)))
    names = [n for n, _ in flat]
    stages: list[list[tuple[str, nn.Module]]] = []
    start = 0
    for info in model.feature_info:
        end = names.index(info["module"]) + 1
        stages.append(flat[start:end])
        start = end
    stages.append(flat[start:])
    return stages, [int(info["num_chs"]) for info in model.feature_info]


def _sequential(parts: list[tuple[str, nn.Module]]) -> nn.Sequential:
    """An ``nn.Sequential`` keeping timm's module names (dots become underscores)."""
    return nn.Sequential(OrderedDict((n.replace(".", "_"), m) for n, m in parts))


class MiddleFusionCNN(nn.Module):
    """Per-modality timm backbones up to ``fusion_stage``, merged, and a shared trunk.

    Args:
        modalities: modality name → channels, e.g. ``{"s2": 10, "s1": 2}``.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none.
        backbone: timm model name (ResNet or EfficientNet/MobileNetV2 family) used for every
            branch and the trunk.
        fusion_stage: last stage run per modality (0 … number of stages - 1; 2 in the paper:
            after ResNet's ``layer2``). The last stage gives feature-level fusion before the
            pooling (plus EfficientNet's head convolution).
        merge: ``"mean"`` (the paper) or ``"concat"`` (concatenate, 1x1 conv back).
        pretrained: load timm's pretrained weights into branches and trunk.
        pretrained_file: a local checkpoint of the timm backbone for branches and trunk
            (implies ``pretrained``).
        drop_rate: dropout before the classifier.
        meta_embed_dim: width of the metadata embedding.
        backbone_kwargs: further arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        backbone: str = "resnet18",
        fusion_stage: int = 2,
        merge: Literal["mean", "concat"] = "mean",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        drop_rate: float = 0.0,
        meta_embed_dim: int = 64,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        check_head_args(num_classes, drop_rate)
        num_classes = int(num_classes)
        meta_embed_dim = check_int("meta_embed_dim", meta_embed_dim, 1)
        if merge not in ("mean", "concat"):
            raise ConfigError(f"merge: must be 'mean' or 'concat', got {merge!r}")
        self.modalities: tuple[str, ...] = tuple(mods)
        self.in_chans = dict(mods)
        self.num_classes = num_classes
        self.metadata_dim = metadata_dim = check_metadata_dim(metadata_dim)
        self.merge = merge

        def make(in_chans: int) -> nn.Module:
            return create_timm_backbone(
                backbone,
                in_chans=in_chans,
                num_classes=0,
                pretrained=pretrained,
                pretrained_file=one_file(pretrained_file),
                backbone_kwargs=backbone_kwargs,
            )

        trunk_model = make(next(iter(mods.values())))
        stages, channels = split_timm_stages(trunk_model)
        n_stages = len(channels)
        self.fusion_stage = fusion_stage = check_int("fusion_stage", fusion_stage, 0, n_stages - 1)
        self.branches = nn.ModuleDict()
        for m, c in mods.items():
            branch_stages, _ = split_timm_stages(make(c))
            self.branches[m] = _sequential(
                [part for stage in branch_stages[: fusion_stage + 1] for part in stage]
            )
        width = channels[fusion_stage]
        self.fuse: nn.Module | None = None
        if merge == "concat":
            self.fuse = nn.Sequential(
                nn.Conv2d(width * len(mods), width, kernel_size=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
        self.trunk = _sequential([part for stage in stages[fusion_stage + 1 :] for part in stage])
        self.num_features = int(trunk_model.num_features)
        self.meta_embed: MetadataEmbedding | None = None
        head_in = self.num_features
        if metadata_dim > 0:
            self.meta_embed = MetadataEmbedding(metadata_dim, meta_embed_dim)
            head_in += meta_embed_dim
        self.pool = SelectAdaptivePool2d(pool_type="avg", flatten=True)
        self.head_drop = nn.Dropout(float(drop_rate))
        self.head = nn.Linear(head_in, num_classes)

    def fused_map(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The merged feature map at ``fusion_stage`` (before the trunk)."""
        xs = gather_inputs(inputs, self.modalities)
        feats = [self.branches[m](x) for m, x in zip(self.modalities, xs, strict=True)]
        size = feats[0].shape[-2:]
        feats = [
            f
            if f.shape[-2:] == size
            else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            for f in feats
        ]
        present = presence(inputs, self.modalities)  # (B, M) or None
        if present is not None:  # a missing modality's features are zeros, left out of the mean
            feats = [f * present[:, i, None, None, None].to(f.dtype) for i, f in enumerate(feats)]
        if self.fuse is not None:
            return self.fuse(torch.cat(feats, dim=1))
        if present is not None:
            count = present.sum(1).clamp_min(1.0)[:, None, None, None].to(feats[0].dtype)
            return torch.stack(feats, dim=0).sum(dim=0) / count
        return torch.stack(feats, dim=0).mean(dim=0)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes) from ``{modality: (B, C, H, W)}`` (+ ``"metadata"``)."""
        x = self.pool(self.trunk(self.fused_map(inputs)))
        meta = get_metadata(inputs, self.metadata_dim)
        if meta is not None and self.meta_embed is not None:
            x = torch.cat([x, self.meta_embed(meta)], dim=1)
        return self.head(self.head_drop(x))


def _create(variant: str, defaults: dict[str, Any], kwargs: dict[str, Any]) -> MiddleFusionCNN:
    return build_model_with_cfg(MiddleFusionCNN, variant, defaults, kwargs)


# --------------------------------------------------------------------------- variants


@register_model
def middle_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionCNN:
    """Middle fusion around any timm ResNet/EfficientNet (default ``resnet18``, stage 2)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create("middle_fusion_cnn", {}, kwargs)


@register_model
def middle_fusion_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionCNN:
    """Middle fusion, timm ``resnet18`` branches averaged after ``layer2``."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create("middle_fusion_resnet18", {"backbone": "resnet18"}, kwargs)


@register_model
def middle_fusion_resnet50(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionCNN:
    """Middle fusion, timm ``resnet50`` branches averaged after ``layer2``."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create("middle_fusion_resnet50", {"backbone": "resnet50"}, kwargs)


@register_model
def middle_fusion_resnet101(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionCNN:
    """The SEN12MS study's DFNN1: ``resnet101`` branches averaged after ``layer2``."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create("middle_fusion_resnet101", {"backbone": "resnet101"}, kwargs)


@register_model
def middle_fusion_mobilenetv2(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionCNN:
    """Middle fusion, timm ``mobilenetv2_100`` branches averaged at stride 8."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create("middle_fusion_mobilenetv2", {"backbone": "mobilenetv2_100"}, kwargs)


@register_model
def test_middle_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionCNN:
    """Tiny middle fusion (4-stage ResNet with 8-16 channels), for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET, "meta_embed_dim": 8}
    return _create("test_middle_fusion_cnn", defaults, kwargs)
