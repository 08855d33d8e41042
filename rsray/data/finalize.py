"""Torch work on the training worker's device: decoded groups -> normalised model inputs.

:func:`finalize_batch` casts to float32, resamples coarse groups to ``image_size``,
concatenates the groups of a modality, normalises with the manifest's band statistics and
zeroes dropped modalities, on whatever device the batch is (the GPU when there is one).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from rsray.data.decode import decode_raw
from rsray.data.plan import DecodePlan, ModalityPlan
from rsray.errors import ShardIntegrityError


def _resize(x: Any, size: int, mode: str) -> Any:
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def finalize_batch(batch: dict[str, Any], plan: DecodePlan) -> dict[str, Any]:
    """Native group arrays -> normalised float32 model inputs.

    Works on torch tensors (on any device: the training worker calls it on its GPU) or NumPy
    arrays (converted). Returns:

    * image modality ``m``: ``(N, C, image_size, image_size)``;
    * series modality ``m``: ``(N, L, C, s, s)`` at native size, padded dates zero, plus
      ``m_mask`` (bool, True = real date) and ``m_dates`` (float day of year, 0 = padding);
    * ``metadata``: ``(N, D)``, every vector modality concatenated in plan order;
    * ``m_present``: ``(N,)`` float, 0 where modality ``m`` is missing from the sample or
      dropped (its tensor is then zeros), 1 elsewhere; fusion models weight, gate or attend
      over present modalities only;
    * ``label``: ``(N, K)`` float32 for classification; ``(N, image_size, image_size)`` int64
      class indices for segmentation (nearest-neighbour resized if needed).
    """
    import torch

    def tensor(x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x
        x = np.ascontiguousarray(x)
        if x.flags.writeable:
            return torch.from_numpy(x)
        # A read-only view on Arrow / object-store memory (decode_raw makes no copy): every
        # operation below makes a new tensor (casts, normalisation, masking are out of place),
        # so torch's "not writable" warning does not apply.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(x)

    size = plan.image_size
    out: dict[str, Any] = {}
    if plan.task == "segmentation":
        mask = tensor(batch["label"]).long()
        if mask.shape[-1] != size:
            mask = _resize(mask[:, None].float(), size, "nearest")[:, 0].long()
        out["label"] = mask
    else:
        out["label"] = tensor(batch["label"]).float()
    vectors = []
    for m in plan.modalities:
        x = _modality(batch, m, plan, tensor)
        drop = batch.get(f"drop_{m.name}")
        if drop is not None:  # missing or dropped: zeros plus presence bit 0, never silent
            present = (tensor(drop).to(x.device) == 0).float()
            x = x * present.reshape(-1, *([1] * (x.ndim - 1)))
            out[f"{m.name}_present"] = present
        _finite_guard(batch, m, x, plan.check_finite)
        if m.kind == "vector":
            vectors.append(x)
        else:
            out[m.name] = x
        if m.kind == "series":
            g = m.groups[0].column
            out[f"{m.name}_mask"] = tensor(batch[f"{g}__mask"]).bool()
            out[f"{m.name}_dates"] = tensor(batch[f"{g}__dates"]).float()
    if vectors:
        out["metadata"] = torch.cat(vectors, dim=1)
    return out


def _finite_guard(batch: dict[str, Any], m: ModalityPlan, x: Any, full: bool) -> None:
    """Raise if modality ``m`` holds NaN/inf after decoding.

    Integer band groups (uint16 S2, uint8 masks) cannot be non-finite, and the manifest's
    statistics are finite (:func:`make_plan` checks them), so those are never scanned. Float
    groups were validated by ``rsray prepare`` when it wrote them; the guard reduces ``x`` to
    one sum (a non-finite element makes the sum non-finite) instead of an element-wise
    ``isfinite`` pass, which was 43 % of :func:`finalize_batch`. ``full`` (``data.check_finite``)
    restores the element-wise check.
    """
    import torch

    if not any(np.dtype(g.dtype).kind == "f" for g in m.groups):
        return
    # A sum can also overflow to inf on huge finite values: confirm element-wise before failing.
    if (full or not bool(torch.isfinite(x.sum()))) and not bool(torch.isfinite(x).all()):
        raise ShardIntegrityError(f"modality {m.name}: non-finite values after decoding "
                                  "(the shards do not match what rsray prepare wrote)")


def _modality(batch: dict[str, Any], m: ModalityPlan, plan: DecodePlan, tensor: Any) -> Any:
    """One normalised modality tensor (see :func:`finalize_batch`)."""
    import torch

    if m.kind == "series":
        g = m.groups[0].column
        x = _keep(tensor(batch[g]).float(), m.groups[0].keep, dim=2)
        if m.order is not None:
            x = x[:, :, list(m.order)]
        shape = (1, 1, -1, 1, 1)
        mean = torch.tensor(m.mean, dtype=torch.float32, device=x.device).reshape(shape)
        std = torch.tensor(m.std, dtype=torch.float32, device=x.device).reshape(shape)
        valid = tensor(batch[f"{g}__mask"]).to(x.device).float().reshape(*x.shape[:2], 1, 1, 1)
        return (x - mean) / std * valid
    parts = [_keep(tensor(batch[g.column]).float(), g.keep, dim=1) for g in m.groups]
    if m.kind == "vector":
        x = torch.cat(parts, dim=1)
        shape: tuple[int, ...] = (1, -1)
    else:
        x = torch.cat([_resize(p, plan.image_size, plan.resample) for p in parts], dim=1)
        shape = (1, -1, 1, 1)
    if m.order is not None:
        x = x[:, list(m.order)]
    mean = torch.tensor(m.mean, dtype=torch.float32, device=x.device).reshape(shape)
    std = torch.tensor(m.std, dtype=torch.float32, device=x.device).reshape(shape)
    return (x - mean) / std


def _keep(x: Any, keep: tuple[int, ...] | None, dim: int) -> Any:
    """The ``keep`` channels of ``x`` along ``dim`` (all when ``keep`` is ``None``)."""
    import torch

    if keep is None or len(keep) == x.shape[dim]:
        return x
    return x.index_select(dim, torch.tensor(keep, device=x.device))


def decode_batch(batch: dict[str, Any], plan: DecodePlan) -> dict[str, np.ndarray]:
    """Shard rows -> normalised float32 arrays at ``plan.image_size`` in one step (NumPy)."""
    return {k: v.numpy() for k, v in finalize_batch(decode_raw(batch, plan), plan).items()}

