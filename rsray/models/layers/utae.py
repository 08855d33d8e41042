"""U-TAE: U-Net with a lightweight temporal attention encoder (Garnot & Landrieu, ICCV 2021).

Segments an image time series ``(B, T, C, h, w)`` with a padding mask and the dates::

    frames ─ shared conv encoder (per date) ─► maps at h, h/2, h/4, h/8     (B, T, C_i, ...)
                                                          │ lowest level
                                                          ▼
                   L-TAE: per pixel, attention over the real dates, one query per head,
                   keys from the features + positional encoding of the day of year
                          │ (B, C, h/8, w/8)            │ attention (heads, B, T, h/8, w/8)
                          ▼                             ▼ resized to every skip level
    conv decoder ◄── skips: attention-weighted sums over time, channel group g ↔ head g
         │
    (B, decoder_widths[0], h, w) ─ out_conv ─ logits (B, K, h, w)
         [─ centre crop to the aerial footprint ─ upsample to the aerial size]   (optional)

Settings follow the reference implementation (VSainteuf/utae-paps): encoder widths
64,64,64,128, decoder 32,32,64,128, 16 heads, d_model 256, d_k 4, group-normalised encoder,
strided 4x4 down/up convolutions. FLAIR-2 and LF-DLM widen both to 64,64,128,128
(``utae_flair2``).

Padding. Only real dates (mask True) are encoded; padded frames produce zeros, get no
attention and do not enter any statistic, so the output does not depend on what a padded
date holds or on how many there are. This differs from the reference code in two places:
there, padding is detected from a fill value, and the L-TAE's input GroupNorm pools its
statistics over all T dates, padding included; here that norm is a masked GroupNorm over
the real dates. A series whose dates are all padding gives finite output (its attention is
zero everywhere). The final layer of ``out_conv`` has no normalisation and no ReLU (the
reference applies both to the class scores).

Sizes (10 input bands): the reference settings have 1.09 M parameters with 20 classes, as
the U-TAE paper reports (1,086,950); the FLAIR-2 widths give 2.28 M with 13 classes. LF-DLM
quotes ~2.9 M for "the default U-TAE parameters with widths [64, 64, 128, 128]"; that
figure does not follow from this configuration (FLAIR-2's own config has the same widths,
16 heads, d_model 256, d_k 4, out_conv [32, 13]).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.fusion import check_int, check_metadata_dim, validate_modalities
from rsray.models.layers.series import Series, center_crop, check_positive, get_series

__all__ = ["UTAE", "LTAE2d", "UTAESegmenter", "temporal_aggregate"]

AggMode = Literal["att_group", "att_mean", "mean"]
NormKind = Literal["group", "batch", "instance"]


def _norm(kind: str, channels: int, groups: int = 4) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    raise ConfigError(f"encoder_norm: must be 'group', 'batch' or 'instance', got {kind!r}")


def conv_layers(
    widths: Sequence[int],
    *,
    norm: str = "batch",
    kernel_size: int = 3,
    stride: int = 1,
    padding: int = 1,
    padding_mode: str = "reflect",
) -> nn.Sequential:
    """Conv → norm → ReLU for each consecutive pair of ``widths``."""
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(widths):
        layers += [
            nn.Conv2d(
                c_in, c_out, kernel_size, stride=stride, padding=padding, padding_mode=padding_mode
            ),
            _norm(norm, c_out),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers)


def per_date(module: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    """Apply a 2-D ``module`` to the real dates of ``x`` (B, T, C, H, W); padding gives zeros."""
    b, t = x.shape[:2]
    y = module(x[mask])
    out = y.new_zeros(b, t, *y.shape[1:])
    out[mask] = y
    return out


class DownBlock(nn.Module):
    """Strided conv (down-sampling) then two 3x3 convs with a residual connection."""

    def __init__(
        self, d_in: int, d_out: int, k: int, s: int, p: int, norm: str, padding_mode: str
    ) -> None:
        super().__init__()
        self.down = conv_layers(
            [d_in, d_in], norm=norm, kernel_size=k, stride=s, padding=p, padding_mode=padding_mode
        )
        self.conv1 = conv_layers([d_in, d_out], norm=norm, padding_mode=padding_mode)
        self.conv2 = conv_layers([d_out, d_out], norm=norm, padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        """(N, d_in, H, W) → (N, d_out, H', W')."""
        out = self.conv1(self.down(x))
        return out + self.conv2(out)


class UpBlock(nn.Module):
    """Transposed conv (up-sampling), concatenation with the skip, two 3x3 convs (residual)."""

    def __init__(
        self, d_in: int, d_out: int, d_skip: int, k: int, s: int, p: int, padding_mode: str
    ) -> None:
        super().__init__()
        self.skip_conv = nn.Sequential(
            nn.Conv2d(d_skip, d_skip, 1), nn.BatchNorm2d(d_skip), nn.ReLU()
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(d_in, d_out, k, stride=s, padding=p),
            nn.BatchNorm2d(d_out),
            nn.ReLU(),
        )
        self.conv1 = conv_layers([d_out + d_skip, d_out], padding_mode=padding_mode)
        self.conv2 = conv_layers([d_out, d_out], padding_mode=padding_mode)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Up-sample ``x`` to the size of ``skip`` (B, d_skip, H, W) and merge them."""
        out = self.up(x)
        if out.shape[-2:] != skip.shape[-2:]:  # sizes that are not multiples of 2**depth
            out = F.interpolate(out, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        out = self.conv1(torch.cat([out, self.skip_conv(skip)], dim=1))
        return out + self.conv2(out)


class DatePositionalEncoding(nn.Module):
    """Sinusoidal encoding of acquisition dates (days), repeated once per attention head.

    ``pe[2i] = sin(d / period^(2i/dim))``, ``pe[2i+1] = cos(...)``, as in the Transformer and
    the L-TAE; ``period`` (1000 days) exceeds a year so every day of year is distinct.
    """

    def __init__(self, dim: int, repeat: int, period: float = 1000.0) -> None:
        super().__init__()
        exponent = 2.0 * (torch.arange(dim) // 2).float() / dim
        self.register_buffer("denom", period**exponent, persistent=False)
        self.repeat = repeat

    def forward(self, dates: Tensor) -> Tensor:
        """(..., T) dates → (..., T, dim * repeat)."""
        angles = dates[..., None].float() / self.denom
        pe = torch.where(
            torch.arange(angles.shape[-1], device=angles.device) % 2 == 0,
            torch.sin(angles),
            torch.cos(angles),
        )
        return pe.repeat(*([1] * (pe.dim() - 1)), self.repeat)


class MaskedGroupNorm(nn.Module):
    """GroupNorm of a sequence (N, T, C) whose statistics use the real steps only."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Normalise ``x`` (N, T, C) per sample and channel group over the steps ``mask`` keeps."""
        n, t, c = x.shape
        xg = x.view(n, t, self.groups, c // self.groups)
        m = mask.to(x.dtype)[:, :, None, None]
        count = (m.sum(dim=1, keepdim=True) * (c // self.groups)).clamp(min=1.0)
        mean = (xg * m).sum(dim=(1, 3), keepdim=True) / count
        var = (((xg - mean) ** 2) * m).sum(dim=(1, 3), keepdim=True) / count
        out = ((xg - mean) * torch.rsqrt(var + self.eps)).view(n, t, c)
        return out * self.weight + self.bias


class LTAE2d(nn.Module):
    """Lightweight temporal attention encoder applied to every pixel of a feature-map series.

    Each of ``n_head`` heads has one learned master query (``d_k`` dims); keys come from the
    date's features plus the positional encoding of its day of year; the values are the
    features themselves, split into ``n_head`` channel groups. Output: a map per sample and
    the attention each head gave each date.

    Args:
        in_channels: channels of the input maps (and of the output).
        n_head: attention heads.
        d_k: key/query dimension per head.
        d_model: width the input is projected to before attention (divisible by ``n_head``).
        dropout: dropout after the output MLP.
        attn_dropout: dropout on the attention weights.
        period: period of the date positional encoding (days).
    """

    def __init__(
        self,
        in_channels: int,
        n_head: int = 16,
        d_k: int = 4,
        d_model: int = 256,
        dropout: float = 0.2,
        attn_dropout: float = 0.1,
        period: float = 1000.0,
    ) -> None:
        super().__init__()
        self.n_head = n_head
        self.d_k = d_k
        self.d_model = d_model
        self.in_norm = MaskedGroupNorm(n_head, in_channels)
        self.in_proj = nn.Linear(in_channels, d_model)
        self.pos_enc = DatePositionalEncoding(d_model // n_head, repeat=n_head, period=period)
        self.query = nn.Parameter(torch.empty(n_head, d_k))
        self.key = nn.Linear(d_model, n_head * d_k)
        nn.init.normal_(self.query, std=math.sqrt(2.0 / d_k))
        nn.init.normal_(self.key.weight, std=math.sqrt(2.0 / d_k))
        self.attn_drop = nn.Dropout(attn_dropout)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, in_channels), nn.BatchNorm1d(in_channels), nn.ReLU()
        )
        self.drop = nn.Dropout(dropout)
        self.out_norm = nn.GroupNorm(n_head, in_channels)

    def forward(self, x: Tensor, mask: Tensor, dates: Tensor) -> tuple[Tensor, Tensor]:
        """Collapse time.

        Args:
            x: (B, T, C, h, w) feature maps (zeros at padded dates).
            mask: (B, T) bool, True where a date is real.
            dates: (B, T) day of year.

        Returns:
            ``(out, attn)``: (B, C, h, w) and (n_head, B, T, h, w); ``attn`` is 0 at padding.
        """
        b, t, c, h, w = x.shape
        seq = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
        seq_mask = mask[:, None, :].expand(b, h * w, t).reshape(b * h * w, t)
        seq = self.in_proj(self.in_norm(seq, seq_mask))
        pe = self.pos_enc(dates)  # (B, T, d_model)
        seq = seq + pe[:, None].expand(b, h * w, t, self.d_model).reshape(b * h * w, t, -1)

        keys = self.key(seq).view(b * h * w, t, self.n_head, self.d_k)
        scores = torch.einsum("hd,nthd->hnt", self.query, keys) / math.sqrt(self.d_k)
        scores = scores.masked_fill(~seq_mask[None], torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1) * seq_mask[None].to(scores.dtype)
        attn = self.attn_drop(attn)  # (H, N, T)

        values = seq.view(b * h * w, t, self.n_head, self.d_model // self.n_head)
        out = torch.einsum("hnt,nthd->nhd", attn, values).reshape(b * h * w, self.d_model)
        out = self.out_norm(self.drop(self.mlp(out)))
        out = out.view(b, h, w, c).permute(0, 3, 1, 2)
        attn = attn.view(self.n_head, b, h, w, t).permute(0, 1, 4, 2, 3)
        return out, attn


def _resize(a: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    if a.shape[-2:] == size:
        return a
    if a.shape[-2] < size[0]:
        return F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    return F.adaptive_avg_pool2d(a, size)


def temporal_aggregate(x: Tensor, mask: Tensor, attn: Tensor, mode: AggMode) -> Tensor:
    """Collapse the time axis of a skip connection with the L-TAE's attention.

    Args:
        x: (B, T, C, H, W) features of one encoder level (zeros at padded dates).
        mask: (B, T) bool, True where a date is real.
        attn: (n_head, B, T, h, w) attention from the lowest level; resized to (H, W).
        mode: ``"att_group"``: channel group g is weighted by head g's attention;
            ``"att_mean"``: all channels by the heads' mean attention; ``"mean"``: plain mean
            over the real dates.

    Returns:
        (B, C, H, W).
    """
    b, t, c, hh, ww = x.shape
    m = mask.to(x.dtype)
    if mode == "mean":
        total = (x * m[:, :, None, None, None]).sum(dim=1)
        return total / m.sum(dim=1).clamp(min=1.0)[:, None, None, None]
    n_head = attn.shape[0]
    if mode == "att_mean":
        a = _resize(attn.mean(dim=0), (hh, ww)) * m[:, :, None, None]  # (B, T, H, W)
        return torch.einsum("bthw,btchw->bchw", a, x)
    a = _resize(attn.reshape(n_head * b, t, *attn.shape[-2:]), (hh, ww))
    a = a.view(n_head, b, t, hh, ww) * m[None, :, :, None, None]
    xg = x.view(b, t, n_head, c // n_head, hh, ww)
    return torch.einsum("gbthw,btgchw->bgchw", a, xg).reshape(b, c, hh, ww)


class UTAE(nn.Module):
    """The U-TAE feature extractor: ``(x, mask, dates)`` → (B, decoder_widths[0], h, w).

    Args:
        in_channels: channels of each date's image.
        encoder_widths: channels of the encoder levels, highest resolution first; one strided
            down-sampling between consecutive levels.
        decoder_widths: channels of the decoder levels (same length; the last must equal the
            encoder's last).
        str_conv: (kernel, stride, padding) of the strided down/up convolutions.
        agg_mode: temporal aggregation of the skips (see :func:`temporal_aggregate`).
        encoder_norm: ``"group"`` (4 groups), ``"batch"`` or ``"instance"``.
        n_head, d_model, d_k: L-TAE settings.
        dropout: dropout in the L-TAE.
        padding_mode: spatial padding of the 3x3 convolutions.
        period: period (days) of the date positional encoding.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        encoder_widths: Sequence[int] = (64, 64, 64, 128),
        decoder_widths: Sequence[int] = (32, 32, 64, 128),
        str_conv: Sequence[int] = (4, 2, 1),
        agg_mode: AggMode = "att_group",
        encoder_norm: NormKind = "group",
        n_head: int = 16,
        d_model: int = 256,
        d_k: int = 4,
        dropout: float = 0.2,
        padding_mode: str = "reflect",
        period: float = 1000.0,
    ) -> None:
        super().__init__()
        enc = [check_int("encoder_widths", c, 1) for c in encoder_widths]
        dec = [check_int("decoder_widths", c, 1) for c in decoder_widths]
        if len(enc) < 2 or len(dec) != len(enc):
            raise ConfigError(
                f"encoder_widths, decoder_widths: need the same number (>= 2) of levels, got "
                f"{enc} and {dec}"
            )
        if enc[-1] != dec[-1]:
            raise ConfigError(
                f"decoder_widths: the last width must equal the encoder's ({enc[-1]}), "
                f"got {dec[-1]}"
            )
        n_head = check_int("n_head", n_head, 1)
        d_k = check_int("d_k", d_k, 1)
        d_model = check_int("d_model", d_model, 1)
        if d_model % n_head or enc[-1] % n_head:
            raise ConfigError(
                f"n_head: must divide d_model ({d_model}) and the last encoder width ({enc[-1]})"
                f", got {n_head}"
            )
        if agg_mode not in ("att_group", "att_mean", "mean"):
            raise ConfigError(
                f"agg_mode: must be 'att_group', 'att_mean' or 'mean', got {agg_mode!r}"
            )
        if agg_mode == "att_group" and any(c % n_head for c in enc[:-1]):
            raise ConfigError(
                f"encoder_widths: with agg_mode='att_group' every width must be divisible by "
                f"n_head={n_head}, got {enc}"
            )
        if encoder_norm == "group" and any(c % 4 for c in enc):
            raise ConfigError(
                f"encoder_widths: GroupNorm with 4 groups needs widths divisible by 4, got {enc}"
            )
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ConfigError(f"padding_mode: not a Conv2d padding mode: {padding_mode!r}")
        if not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {dropout!r}")
        if len(tuple(str_conv)) != 3:
            raise ConfigError(f"str_conv: (kernel, stride, padding) expected, got {str_conv!r}")
        k, s, p = (check_int("str_conv", v, lo) for v, lo in zip(str_conv, (1, 1, 0), strict=True))
        period = check_positive("period", period)
        self.encoder_widths = tuple(enc)
        self.decoder_widths = tuple(dec)
        self.out_channels = dec[0]
        self.agg_mode: AggMode = agg_mode
        self.in_conv = conv_layers(
            [in_channels, enc[0], enc[0]], norm=encoder_norm, padding_mode=padding_mode
        )
        self.down = nn.ModuleList(
            DownBlock(enc[i], enc[i + 1], k, s, p, encoder_norm, padding_mode)
            for i in range(len(enc) - 1)
        )
        self.ltae = LTAE2d(
            enc[-1], n_head=n_head, d_k=d_k, d_model=d_model, dropout=float(dropout), period=period
        )
        self.up = nn.ModuleList(
            UpBlock(dec[i], dec[i - 1], enc[i - 1], k, s, p, padding_mode)
            for i in range(len(enc) - 1, 0, -1)
        )

    def forward(self, x: Tensor, mask: Tensor, dates: Tensor) -> Tensor:
        """(B, T, C, h, w) series, (B, T) mask and dates → (B, decoder_widths[0], h, w)."""
        maps = [per_date(self.in_conv, x, mask)]
        for block in self.down:
            maps.append(per_date(block, maps[-1], mask))
        out, attn = self.ltae(maps[-1], mask, dates)
        for block, skip in zip(self.up, reversed(maps[:-1]), strict=True):
            out = block(out, temporal_aggregate(skip, mask, attn, self.agg_mode))
        return out


class UTAESegmenter(nn.Module):
    """U-TAE as a segmentation model on one time-series modality.

    Args:
        modalities: modality name → channels; must contain ``series_modality`` (others are
            ignored, so a dataset's full modality dict can be passed).
        num_classes: classes of the logits.
        metadata_dim: must be 0 (U-TAE takes no metadata).
        series_modality: which modality is the series (``inputs[m]``, ``m + "_mask"``,
            ``m + "_dates"``).
        out_conv: widths of the hidden 3x3 conv layers of the head (BN + ReLU each); a last
            3x3 conv gives the class scores.
        crop_size: centre-crop the logits to this many pixels (the aerial footprint: 10 of
            FLAIR-2's 40 x 40 Sentinel-2 pixels); ``None``: no crop.
        output_size: bilinearly upsample the (cropped) logits to this size (FLAIR-2: 512);
            ``None``: keep the series resolution.
        encoder_widths, decoder_widths, str_conv, agg_mode, encoder_norm, n_head, d_model,
            d_k, dropout, padding_mode, period: see :class:`UTAE`.
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        series_modality: str = "s2",
        encoder_widths: Sequence[int] = (64, 64, 64, 128),
        decoder_widths: Sequence[int] = (32, 32, 64, 128),
        out_conv: Sequence[int] = (32,),
        str_conv: Sequence[int] = (4, 2, 1),
        agg_mode: AggMode = "att_group",
        encoder_norm: NormKind = "group",
        n_head: int = 16,
        d_model: int = 256,
        d_k: int = 4,
        dropout: float = 0.2,
        padding_mode: str = "reflect",
        period: float = 1000.0,
        crop_size: int | None = None,
        output_size: int | None = None,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        if check_metadata_dim(metadata_dim):
            raise ConfigError("metadata_dim: U-TAE takes no metadata; use metadata_dim=0")
        if series_modality not in mods:
            raise ConfigError(
                f"series_modality: {series_modality!r} is not in modalities {list(mods)}"
            )
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.series_modality = series_modality
        self.modalities: tuple[str, ...] = (series_modality,)
        self.in_chans = mods[series_modality]
        self.crop_size = None if crop_size is None else check_int("crop_size", crop_size, 1)
        self.output_size = None if output_size is None else check_int("output_size", output_size, 1)
        self.utae = UTAE(
            in_channels=self.in_chans,
            encoder_widths=encoder_widths,
            decoder_widths=decoder_widths,
            str_conv=str_conv,
            agg_mode=agg_mode,
            encoder_norm=encoder_norm,
            n_head=n_head,
            d_model=d_model,
            d_k=d_k,
            dropout=dropout,
            padding_mode=padding_mode,
            period=period,
        )
        widths = [self.utae.out_channels] + [check_int("out_conv", c, 1) for c in out_conv]
        self.head = nn.Sequential(
            conv_layers(widths, padding_mode=padding_mode),
            nn.Conv2d(widths[-1], self.num_classes, 3, padding=1, padding_mode=padding_mode),
        )

    def series_logits(self, series: Series) -> Tensor:
        """Logits (B, K, h, w) at the series resolution, before any crop."""
        return self.head(self.utae(series.x, series.mask, series.dates))

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, K, h, w), or cropped and upsampled to ``output_size``."""
        out = self.series_logits(get_series(inputs, self.series_modality, self.in_chans))
        if self.crop_size is not None:
            out = center_crop(out, self.crop_size)
        if self.output_size is not None:
            out = F.interpolate(
                out, size=(self.output_size,) * 2, mode="bilinear", align_corners=False
            )
        return out


# --------------------------------------------------------------------------- configurations

FLAIR2_UTAE: dict[str, Any] = {
    "encoder_widths": (64, 64, 128, 128),
    "decoder_widths": (64, 64, 128, 128),
}
"""U-TAE settings of the FLAIR-2 baseline and LF-DLM (the rest are the reference defaults)."""

SMALL_UTAE: dict[str, Any] = {
    "encoder_widths": (32, 32, 64),
    "decoder_widths": (16, 32, 64),
    "n_head": 8,
    "d_model": 128,
}
"""A narrow U-TAE core (:class:`UTAE` arguments)."""

TINY_UTAE: dict[str, Any] = {
    "encoder_widths": (8, 16),
    "decoder_widths": (8, 16),
    "n_head": 4,
    "d_model": 16,
    "d_k": 2,
}
"""U-TAE core settings of the tiny ``test_*`` models (:class:`UTAE` arguments)."""
