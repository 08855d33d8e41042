"""A worker's batches, ready for the model, prepared one step ahead on a background thread.

:func:`model_batches` pulls raw (native dtype) batches from a Ray Train dataset shard, or from
the worker's device-resident share of the training split (:class:`ResidentSplit`,
``data.cache=device``), augments them when the worker does (a cached training split, or
``data.augment_on=device``: :class:`rsray.data.datasets.TrainingData`), moves them to the device
(pinned host memory and non-blocking copies when the device is a GPU) and runs
:func:`~rsray.data.finalize.finalize_batch` (resample, normalise) on a thread of its own,
``PREFETCH`` batches ahead. Augmentation runs on the host in NumPy before the copy
(``augment_on=host``) or in torch on the device after it (``device``:
:func:`~rsray.data.augment.augment_device`). Torch and NumPy release the GIL in their
kernels, so on a CPU worker this runs on the core the training step leaves free instead of
stalling the step; on a GPU the thread only queues kernels on the same stream as the step.
What the training loop waits for (``data_wait_share``) is only the time the queue was empty.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsray.data.augment import augment_device, augment_raw
from rsray.data.finalize import finalize_batch
from rsray.data.plan import DecodePlan
from rsray.errors import ConfigError

PREFETCH = 2
"""Finalised batches kept ready ahead of the training step."""
RESIDENT_HEADROOM = 0.9
"""Share of the device's free memory a resident split (with its copy while it is assembled)
may take; the rest is left to the model, its activations and the optimiser."""
RESIDENT_LOAD_ROWS = 256
"""Rows per batch pulled from the object store while a resident split is assembled."""


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


def _tensor(v: Any, device: torch.device) -> torch.Tensor:
    """One NumPy array -> a tensor on ``device``: pinned + non-blocking copy to a GPU.

    Read-only object-store views are copied once on the host (pinning copies them anyway).
    """
    arr = np.ascontiguousarray(v)
    if device.type != "cuda":
        return torch.from_numpy(arr if arr.flags.writeable else arr.copy()).to(device)
    host = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    return host.pin_memory().to(device, non_blocking=True)


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """NumPy batch -> tensors on ``device`` (see :func:`_tensor`)."""
    return {k: _tensor(v, device) for k, v in batch.items()}


def resolve_augment_on(setting: str, device: torch.device, *, resident: bool = False) -> str:
    """``host`` or ``device``: where a worker that augments does it (``data.augment_on``).

    ``auto`` is ``device`` on a CUDA device and for a resident split (which never leaves the
    device), ``host`` on a CPU worker otherwise: there NumPy's flips and quarter turns (views,
    one copy) measured 4x faster than torch's (docs/performance.md, "GPU path"); crops cost
    the same.
    """
    if setting != "auto":
        return setting
    return "device" if device.type == "cuda" or resident else "host"


def free_device_bytes(device: torch.device) -> int:
    """Free memory of ``device``: the GPU's (``cudaMemGetInfo``) or the host's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import ray  # noqa: F401, I001  (puts Ray's bundled psutil on the path if not installed)
    import psutil

    return int(psutil.virtual_memory().available)


@dataclass
class ResidentSplit:
    """A worker's share of the (un-augmented, native dtype) training split, on its device."""

    tensors: dict[str, torch.Tensor]
    rows: int

    @property
    def nbytes(self) -> int:
        """Device bytes held."""
        return sum(t.element_size() * t.nelement() for t in self.tensors.values())

    @classmethod
    def load(cls, shard: Any, device: torch.device, *,
             free_bytes: int | None = None) -> ResidentSplit:
        """Pull ``shard`` once (the worker's part of the cached split) onto ``device``.

        Fails with a :class:`~rsray.errors.ConfigError` naming the sizes as soon as the share
        (plus the copy made while it is assembled) would exceed :data:`RESIDENT_HEADROOM` of
        ``free_bytes`` (default: :func:`free_device_bytes` now), before the device runs out.
        """
        free = free_device_bytes(device) if free_bytes is None else int(free_bytes)
        budget = RESIDENT_HEADROOM * free
        parts: dict[str, list[torch.Tensor]] = {}
        held, per_key = 0, {}
        for batch in shard.iter_batches(batch_format="numpy", batch_size=RESIDENT_LOAD_ROWS):
            nbytes = {k: int(np.asarray(v).nbytes) for k, v in batch.items()}
            for k, b in nbytes.items():
                per_key[k] = per_key.get(k, 0) + b
            held += sum(nbytes.values())
            # torch.cat needs the largest column twice while it is joined
            if held + max(per_key.values(), default=0) > budget:
                raise ConfigError(
                    f"data.cache=device: this worker's share of the training split needs more "
                    f"than {held / 2**30:.2f} GiB on {device}, which has {free / 2**30:.2f} GiB "
                    f"free ({RESIDENT_HEADROOM:.0%} usable); use data.cache=memory or more "
                    "workers (each holds 1/N of the split)")
            for k, v in batch.items():
                parts.setdefault(k, []).append(_tensor(v, device))
        if not parts:
            raise ConfigError("data.cache=device: this worker's share of the training split "
                              "is empty")
        tensors = {}
        for k in list(parts):
            tensors[k] = torch.cat(parts.pop(k))
        return cls(tensors, int(next(iter(tensors.values())).shape[0]))

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[dict[str, Any]]:
        """One epoch: a fresh permutation sliced into batches (the last one may be short)."""
        device = next(iter(self.tensors.values())).device
        perm = torch.randperm(self.rows, generator=generator, device=device)
        for start in range(0, self.rows, batch_size):
            idx = perm[start:start + batch_size]
            yield {k: v.index_select(0, idx) for k, v in self.tensors.items()}


def device_generator(device: torch.device, seed: Any) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from ``seed`` (an int or a sequence of ints)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0]
                        % (2**63)))
    return gen


def _raw_batches(shard: Any, *, batch_size: int, shuffle: int, device: torch.device,
                 plan: DecodePlan, augment: dict[str, Any] | None,
                 rng: np.random.Generator, augment_on: str = "host",
                 resident: ResidentSplit | None = None,
                 generator: torch.Generator | None = None) -> Iterator[dict[str, Any]]:
    """Raw batches on ``device``: augmented here when ``augment`` is given (see module doc)."""
    if augment is not None and (augment_on == "device" or resident is not None) \
            and generator is None:
        generator = device_generator(device, int(rng.integers(2**31)))
    if resident is not None:
        for batch in resident.batches(batch_size, generator):
            yield batch if augment is None else augment_device(batch, plan, generator=generator,
                                                               **augment)
        return
    kwargs: dict[str, Any] = {"batch_size": batch_size,
                              "local_shuffle_buffer_size": shuffle or None}
    if shuffle:  # the run's seed decides the order: a run repeated with its seed is the same run
        kwargs["local_shuffle_seed"] = int(rng.integers(2**31))
    pin = device.type == "cuda"
    if augment is None or augment_on == "device":
        for batch in shard.iter_torch_batches(device=device, pin_memory=pin, **kwargs):
            yield batch if augment is None else augment_device(batch, plan, generator=generator,
                                                               **augment)
        return
    for batch in shard.iter_batches(batch_format="numpy", **kwargs):
        batch = dict(batch)
        for m in plan.modalities:  # flags are set in place; object-store views are read-only
            key = f"drop_{m.name}"
            if key in batch:
                batch[key] = np.array(batch[key])
        yield to_device(augment_raw(batch, plan, rng=rng, **augment), device)


_DONE = object()


def model_batches(shard: Any, plan: DecodePlan, *, batch_size: int, device: torch.device,
                  shuffle: int = 0, augment: dict[str, Any] | None = None,
                  rng: np.random.Generator | None = None,
                  prefetch: int = PREFETCH, augment_on: str = "host",
                  resident: ResidentSplit | None = None,
                  generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Model-ready batches of ``shard``, prepared ``prefetch`` ahead on a background thread.

    ``augment_on`` (``host``/``device``, :func:`resolve_augment_on`) places the augmentation;
    ``resident`` replaces ``shard`` by the worker's device-resident split; ``generator`` (a
    ``torch.Generator`` on ``device``) draws on-device augmentations and permutations
    (default: seeded from ``rng``). An error on the thread is raised here, at the batch it
    would have produced.
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
                                    device=device, plan=plan, augment=augment, rng=rng,
                                    augment_on=augment_on, resident=resident,
                                    generator=generator):
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

