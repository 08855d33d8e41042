"""UNetFormer family: the registered variants of :class:`UNetFormer`.

The network (global-local Transformer decoder over any timm encoder) lives in
:mod:`rsray.models.layers.unetformer`, where LF-DLM's aerial branch takes it from too; this
module only names its variants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rsray.models.layers.unetformer import RESNET18, TINY_MAXVIT, UNetFormer
from rsray.models.registry import build_model_with_cfg, register_model

TASK = "segmentation"
"""Models of this family output per-pixel logits (B, num_classes, H, W)."""


def _create(
    variant: str,
    defaults: Mapping[str, Any],
    modalities: dict[str, int],
    num_classes: int,
    metadata_dim: int,
    kwargs: dict[str, Any],
) -> UNetFormer:
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return build_model_with_cfg(UNetFormer, variant, defaults, kwargs)


@register_model
def unetformer(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetFormer:
    """UNetFormer, MaxViT-T encoder for 512 px inputs (LF-DLM's aerial branch, ~31 M)."""
    return _create("unetformer", {}, modalities, num_classes, metadata_dim, kwargs)


@register_model
def unetformer_maxvit_tiny(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetFormer:
    """UNetFormer-MaxViT-T as in LF-DLM (timm ``maxvit_tiny_tf_512``; ~31 M parameters)."""
    cfg = {"backbone": "maxvit_tiny_tf_512", "img_size": 512}
    return _create("unetformer_maxvit_tiny", cfg, modalities, num_classes, metadata_dim, kwargs)


@register_model
def unetformer_maxvit_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetFormer:
    """UNetFormer-MaxViT-S (timm ``maxvit_small_tf_512``; ~69 M parameters)."""
    cfg = {"backbone": "maxvit_small_tf_512", "img_size": 512}
    return _create("unetformer_maxvit_small", cfg, modalities, num_classes, metadata_dim, kwargs)


@register_model
def unetformer_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetFormer:
    """The original UNetFormer (ResNet18 encoder; ~12 M parameters)."""
    return _create("unetformer_resnet18", RESNET18, modalities, num_classes, metadata_dim, kwargs)


@register_model
def test_unetformer(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UNetFormer:
    """A tiny UNetFormer with a tiny MaxViT for tests (64 px inputs)."""
    return _create("test_unetformer", TINY_MAXVIT, modalities, num_classes, metadata_dim, kwargs)
