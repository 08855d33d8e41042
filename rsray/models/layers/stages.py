"""A timm CNN cut into its stem and stages, so a model can re-enter any stage.

Progressive fusion sends decoder features back into encoder stage ``j`` while the decoder
runs, which needs the encoder as separate stages rather than timm's one-call
``features_only`` network. :func:`split_timm_stages` builds the full timm model (with its
pretrained weights, from timm's cache or a local file), wraps it in timm's own
``FeatureListNet`` with every feature level, and cuts that module list after each level::

    resnet50         stem: conv1 bn1 act1 (/2)
                     stages: maxpool+layer1, layer2, layer3, layer4 (/4 … /32)
    mobilenetv2_100  stem: conv_stem bn1 blocks.0 (/2)
                     stages: blocks.1, blocks.2, blocks.3-4, blocks.5-6 (/4 … /32)

Any timm CNN whose feature levels are module boundaries works (ResNets, MobileNets,
EfficientNets, ConvNeXts, RegNets, ...); a model timm can only serve through hooks is
rejected with a one-line error.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, NamedTuple

from timm.models._features import FeatureListNet
from torch import nn

from rsray.errors import ConfigError
from rsray.models.layers.backbones import create_timm_backbone

__all__ = ["TimmStages", "split_timm_stages"]


class TimmStages(NamedTuple):
    """A timm CNN as a stem and stages."""

    stem: nn.Sequential
    """Modules up to the first feature level (its output feeds stage 0)."""
    stages: list[nn.Sequential]
    """One module per further feature level, shallow to deep."""
    stem_channels: int
    """Channels of the stem output."""
    channels: list[int]
    """Output channels of every stage."""
    reductions: list[int]
    """Output stride of every stage."""


def split_timm_stages(
    name: str,
    *,
    in_chans: int,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> TimmStages:
    """Build timm model ``name`` and cut it into stem + stages at its feature levels.

    Args:
        name: a timm CNN (``resnet50``, ``mobilenetv2_100``, ``efficientnet_b0``, ...).
        in_chans: input channels (timm adapts pretrained stem weights to them).
        pretrained: load timm's pretrained weights (timm's cache or the Hugging Face hub).
        pretrained_file: a local checkpoint of the same timm model (implies ``pretrained``).
        backbone_kwargs: further arguments for ``timm.create_model``.

    Raises:
        ConfigError: unknown name, or a model whose feature levels are not module boundaries.
    """
    model = create_timm_backbone(
        name,
        in_chans=in_chans,
        num_classes=0,
        pretrained=pretrained,
        pretrained_file=pretrained_file,
        backbone_kwargs=backbone_kwargs,
    )
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or len(info) < 3:
        raise ConfigError(
            f"backbone: timm model {name!r} has no feature levels to cut into stages; use a "
            "timm CNN such as 'resnet50' or 'mobilenetv2_100'"
        )
    levels = list(range(len(info)))
    flatten = any("." in str(f.get("module", "")) for f in info)
    try:
        net = FeatureListNet(model, out_indices=levels, flatten_sequential=flatten)
    except (AssertionError, KeyError, AttributeError) as e:
        raise ConfigError(
            f"backbone: timm model {name!r} cannot be cut into stages at its feature levels "
            f"({e}); use a CNN such as 'resnet50' or 'mobilenetv2_100'"
        ) from None
    cuts = dict(net.return_layers)
    segments: list[list[nn.Module]] = [[]]
    for key, module in net.items():
        segments[-1].append(module)
        if key in cuts:
            segments.append([])
    segments = [s for s in segments if s]
    if len(segments) != len(levels):
        raise ConfigError(f"backbone: could not cut timm model {name!r} into {len(levels)} stages")
    channels = net.feature_info.channels()
    reductions = net.feature_info.reduction()
    if any(b <= a for a, b in itertools.pairwise(reductions)):
        raise ConfigError(
            f"backbone: timm model {name!r} has feature levels at strides {reductions}; "
            "progressive fusion needs a CNN whose every stage downsamples (e.g. 'resnet50')"
        )
    return TimmStages(
        stem=nn.Sequential(*segments[0]),
        stages=[nn.Sequential(*s) for s in segments[1:]],
        stem_channels=channels[0],
        channels=list(channels[1:]),
        reductions=list(reductions[1:]),
    )
