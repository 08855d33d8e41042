"""Early and late fusion around timm CNN backbones.

Early fusion (input-level; SEN12MS "early", GLOBE "early")::

    s2 (B, 10, H, W) ─┐
    s1 (B,  2, H, W) ─┴─ concat (B, 12, H, W) ─ timm backbone (in_chans=12) ─ logits
                                              └─ (+ metadata MLP, concatenated before the head)

``metadata_at="input"`` (GLOBE's early fusion, progressive-fusion-globe-lulc.txt 3.2.2: "all
multimodal data ... are concatenated or merged before the network's deep feature extraction
layers") instead puts the metadata vector in at the input, as ``metadata_dim`` constant
channels broadcast over the image and concatenated with the rasters.

Late fusion (decision-level; SEN12MS "late", LF-DLM's weighted geometric mean)::

    s2 ─ timm backbone (in_chans=10) ─ logits_s2 ─┐
    s1 ─ timm backbone (in_chans=2)  ─ logits_s1 ─┼─ combine ─ logits
    metadata ─ MLP ───────────────── logits_meta ─┘   (only with metadata_dim > 0)

``level="feature"`` is the feature-level variant GLOBE compares (3.2.2: "the encoder processes
each modality separately ... the features are fused, usually through concatenation or
addition")::

    s2 ─ timm backbone (pooled)  ─ f_s2 ─┐
    s1 ─ timm backbone (pooled)  ─ f_s1 ─┼─ concat (or: project to fusion_dim + add) ─ Linear
    metadata ─ MLP ────────────── f_meta ┘

``combine="mean_logits"`` takes the weighted mean of the logits. ``combine="geometric"``
combines per-branch *probabilities* by a weighted geometric mean ``p = Π p_m^{w_m}`` (weights
normalised to sum 1) and returns logits again, so the usual losses apply:

* ``task="multilabel"`` (BigEarthNet): per class, ``p_m = sigmoid(z_m)`` and the output is
  ``logit(p)``, computed in log space
  (:func:`~rsray.models.layers.late_fusion.geometric_mean_logits`) so it stays finite and
  exact for saturated branches; feed it to ``BCEWithLogitsLoss``.
* ``task="multiclass"``: ``p_m = softmax(z_m)`` and the output is the log of the
  renormalised geometric mean (a valid log-softmax); feed it to ``CrossEntropyLoss``.

Note that the *renormalised* geometric mean of Bernoulli distributions is just the sigmoid of
the weighted mean logit; the unnormalised ``Π p_m^{w_m}`` used here is the LF-DLM rule and is
more conservative (it is never above the largest branch probability).

Single-modality baseline (SEN12MS "Sentinel-1" / "Sentinel-2" rows): :class:`SingleModalityCNN`
uses one named modality of the input dict (``modality=``) and ignores the others; it is early
fusion over one modality, so it shares that class' head and metadata handling.

Backbones come from timm (``timm.create_model(name, in_chans=..., num_classes=...)``), so
every timm CNN name works; ``pretrained=True`` loads timm's weights (and adapts the first
convolution to the channel count) where the machine can reach the hub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.backbones import (
    TINY_RESNET,
    branch_file,
    check_head_args,
    create_timm_backbone,
    one_file,
)
from rsray.models.layers.fusion import (
    MetadataEmbedding,
    MissingModalityFill,
    check_int,
    check_metadata_dim,
    gather_inputs,
    get_metadata,
    presence,
    validate_modalities,
)
from rsray.models.layers.late_fusion import branch_weights, geometric_mean_logits
from rsray.models.registry import build_model_with_cfg, register_model

__all__ = [
    "EarlyFusionCNN",
    "LateFusionCNN",
    "SingleModalityCNN",
]


class EarlyFusionCNN(nn.Module):
    """Modalities concatenated on channels into one timm backbone.

    A modality missing from a sample (``<modality>_present`` 0) enters as a learned value per
    channel (:class:`~rsray.models.layers.fusion.MissingModalityFill`), not as its tensor.

    Args:
        modalities: modality name → channels, e.g. ``{"s2": 10, "s1": 2}``.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none. With metadata, the
            backbone's pooled features are concatenated with an MLP embedding of it before
            a linear head (``metadata_at="head"``).
        backbone: timm model name.
        pretrained: load timm's pretrained weights.
        pretrained_file: a local checkpoint of the timm backbone (implies ``pretrained``;
            for hosts without hub access).
        drop_rate: dropout before the classifier.
        meta_embed_dim: width of the metadata embedding.
        backbone_kwargs: further arguments for ``timm.create_model``.
        metadata_at: ``"head"`` (embedding concatenated with the pooled features) or
            ``"input"`` (constant channels concatenated with the rasters; GLOBE's early fusion).
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        backbone: str = "resnet18",
        pretrained: bool = False,
        pretrained_file: str | Mapping[str, str] | None = None,
        drop_rate: float = 0.0,
        meta_embed_dim: int = 64,
        backbone_kwargs: Mapping[str, Any] | None = None,
        metadata_at: Literal["head", "input"] = "head",
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        check_head_args(num_classes, drop_rate)
        num_classes = int(num_classes)
        meta_embed_dim = check_int("meta_embed_dim", meta_embed_dim, 1)
        if metadata_at not in ("head", "input"):
            raise ConfigError(f"metadata_at: must be 'head' or 'input', got {metadata_at!r}")
        self.modalities: tuple[str, ...] = tuple(mods)
        self.in_chans = dict(mods)
        self.num_classes = num_classes
        self.metadata_dim = metadata_dim = check_metadata_dim(metadata_dim)
        self.metadata_at = metadata_at
        at_input = metadata_at == "input" and metadata_dim > 0
        in_chans = sum(mods.values()) + (metadata_dim if at_input else 0)
        head_classes = num_classes if metadata_dim == 0 or at_input else 0
        self.backbone = create_timm_backbone(
            backbone,
            in_chans=in_chans,
            num_classes=head_classes,
            pretrained=pretrained,
            pretrained_file=one_file(pretrained_file),
            drop_rate=drop_rate,
            backbone_kwargs=backbone_kwargs,
        )
        if metadata_dim > 0 and not at_input:
            self.meta_embed: MetadataEmbedding | None = MetadataEmbedding(
                metadata_dim, meta_embed_dim
            )
            self.head: nn.Module | None = nn.Linear(
                self.backbone.num_features + meta_embed_dim, num_classes
            )
        else:
            self.meta_embed = None
            self.head = None
        self.missing = MissingModalityFill({m: (c, 1, 1) for m, c in mods.items()})

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes) from ``{modality: (B, C, H, W)}`` (+ ``"metadata"``)."""
        xs = self.missing(gather_inputs(inputs, self.modalities), presence(inputs, self.modalities))
        meta = get_metadata(inputs, self.metadata_dim)
        if meta is not None and self.metadata_at == "input":
            h, w = xs[0].shape[-2:]
            xs.append(meta.to(xs[0].dtype)[:, :, None, None].expand(-1, -1, h, w))
        out = self.backbone(torch.cat(xs, dim=1))
        if meta is not None and self.meta_embed is not None and self.head is not None:
            out = self.head(torch.cat([out, self.meta_embed(meta)], dim=1))
        return out


class SingleModalityCNN(EarlyFusionCNN):
    """A timm backbone on one modality of the input dict (the single-modality baseline).

    ``model.modalities`` is ``(modality,)``, so the training loop feeds it that modality only;
    other modalities in ``inputs`` are ignored. Metadata is used as in :class:`EarlyFusionCNN`.

    Args:
        modalities: modality name → channels of the dataset, e.g. ``{"s2": 10, "s1": 2}``.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none.
        modality: the modality to use; ``None`` takes the first one of ``modalities``.
        backbone: timm model name.
        pretrained: load timm's pretrained weights.
        pretrained_file: a local checkpoint of the timm backbone (implies ``pretrained``;
            for hosts without hub access).
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
        modality: str | None = None,
        backbone: str = "resnet18",
        pretrained: bool = False,
        pretrained_file: str | Mapping[str, str] | None = None,
        drop_rate: float = 0.0,
        meta_embed_dim: int = 64,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        mods = validate_modalities(modalities)
        if modality is None:
            modality = next(iter(mods))
        if modality not in mods:
            raise ConfigError(
                f"modality: {modality!r} is not one of the dataset's modalities {list(mods)}"
            )
        super().__init__(
            modalities={modality: mods[modality]},
            num_classes=num_classes,
            metadata_dim=metadata_dim,
            backbone=backbone,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            drop_rate=drop_rate,
            meta_embed_dim=meta_embed_dim,
            backbone_kwargs=backbone_kwargs,
        )
        self.modality = modality


class LateFusionCNN(nn.Module):
    """One timm backbone per modality; their predictions (or pooled features) are combined.

    Args:
        modalities: modality name → channels.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none. With metadata, an MLP
            branch predicts logits from it and takes part in the combination.
        backbone: timm model name for every modality, or a mapping modality → name.
        combine: ``"mean_logits"`` (weighted mean of logits) or ``"geometric"`` (weighted
            geometric mean of probabilities, returned as logits; see the module docstring).
        weights: branch weights, as a sequence in branch order (modalities, then metadata)
            or a mapping branch name → weight (metadata branch: ``"metadata"``); normalised
            to sum 1. ``None``: equal weights. LF-DLM used 0.7/0.3.
        task: ``"multilabel"`` (sigmoid) or ``"multiclass"`` (softmax) probabilities for
            ``combine="geometric"``.
        pretrained: load timm's pretrained weights.
        pretrained_file: a local checkpoint of the timm backbone, loaded into every branch
            (implies ``pretrained``), or a mapping modality → checkpoint.
        drop_rate: dropout before each backbone's classifier.
        meta_embed_dim: width of the metadata MLP.
        backbone_kwargs: further arguments for ``timm.create_model`` (every branch).
        level: ``"decision"`` (combine per-branch logits) or ``"feature"`` (merge the
            branches' pooled features before one linear classifier; ``combine``, ``weights``
            and ``task`` do not apply).
        feature_merge: ``level="feature"``: ``"concat"`` the features, or ``"add"`` them
            after a linear projection of each to ``fusion_dim``.
        fusion_dim: width of the projected features of ``feature_merge="add"``.
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        backbone: str | Mapping[str, str] = "resnet18",
        combine: Literal["mean_logits", "geometric"] = "mean_logits",
        weights: Sequence[float] | Mapping[str, float] | None = None,
        task: Literal["multilabel", "multiclass"] = "multilabel",
        pretrained: bool = False,
        pretrained_file: str | Mapping[str, str] | None = None,
        drop_rate: float = 0.0,
        meta_embed_dim: int = 64,
        backbone_kwargs: Mapping[str, Any] | None = None,
        level: Literal["decision", "feature"] = "decision",
        feature_merge: Literal["concat", "add"] = "concat",
        fusion_dim: int = 256,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        check_head_args(num_classes, drop_rate)
        num_classes = int(num_classes)
        meta_embed_dim = check_int("meta_embed_dim", meta_embed_dim, 1)
        if combine not in ("mean_logits", "geometric"):
            raise ConfigError(f"combine: must be 'mean_logits' or 'geometric', got {combine!r}")
        if task not in ("multilabel", "multiclass"):
            raise ConfigError(f"task: must be 'multilabel' or 'multiclass', got {task!r}")
        if level not in ("decision", "feature"):
            raise ConfigError(f"level: must be 'decision' or 'feature', got {level!r}")
        if feature_merge not in ("concat", "add"):
            raise ConfigError(f"feature_merge: must be 'concat' or 'add', got {feature_merge!r}")
        fusion_dim = check_int("fusion_dim", fusion_dim, 1)
        if level == "feature" and weights is not None:
            raise ConfigError("weights: branch weights combine decisions; level='feature' "
                              "merges features and takes none")
        self.level = level
        self.feature_merge = feature_merge
        self.modalities: tuple[str, ...] = tuple(mods)
        self.in_chans = dict(mods)
        self.num_classes = num_classes
        self.metadata_dim = metadata_dim = check_metadata_dim(metadata_dim)
        self.combine = combine
        self.task = task
        if isinstance(backbone, Mapping):
            missing = [m for m in mods if m not in backbone]
            if missing:
                raise ConfigError(f"backbone: no backbone given for modalities {missing}")
            names = {m: backbone[m] for m in mods}
        else:
            names = dict.fromkeys(mods, backbone)
        self.branches = nn.ModuleDict(
            {
                m: create_timm_backbone(
                    names[m],
                    in_chans=c,
                    num_classes=num_classes if level == "decision" else 0,
                    pretrained=pretrained,
                    pretrained_file=branch_file(pretrained_file, m),
                    drop_rate=drop_rate,
                    backbone_kwargs=backbone_kwargs,
                )
                for m, c in mods.items()
            }
        )
        self.meta_branch: nn.Module | None = None
        if metadata_dim > 0:
            self.meta_branch = (
                nn.Sequential(
                    MetadataEmbedding(metadata_dim, meta_embed_dim),
                    nn.Linear(meta_embed_dim, num_classes),
                )
                if level == "decision"
                else MetadataEmbedding(metadata_dim, meta_embed_dim)
            )
        self.branch_names: tuple[str, ...] = self.modalities + (
            ("metadata",) if metadata_dim > 0 else ()
        )
        self.register_buffer(
            "combine_weights", branch_weights(weights, self.branch_names), persistent=False
        )
        self.proj: nn.ModuleDict | None = None
        self.head: nn.Linear | None = None
        if level == "feature":
            dims = {m: self.branches[m].num_features for m in mods}
            if metadata_dim > 0:
                dims["metadata"] = meta_embed_dim
            if feature_merge == "add":
                self.proj = nn.ModuleDict({b: nn.Linear(d, fusion_dim) for b, d in dims.items()})
            width = fusion_dim if feature_merge == "add" else sum(dims.values())
            self.head = nn.Linear(width, num_classes)

    def branch_logits(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """Return the logits (decision level) or pooled features of every branch.

        In ``branch_names`` order; for ``level="feature"`` these are the branches' features
        before the merge.
        """
        xs = gather_inputs(inputs, self.modalities)
        out = [self.branches[m](x) for m, x in zip(self.modalities, xs, strict=True)]
        meta = get_metadata(inputs, self.metadata_dim)
        if meta is not None and self.meta_branch is not None:
            out.append(self.meta_branch(meta))
        return out

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Return the combined logits (B, num_classes)."""
        logits = self.branch_logits(inputs)
        present = presence(inputs, self.branch_names)  # (B, M) or None
        if present is not None and self.head is not None:  # missing branches contribute 0
            logits = [f * present[:, i:i + 1].to(f.dtype) for i, f in enumerate(logits)]
        if self.head is not None:
            if self.proj is not None:
                names = self.branch_names
                merged = torch.stack([self.proj[n](f) for n, f in zip(names, logits, strict=True)])
                return self.head(merged.sum(0))
            return self.head(torch.cat(logits, dim=1))
        w: Tensor = self.combine_weights
        if present is not None:  # per sample: the present branches' weights, renormalised
            w = w.to(present.dtype)[:, None] * present.T
            w = w / w.sum(0, keepdim=True).clamp_min(1e-12)
        if self.combine == "geometric":
            return geometric_mean_logits(logits, w, self.task)
        stacked = torch.stack(logits, dim=0)
        w = w.to(stacked.dtype)
        return (w.reshape(*w.shape, *([1] * (stacked.dim() - w.dim()))) * stacked).sum(0)


def _early(variant: str, defaults: dict[str, Any], kwargs: dict[str, Any]) -> EarlyFusionCNN:
    return build_model_with_cfg(EarlyFusionCNN, variant, defaults, kwargs)


def _single(
    variant: str, defaults: dict[str, Any], kwargs: dict[str, Any]
) -> SingleModalityCNN:
    return build_model_with_cfg(SingleModalityCNN, variant, defaults, kwargs)


def _late(variant: str, defaults: dict[str, Any], kwargs: dict[str, Any]) -> LateFusionCNN:
    return build_model_with_cfg(LateFusionCNN, variant, defaults, kwargs)


# --------------------------------------------------------------------------- variants


@register_model
def early_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionCNN:
    """Early fusion around any timm backbone (``backbone=``, default ``resnet18``)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _early("early_fusion_cnn", {}, kwargs)


@register_model
def early_fusion_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionCNN:
    """Early fusion, timm ``resnet18`` (11 M parameters)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _early("early_fusion_resnet18", {"backbone": "resnet18"}, kwargs)


@register_model
def early_fusion_resnet50(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionCNN:
    """Early fusion, timm ``resnet50`` (the GLOBE study's encoder; 24 M parameters)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _early("early_fusion_resnet50", {"backbone": "resnet50"}, kwargs)


@register_model
def early_fusion_resnet101(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionCNN:
    """Early fusion, timm ``resnet101`` (the SEN12MS study's backbone; 42 M parameters)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _early("early_fusion_resnet101", {"backbone": "resnet101"}, kwargs)


@register_model
def early_fusion_mobilenetv2(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionCNN:
    """Early fusion, timm ``mobilenetv2_100`` (2.2 M parameters)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _early("early_fusion_mobilenetv2", {"backbone": "mobilenetv2_100"}, kwargs)


@register_model
def late_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionCNN:
    """Late fusion around any timm backbone (``backbone=``, default ``resnet18``)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _late("late_fusion_cnn", {}, kwargs)


@register_model
def late_fusion_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionCNN:
    """Late fusion, one timm ``resnet18`` per modality, mean of logits."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _late("late_fusion_resnet18", {"backbone": "resnet18"}, kwargs)


@register_model
def late_fusion_resnet50(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionCNN:
    """Late fusion, one timm ``resnet50`` per modality, mean of logits."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _late("late_fusion_resnet50", {"backbone": "resnet50"}, kwargs)


@register_model
def late_fusion_resnet101(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionCNN:
    """Late fusion, one timm ``resnet101`` per modality, mean of logits (SEN12MS "late")."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _late("late_fusion_resnet101", {"backbone": "resnet101"}, kwargs)


@register_model
def late_fusion_mobilenetv2(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionCNN:
    """Late fusion, one timm ``mobilenetv2_100`` per modality, mean of logits."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _late("late_fusion_mobilenetv2", {"backbone": "mobilenetv2_100"}, kwargs)


@register_model
def early_fusion_globe(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionCNN:
    """GLOBE's early-fusion baseline: photos + metadata channels into one timm ``resnet50``.

    progressive-fusion-globe-lulc.txt 3.2.2 / 4.1: the modalities are "concatenated ...
    before the network's deep feature extraction layers", with a ResNet50 backbone; the
    metadata vector enters as constant channels (``metadata_at="input"``).
    """
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {"backbone": "resnet50", "metadata_at": "input"}
    return _early("early_fusion_globe", defaults, kwargs)


@register_model
def late_fusion_globe(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionCNN:
    """GLOBE's late-fusion baseline: one timm ``resnet50`` per photo, features concatenated.

    progressive-fusion-globe-lulc.txt 3.2.2: each modality has its own encoder and the
    features are fused "through concatenation or addition" (``feature_merge="add"``) before
    the classifier; the metadata MLP's embedding is one more branch.
    """
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {"backbone": "resnet50", "level": "feature", "feature_merge": "concat"}
    return _late("late_fusion_globe", defaults, kwargs)


@register_model
def single_modality_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SingleModalityCNN:
    """One modality (``modality=``, default the first) through any timm backbone."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _single("single_modality_cnn", {}, kwargs)


@register_model
def single_modality_resnet18(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SingleModalityCNN:
    """One modality (``modality=``) through timm ``resnet18``."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _single("single_modality_resnet18", {"backbone": "resnet18"}, kwargs)


@register_model
def single_modality_resnet50(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SingleModalityCNN:
    """One modality (``modality=``) through timm ``resnet50``."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _single("single_modality_resnet50", {"backbone": "resnet50"}, kwargs)


@register_model
def single_modality_resnet101(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SingleModalityCNN:
    """One modality (``modality=``) through timm ``resnet101`` (SEN12MS S1-only / S2-only)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _single("single_modality_resnet101", {"backbone": "resnet101"}, kwargs)


@register_model
def single_modality_mobilenetv2(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SingleModalityCNN:
    """One modality (``modality=``) through timm ``mobilenetv2_100``."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _single("single_modality_mobilenetv2", {"backbone": "mobilenetv2_100"}, kwargs)


@register_model
def test_early_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionCNN:
    """Tiny early fusion (a 4-stage ResNet with 8-16 channels) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET, "meta_embed_dim": 8}
    return _early("test_early_fusion_cnn", defaults, kwargs)


@register_model
def test_late_fusion_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionCNN:
    """Tiny late fusion with the geometric-mean combination, for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {
        "backbone": "resnet18",
        "backbone_kwargs": TINY_RESNET,
        "combine": "geometric",
        "meta_embed_dim": 8,
    }
    return _late("test_late_fusion_cnn", defaults, kwargs)


@register_model
def test_single_modality_cnn(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SingleModalityCNN:
    """Tiny single-modality baseline for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET, "meta_embed_dim": 8}
    return _single("test_single_modality_cnn", defaults, kwargs)

