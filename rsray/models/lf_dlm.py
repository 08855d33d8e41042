"""LF-DLM: late fusion of an aerial segmenter and a satellite time-series segmenter.

Dimitrovski et al. 2024 (lf-dlm-flair2-late-fusion.txt), FLAIR-2::

    aerial (B, 5, 512, 512) ─ UNetFormer-MaxViT-T ─ softmax ─┐  (n_aerial branches:
                          [─ UNetFormer #2 ─ softmax ─]      ┘   probabilities averaged) p_a
    s2 (B, T, 10, 40, 40) ─ U-TAE ─ logits (B, K, 40, 40)
        ─ centre crop to the aerial footprint (10 x 10) ─ bilinear up to 512 ─ softmax   p_s

    p ∝ p_a^{w_a} · p_s^{w_s}   (weighted geometric mean, w_a + w_s = 1; 0.7 / 0.3 in the paper)
    output: log p   (normalised log-probabilities; cross-entropy applies to them directly)

The paper trains the two branches separately and tunes the weights afterwards
(:mod:`rsray.recipes.lf_dlm`, ``jobs/lf_dlm_recipe.py``): ``branch="aerial"`` /
``branch="series"`` builds and trains one branch alone, under the same parameter names as the
fused model, so both branches' weights load into a ``branch="both"`` model whose fusion weight
is then chosen on the validation split. ``branch="both"`` trained end to end through the
fused output is the joint alternative. With ``series_weight=0`` the output is exactly the
aerial branch's log-softmax.

The crop default is the aerial patch's footprint in series pixels, from the ground sampling
distances: ``round(H * 0.2 m / 10 m)`` = 10 for FLAIR-2's 512 px patches.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsray.errors import ConfigError
from rsray.models.layers.fusion import (
    check_int,
    check_metadata_dim,
    presence,
    validate_modalities,
)
from rsray.models.layers.series import center_crop, check_positive, footprint_size, get_series
from rsray.models.layers.unetformer import RESNET18, TINY_MAXVIT, UNetFormer
from rsray.models.layers.utae import FLAIR2_UTAE, SMALL_UTAE, TINY_UTAE, UTAESegmenter
from rsray.models.registry import build_model_with_cfg, register_model

__all__ = ["LateFusionSegmenter", "fusion_weights"]

TASK = "segmentation"
"""Models of this family output per-pixel logits (B, num_classes, H, W)."""

Branch = Literal["both", "aerial", "series"]
"""Which part of the model is built: the fusion, or one branch alone (branch-wise training)."""

_RESERVED = {
    "modalities",
    "num_classes",
    "metadata_dim",
    "image_modality",
    "series_modality",
    "crop_size",
    "output_size",
}


def fusion_weights(aerial_weight: float, series_weight: float | None) -> tuple[float, float]:
    """Check and normalise the branch weights of the geometric mean.

    Args:
        aerial_weight: weight of the aerial probabilities.
        series_weight: weight of the series probabilities; ``None``: ``1 - aerial_weight``
            (then ``aerial_weight`` must be in [0, 1]).

    Returns:
        ``(w_a, w_s)``, non-negative and summing to 1.

    Raises:
        ConfigError: a weight is negative or not a number, or both are 0.
    """
    for name, value in (("aerial_weight", aerial_weight), ("series_weight", series_weight)):
        if value is None and name == "series_weight":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise ConfigError(f"{name}: must be a number >= 0, got {value!r}")
    if series_weight is None:
        if aerial_weight > 1:
            raise ConfigError(
                f"aerial_weight: must be in [0, 1] when series_weight is not given "
                f"(series_weight = 1 - aerial_weight), got {aerial_weight!r}"
            )
        return float(aerial_weight), 1.0 - float(aerial_weight)
    total = float(aerial_weight) + float(series_weight)
    if total <= 0:
        raise ConfigError("aerial_weight, series_weight: at least one must be > 0")
    return float(aerial_weight) / total, float(series_weight) / total


def _branch_kwargs(name: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(kwargs or {})
    reserved = sorted(_RESERVED & set(out))
    if reserved:
        raise ConfigError(f"{name}: {reserved} are set by the fusion model; remove them")
    return out


class LateFusionSegmenter(nn.Module):
    """LF-DLM: UNetFormer branch(es) on the image, U-TAE on the series, geometric-mean fusion.

    Args:
        modalities: modality name → channels; must contain both modalities.
        num_classes: classes.
        metadata_dim: must be 0.
        image_modality: the aerial modality (``inputs[m]``, (B, C, H, W)).
        series_modality: the series modality (``inputs[m]``, ``m + "_mask"``, ``m + "_dates"``).
        n_aerial: aerial branches; more than one is the paper's ensemble (two UNetFormers,
            different seeds), whose softmax probabilities are averaged before the fusion.
        aerial: keyword arguments of every :class:`~rsray.models.unetformer.UNetFormer`
            branch (``backbone``, ``img_size``, ``decode_channels``, ``pretrained``, ...).
        series: keyword arguments of the :class:`~rsray.models.utae.UTAESegmenter` branch
            (``encoder_widths``, ``decoder_widths``, ``n_head``, ...).
        aerial_weight: weight of the aerial probabilities (0.7 in the paper).
        series_weight: weight of the series probabilities; ``None``: ``1 - aerial_weight``.
            Both are normalised to sum 1.
        crop_size: side of the centre crop of the series logits, in series pixels;
            ``None``: the aerial footprint, ``round(H * image_gsd / series_gsd)``.
        image_gsd: ground sampling distance of the image (m; FLAIR-2 aerial: 0.2).
        series_gsd: ground sampling distance of the series (m; Sentinel-2: 10).
        series_upsample: ``"bilinear"`` or ``"nearest"`` up-sampling of the cropped logits.
        branch: ``"both"`` (the fusion), or ``"aerial"`` / ``"series"``: only that branch is
            built, it needs only its own modality and the output is its log-probabilities
            (the paper's separate branch training; the weights keep the fused model's names).
        output_size: side of the output when the image is not an input (``branch="series"``
            trained on the series alone): the label size, e.g. 512; ``None``: the image's size.
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, int],
        num_classes: int,
        metadata_dim: int = 0,
        image_modality: str = "aerial",
        series_modality: str = "s2",
        n_aerial: int = 1,
        aerial: Mapping[str, Any] | None = None,
        series: Mapping[str, Any] | None = None,
        aerial_weight: float = 0.7,
        series_weight: float | None = None,
        crop_size: int | None = None,
        image_gsd: float = 0.2,
        series_gsd: float = 10.0,
        series_upsample: Literal["bilinear", "nearest"] = "bilinear",
        branch: Branch = "both",
        output_size: int | None = None,
    ) -> None:
        super().__init__()
        mods = validate_modalities(modalities)
        if check_metadata_dim(metadata_dim):
            raise ConfigError("metadata_dim: LF-DLM takes no metadata; use metadata_dim=0")
        if branch not in get_args(Branch):
            raise ConfigError(f"branch: must be one of {list(get_args(Branch))}, got {branch!r}")
        self.branch: Branch = branch
        image, series_m = ("image_modality", image_modality), ("series_modality", series_modality)
        needed = {"both": (image, series_m), "aerial": (image,), "series": (series_m,)}[branch]
        for name, m in needed:
            if m not in mods:
                raise ConfigError(f"{name}: {m!r} is not in modalities {list(mods)}")
        if image_modality == series_modality:
            raise ConfigError("image_modality, series_modality: must be different modalities")
        if series_upsample not in ("bilinear", "nearest"):
            raise ConfigError(
                f"series_upsample: must be 'bilinear' or 'nearest', got {series_upsample!r}"
            )
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.image_modality = image_modality
        self.series_modality = series_modality
        self.modalities: tuple[str, ...] = tuple(m for _, m in needed)
        self.output_size = (None if output_size is None
                            else check_int("output_size", output_size, 1))
        self.crop_size = None if crop_size is None else check_int("crop_size", crop_size, 1)
        self.image_gsd = check_positive("image_gsd", image_gsd)
        self.series_gsd = check_positive("series_gsd", series_gsd)
        self.series_upsample = series_upsample
        n_aerial = check_int("n_aerial", n_aerial, 1)
        aerial_kw = _branch_kwargs("aerial", aerial)
        series_kw = _branch_kwargs("series", series)
        self.aerial = nn.ModuleList(
            _build(
                "aerial",
                UNetFormer,
                modalities={image_modality: mods[image_modality]},
                num_classes=self.num_classes,
                image_modality=image_modality,
                **aerial_kw,
            )
            for _ in range(n_aerial if branch != "series" else 0)
        )
        self.series: UTAESegmenter | None = None
        if branch != "aerial":
            self.series = _build(
                "series",
                UTAESegmenter,
                modalities={series_modality: mods[series_modality]},
                num_classes=self.num_classes,
                series_modality=series_modality,
                **series_kw,
            )
        w_a, w_s = fusion_weights(aerial_weight, series_weight)
        self.register_buffer("fusion_weights", torch.tensor([w_a, w_s]), persistent=False)

    def _size(self, inputs: Mapping[str, Tensor]) -> tuple[int, int]:
        x = inputs.get(self.image_modality)
        if x is not None:
            return int(x.shape[-2]), int(x.shape[-1])
        if self.output_size is not None:
            return self.output_size, self.output_size
        raise KeyError(
            f"input modality {self.image_modality!r} is missing; the model needs "
            f"{list(self.modalities)} (or output_size) and got {sorted(inputs)}"
        )

    def aerial_log_probs(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Log of the aerial branches' mean probability, (B, K, H, W)."""
        if self.image_modality not in inputs:
            raise KeyError(
                f"input modality {self.image_modality!r} is missing; the model needs "
                f"{list(self.modalities)} and got {sorted(inputs)}"
            )
        logs = torch.stack([F.log_softmax(b(inputs).float(), dim=1) for b in self.aerial])
        return torch.logsumexp(logs, dim=0) - math.log(len(self.aerial))

    def series_log_probs(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Series log-probabilities, centre-cropped to the footprint and upsampled, (B, K, H, W)."""
        assert self.series is not None
        size = self._size(inputs)
        series = get_series(inputs, self.series_modality, self.series.in_chans)
        zs = self.series.series_logits(series).float()
        crop: int | tuple[int, int]
        if self.crop_size is None:  # the footprint, at most the whole series map
            crop = (
                min(footprint_size(size[0], self.image_gsd, self.series_gsd), zs.shape[-2]),
                min(footprint_size(size[1], self.image_gsd, self.series_gsd), zs.shape[-1]),
            )
        else:
            crop = self.crop_size
        zs = center_crop(zs, crop)
        align = False if self.series_upsample == "bilinear" else None
        zs = F.interpolate(zs, size=size, mode=self.series_upsample, align_corners=align)
        return F.log_softmax(zs, dim=1)

    def branch_log_probs(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Log-probabilities of the aerial ensemble and of the series branch.

        Returns:
            ``(log_p_aerial, log_p_series)``, both (B, K, H, W) at the image resolution;
            the aerial one is the log of the branches' mean probability.
        """
        if self.branch != "both":
            raise RuntimeError(f"branch_log_probs needs both branches; this model is "
                               f"branch={self.branch!r}")
        return self.aerial_log_probs(inputs), self.series_log_probs(inputs)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Fused log-probabilities (B, K, H, W): ``log_softmax(w_a log p_a + w_s log p_s)``.

        A single-branch model returns that branch's log-probabilities. A sample lacking one
        of the two modalities (``<modality>_present`` 0) gets the other branch's alone.
        """
        if self.branch == "aerial":
            return self.aerial_log_probs(inputs)
        if self.branch == "series":
            return self.series_log_probs(inputs)
        log_pa, log_ps = self.branch_log_probs(inputs)
        w: Tensor = self.fusion_weights
        fused = w[0] * log_pa + w[1] * log_ps
        present = presence(inputs, (self.image_modality, self.series_modality))
        if present is not None:  # the weights renormalised over the present branch
            has_a, has_s = ((present[:, i] != 0)[:, None, None, None] for i in range(2))
            fused = torch.where(has_a & has_s, fused, torch.where(has_a, log_pa, log_ps))
        return F.log_softmax(fused, dim=1)


def _build(name: str, cls: type[nn.Module], **kwargs: Any) -> nn.Module:
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{name}: {cls.__name__} rejected the arguments: {e}") from e
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from e


# --------------------------------------------------------------------------- variants

PAPER: dict[str, Any] = {
    "aerial": {"backbone": "maxvit_tiny_tf_512", "img_size": 512},
    "series": FLAIR2_UTAE,
}
"""LF-DLM as published: UNetFormer-MaxViT-T (512 px) + U-TAE with widths 64,64,128,128."""


def _create(
    variant: str,
    defaults: Mapping[str, Any],
    modalities: dict[str, int],
    num_classes: int,
    metadata_dim: int,
    kwargs: dict[str, Any],
) -> LateFusionSegmenter:
    kwargs.update(modalities=modalities, num_classes=num_classes, metadata_dim=metadata_dim)
    return build_model_with_cfg(LateFusionSegmenter, variant, defaults, kwargs)


@register_model
def lf_dlm(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionSegmenter:
    """LF-DLM: UNetFormer-MaxViT-T + U-TAE, weights 0.7 / 0.3 (~33 M parameters)."""
    return _create("lf_dlm", PAPER, modalities, num_classes, metadata_dim, kwargs)


@register_model
def lf_dlm_ensemble(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionSegmenter:
    """LF-DLM with two UNetFormer-MaxViT-T branches (the paper's best, 64.52 % mIoU)."""
    cfg = {**PAPER, "n_aerial": 2}
    return _create("lf_dlm_ensemble", cfg, modalities, num_classes, metadata_dim, kwargs)


@register_model
def lf_dlm_small(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionSegmenter:
    """A smaller LF-DLM: UNetFormer-ResNet18 + a narrow U-TAE (~12 M parameters)."""
    cfg = {"aerial": RESNET18, "series": {**SMALL_UTAE, "out_conv": (16,)}}
    return _create("lf_dlm_small", cfg, modalities, num_classes, metadata_dim, kwargs)


_TINY = {"aerial": TINY_MAXVIT, "series": {**TINY_UTAE, "out_conv": (8,)}}


@register_model
def test_lf_dlm(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionSegmenter:
    """A tiny LF-DLM for tests (tiny MaxViT UNetFormer for 64 px, tiny U-TAE)."""
    return _create("test_lf_dlm", _TINY, modalities, num_classes, metadata_dim, kwargs)


@register_model
def test_lf_dlm_ensemble(
    *, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, **kwargs: Any
) -> LateFusionSegmenter:
    """A tiny two-branch LF-DLM ensemble for tests."""
    cfg = {**_TINY, "n_aerial": 2}
    return _create("test_lf_dlm_ensemble", cfg, modalities, num_classes, metadata_dim, kwargs)
