"""Vision Transformer building blocks shared by the ViT fusion family.

Token embeddings (:class:`PatchTokens`, one token per patch; :class:`ChannelTokens`, one token
per channel and patch), the query-swapping :class:`CrossAttentionBlock`, and
:class:`ViTFusionBase`, the constructor (checked hyper-parameters), class token, encoder of
timm ``Block`` layers, metadata embedding and head that every model of
:mod:`rsray.models.vit_fusion` builds on. Built from timm's ``PatchEmbed``,
``vision_transformer.Block``, ``Mlp`` and ``DropPath``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm, Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.fusion import (
    MetadataEmbedding,
    check_int,
    check_metadata_dim,
    get_metadata,
    validate_modalities,
)

__all__ = [
    "ChannelTokens",
    "CrossAttentionBlock",
    "PatchTokens",
    "ViTFusionBase",
    "vit_norm",
]


vit_norm = partial(LayerNorm, eps=1e-6)
"""timm ViT's normalisation layer (LayerNorm, eps 1e-6)."""


def _resample_pos(pos: Tensor, grid: tuple[int, int], new: tuple[int, int]) -> Tensor:
    """A (1, gh*gw, D) position embedding for a (h, w) token grid."""
    if new == grid:
        return pos
    return resample_abs_pos_embed(pos, new_size=list(new), old_size=list(grid), num_prefix_tokens=0)


class PatchTokens(nn.Module):
    """timm ``PatchEmbed`` plus a learned absolute position embedding: (B, C, H, W) → (B, L, D).

    Inputs whose size is not a multiple of the patch size are padded (timm's
    ``dynamic_img_pad``); the position embedding is resampled when the grid differs from
    ``img_size``'s.

    Args:
        in_chans: input channels.
        img_size: the image size the position embedding is learned for.
        patch_size: side of the square patches.
        embed_dim: token width.
    """

    def __init__(self, in_chans: int, img_size: int, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.embed = PatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            output_fmt="NHWC",
            strict_img_size=False,
            dynamic_img_pad=True,
        )
        gh, gw = self.embed.grid_size
        self.grid: tuple[int, int] = (int(gh), int(gw))
        self.pos_embed = nn.Parameter(torch.zeros(1, gh * gw, embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens (B, L, D) with position embeddings added."""
        x = self.embed(x)  # (B, h, w, D)
        b, h, w, d = x.shape
        return x.reshape(b, h * w, d) + _resample_pos(self.pos_embed, self.grid, (h, w))


class ChannelTokens(nn.Module):
    """One token per channel and patch (channel token fusion): (B, C, H, W) → (B, C*L, D).

    Channel ``c`` of a patch is mapped by its own linear filter (a grouped convolution with
    ``groups=C``), so the filters hold ``C * p * p * D`` weights like a normal patch embedding.
    A spatial position embedding (shared by the channels) and a per-channel embedding are
    added.

    Args:
        in_chans: channels over all modalities.
        img_size: the image size the position embedding is learned for.
        patch_size: side of the square patches.
        embed_dim: token width.
    """

    def __init__(self, in_chans: int, img_size: int, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(
            in_chans, in_chans * embed_dim, patch_size, stride=patch_size, groups=in_chans
        )
        g = img_size // patch_size
        self.grid: tuple[int, int] = (g, g)
        self.pos_embed = nn.Parameter(torch.zeros(1, g * g, embed_dim))
        self.chan_embed = nn.Parameter(torch.zeros(1, in_chans, 1, embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.chan_embed, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens (B, C*L, D), channel-major."""
        p = self.patch_size
        pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        y = self.proj(x)  # (B, C*D, h, w), channel c owns outputs c*D … (c+1)*D - 1
        b, _, h, w = y.shape
        y = y.reshape(b, self.in_chans, self.embed_dim, h * w).transpose(2, 3)  # (B, C, L, D)
        y = y + _resample_pos(self.pos_embed, self.grid, (h, w)).unsqueeze(1) + self.chan_embed
        return y.reshape(b, self.in_chans * h * w, self.embed_dim)


class CrossAttentionBlock(nn.Module):
    """A pre-norm Transformer layer whose attention takes its queries from another sequence.

    Used in pairs (:class:`CrossAttentionFusionViT`): both layers compute ``q, k, v`` from
    their own sequence with :meth:`qkv`, swap the queries, and finish with :meth:`finish`.
    Mirrors timm's ``Block`` (LayerNorm, multi-head attention, ``Mlp``, ``DropPath``).

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over ``dim``.
        qkv_bias: bias in the q/k/v projection.
        proj_drop: dropout after the attention projection and in the MLP.
        attn_drop: dropout on the attention weights.
        drop_path: stochastic depth rate of this layer.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm1 = vit_norm(dim)
        self.qkv_proj = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = vit_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values of ``x`` (B, L, D), each (B, heads, L, head_dim)."""
        b, n, _ = x.shape
        qkv = self.qkv_proj(self.norm1(x)).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def finish(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Residual update of ``x`` by ``Attention(q, k, v)`` (q from the other sequence), MLP."""
        if q.shape[2] != k.shape[2]:
            raise ValueError(
                "cross-attention needs the same number of tokens in both modalities, got "
                f"{q.shape[2]} queries and {k.shape[2]} keys; give both the same image size"
            )
        drop = self.attn_drop if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        b, _, n, _ = a.shape
        a = self.proj_drop(self.proj(a.transpose(1, 2).reshape(b, n, -1)))
        x = x + self.drop_path1(a)
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def _rate(name: str, value: Any) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name}: must be in [0, 1), got {value!r}")
    return float(value)


class ViTFusionBase(nn.Module):
    """Shared constructor, class token, metadata and head of the ViT fusion models.

    Subclasses build their token embeddings and encoders in :meth:`_build` and return the
    final (B, embed_dim) class token from :meth:`forward_features`.

    Args:
        modalities: modality name → channels, e.g. ``{"s2": 10, "s1": 2}``.
        num_classes: number of outputs (logits).
        metadata_dim: length of the metadata vector; 0 for none.
        img_size: input height = width the position embeddings are learned for.
        patch_size: side of the square patches; must divide ``img_size``.
        embed_dim: token width.
        depth: Transformer layers per encoder (middle fusion: modality + fusion encoder).
        num_heads: attention heads; must divide ``embed_dim``.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        qkv_bias: bias in the attention's q/k/v projection.
        drop_rate: dropout on tokens, after attention/MLP projections and before the head.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, rising linearly to this value over the layers.
        meta_embed_dim: width of the metadata embedding.
        encoder_drop_rate: per modality, the dropout of that modality's own encoder (token
            dropout after its patch embedding and in its layers), replacing ``drop_rate``
            there; e.g. ``{"s2": 0.1}`` for the thesis' SCT at patch 10 (section 7.3: "the
            dropout rate for the S2 encoder to 0.1"). Only for the models with an encoder
            per modality (middle, cross-attention, SCT).
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
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.25,
        meta_embed_dim: int = 64,
        encoder_drop_rate: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        self.modalities: tuple[str, ...] = tuple(mods)
        self.in_chans = dict(mods)
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.metadata_dim = metadata_dim = check_metadata_dim(metadata_dim)
        self.img_size = check_int("img_size", img_size, 1)
        self.patch_size = check_int("patch_size", patch_size, 1, self.img_size)
        if self.img_size % self.patch_size:
            divisors = [p for p in range(2, self.img_size + 1) if self.img_size % p == 0]
            raise ConfigError(
                f"patch_size: {patch_size} does not divide img_size {img_size}; choose one of "
                f"{divisors}"
            )
        self.embed_dim = check_int("embed_dim", embed_dim, 1)
        self.depth = check_int("depth", depth, 1)
        self.num_heads = check_int("num_heads", num_heads, 1)
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"num_heads: {num_heads} does not divide embed_dim {embed_dim}"
            )
        if not isinstance(mlp_ratio, numbers.Real) or mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio: must be > 0, got {mlp_ratio!r}")
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.drop_rate = _rate("drop_rate", drop_rate)
        self.attn_drop_rate = _rate("attn_drop_rate", attn_drop_rate)
        self.drop_path_rate = _rate("drop_path_rate", drop_path_rate)
        if encoder_drop_rate is not None and not isinstance(encoder_drop_rate, Mapping):
            raise ConfigError(f"encoder_drop_rate: must map modality -> rate, e.g. "
                              f"{{s2: 0.1}}; got {encoder_drop_rate!r}")
        unknown = sorted(set(encoder_drop_rate or {}) - set(mods))
        if unknown:
            raise ConfigError(f"encoder_drop_rate: {unknown} are not modalities of the model "
                              f"{list(mods)}")
        self.encoder_drop_rate: dict[str, float] = {
            m: _rate(f"encoder_drop_rate.{m}", r) for m, r in (encoder_drop_rate or {}).items()
        }
        meta_embed_dim = check_int("meta_embed_dim", meta_embed_dim, 1)
        self.num_patches = (self.img_size // self.patch_size) ** 2

        self._build()
        self.meta_embed: MetadataEmbedding | None = None
        head_in = self.embed_dim
        if metadata_dim > 0:
            self.meta_embed = MetadataEmbedding(metadata_dim, meta_embed_dim)
            head_in += meta_embed_dim
        self.head_drop = nn.Dropout(self.drop_rate)
        self.head = nn.Linear(head_in, self.num_classes)
        self.apply(_init_weights)

    # ------------------------------------------------------------------ building blocks

    def _build(self) -> None:
        raise NotImplementedError

    def _drop_path_rates(self, n: int) -> list[float]:
        """Stochastic depth per layer, rising linearly from 0 to ``drop_path_rate``."""
        return [float(r) for r in torch.linspace(0, self.drop_path_rate, n)]

    def _modality_drop(self, modality: str) -> float:
        """Dropout of ``modality``'s own encoder (``encoder_drop_rate``, else ``drop_rate``)."""
        return self.encoder_drop_rate.get(modality, self.drop_rate)

    def _encoder(self, rates: Sequence[float], drop: float | None = None) -> nn.Sequential:
        """One timm ViT ``Block`` per stochastic depth rate (dropout ``drop`` or drop_rate)."""
        return nn.Sequential(
            *(
                Block(
                    self.embed_dim,
                    self.num_heads,
                    mlp_ratio=self.mlp_ratio,
                    qkv_bias=self.qkv_bias,
                    proj_drop=self.drop_rate if drop is None else drop,
                    attn_drop=self.attn_drop_rate,
                    drop_path=r,
                    norm_layer=vit_norm,
                )
                for r in rates
            )
        )

    def _cls_token(self) -> nn.Parameter:
        token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        nn.init.normal_(token, std=1e-6)
        return token

    def _patch_tokens(self, in_chans: int) -> PatchTokens:
        return PatchTokens(in_chans, self.img_size, self.patch_size, self.embed_dim)

    @staticmethod
    def _prepend(cls: Tensor, tokens: Tensor) -> Tensor:
        return torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)

    # ------------------------------------------------------------------ forward

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The final class token (B, embed_dim)."""
        raise NotImplementedError

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, num_classes) from ``{modality: (B, C, H, W)}`` (+ ``"metadata"``)."""
        x = self.forward_features(inputs)
        meta = get_metadata(inputs, self.metadata_dim)
        if meta is not None and self.meta_embed is not None:
            x = torch.cat([x, self.meta_embed(meta)], dim=1)
        return self.head(self.head_drop(x))


def _init_weights(module: nn.Module) -> None:
    """Initialise linear layers as timm's ViT does (truncated normal, zero bias)."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
