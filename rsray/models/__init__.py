"""Fusion models and their registry.

Importing this package registers every model family (timm habit): ``cnn_fusion``
(single-modality, early and late fusion around timm backbones), ``middle_fusion`` (per-modality
backbones merged at a stage, shared trunk), ``progressive`` (SE encoder-decoder with per-stage
fusion and backprojection), ``vit_fusion`` (the six ViT fusion methods of the BigEarthNet-MM
thesis), ``gated_fusion`` (learned gated / attention fusion), and the segmentation families.
:func:`model_task` tells a family's task. Build a model by name::

    from rsray.models import create_model, list_models

    model = create_model("progressive_fusion_small", modalities={"s2": 10, "s1": 2},
                         num_classes=19, metadata_dim=0, refine_steps=2)
    logits = model({"s2": s2, "s1": s1})          # (B, 19)
"""

from rsray.models import (
    cnn_fusion,
    gated_fusion,
    lf_dlm,
    middle_fusion,
    progressive,
    unet_utae,
    unetformer,
    utae,
    vit_fusion,
)
from rsray.models.registry import (
    CONTRACT,
    build_model_with_cfg,
    create_model,
    is_model,
    list_models,
    model_entrypoint,
    model_module,
    model_task,
    register_model,
)

__all__ = [
    "CONTRACT",
    "build_model_with_cfg",
    "cnn_fusion",
    "create_model",
    "gated_fusion",
    "is_model",
    "lf_dlm",
    "list_models",
    "middle_fusion",
    "model_entrypoint",
    "model_module",
    "model_task",
    "progressive",
    "register_model",
    "unet_utae",
    "unetformer",
    "utae",
    "vit_fusion",
]
