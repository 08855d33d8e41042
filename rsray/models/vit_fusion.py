"""Vision Transformer fusion: the six methods of the BigEarthNet-MM ViT thesis (chapter 5).

Built from timm's ``PatchEmbed``, ``vision_transformer.Block``, ``Mlp`` and ``DropPath``; the
thesis derived its models from timm's ViT the same way (section 6.2). The shared blocks
(token embeddings, the cross-attention layer, :class:`~rsray.models.layers.vit.ViTFusionBase`)
live in :mod:`rsray.models.layers.vit`. ``s2`` (B, 10, 120, 120)
and ``s1`` (B, 2, 120, 120) stand for any N modalities of one image size::

    early           concat(s2, s1) ─ patch embed ─┐
    modality token  s2 ─ embed_s2 ─┐               ├─ [cls] + tokens ─ encoder ─ cls ─ head
                    s1 ─ embed_s1 ─┴─ concat ──────┤
    channel token   every channel of every modality
                    ─ its own patch filter ─ concat┘  (C x L tokens, + a channel embedding)

    middle          s2 ─ embed ─ encoder_s2 (depth - f) ─┐ per token: concat ─ Linear ─┐
                    s1 ─ embed ─ encoder_s1 (depth - f) ─┘ cls: concat ─ Linear ───────┴─
                    fusion encoder (depth f) ─ cls ─ head
    cross-attention s2 ─ encoder_s2 ─┐ every layer: queries swapped between encoders,
                    s1 ─ encoder_s1 ─┘ keys/values own; at the end concat(cls) ─ Linear ─ head
    SCT             s2 ─ encoder_s2 ─┐ after every layer: concat(cls_s2, cls_s1) ─ Linear_l ─
                    s1 ─ encoder_s1 ─┘ fed back as the class token of both; last one ─ head

* **Early fusion** (5.1): channels concatenated, one patch embedding, a standard ViT.
* **Modality token fusion** (5.2): a patch embedding (and position embedding) per modality;
  the token sequences are concatenated, so the sequence is N times longer.
* **Channel token fusion** (5.3): one filter per channel maps each single-channel patch to a
  token (a grouped convolution: as many weights as a normal patch embedding), so the sequence
  has C x L tokens; a position embedding shared over channels plus a learned per-channel
  embedding tell the tokens apart. Memory grows with C²: at patch 10 on 120x120 with 12
  channels that is 1,728 tokens.
* **Middle fusion** (5.4): a modality encoder of depth ``depth - fusion_depth`` per modality,
  a fusion layer that maps the N tokens at each position (and, separately, the N class
  tokens) to one by a linear layer, and a fusion encoder of depth ``fusion_depth`` (thesis:
  6 + 2).
* **Cross-attention fusion** (5.5, after Lu et al.): two encoders whose attention takes its
  queries from the other modality's sequence at the same layer
  (``Attention(Q_s1, K_s2, V_s2)`` in the S2 encoder); the final class tokens are fused by a
  linear layer. Exactly two modalities, with equal token counts.
* **Synchronised class token (SCT) fusion** (5.6): N encoders; after every layer the class
  tokens are concatenated, mapped back to one token by that layer's linear layer
  (``z_cls = W [z_cls^1; ...; z_cls^N] + b``) and written back into every sequence; the
  fused token after the last layer goes to the head.

Defaults are the thesis' (Table 7.1 and section 7): patch 20, depth 8, embedding dimension
256, 8 heads, MLP ratio 4, stochastic depth 0.25, no dropout, 120x120 inputs. Inputs of
another size are padded to a multiple of the patch size and the learned position embeddings
are resampled (bicubic) to the new grid. With ``metadata_dim > 0`` an MLP embedding of the
metadata is concatenated with the final class token before the classifier.

Missing modalities (a sample's ``<modality>_present`` bit 0) never reach the output: the
token-sequence models (modality and channel tokens) keep that modality's tokens out of every
attention by a key-padding mask; early fusion takes a learned value per channel in its place
(:class:`~rsray.models.layers.fusion.MissingModalityFill`), as its tokens mix the modalities;
middle fusion replaces the modality's encoded sequence by a learned token before the fusion
layer, SCT its class token before every synchronisation, and cross-attention lets the
present modality's encoder attend with its own queries and replaces the missing one's final
class token.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.fusion import (
    MissingModalityFill,
    check_int,
    gather_inputs,
    presence,
    token_keep_mask,
)
from rsray.models.layers.vit import (
    ChannelTokens,
    CrossAttentionBlock,
    ViTFusionBase,
    vit_norm,
)
from rsray.models.registry import build_model_with_cfg, register_model

__all__ = [
    "ChannelTokenFusionViT",
    "CrossAttentionFusionViT",
    "EarlyFusionViT",
    "MiddleFusionViT",
    "ModalityTokenFusionViT",
    "SCTFusionViT",
]

TASK = "classification"

THESIS_DEFAULTS: dict[str, Any] = {
    "img_size": 120,
    "patch_size": 20,
    "depth": 8,
    "embed_dim": 256,
    "num_heads": 8,
    "drop_path_rate": 0.25,
    "drop_rate": 0.0,
}
"""The thesis' standard hyper-parameters (Table 7.1; stochastic depth 0.25, no dropout)."""


class _SingleEncoderViT(ViTFusionBase):
    """A class token + one encoder over a token sequence built by :meth:`_tokens`."""

    def _build(self) -> None:
        if self.encoder_drop_rate:
            raise ConfigError(
                f"encoder_drop_rate: {type(self).__name__} has one encoder shared by all "
                "modalities; use drop_rate (per-encoder dropout needs vit_middle_fusion, "
                "vit_cross_attention_fusion or vit_sct_fusion)"
            )
        self._build_tokens()
        self.cls_token = self._cls_token()
        self.pos_drop = nn.Dropout(self.drop_rate)
        self.blocks = self._encoder(self._drop_path_rates(self.depth))
        self.norm = vit_norm(self.embed_dim)

    def _build_tokens(self) -> None:
        raise NotImplementedError

    def _tokens(self, xs: list[Tensor], present: Tensor | None = None) -> Tensor:
        """The token sequence (B, L, D) of the modalities ``xs``."""
        raise NotImplementedError

    def _token_groups(self, xs: list[Tensor]) -> list[int] | None:
        """Tokens per modality, in sequence order; ``None`` when tokens mix modalities."""
        return None

    def _grid(self, x: Tensor) -> int:
        """Patches of one (padded) image: ``ceil(H / p) * ceil(W / p)``."""
        p = self.patch_size
        return -(-x.shape[-2] // p) * -(-x.shape[-1] // p)

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The final class token (B, embed_dim)."""
        present = presence(inputs, self.modalities)
        xs = gather_inputs(inputs, self.modalities)
        groups = self._token_groups(xs)  # a missing modality's tokens are never attended to
        mask = None if groups is None else token_keep_mask(present, groups)
        x = self.pos_drop(self._prepend(self.cls_token, self._tokens(xs, present)))
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        return self.norm(x)[:, 0]


class EarlyFusionViT(_SingleEncoderViT):
    """Early fusion (thesis 5.1): channels concatenated, one patch embedding, one ViT."""

    def _build_tokens(self) -> None:
        self.patch_embed = self._patch_tokens(sum(self.in_chans.values()))
        self.missing = MissingModalityFill({m: (c, 1, 1) for m, c in self.in_chans.items()})

    def _tokens(self, xs: list[Tensor], present: Tensor | None = None) -> Tensor:
        return self.patch_embed(torch.cat(self.missing(xs, present), dim=1))


class ModalityTokenFusionViT(_SingleEncoderViT):
    """Modality token fusion (thesis 5.2): per-modality patch embeddings, tokens concatenated."""

    def _build_tokens(self) -> None:
        self.patch_embed = nn.ModuleDict(
            {m: self._patch_tokens(c) for m, c in self.in_chans.items()}
        )

    def _tokens(self, xs: list[Tensor], present: Tensor | None = None) -> Tensor:
        return torch.cat(
            [self.patch_embed[m](x) for m, x in zip(self.modalities, xs, strict=True)], dim=1
        )

    def _token_groups(self, xs: list[Tensor]) -> list[int] | None:
        return [self._grid(x) for x in xs]


class ChannelTokenFusionViT(_SingleEncoderViT):
    """Channel token fusion (thesis 5.3): a token per channel and patch, all modalities."""

    def _build_tokens(self) -> None:
        self.patch_embed = ChannelTokens(
            sum(self.in_chans.values()), self.img_size, self.patch_size, self.embed_dim
        )

    def _tokens(self, xs: list[Tensor], present: Tensor | None = None) -> Tensor:
        return self.patch_embed(torch.cat(xs, dim=1))

    def _token_groups(self, xs: list[Tensor]) -> list[int] | None:
        return [x.shape[1] * self._grid(x) for x in xs]  # channel-major: C blocks of L tokens


def _same_length(seqs: Sequence[Tensor], modalities: Sequence[str], method: str) -> None:
    lengths = {m: s.shape[1] for m, s in zip(modalities, seqs, strict=True)}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{method} needs the same number of tokens for every modality, got {lengths}; "
            "give the modalities the same image size"
        )


class _PerModalityViT(ViTFusionBase):
    """Per-modality patch embeddings and class tokens (middle, cross-attention, SCT)."""

    def _build_embeddings(self) -> None:
        self.patch_embed = nn.ModuleDict(
            {m: self._patch_tokens(c) for m, c in self.in_chans.items()}
        )
        self.cls_token = nn.ParameterDict({m: self._cls_token() for m in self.modalities})
        self.pos_drop = nn.ModuleDict(
            {m: nn.Dropout(self._modality_drop(m)) for m in self.modalities}
        )
        self.missing = MissingModalityFill({m: (self.embed_dim,) for m in self.modalities})

    def _sequences(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        xs = gather_inputs(inputs, self.modalities)
        return [
            self.pos_drop[m](self._prepend(self.cls_token[m], self.patch_embed[m](x)))
            for m, x in zip(self.modalities, xs, strict=True)
        ]


class MiddleFusionViT(_PerModalityViT):
    """Middle fusion (thesis 5.4): modality encoders, a linear fusion layer, a fusion encoder.

    Args:
        fusion_depth: layers of the fusion encoder (0 … ``depth - 1``); the modality
            encoders have ``depth - fusion_depth >= 1`` (thesis: 2 of 8).
        (the others as :class:`ViTFusionBase`)
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        img_size: int = 120,
        patch_size: int = 20,
        embed_dim: int = 256,
        depth: int = 8,
        fusion_depth: int = 2,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.25,
        meta_embed_dim: int = 64,
        encoder_drop_rate: Mapping[str, float] | None = None,
    ) -> None:
        self.fusion_depth = check_int("fusion_depth", fusion_depth, 0)
        if isinstance(depth, numbers.Integral) and depth <= self.fusion_depth:
            raise ConfigError(
                f"depth: middle fusion needs depth > fusion_depth ({self.fusion_depth}) so the "
                f"modality encoders get at least one layer; got depth {depth} (set depth >= "
                f"{self.fusion_depth + 1} or lower fusion_depth)"
            )
        super().__init__(
            modalities=modalities,
            num_classes=num_classes,
            metadata_dim=metadata_dim,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            meta_embed_dim=meta_embed_dim,
            encoder_drop_rate=encoder_drop_rate,
        )

    def _build(self) -> None:
        self._build_embeddings()
        m = self.depth - self.fusion_depth
        self.modality_depth = m
        rates = self._drop_path_rates(self.depth)
        self.encoders = nn.ModuleDict(
            {mod: self._encoder(rates[:m], self._modality_drop(mod)) for mod in self.modalities}
        )
        self.modality_norms = nn.ModuleDict(
            {mod: vit_norm(self.embed_dim) for mod in self.modalities}
        )
        n = len(self.modalities) * self.embed_dim
        self.fuse_tokens = nn.Linear(n, self.embed_dim)
        self.fuse_cls = nn.Linear(n, self.embed_dim)
        self.fusion_encoder = self._encoder(rates[m:])
        self.norm = vit_norm(self.embed_dim)

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The final class token (B, embed_dim)."""
        seqs = [
            self.modality_norms[m](self.encoders[m](z))
            for m, z in zip(self.modalities, self._sequences(inputs), strict=True)
        ]
        seqs = self.missing(seqs, presence(inputs, self.modalities))  # missing: learned token
        _same_length(seqs, self.modalities, "middle fusion")
        cls = self.fuse_cls(torch.cat([z[:, :1] for z in seqs], dim=-1))
        tokens = self.fuse_tokens(torch.cat([z[:, 1:] for z in seqs], dim=-1))
        x = self.fusion_encoder(torch.cat([cls, tokens], dim=1))
        return self.norm(x)[:, 0]


class CrossAttentionFusionViT(_PerModalityViT):
    """Cross-attention fusion (thesis 5.5): two encoders exchanging queries at every layer."""

    def _build(self) -> None:
        if len(self.modalities) != 2:
            raise ConfigError(
                "modalities: cross-attention fusion takes its queries from the other modality "
                f"and needs exactly 2 modalities, got {len(self.modalities)} "
                f"{list(self.modalities)}; vit_sct_fusion and vit_middle_fusion take any number"
            )
        self._build_embeddings()
        rates = self._drop_path_rates(self.depth)
        self.encoders = nn.ModuleDict(
            {
                m: nn.ModuleList(
                    CrossAttentionBlock(
                        self.embed_dim,
                        self.num_heads,
                        self.mlp_ratio,
                        self.qkv_bias,
                        self._modality_drop(m),
                        self.attn_drop_rate,
                        r,
                    )
                    for r in rates
                )
                for m in self.modalities
            }
        )
        self.norms = nn.ModuleDict({m: vit_norm(self.embed_dim) for m in self.modalities})
        self.fuse_cls = nn.Linear(2 * self.embed_dim, self.embed_dim)

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The fused class token (B, embed_dim)."""
        a, b = self.modalities
        za, zb = self._sequences(inputs)
        _same_length([za, zb], self.modalities, "cross-attention fusion")
        present = presence(inputs, self.modalities)
        has_a = has_b = None  # where the other modality is missing, attend with own queries
        if present is not None:
            has_a, has_b = ((present[:, i] != 0).reshape(-1, 1, 1, 1) for i in range(2))
        for blk_a, blk_b in zip(self.encoders[a], self.encoders[b], strict=True):
            qa, ka, va = blk_a.qkv(za)
            qb, kb, vb = blk_b.qkv(zb)
            q_a = qb if has_b is None else torch.where(has_b, qb, qa)
            q_b = qa if has_a is None else torch.where(has_a, qa, qb)
            za, zb = blk_a.finish(za, q_a, ka, va), blk_b.finish(zb, q_b, kb, vb)
        cls_a, cls_b = self.missing([self.norms[a](za)[:, 0], self.norms[b](zb)[:, 0]], present)
        return self.fuse_cls(torch.cat([cls_a, cls_b], dim=-1))


class SCTFusionViT(_PerModalityViT):
    """Synchronised class token fusion (thesis 5.6): class tokens fused after every layer."""

    def _build(self) -> None:
        self._build_embeddings()
        rates = self._drop_path_rates(self.depth)
        self.encoders = nn.ModuleDict(
            {m: self._encoder(rates, self._modality_drop(m)) for m in self.modalities}
        )
        self.norms = nn.ModuleDict({m: vit_norm(self.embed_dim) for m in self.modalities})
        n = len(self.modalities) * self.embed_dim
        self.sync = nn.ModuleList(nn.Linear(n, self.embed_dim) for _ in range(self.depth))

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The class token fused after the last layer (B, embed_dim)."""
        zs = self._sequences(inputs)
        mods = self.modalities
        present = presence(inputs, mods)  # a missing modality's class token: a learned one
        for i in range(self.depth):
            zs = [self.encoders[m][i](z) for m, z in zip(mods, zs, strict=True)]
            if i == self.depth - 1:
                break
            cls = self.sync[i](torch.cat(self.missing([z[:, :1] for z in zs], present), dim=-1))
            zs = [torch.cat([cls, z[:, 1:]], dim=1) for z in zs]
        last = [self.norms[m](z[:, 0]) for m, z in zip(mods, zs, strict=True)]
        return self.sync[-1](torch.cat(self.missing(last, present), dim=-1))


# --------------------------------------------------------------------------- variants

_V = TypeVar("_V", bound="ViTFusionBase")

_SMALL: dict[str, Any] = {"embed_dim": 128, "depth": 4, "num_heads": 4, "drop_path_rate": 0.1}
"""CPU-trainable size: patch 20 on 120x120 as in the thesis, narrower and shallower."""

_TEST: dict[str, Any] = {
    "img_size": 32,
    "patch_size": 8,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "drop_path_rate": 0.1,
    "meta_embed_dim": 8,
}
"""Tiny size for tests (``test_vit_*``)."""


def _create(cls: type[_V], variant: str, defaults: dict[str, Any], kwargs: dict[str, Any]) -> _V:
    return build_model_with_cfg(cls, variant, defaults, kwargs)


@register_model
def vit_early_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionViT:
    """ViT early fusion (thesis 5.1), thesis defaults (patch 20, depth 8, dim 256)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(EarlyFusionViT, "vit_early_fusion", {**THESIS_DEFAULTS}, kwargs)


@register_model
def vit_early_fusion_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionViT:
    """ViT early fusion, small: patch 20, depth 4, dim 128, 4 heads."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(EarlyFusionViT, "vit_early_fusion_small", {**THESIS_DEFAULTS, **_SMALL}, kwargs)


@register_model
def test_vit_early_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> EarlyFusionViT:
    """Tiny ViT early fusion (patch 8, depth 2, dim 32) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(EarlyFusionViT, "test_vit_early_fusion", {**_TEST}, kwargs)


@register_model
def vit_modality_token_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ModalityTokenFusionViT:
    """ViT modality token fusion (thesis 5.2), thesis defaults (patch 20, depth 8, dim 256)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(ModalityTokenFusionViT, "vit_modality_token_fusion", {**THESIS_DEFAULTS}, kwargs)


@register_model
def vit_modality_token_fusion_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ModalityTokenFusionViT:
    """ViT modality token fusion, small: patch 20, depth 4, dim 128, 4 heads."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {**THESIS_DEFAULTS, **_SMALL}
    return _create(ModalityTokenFusionViT, "vit_modality_token_fusion_small", defaults, kwargs)


@register_model
def test_vit_modality_token_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ModalityTokenFusionViT:
    """Tiny ViT modality token fusion (patch 8, depth 2, dim 32) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(ModalityTokenFusionViT, "test_vit_modality_token_fusion", {**_TEST}, kwargs)


@register_model
def vit_channel_token_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ChannelTokenFusionViT:
    """ViT channel token fusion (thesis 5.3), thesis defaults (patch 20, depth 8, dim 256)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(ChannelTokenFusionViT, "vit_channel_token_fusion", {**THESIS_DEFAULTS}, kwargs)


@register_model
def vit_channel_token_fusion_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ChannelTokenFusionViT:
    """ViT channel token fusion, small: patch 20, depth 4, dim 128, 4 heads."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {**THESIS_DEFAULTS, **_SMALL}
    return _create(ChannelTokenFusionViT, "vit_channel_token_fusion_small", defaults, kwargs)


@register_model
def test_vit_channel_token_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> ChannelTokenFusionViT:
    """Tiny ViT channel token fusion (patch 8, depth 2, dim 32) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(ChannelTokenFusionViT, "test_vit_channel_token_fusion", {**_TEST}, kwargs)


@register_model
def vit_middle_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionViT:
    """ViT middle fusion (thesis 5.4), thesis defaults (patch 20, depth 8, dim 256)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {**THESIS_DEFAULTS, "fusion_depth": 2}
    return _create(MiddleFusionViT, "vit_middle_fusion", defaults, kwargs)


@register_model
def vit_middle_fusion_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionViT:
    """ViT middle fusion, small: patch 20, depth 4, dim 128, 4 heads."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {**THESIS_DEFAULTS, **_SMALL, "fusion_depth": 1}
    return _create(MiddleFusionViT, "vit_middle_fusion_small", defaults, kwargs)


@register_model
def test_vit_middle_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> MiddleFusionViT:
    """Tiny ViT middle fusion (patch 8, depth 2, dim 32) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(MiddleFusionViT, "test_vit_middle_fusion", {**_TEST, "fusion_depth": 1}, kwargs)


@register_model
def vit_cross_attention_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> CrossAttentionFusionViT:
    """ViT cross-attention fusion (thesis 5.5), thesis defaults (patch 20, depth 8, dim 256)."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {**THESIS_DEFAULTS}
    return _create(CrossAttentionFusionViT, "vit_cross_attention_fusion", defaults, kwargs)


@register_model
def vit_cross_attention_fusion_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> CrossAttentionFusionViT:
    """ViT cross-attention fusion, small: patch 20, depth 4, dim 128, 4 heads."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    defaults = {**THESIS_DEFAULTS, **_SMALL}
    return _create(CrossAttentionFusionViT, "vit_cross_attention_fusion_small", defaults, kwargs)


@register_model
def test_vit_cross_attention_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> CrossAttentionFusionViT:
    """Tiny ViT cross-attention fusion (patch 8, depth 2, dim 32) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(CrossAttentionFusionViT, "test_vit_cross_attention_fusion", {**_TEST}, kwargs)


@register_model
def vit_sct_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SCTFusionViT:
    """ViT synchronised class token (SCT) fusion (thesis 5.6), thesis defaults."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(SCTFusionViT, "vit_sct_fusion", {**THESIS_DEFAULTS}, kwargs)


@register_model
def vit_sct_fusion_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SCTFusionViT:
    """ViT synchronised class token fusion, small: patch 20, depth 4, dim 128, 4 heads."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(SCTFusionViT, "vit_sct_fusion_small", {**THESIS_DEFAULTS, **_SMALL}, kwargs)


@register_model
def test_vit_sct_fusion(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> SCTFusionViT:
    """Tiny ViT synchronised class token fusion (patch 8, depth 2, dim 32) for tests."""
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return _create(SCTFusionViT, "test_vit_sct_fusion", {**_TEST}, kwargs)
