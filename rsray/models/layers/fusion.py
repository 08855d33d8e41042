"""Fusion layers: merge N modality feature maps at one stage, and inject metadata.

:class:`StageFusion` is the fusion layer of the progressive fusion encoder (one per stage)::

    x_1 (B, C_1, H, W) ─┐
    x_2 (B, C_2, H, W) ─┼─ [gate: x_m * sigmoid(1x1 conv(concat))_m] ─ concat ─ 1x1 conv ─ BN ─ act
    ...                 ┘                                                                  │
    metadata embedding (B, E) ───────────────── FiLM: y * (1 + g(e)) + b(e) ◄──────────────┘

The optional gate is the "learned attention / gated fusion" of the geo-covariates study: a
per-pixel weight for every modality, computed from all of them. The metadata branch is a
small MLP (:class:`MetadataEmbedding`, computed once per forward) followed by a per-stage
:class:`MetadataInjection` that either adds a broadcast bias (``"add"``) or scales and shifts
every channel (``"film"``, Perez et al. 2018).

The module also holds the input helpers every fusion model uses:
:func:`validate_modalities` (constructor side) and :func:`gather_inputs` /
:func:`get_metadata` (forward side), and the missing-modality helpers: :func:`presence` (the
``<modality>_present`` bits), :class:`MissingModalityFill` (a learned stand-in for a missing
modality's tensor, where the model cannot simply leave it out) and :func:`token_keep_mask`
(a key-padding mask that keeps a missing modality's tokens out of attention).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsray.errors import ConfigError

__all__ = [
    "METADATA_KEY",
    "MetadataEmbedding",
    "MetadataInjection",
    "MissingModalityFill",
    "StageFusion",
    "check_int",
    "check_metadata_dim",
    "gather_inputs",
    "get_metadata",
    "presence",
    "token_keep_mask",
    "validate_modalities",
]

METADATA_KEY = "metadata"
"""Key of the metadata vector in a model's input dict (never a modality name)."""


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """Check that ``value`` is an integer in ``[lo, hi]`` and return it as ``int``.

    NumPy integers count (Ray Tune and Optuna may sample them); booleans do not.

    Raises:
        ConfigError: naming the argument, the allowed range and the value.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name}: must be an integer {rng}, got {value!r}")
    return int(value)


def validate_modalities(modalities: Mapping[str, int]) -> dict[str, int]:
    """Check a ``{modality name: channels}`` mapping and return it as a plain dict.

    Raises:
        ConfigError: the mapping is empty, a name is not a non-empty string or is
            ``"metadata"``, or a channel count is not a positive integer.
    """
    if not isinstance(modalities, Mapping) or not modalities:
        raise ConfigError(
            "modalities: a non-empty mapping of modality name to channel count is needed, "
            f"e.g. {{'s2': 10, 's1': 2}}; got {modalities!r}"
        )
    out: dict[str, int] = {}
    for name, chans in modalities.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"modalities: names must be non-empty strings, got {name!r}")
        if "." in name:
            raise ConfigError(f"modalities: names may not contain '.', got {name!r}")
        if name == METADATA_KEY:
            raise ConfigError(
                f"modalities: {METADATA_KEY!r} is reserved for the metadata vector; "
                "pass metadata_dim instead"
            )
        out[name] = check_int(f"modalities: channel count of {name!r}", chans, 1)
    return out


def check_metadata_dim(metadata_dim: int) -> int:
    """Check ``metadata_dim`` (0 = no metadata) and return it."""
    return check_int("metadata_dim", metadata_dim, 0)


def gather_inputs(inputs: Mapping[str, Tensor], modalities: Sequence[str]) -> list[Tensor]:
    """Return the modality tensors of ``inputs`` in the order of ``modalities``.

    Raises:
        KeyError: a modality is missing (the message lists what was given).
    """
    try:
        return [inputs[m] for m in modalities]
    except KeyError as e:
        raise KeyError(
            f"input modality {e.args[0]!r} is missing; the model needs {list(modalities)} "
            f"and got {sorted(inputs)}"
        ) from None


PRESENT_SUFFIX = "_present"
"""``<modality>_present``: (B,) 1 where the sample has the modality, 0 where it is missing or
dropped (its tensor is then zeros); fusion models weight, gate or attend over present
modalities only."""


def presence(inputs: Mapping[str, Tensor], names: Sequence[str]) -> Tensor | None:
    """``(B, K)`` float presence of each branch in ``names``; ``None`` when no bit is given.

    A branch without a ``<name>_present`` input (the metadata branch, a modality that is never
    missing) counts as present.
    """
    given = [inputs.get(f"{n}{PRESENT_SUFFIX}") for n in names]
    ref = next((g for g in given if g is not None), None)
    if ref is None:
        return None
    ones = torch.ones(ref.shape[0], device=ref.device)
    return torch.stack([ones if g is None else g.reshape(-1).to(ones) for g in given], dim=1)


class MissingModalityFill(nn.Module):
    """Learned stand-ins for missing modalities (the "mask token" of MAE, per modality).

    Where a sample's presence bit is 0, its tensor of that modality is replaced by a learned
    value of shape ``shapes[name]`` broadcast over it (``(C, 1, 1)``: one value per channel of
    an image or feature map; ``(D,)``: one token), so the output never depends on what the
    missing tensor holds and the network sees "absent" rather than a zero-valued image. The
    values start at zero and learn only from samples that lack the modality; a sample whose
    bit is 1 passes through unchanged (``torch.where``), so models given every modality
    compute exactly what they computed without this layer.

    The stand-ins are always part of the autograd graph (with a zero gradient when every
    sample has the modality), so ``DistributedDataParallel`` finds every parameter used.
    Checkpoints written before a model had this layer load with the values at zero.

    Args:
        shapes: branch name → shape of its stand-in (broadcastable to one sample's tensor).
    """

    def __init__(self, shapes: Mapping[str, Sequence[int]]) -> None:
        super().__init__()
        self.names: tuple[str, ...] = tuple(shapes)
        self.fill = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(*s)) for n, s in shapes.items()}
        )

    def forward(self, xs: Sequence[Tensor], present: Tensor | None) -> list[Tensor]:
        """``xs`` (one tensor per name, batch first) with absent samples replaced.

        Args:
            xs: the branches' tensors in the order of ``names``.
            present: ``(B, len(names))`` presence (from :func:`presence`) or ``None`` (every
                sample has every modality: the values of ``xs`` are returned unchanged).
        """
        out = []
        for i, (name, x) in enumerate(zip(self.names, xs, strict=True)):
            shape = (x.shape[0], *([1] * (x.ndim - 1)))
            keep = (torch.ones(shape, dtype=torch.bool, device=x.device) if present is None
                    else (present[:, i] != 0).reshape(shape))
            out.append(torch.where(keep, x, self.fill[name].to(x.dtype)))
        return out

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        for name, p in self.fill.items():  # an older checkpoint without the stand-ins
            state_dict.setdefault(f"{prefix}fill.{name}", torch.zeros_like(p))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def token_keep_mask(present: Tensor | None, lengths: Sequence[int],
                    prefix: int = 1) -> Tensor | None:
    """A boolean attention mask that keeps missing modalities' tokens out of every key set.

    Args:
        present: ``(B, K)`` presence of the ``K`` token groups (from :func:`presence`), or
            ``None``.
        lengths: number of tokens of each group, in sequence order after the prefix.
        prefix: leading tokens that are always kept (the class token).

    Returns:
        ``(B, 1, 1, prefix + sum(lengths))`` (True = may be attended to) for timm's ``Block``
        and ``scaled_dot_product_attention``, or ``None`` when every sample has every group
        (then attention runs exactly as without a mask).
    """
    if present is None or bool((present != 0).all()):
        return None
    keep = present != 0
    parts = [torch.ones(keep.shape[0], prefix, dtype=torch.bool, device=keep.device)]
    parts += [keep[:, i:i + 1].expand(-1, n) for i, n in enumerate(lengths)]
    return torch.cat(parts, dim=1)[:, None, None, :]


def get_metadata(inputs: Mapping[str, Tensor], metadata_dim: int) -> Tensor | None:
    """Return the ``(B, metadata_dim)`` metadata tensor, or ``None`` when the model takes none.

    Metadata given to a model built with ``metadata_dim=0`` is ignored.

    Raises:
        KeyError: the model needs metadata and ``inputs`` has none.
        ValueError: the metadata has the wrong shape.
    """
    if metadata_dim == 0:
        return None
    if METADATA_KEY not in inputs:
        raise KeyError(
            f"input {METADATA_KEY!r} is missing; the model was built with "
            f"metadata_dim={metadata_dim}"
        )
    meta = inputs[METADATA_KEY]
    if meta.dim() != 2 or meta.shape[1] != metadata_dim:
        raise ValueError(
            f"input {METADATA_KEY!r} must have shape (B, {metadata_dim}), got {tuple(meta.shape)}"
        )
    return meta


class MetadataEmbedding(nn.Module):
    """Two-layer MLP embedding of a metadata vector: Linear → act → Linear → act.

    Args:
        metadata_dim: length of the metadata vector.
        embed_dim: width of the embedding.
        act_layer: activation.
        drop: dropout on the embedding.
    """

    def __init__(
        self,
        metadata_dim: int,
        embed_dim: int = 64,
        act_layer: type[nn.Module] = nn.ReLU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.mlp = nn.Sequential(
            nn.Linear(metadata_dim, embed_dim),
            act_layer(),
            nn.Linear(embed_dim, embed_dim),
            act_layer(),
            nn.Dropout(drop),
        )

    def forward(self, meta: Tensor) -> Tensor:
        """Embed ``meta`` (B, metadata_dim) into (B, embed_dim)."""
        return self.mlp(meta)


class MetadataInjection(nn.Module):
    """Broadcast a metadata embedding into a feature map.

    Args:
        embed_dim: width of the metadata embedding.
        channels: channels of the feature map.
        mode: ``"add"``: ``x + b(e)``; ``"film"``: ``x * (1 + g(e)) + b(e)`` with ``g``, ``b``
            linear in the embedding ``e``.
    """

    def __init__(
        self, embed_dim: int, channels: int, mode: Literal["film", "add"] = "film"
    ) -> None:
        super().__init__()
        if mode not in ("film", "add"):
            raise ConfigError(f"metadata_mode: must be 'film' or 'add', got {mode!r}")
        self.mode = mode
        self.channels = channels
        self.proj = nn.Linear(embed_dim, 2 * channels if mode == "film" else channels)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Condition ``x`` (B, C, H, W) on ``emb`` (B, embed_dim)."""
        p = self.proj(emb)[:, :, None, None]
        if self.mode == "add":
            return x + p
        gamma, beta = p.split(self.channels, dim=1)
        return x * (1.0 + gamma) + beta


class StageFusion(nn.Module):
    """Merge N modality feature maps of one stage into one (concat + 1x1 conv + BN + act).

    Inputs of different spatial sizes are resized (bilinear) to the first one's size.

    Args:
        in_channels: channels of each modality's feature map, in input order.
        out_channels: channels of the fused map.
        gated: weight each modality per pixel by a learned sigmoid gate before merging.
        meta_embed_dim: width of the metadata embedding to inject; 0 for none.
        metadata_mode: ``"film"`` or ``"add"`` (see :class:`MetadataInjection`).
        act_layer: activation after the normalisation.
        norm_layer: normalisation after the 1x1 convolution.

    A modality missing from a sample (``present`` 0 in :meth:`forward`) enters the merge as
    its learned stand-in (:class:`MissingModalityFill`, one value per channel), not as
    whatever its branch computed from the zeros in its input.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        gated: bool = False,
        meta_embed_dim: int = 0,
        metadata_mode: Literal["film", "add"] = "film",
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        total = sum(self.in_channels)
        self.missing = MissingModalityFill(
            {str(i): (c, 1, 1) for i, c in enumerate(self.in_channels)}
        )
        self.gate = nn.Conv2d(total, len(self.in_channels), kernel_size=1) if gated else None
        self.conv = nn.Conv2d(total, out_channels, kernel_size=1, bias=False)
        self.norm = norm_layer(out_channels)
        self.act = act_layer()
        self.meta = (
            MetadataInjection(meta_embed_dim, out_channels, metadata_mode)
            if meta_embed_dim > 0
            else None
        )

    def forward(self, features: Sequence[Tensor], meta_emb: Tensor | None = None,
                present: Tensor | None = None) -> Tensor:
        """Fuse ``features`` (one (B, C_m, H, W) map per modality) and optional metadata.

        ``present``: ``(B, M)`` presence of the modalities (:func:`presence`) or ``None``.
        """
        if len(features) != len(self.in_channels):
            raise ValueError(
                f"StageFusion expects {len(self.in_channels)} feature maps, got {len(features)}"
            )
        size = features[0].shape[-2:]
        feats = [
            f
            if f.shape[-2:] == size
            else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            for f in self.missing(features, present)
        ]
        x = torch.cat(feats, dim=1)
        if self.gate is not None:
            g = torch.sigmoid(self.gate(x))
            x = torch.cat([f * g[:, i : i + 1] for i, f in enumerate(feats)], dim=1)
        x = self.act(self.norm(self.conv(x)))
        if self.meta is not None:
            if meta_emb is None:
                raise ValueError("StageFusion was built with metadata; pass meta_emb")
            x = self.meta(x, meta_emb)
        return x
