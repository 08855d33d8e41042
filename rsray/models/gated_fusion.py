"""Learned fusion: gated and attention fusion of per-modality encoders (geo-covariates study).

The geo-covariates study (geo-covariates-data-efficiency-ood.txt) compares *hard-coded* fusion
(covariate layers stacked as extra channels: :class:`~rsray.models.cnn_fusion.EarlyFusionCNN`)
with *learned* fusion, for optical imagery plus any set of covariate layers (DEM, land-cover
maps, temperature, wind, NDVI, ...). Both learned variants encode every modality separately::

    s2      (B, 10, H, W) ─ timm backbone_s2      ─ 1x1 proj ─ f_s2 ─┐
    dem     (B,  1, H, W) ─ timm backbone_dem     ─ 1x1 proj ─ f_dem ┼─ fuse ─ Z ─ pool ─ head
    climate (B,  2, H, W) ─ timm backbone_climate ─ 1x1 proj ─ f_cl ─┤
    metadata (B, M)       ─ MLP ─────────────────────────── f_meta ─┘  (with metadata_dim > 0)

* **Gated fusion** (:class:`GatedFusionCNN`): ``Z = Σ_k g_k(f_1, …, f_K) · f_k(X_k)``. The
  gate network (1x1 conv → ReLU → 1x1 conv on the concatenated branch features, so every
  gate sees all inputs) gives one gate per branch; ``gate_activation="softmax"`` makes the
  gates a convex combination (they sum to 1 over the branches), ``"sigmoid"`` gates each
  branch independently in (0, 1) (the gated multimodal unit's choice). With
  ``spatial_gates=True`` gates and ``Z`` are per location of the feature maps (maps of
  different sizes are resized to the first modality's); otherwise per sample, on pooled
  features.
* **Attention fusion** (:class:`AttentionFusionCNN`): each branch's pooled feature is a token
  (plus a learned modality embedding); ``depth`` timm Transformer layers let the modality
  tokens attend to each other, then a learned query attends over them: per head,
  ``a = softmax_k(q · W_k t_k / sqrt(d))`` and ``Z = W_o Σ_k a_k W_v t_k``. The weights ``a``
  (which modality the model looks at) are returned by :meth:`AttentionFusionCNN.attention`.

The study found the hard-coded concatenation better than both learned variants; rsray ships
all three so the comparison can be rerun at scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.backbones import (
    TINY_RESNET,
    branch_file,
    check_head_args,
    create_timm_backbone,
)
from rsray.models.layers.fusion import (
    METADATA_KEY,
    MetadataEmbedding,
    check_int,
    check_metadata_dim,
    gather_inputs,
    get_metadata,
    presence,
    validate_modalities,
)
from rsray.models.registry import build_model_with_cfg, register_model

__all__ = ["AttentionFusionCNN", "BranchEncoders", "GatedFusionCNN"]

TASK = "classification"


class BranchEncoders(nn.Module):
    """One timm backbone + 1x1 projection to ``width`` per modality, and a metadata branch.

    Args:
        modalities: modality name → channels.
        width: channels of every branch's output ``f_k``.
        backbone: timm model name for every modality, or a mapping modality → name (e.g. a
            small ``resnet10t`` for a 1-channel DEM).
        metadata_dim: length of the metadata vector; 0 for none.
        meta_embed_dim: width of the metadata MLP.
        pretrained: load timm's pretrained weights.
        backbone_kwargs: further arguments for ``timm.create_model`` (every branch).
        pretrained_file: a local checkpoint of the timm backbone for every branch (implies
            ``pretrained``), or a mapping modality → checkpoint.
    """

    def __init__(
        self,
        modalities: Mapping[str, int],
        width: int,
        backbone: str | Mapping[str, str],
        metadata_dim: int,
        meta_embed_dim: int,
        pretrained: bool,
        backbone_kwargs: Mapping[str, Any] | None,
        pretrained_file: str | Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        if isinstance(backbone, Mapping):
            missing = [m for m in modalities if m not in backbone]
            if missing:
                raise ConfigError(f"backbone: no backbone given for modalities {missing}")
            names = {m: backbone[m] for m in modalities}
        else:
            names = dict.fromkeys(modalities, backbone)
        self.backbones = nn.ModuleDict(
            {
                m: create_timm_backbone(
                    names[m],
                    in_chans=c,
                    num_classes=0,
                    pretrained=pretrained,
                    pretrained_file=branch_file(pretrained_file, m),
                    backbone_kwargs=backbone_kwargs,
                )
                for m, c in modalities.items()
            }
        )
        self.proj = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.Conv2d(int(self.backbones[m].num_features), width, 1), nn.ReLU()
                )
                for m in modalities
            }
        )
        self.metadata_dim = metadata_dim
        self.meta: nn.Module | None = None
        if metadata_dim > 0:
            self.meta = nn.Sequential(
                MetadataEmbedding(metadata_dim, meta_embed_dim), nn.Linear(meta_embed_dim, width)
            )
        self.names: tuple[str, ...] = self.modalities + (
            (METADATA_KEY,) if metadata_dim > 0 else ()
        )

    def forward(self, inputs: Mapping[str, Tensor], spatial: bool) -> Tensor:
        """Branch features stacked as (B, K, width, h, w); ``h = w = 1`` unless ``spatial``."""
        xs = gather_inputs(inputs, self.modalities)
        feats = []
        for m, x in zip(self.modalities, xs, strict=True):
            f = self.backbones[m].forward_features(x)
            if not spatial:
                f = f.mean(dim=(2, 3), keepdim=True)
            feats.append(self.proj[m](f))
        size = feats[0].shape[-2:]
        feats = [
            f
            if f.shape[-2:] == size
            else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            for f in feats
        ]
        meta = get_metadata(inputs, self.metadata_dim)
        if meta is not None and self.meta is not None:
            e = self.meta(meta)[:, :, None, None]
            feats.append(e.expand(-1, -1, *size))
        return torch.stack(feats, dim=1)


class GatedFusionCNN(nn.Module):
    """Gated fusion ``Z = Σ_k g_k(all inputs) · f_k(X_k)`` (see the module docstring).

    Args:
        modalities: modality name → channels, e.g. ``{"s2": 10, "dem": 1, "climate": 2}``.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none (else it is one more branch).
        backbone: timm model name, or a mapping modality → name.
        width: channels of every branch feature ``f_k`` and of ``Z``.
        gate_hidden: hidden width of the gate network.
        gate_activation: ``"softmax"`` (gates sum to 1 over branches) or ``"sigmoid"``
            (independent gates in (0, 1)).
        spatial_gates: gates per feature-map location instead of per sample.
        dropout: dropout before the classifier.
        pretrained: load timm's pretrained weights.
        pretrained_file: a local checkpoint of the timm backbone (every branch; implies
            ``pretrained``), or a mapping modality → checkpoint.
        meta_embed_dim: width of the metadata MLP.
        backbone_kwargs: further arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        backbone: str | Mapping[str, str] = "resnet18",
        width: int = 256,
        gate_hidden: int = 64,
        gate_activation: Literal["softmax", "sigmoid"] = "softmax",
        spatial_gates: bool = False,
        dropout: float = 0.0,
        pretrained: bool = False,
        pretrained_file: str | Mapping[str, str] | None = None,
        meta_embed_dim: int = 64,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        check_head_args(num_classes, dropout, "dropout")
        width = check_int("width", width, 1)
        gate_hidden = check_int("gate_hidden", gate_hidden, 1)
        meta_embed_dim = check_int("meta_embed_dim", meta_embed_dim, 1)
        if gate_activation not in ("softmax", "sigmoid"):
            raise ConfigError(
                f"gate_activation: must be 'softmax' or 'sigmoid', got {gate_activation!r}"
            )
        self.modalities: tuple[str, ...] = tuple(mods)
        self.in_chans = dict(mods)
        self.num_classes = int(num_classes)
        self.metadata_dim = metadata_dim = check_metadata_dim(metadata_dim)
        self.gate_activation = gate_activation
        self.spatial_gates = bool(spatial_gates)
        self.branches = BranchEncoders(
            mods, width, backbone, metadata_dim, meta_embed_dim, pretrained, backbone_kwargs,
            pretrained_file,
        )
        self.branch_names = self.branches.names
        k = len(self.branch_names)
        self.gate = nn.Sequential(
            nn.Conv2d(k * width, gate_hidden, 1), nn.ReLU(), nn.Conv2d(gate_hidden, k, 1)
        )
        self.head_drop = nn.Dropout(float(dropout))
        self.head = nn.Linear(width, self.num_classes)

    def gates_and_features(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Gates (B, K, h, w) and branch features (B, K, width, h, w), K in ``branch_names``."""
        feats = self.branches(inputs, self.spatial_gates)
        logits = self.gate(feats.flatten(1, 2))
        present = presence(inputs, self.branch_names)  # (B, K) or None
        if present is not None:  # a missing modality gets gate 0
            absent = (present == 0)[:, :, None, None].expand_as(logits)
            if self.gate_activation == "softmax":
                return logits.masked_fill(absent, float("-inf")).softmax(dim=1), feats
            return torch.sigmoid(logits).masked_fill(absent, 0.0), feats
        if self.gate_activation == "softmax":
            return logits.softmax(dim=1), feats
        return torch.sigmoid(logits), feats

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes) from ``{modality: (B, C, H, W)}`` (+ ``"metadata"``)."""
        gates, feats = self.gates_and_features(inputs)
        z = (gates.unsqueeze(2) * feats).sum(dim=1)  # (B, width, h, w)
        return self.head(self.head_drop(z.mean(dim=(2, 3))))


class AttentionFusionCNN(nn.Module):
    """Attention fusion of per-modality encoder tokens (see the module docstring).

    Args:
        modalities: modality name → channels.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none (else it is one more token).
        backbone: timm model name, or a mapping modality → name.
        width: token width.
        num_heads: attention heads (must divide ``width``).
        depth: Transformer layers among the modality tokens before the attention pooling.
        dropout: dropout on the attention weights, in the layers and before the classifier.
        pretrained: load timm's pretrained weights.
        pretrained_file: a local checkpoint of the timm backbone (every branch; implies
            ``pretrained``), or a mapping modality → checkpoint.
        meta_embed_dim: width of the metadata MLP.
        backbone_kwargs: further arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        backbone: str | Mapping[str, str] = "resnet18",
        width: int = 256,
        num_heads: int = 4,
        depth: int = 1,
        dropout: float = 0.0,
        pretrained: bool = False,
        pretrained_file: str | Mapping[str, str] | None = None,
        meta_embed_dim: int = 64,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        check_head_args(num_classes, dropout, "dropout")
        width = check_int("width", width, 1)
        num_heads = check_int("num_heads", num_heads, 1)
        depth = check_int("depth", depth, 0)
        meta_embed_dim = check_int("meta_embed_dim", meta_embed_dim, 1)
        if width % num_heads:
            raise ConfigError(f"num_heads: {num_heads} does not divide width {width}")
        self.modalities: tuple[str, ...] = tuple(mods)
        self.in_chans = dict(mods)
        self.num_classes = int(num_classes)
        self.metadata_dim = metadata_dim = check_metadata_dim(metadata_dim)
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.branches = BranchEncoders(
            mods, width, backbone, metadata_dim, meta_embed_dim, pretrained, backbone_kwargs,
            pretrained_file,
        )
        self.branch_names = self.branches.names
        k = len(self.branch_names)
        self.modality_embed = nn.Parameter(torch.zeros(1, k, width))
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        self.blocks = nn.Sequential(
            *(
                Block(width, num_heads, qkv_bias=True, proj_drop=dropout, attn_drop=dropout)
                for _ in range(depth)
            )
        )
        self.norm = LayerNorm(width, eps=1e-6)
        self.query = nn.Parameter(torch.zeros(1, num_heads, 1, width // num_heads))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.head_drop = nn.Dropout(self.dropout)
        self.head = nn.Linear(width, self.num_classes)

    def _tokens(self, inputs: Mapping[str, Tensor], present: Tensor | None = None) -> Tensor:
        feats = self.branches(inputs, spatial=False)  # (B, K, width, 1, 1)
        tokens = feats.flatten(2) + self.modality_embed
        if present is None:
            return self.norm(self.blocks(tokens))
        # missing branches are neither attended to nor pooled
        mask = torch.zeros_like(present, dtype=tokens.dtype).masked_fill(present == 0,
                                                                          float("-inf"))
        for block in self.blocks:
            tokens = block(tokens, attn_mask=mask[:, None, None, :])
        return self.norm(tokens)

    def _split(self, x: Tensor) -> Tensor:
        b, k, d = x.shape
        return x.reshape(b, k, self.num_heads, d // self.num_heads).transpose(1, 2)

    def _pool(self, tokens: Tensor, present: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Attention pooling: (fused (B, width), weights (B, heads, K)).

        Missing branches (``present`` 0) get no weight.
        """
        k, v = self._split(self.key(tokens)), self._split(self.value(tokens))
        scores = (self.query * k).sum(-1) / math.sqrt(k.shape[-1])  # (B, heads, K)
        if present is not None:
            scores = scores.masked_fill((present == 0)[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        drop = F.dropout(weights, self.dropout, self.training)
        fused = (drop.unsqueeze(-1) * v).sum(dim=2)  # (B, heads, head_dim)
        return self.out(fused.flatten(1)), weights

    def attention(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Pooling weights (B, heads, K) over the branches in ``branch_names``; sum 1 over K."""
        present = presence(inputs, self.branch_names)
        return self._pool(self._tokens(inputs, present), present)[1]

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes) from ``{modality: (B, C, H, W)}`` (+ ``"metadata"``)."""
        present = presence(inputs, self.branch_names)
        fused, _ = self._pool(self._tokens(inputs, present), present)
        return self.head(self.head_drop(fused))


def _gated(variant: str, defaults: dict[str, Any], kwargs: dict[str, Any]) -> GatedFusionCNN:
    return build_model_with_cfg(GatedFusionCNN, variant, defaults, kwargs)


def _attention(
    variant: str, defaults: dict[str, Any], kwargs: dict[str, Any]
) -> AttentionFusionCNN:
    return build_model_with_cfg(AttentionFusionCNN, variant, defaults, kwargs)


_TEST: dict[str, Any] = {
    "backbone": "resnet18",
    "backbone_kwargs": TINY_RESNET,
    "width": 16,
    "meta_embed_dim": 8,
}

# --------------------------------------------------------------------------- variants


@register_model
def gated_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> GatedFusionCNN:
    """Gated fusion around any timm backbone (default ``resnet18`` per modality, width 256)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _gated("gated_fusion_cnn", {}, kwargs)


@register_model
def gated_fusion_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> GatedFusionCNN:
    """Gated fusion, timm ``resnet18`` per modality, softmax gates per sample."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _gated("gated_fusion_resnet18", {"backbone": "resnet18"}, kwargs)


@register_model
def gated_fusion_resnet50(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> GatedFusionCNN:
    """Gated fusion, timm ``resnet50`` per modality, softmax gates per sample."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _gated("gated_fusion_resnet50", {"backbone": "resnet50"}, kwargs)


@register_model
def gated_fusion_spatial_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> GatedFusionCNN:
    """Gated fusion, timm ``resnet18`` per modality, softmax gates per feature-map location."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {"backbone": "resnet18", "spatial_gates": True}
    return _gated("gated_fusion_spatial_resnet18", defaults, kwargs)


@register_model
def attention_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> AttentionFusionCNN:
    """Attention fusion around any timm backbone (default ``resnet18``, width 256, 4 heads)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _attention("attention_fusion_cnn", {}, kwargs)


@register_model
def attention_fusion_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> AttentionFusionCNN:
    """Attention fusion, timm ``resnet18`` per modality, one Transformer layer, 4 heads."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _attention("attention_fusion_resnet18", {"backbone": "resnet18"}, kwargs)


@register_model
def attention_fusion_resnet50(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> AttentionFusionCNN:
    """Attention fusion, timm ``resnet50`` per modality, one Transformer layer, 4 heads."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _attention("attention_fusion_resnet50", {"backbone": "resnet50"}, kwargs)


@register_model
def test_gated_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> GatedFusionCNN:
    """Tiny gated fusion (tiny ResNets, width 16), for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _gated("test_gated_fusion_cnn", {**_TEST, "gate_hidden": 8}, kwargs)


@register_model
def test_attention_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> AttentionFusionCNN:
    """Tiny attention fusion (tiny ResNets, width 16, 2 heads), for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _attention("test_attention_fusion_cnn", {**_TEST, "num_heads": 2}, kwargs)
