"""A worker's batches, ready for the model, prepared one step ahead on a background thread.

:func:`model_batches` pulls raw (native dtype) batches from a Ray Train dataset shard, augments
them when the worker does (a cached training split: :class:`rsray.data.pipeline.TrainingData`),
moves them to the device and runs :func:`~rsray.data.pipeline.finalize_batch` (resample,
normalise) on a thread of its own, ``PREFETCH`` batches ahead. Torch and NumPy release the GIL
in their kernels, so on a CPU worker this runs on the core the training step leaves free
instead of stalling the step; on a GPU it overlaps the host-side work with the step. What the
training loop waits for (``data_wait_share``) is only the time the queue was empty.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsray.data.pipeline import DecodePlan, augment_raw, finalize_batch

PREFETCH = 2
"""Finalised batches kept ready ahead of the training step."""


@dataclass
class Batch:
    """One model-ready batch and the bytes of shard data it came from, per modality."""

    data: dict[str, Any]
    nbytes: dict[str, int]


def modality_bytes(batch: dict[str, Any], plan: DecodePlan) -> dict[str, int]:
    """Bytes of shard data per modality in one raw (native dtype) batch."""
    out = {}
    for m in plan.modalities:
        total = 0
        for g in m.groups:
            x = batch.get(g.column)
            if x is not None:
                total += int(x.nbytes) if isinstance(x, np.ndarray) else \
                    int(x.element_size() * x.nelement())
        out[m.name] = total
    return out


def _to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """NumPy batch -> tensors on ``device`` (read-only object-store views are copied once)."""
    out = {}
    for k, v in batch.items():
        arr = np.ascontiguousarray(v)
        if not arr.flags.writeable:
            arr = arr.copy()
        out[k] = torch.from_numpy(arr).to(device, non_blocking=device.type == "cuda")
    return out


def _raw_batches(shard: Any, *, batch_size: int, shuffle: int, device: torch.device,
                 plan: DecodePlan, augment: dict[str, Any] | None,
                 rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """Raw batches of ``shard``: augmented here when ``augment`` is given, on ``device``."""
    kwargs = {"batch_size": batch_size, "local_shuffle_buffer_size": shuffle or None}
    if augment is None:
        yield from shard.iter_torch_batches(device=device, **kwargs)
        return
    for batch in shard.iter_batches(batch_format="numpy", **kwargs):
        batch = dict(batch)
        for m in plan.modalities:  # flags are set in place; object-store views are read-only
            key = f"drop_{m.name}"
            if key in batch:
                batch[key] = np.array(batch[key])
        yield _to_device(augment_raw(batch, plan, rng=rng, **augment), device)


_DONE = object()


def model_batches(shard: Any, plan: DecodePlan, *, batch_size: int, device: torch.device,
                  shuffle: int = 0, augment: dict[str, Any] | None = None,
                  rng: np.random.Generator | None = None,
                  prefetch: int = PREFETCH) -> Iterator[Batch]:
    """Model-ready batches of ``shard``, prepared ``prefetch`` ahead on a background thread.

    An error on the thread is raised here, at the batch it would have produced.
    """
    rng = rng or np.random.default_rng()
    ready: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for raw in _raw_batches(shard, batch_size=batch_size, shuffle=shuffle,
                                    device=device, plan=plan, augment=augment, rng=rng):
                item = Batch(finalize_batch(raw, plan), modality_bytes(raw, plan))
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="rsray-batches", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)

