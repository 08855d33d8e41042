"""Training augmentations on native-resolution band groups, on the host (NumPy) or the device.

Per sample and modality one transform is drawn: a random crop-and-resize (a square box whose
side is a fraction ``U[lo, hi]`` of the image side, at a uniform position, resized back to the
group's size), then a horizontal flip and ``k`` quarter turns (together: the eight dihedral
transforms). The box is in relative coordinates, so the 10/20/60 m groups of one modality, and
every date of a series, get the same ground box at their own resolution. The thesis
(vit-fusion-bigearthnet-mm-thesis.txt, section 6.2 "Random Flipping and Cropping") applies
flipping and cropping in every run, shared by the modalities or *desynchronised* (drawn per
modality); ``desync`` picks the latter.

The same transforms exist twice: on NumPy arrays (:func:`draw`, :func:`apply`; Ray Data tasks
and CPU workers) and on torch tensors of any device (:func:`draw_torch`, :func:`apply_torch`;
``data.augment_on=device``: the worker's GPU, or CPU memory), the latter vectorised over the
eight dihedral classes instead of a per-sample loop. Given the same draw both give the same
result; integer bands are rounded back to their dtype after a crop in both.

Which operations a modality gets is chosen per modality (``ops``): GLOBE's horizon photos have
a sky, so quarter turns (which also make vertical flips) are off for them
(progressive-fusion-globe-lulc.txt), while overhead imagery gets all of them.

:func:`augment_raw` (NumPy, in a Ray Data task or on the host) and :func:`augment_device`
(torch, on the worker's device) apply them to a decoded batch along a
:class:`~rsray.data.plan.DecodePlan`: per modality, with the segmentation mask aligned and
modality dropping recorded as ``drop_<modality>`` flags.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rsray.config import AUGMENT_OPS, DataConfig
from rsray.errors import ConfigError

if TYPE_CHECKING:
    from rsray.data.plan import DecodePlan

OPS = AUGMENT_OPS
"""Operations a modality can get; all by default (``data.augment_ops`` checks them)."""


@dataclass(frozen=True)
class Draw:
    """Drawn transform parameters of a batch (one entry per sample).

    NumPy arrays from :func:`draw`, tensors on the device from :func:`draw_torch`.
    """

    k: np.ndarray
    """Quarter turns, 0..3."""
    flip: np.ndarray
    """Horizontal flip (bool)."""
    box: np.ndarray
    """``(N, 3)``: crop side fraction and the box's left/top offsets, relative to the image."""

    @property
    def crops(self) -> np.ndarray:
        """Samples whose box is smaller than the image."""
        return self.box[:, 0] < 1.0


def draw(rng: np.random.Generator, n: int, ops: Sequence[str],
         crop_scale: tuple[float, float]) -> Draw:
    """Draw ``n`` transforms using only ``ops`` (see :data:`OPS`)."""
    k = rng.integers(0, 4, size=n) if "rot90" in ops else np.zeros(n, dtype=np.int64)
    flip = rng.random(n) < 0.5 if "hflip" in ops else np.zeros(n, dtype=bool)
    lo, hi = crop_scale
    if "crop" in ops and lo < 1.0:
        side = rng.uniform(lo, hi, size=n)
        offsets = rng.random((n, 2)) * (1.0 - side)[:, None]
        box = np.column_stack([side, offsets])
    else:
        box = np.tile(np.array([1.0, 0.0, 0.0]), (n, 1))
    return Draw(k, flip, box)


def resized_crop(x: np.ndarray, box: np.ndarray, mode: str = "bilinear") -> np.ndarray:
    """Crop each sample of ``x`` (``(N, ..., H, W)``) to its relative ``box``, resize back.

    Sampling is ``torch.nn.functional.grid_sample`` with ``align_corners=False``, so the box
    covers the same ground at every resolution. Integer arrays are rounded back to their dtype;
    ``mode="nearest"`` keeps class indices (segmentation masks) exact.
    """
    import torch
    import torch.nn.functional as F

    sel = np.nonzero(box[:, 0] < 1.0)[0]
    if sel.size == 0:
        return x
    out = np.array(x, copy=True)
    h, w = x.shape[-2:]
    t = torch.from_numpy(np.ascontiguousarray(x[sel]).astype(np.float32))
    flat = t.reshape(len(sel), -1, h, w)
    side, left, top = (torch.from_numpy(box[sel, i]).float() for i in range(3))
    theta = torch.zeros(len(sel), 2, 3)
    theta[:, 0, 0] = side
    theta[:, 1, 1] = side
    theta[:, 0, 2] = 2 * left + side - 1  # box centre in [-1, 1] coordinates
    theta[:, 1, 2] = 2 * top + side - 1
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    y = F.grid_sample(flat, grid, mode=mode, padding_mode="border", align_corners=False)
    y = y.reshape(t.shape).numpy()
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    out[sel] = y.astype(x.dtype)
    return out


def dihedral(x: np.ndarray, k: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Per-sample horizontal flip then ``k`` quarter turns of the last two axes (H, W)."""
    out = np.empty_like(x)
    axes = (x.ndim - 3, x.ndim - 2)
    for i in range(x.shape[0]):
        xi = x[i][..., ::-1] if flip[i] else x[i]
        out[i] = np.rot90(xi, k=int(k[i]), axes=axes)
    return out


def apply(x: np.ndarray, d: Draw, mode: str = "bilinear") -> np.ndarray:
    """Crop-and-resize, then flip and rotate ``x`` (``(N, ..., H, W)``) by the draw ``d``."""
    return dihedral(resized_crop(x, d.box, mode), d.k, d.flip)


def modality_ops(ops: Mapping[str, Sequence[str]], name: str) -> tuple[str, ...]:
    """Operations of modality ``name`` (every one of :data:`OPS` unless ``ops`` names it)."""
    return tuple(ops.get(name, OPS))


def draw_torch(gen: Any, n: int, ops: Sequence[str], crop_scale: tuple[float, float],
               device: Any) -> Draw:
    """:func:`draw` with a ``torch.Generator`` on ``device``: a :class:`Draw` of tensors there.

    Same distributions as :func:`draw` (quarter turns uniform over 0..3, flips with p = 0.5, box
    side ``U[lo, hi]`` at a uniform position); no host round trip.
    """
    import torch

    kw = {"generator": gen, "device": device}
    k = (torch.randint(0, 4, (n,), **kw) if "rot90" in ops
         else torch.zeros(n, dtype=torch.int64, device=device))
    flip = (torch.rand(n, **kw) < 0.5 if "hflip" in ops
            else torch.zeros(n, dtype=torch.bool, device=device))
    lo, hi = crop_scale
    if "crop" in ops and lo < 1.0:
        side = lo + (hi - lo) * torch.rand(n, dtype=torch.float64, **kw)
        offsets = torch.rand(n, 2, dtype=torch.float64, **kw) * (1.0 - side)[:, None]
        box = torch.cat([side[:, None], offsets], dim=1)
    else:
        box = identity_box_torch(n, device)
    return Draw(k, flip, box)


def identity_box_torch(n: int, device: Any) -> Any:
    """``(n, 3)`` boxes covering the whole image (no crop), float64 on ``device``."""
    import torch

    box = torch.zeros(n, 3, dtype=torch.float64, device=device)
    box[:, 0] = 1.0
    return box


def resized_crop_torch(x: Any, box: Any, mode: str = "bilinear") -> Any:
    """:func:`resized_crop` on a tensor (``(N, ..., H, W)``, any device), out of place."""
    import torch
    import torch.nn.functional as F

    sel = torch.nonzero(box[:, 0] < 1.0).flatten()
    if sel.numel() == 0:
        return x
    h, w = x.shape[-2:]
    part = x.index_select(0, sel)
    flat = part.float().reshape(len(sel), -1, h, w)
    b = box.index_select(0, sel).float()
    theta = torch.zeros(len(sel), 2, 3, device=x.device)
    theta[:, 0, 0] = b[:, 0]
    theta[:, 1, 1] = b[:, 0]
    theta[:, 0, 2] = 2 * b[:, 1] + b[:, 0] - 1  # box centre in [-1, 1] coordinates
    theta[:, 1, 2] = 2 * b[:, 2] + b[:, 0] - 1
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    y = F.grid_sample(flat, grid, mode=mode, padding_mode="border", align_corners=False)
    y = y.reshape(part.shape)
    if not x.dtype.is_floating_point:
        info = torch.iinfo(x.dtype)
        y = torch.round(y).clamp_(info.min, info.max)
    out = x.clone()
    _put(out, sel, y.to(x.dtype))
    return out


def dihedral_torch(x: Any, k: Any, flip: Any) -> Any:
    """:func:`dihedral` on a tensor: one flip/rotation per dihedral class, not per sample."""
    import torch

    code = k.to(torch.int64) + 4 * flip.to(torch.int64)
    if not bool((code != 0).any()):
        return x
    signed = _signed().get(x.dtype)
    if signed is not None:  # moves bits only: on the signed view (torch's uint16 kernels are
        return dihedral_torch(x.view(signed), k, flip).view(x.dtype)  # ~30x slower on CPU)
    out = x.clone()
    for c in range(1, 8):
        idx = torch.nonzero(code == c).flatten()
        if idx.numel() == 0:
            continue
        xi = x.index_select(0, idx)
        if c >= 4:
            xi = torch.flip(xi, dims=(-1,))
        if c % 4:
            xi = torch.rot90(xi, k=c % 4, dims=(-2, -1))
        _put(out, idx, xi)
    return out


@functools.cache
def _signed() -> dict[Any, Any]:
    """Unsigned torch dtypes -> the signed dtype of the same width (torch imported lazily)."""
    import torch

    return {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}


def _put(out: Any, idx: Any, value: Any) -> None:
    """``out[idx] = value`` in place.

    Unsigned 16/32/64-bit tensors go through a same-width signed view (torch has no
    ``index_put`` for them; the bits are moved unchanged).
    """
    view = _signed().get(out.dtype)
    if view is None:
        out[idx] = value
    else:
        out.view(view)[idx] = value.view(view)


def apply_torch(x: Any, d: Draw, mode: str = "bilinear") -> Any:
    """:func:`apply` on a tensor with a :func:`draw_torch` draw."""
    return dihedral_torch(resized_crop_torch(x, d.box, mode), d.k, d.flip)


def augment_raw(
    batch: dict[str, np.ndarray],
    plan: DecodePlan,
    *,
    desync: bool = False,
    modality_dropout: float = 0.0,
    crop_scale: tuple[float, float] = (1.0, 1.0),
    ops: Mapping[str, Sequence[str]] | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Random crop-and-resize, flips and quarter turns, and modality dropping (training only).

    Runs on native-resolution groups, before resampling (see :mod:`rsray.data.augment`). Every
    group of a modality gets the modality's transform (they cover the same ground); series get
    one transform for all their dates. ``desync`` draws a transform per modality (the thesis'
    desynchronised flipping and cropping), otherwise a sample's modalities share one. ``ops``
    maps a modality to the operations it gets (default: all of ``hflip``, ``rot90``, ``crop``;
    cropping only when ``crop_scale`` is below 1). A segmentation mask gets the shared transform,
    so ``desync`` is ignored for segmentation (the mask must stay aligned with every input).
    With probability ``modality_dropout`` one modality of a sample, chosen at random, is flagged
    in ``drop_<modality>`` and zeroed after normalisation (its training mean); a sample never
    loses all of them. The draw is among the modalities the sample has: one already missing
    (``drop_<modality>`` set by the decoder from ``present_<modality>``) is never the one
    dropped, and a sample left with a single modality keeps it.
    """
    rng = rng or np.random.default_rng()
    ops = ops or {}
    n = len(batch["label"])
    desync = desync and plan.task != "segmentation"
    all_ops = tuple(sorted({o for m in plan.spatial for o in modality_ops(ops, m.name)}))
    shared = draw(rng, n, all_ops, crop_scale)
    for m in plan.spatial:
        mine = modality_ops(ops, m.name)
        d = draw(rng, n, mine, crop_scale) if desync else _restrict(shared, mine)
        for g in m.groups:
            batch[g.column] = apply(batch[g.column], d)
    if plan.task == "segmentation":
        batch["label"] = apply(batch["label"], shared, mode="nearest")
    names = [m.name for m in plan.modalities]
    if modality_dropout > 0 and len(names) > 1:
        drop = rng.random(n) < modality_dropout
        which = rng.integers(0, len(names), size=n)
        present = np.stack([np.asarray(batch[f"drop_{x}"]) == 0 for x in names], axis=1)
        for i in np.nonzero(drop)[0]:
            have = np.flatnonzero(present[i])
            if len(have) >= 2:  # the which-th present modality (all present: the which-th)
                batch[f"drop_{names[int(have[int(which[i]) % len(have)])]}"][i] = 1
    return batch


def augment_device(
    batch: dict[str, Any],
    plan: DecodePlan,
    *,
    desync: bool = False,
    modality_dropout: float = 0.0,
    crop_scale: tuple[float, float] = (1.0, 1.0),
    ops: Mapping[str, Sequence[str]] | None = None,
    generator: Any = None,
) -> dict[str, Any]:
    """:func:`augment_raw` on torch tensors, on whatever device they are (``augment_on=device``).

    Same operations, per-modality choices (``ops``), synchronised or desynchronised draws,
    aligned segmentation mask and modality dropping as :func:`augment_raw`; the parameters are
    drawn on the device with ``generator`` (a ``torch.Generator`` there), so a batch on a GPU
    never comes back to the host. Labels other than a segmentation mask are not touched (they
    may be multi-hot, class indices or float regression targets). Returns a new dict.
    """
    import torch

    out = dict(batch)
    ops = ops or {}
    label = out["label"]
    n, device = int(label.shape[0]), label.device
    desync = desync and plan.task != "segmentation"
    all_ops = tuple(sorted({o for m in plan.spatial for o in modality_ops(ops, m.name)}))
    shared = draw_torch(generator, n, all_ops, crop_scale, device)
    for m in plan.spatial:
        mine = modality_ops(ops, m.name)
        d = (draw_torch(generator, n, mine, crop_scale, device) if desync
             else _restrict_torch(shared, mine))
        for g in m.groups:
            out[g.column] = apply_torch(out[g.column], d)
    if plan.task == "segmentation":
        out["label"] = apply_torch(label, shared, mode="nearest")
    names = [m.name for m in plan.modalities]
    if modality_dropout > 0 and len(names) > 1:
        drop = torch.rand(n, generator=generator, device=device) < modality_dropout
        which = torch.randint(0, len(names), (n,), generator=generator, device=device)
        flags = [out.get(f"drop_{x}") for x in names]
        present = torch.stack([torch.ones(n, dtype=torch.bool, device=device) if f is None
                               else f.to(device) == 0 for f in flags], dim=1)
        count = present.sum(dim=1)
        ok = drop & (count >= 2)  # never drop a sample's last modality
        rank = present.long().cumsum(dim=1) - 1  # the which-th present modality is dropped
        chosen = present & (rank == (which % count.clamp_min(1))[:, None])
        for j, name in enumerate(names):
            key = f"drop_{name}"
            hit = (ok & chosen[:, j]).to(torch.uint8)
            out[key] = hit if flags[j] is None else torch.maximum(flags[j].to(torch.uint8), hit)
    return out


def _restrict_torch(d: Draw, ops: Sequence[str]) -> Draw:
    """:func:`_restrict` for a draw of tensors."""
    import torch

    n = len(d.k)
    return Draw(
        d.k if "rot90" in ops else torch.zeros_like(d.k),
        d.flip if "hflip" in ops else torch.zeros_like(d.flip),
        d.box if "crop" in ops else identity_box_torch(n, d.box.device),
    )


def _restrict(d: Draw, ops: Sequence[str]) -> Draw:
    """The shared draw without the operations a modality does not get."""
    n = len(d.k)
    return Draw(
        d.k if "rot90" in ops else np.zeros(n, dtype=d.k.dtype),
        d.flip if "hflip" in ops else np.zeros(n, dtype=bool),
        d.box if "crop" in ops else np.tile(np.array([1.0, 0.0, 0.0]), (n, 1)),
    )


def check_augment(plan: DecodePlan, cfg: DataConfig) -> None:
    """Reject augmentation settings that would misalign a segmentation mask or name no modality.

    A segmentation mask gets one transform, so every input must get the same operations, and
    cropping needs inputs that cover the same ground (FLAIR-2's Sentinel-2 series covers a
    larger area than the aerial tile, so a relative box would cut different ground).
    """
    names = {m.name for m in plan.spatial}
    unknown = set(cfg.augment_ops) - names
    if unknown:
        raise ConfigError(f"data.augment_ops: {sorted(unknown)} are not image modalities of "
                          f"this shard set (it has {', '.join(sorted(names))})")
    if plan.task != "segmentation":
        return
    per = {tuple(sorted(modality_ops(cfg.augment_ops, m))) for m in names}
    if len(per) > 1:
        raise ConfigError("data.augment_ops: a segmentation mask gets one transform, so every "
                          "input modality must get the same operations")
    crops = cfg.crop_scale[0] < 1.0 and "crop" in next(iter(per), ())
    if crops and any(m.kind == "series" for m in plan.spatial):
        raise ConfigError("data.crop_scale: cropping a segmentation shard set with a series "
                          "modality would cut different ground (the series covers a larger "
                          "area); keep data.crop_scale=[1.0, 1.0]")


def augment_kwargs(cfg: DataConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`augment_raw` that ``cfg`` sets."""
    return {"desync": cfg.desync_augment, "modality_dropout": cfg.modality_dropout,
            "crop_scale": (float(cfg.crop_scale[0]), float(cfg.crop_scale[1])),
            "ops": {k: tuple(v) for k, v in cfg.augment_ops.items()}}



__all__ = ["OPS", "Draw", "apply", "apply_torch", "augment_device", "augment_kwargs",
           "augment_raw", "check_augment", "dihedral", "dihedral_torch", "draw", "draw_torch",
           "identity_box_torch", "modality_ops", "resized_crop", "resized_crop_torch"]
