"""Vision Transformer fusion: the six methods of the BigEarthNet-MM ViT thesis (chapter 5).

Built from timm's ``PatchEmbed``, ``vision_transformer.Block``, ``Mlp`` and ``DropPath``; the
thesis derived its models from timm's ViT the same way (section 6.2). ``s2`` (B, 10, 120, 120)
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
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

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
    gather_inputs,
    get_metadata,
    validate_modalities,
)
from rsray.models.registry import build_model_with_cfg, register_model

__all__ = [
    "ChannelTokenFusionViT",
    "ChannelTokens",
    "CrossAttentionBlock",
    "CrossAttentionFusionViT",
    "EarlyFusionViT",
    "MiddleFusionViT",
    "ModalityTokenFusionViT",
    "PatchTokens",
    "SCTFusionViT",
    "ViTFusionBase",
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


_norm = partial(LayerNorm, eps=1e-6)
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
        self.norm1 = _norm(dim)
        self.qkv_proj = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _norm(dim)
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
                    norm_layer=_norm,
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
        self.norm = _norm(self.embed_dim)

    def _build_tokens(self) -> None:
        raise NotImplementedError

    def _tokens(self, xs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The final class token (B, embed_dim)."""
        tokens = self._tokens(gather_inputs(inputs, self.modalities))
        x = self.pos_drop(self._prepend(self.cls_token, tokens))
        return self.norm(self.blocks(x))[:, 0]


class EarlyFusionViT(_SingleEncoderViT):
    """Early fusion (thesis 5.1): channels concatenated, one patch embedding, one ViT."""

    def _build_tokens(self) -> None:
        self.patch_embed = self._patch_tokens(sum(self.in_chans.values()))

    def _tokens(self, xs: list[Tensor]) -> Tensor:
        return self.patch_embed(torch.cat(xs, dim=1))


class ModalityTokenFusionViT(_SingleEncoderViT):
    """Modality token fusion (thesis 5.2): per-modality patch embeddings, tokens concatenated."""

    def _build_tokens(self) -> None:
        self.patch_embed = nn.ModuleDict(
            {m: self._patch_tokens(c) for m, c in self.in_chans.items()}
        )

    def _tokens(self, xs: list[Tensor]) -> Tensor:
        return torch.cat(
            [self.patch_embed[m](x) for m, x in zip(self.modalities, xs, strict=True)], dim=1
        )


class ChannelTokenFusionViT(_SingleEncoderViT):
    """Channel token fusion (thesis 5.3): a token per channel and patch, all modalities."""

    def _build_tokens(self) -> None:
        self.patch_embed = ChannelTokens(
            sum(self.in_chans.values()), self.img_size, self.patch_size, self.embed_dim
        )

    def _tokens(self, xs: list[Tensor]) -> Tensor:
        return self.patch_embed(torch.cat(xs, dim=1))


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
        self.modality_norms = nn.ModuleDict({mod: _norm(self.embed_dim) for mod in self.modalities})
        n = len(self.modalities) * self.embed_dim
        self.fuse_tokens = nn.Linear(n, self.embed_dim)
        self.fuse_cls = nn.Linear(n, self.embed_dim)
        self.fusion_encoder = self._encoder(rates[m:])
        self.norm = _norm(self.embed_dim)

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The final class token (B, embed_dim)."""
        seqs = [
            self.modality_norms[m](self.encoders[m](z))
            for m, z in zip(self.modalities, self._sequences(inputs), strict=True)
        ]
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
        self.norms = nn.ModuleDict({m: _norm(self.embed_dim) for m in self.modalities})
        self.fuse_cls = nn.Linear(2 * self.embed_dim, self.embed_dim)

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The fused class token (B, embed_dim)."""
        a, b = self.modalities
        za, zb = self._sequences(inputs)
        _same_length([za, zb], self.modalities, "cross-attention fusion")
        for blk_a, blk_b in zip(self.encoders[a], self.encoders[b], strict=True):
            qa, ka, va = blk_a.qkv(za)
            qb, kb, vb = blk_b.qkv(zb)
            za, zb = blk_a.finish(za, qb, ka, va), blk_b.finish(zb, qa, kb, vb)
        cls = torch.cat([self.norms[a](za)[:, 0], self.norms[b](zb)[:, 0]], dim=-1)
        return self.fuse_cls(cls)


class SCTFusionViT(_PerModalityViT):
    """Synchronised class token fusion (thesis 5.6): class tokens fused after every layer."""

    def _build(self) -> None:
        self._build_embeddings()
        rates = self._drop_path_rates(self.depth)
        self.encoders = nn.ModuleDict(
            {m: self._encoder(rates, self._modality_drop(m)) for m in self.modalities}
        )
        self.norms = nn.ModuleDict({m: _norm(self.embed_dim) for m in self.modalities})
        n = len(self.modalities) * self.embed_dim
        self.sync = nn.ModuleList(nn.Linear(n, self.embed_dim) for _ in range(self.depth))

    def forward_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The class token fused after the last layer (B, embed_dim)."""
        zs = self._sequences(inputs)
        mods = self.modalities
        for i in range(self.depth):
            zs = [self.encoders[m][i](z) for m, z in zip(mods, zs, strict=True)]
            if i == self.depth - 1:
                break
            cls = self.sync[i](torch.cat([z[:, :1] for z in zs], dim=-1))
            zs = [torch.cat([cls, z[:, 1:]], dim=1) for z in zs]
        last = [self.norms[m](z[:, 0]) for m, z in zip(mods, zs, strict=True)]
        return self.sync[-1](torch.cat(last, dim=-1))


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
