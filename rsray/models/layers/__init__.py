"""Small building blocks shared by the fusion families: SE, backprojection, fusion layers."""

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
