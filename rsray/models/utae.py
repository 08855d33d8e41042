"""U-TAE family: the registered variants of :class:`~rsray.models.layers.utae.UTAESegmenter`.

The network (U-Net encoder per date, L-TAE temporal attention at the bottleneck) lives in
:mod:`rsray.models.layers.utae`, where LF-DLM's series branch and U-Net + U-TAE take it from
too; this module only names its variants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rsray.models.layers.utae import FLAIR2_UTAE, SMALL_UTAE, TINY_UTAE, UTAESegmenter
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
) -> UTAESegmenter:
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return build_model_with_cfg(UTAESegmenter, variant, defaults, kwargs)


@register_model
def utae(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UTAESegmenter:
    """U-TAE with the reference settings (Garnot & Landrieu 2021; ~1.1 M parameters)."""
    return _create("utae", {}, modalities, num_classes, metadata_dim, kwargs)


@register_model
def utae_flair2(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UTAESegmenter:
    """U-TAE as FLAIR-2 / LF-DLM configure it: widths 64,64,128,128; crop 10, output 512."""
    cfg = {**FLAIR2_UTAE, "crop_size": 10, "output_size": 512}
    return _create("utae_flair2", cfg, modalities, num_classes, metadata_dim, kwargs)


@register_model
def utae_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UTAESegmenter:
    """A narrow U-TAE: widths 32,32,64 / 16,32,64, 8 heads, d_model 128."""
    cfg = {**SMALL_UTAE, "out_conv": (16,)}
    return _create("utae_small", cfg, modalities, num_classes, metadata_dim, kwargs)


@register_model
def test_utae(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> UTAESegmenter:
    """A tiny U-TAE for tests: widths 8,16, 4 heads, d_model 16, d_k 2."""
    cfg = {**TINY_UTAE, "out_conv": (8,)}
    return _create("test_utae", cfg, modalities, num_classes, metadata_dim, kwargs)
