"""Building blocks shared by the model families: encoders, fusion, ViT blocks, SE, segmenters.

Families (``rsray.models.<family>``) import from here and from the registry only, never from
each other: LF-DLM and U-Net + U-TAE reuse the UNetFormer and U-TAE networks of
:mod:`~rsray.models.layers.unetformer` and :mod:`~rsray.models.layers.utae`.
"""

from rsray.models.layers.backprojection import BackProjection
from rsray.models.layers.fusion import (
    METADATA_KEY,
    MetadataEmbedding,
    MetadataInjection,
    StageFusion,
    check_int,
    check_metadata_dim,
    gather_inputs,
    get_metadata,
    validate_modalities,
)
from rsray.models.layers.se import SqueezeExcite, se_hidden_width

__all__ = [
    "METADATA_KEY",
    "BackProjection",
    "MetadataEmbedding",
    "MetadataInjection",
    "SqueezeExcite",
    "StageFusion",
    "check_int",
    "check_metadata_dim",
    "gather_inputs",
    "get_metadata",
    "se_hidden_width",
    "validate_modalities",
]
