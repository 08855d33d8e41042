"""One training epoch and one evaluation pass over a worker's shard: what every trainer shares.

:func:`train_one_epoch` streams a worker's part of the training split once (batches prepared
one step ahead, :mod:`rsray.train.batches`), stepping the optimiser; :func:`evaluate_splits`
computes the loss and the task's metrics (torchmetrics syncs them across workers) of every
evaluation split. The Ray worker entry (:mod:`rsray.train.loop`), evaluation
(:mod:`rsray.evaluate`), prediction, the recipes and the benchmarks build on these and on
:func:`model_inputs` / :func:`autocast`. Nothing here talks to Ray Train.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rsray.data.plan import DecodePlan
from rsray.train.batches import Batch, ResidentSplit, model_batches, resolve_augment_on
from rsray.train.run_plan import RunPlan
from rsray.train.tasks import Task
from rsray.train.telemetry import Telemetry


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on GPUs that support it (``amp`` auto/bf16), no-op elsewhere."""
    if amp == "off" or device.type != "cuda" or not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def model_inputs(batch: dict[str, torch.Tensor], modalities: tuple[str, ...]) -> dict[str, Any]:
    """The model's inputs: modalities, series masks/dates, presence bits, metadata vector."""
    out = {m: batch[m] for m in modalities if m in batch}
    for m in modalities:
        for extra in (f"{m}_mask", f"{m}_dates", f"{m}_present"):
            if extra in batch:
                out[extra] = batch[extra]
    if "metadata" in batch:
        out["metadata"] = batch["metadata"]
    return out


def evaluate_split(model: torch.nn.Module, shard: Any, task: Task, loss_meter: Any,
                   plan: DecodePlan, batch_size: int, device: torch.device, amp: str,
                   modalities: tuple[str, ...]) -> tuple[dict[str, float], Any]:
    """Loss and task metrics over this worker's part of one evaluation split (synced).

    Also returns the confusion matrix for segmentation (else ``None``).
    """
    task.metrics.reset()
    loss_meter.reset()
    with torch.no_grad():
        for item in model_batches(shard, plan, batch_size=batch_size, device=device):
            batch = item.data
            target = task.target(batch)
            with autocast(device, amp):
                logits = model(model_inputs(batch, modalities)).float()
            loss_meter.update(task.loss(logits, target), weight=target.shape[0])
            task.metrics.update(logits, target)
    confusion = (task.metrics.confusion_matrix()
                 if hasattr(task.metrics, "confusion_matrix") else None)
    return {"loss": float(loss_meter.compute()), **task.metrics.compute()}, confusion


TELEMETRY_EVERY_N_STEPS = 5
"""Training steps aggregated into one telemetry update (bounds the per-step overhead)."""


class StepWindow:
    """Samples, time and data wait of the last few training steps (for :class:`Telemetry`)."""

    def __init__(self) -> None:
        self.steps, self.samples, self.seconds, self.wait = 0, 0, 0.0, 0.0

    def add(self, samples: int, seconds: float, wait: float) -> None:
        """Fold in one step."""
        self.steps += 1
        self.samples += samples
        self.seconds += seconds
        self.wait += wait

    def flush(self, telemetry: Telemetry, loss: torch.Tensor, lr: float) -> None:
        """Send the window to ``telemetry`` and start a new one."""
        telemetry.step(samples=self.samples, step_seconds=self.seconds, wait_seconds=self.wait,
                       loss=float(loss.detach()), lr=float(lr), steps=self.steps)
        self.__init__()  # type: ignore[misc]


@dataclass
class EpochStats:
    """One training epoch: mean loss, samples seen by this worker, seconds, data wait."""

    loss: float
    samples: int
    seconds: float
    wait: float
    first_batch: float = 0.0
    """Seconds from the start of the epoch to its first batch (the per-pass start-up)."""


def has_batch_norm(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm layer (which refuses a training batch of one)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def training_batches(shard: Any, run: RunPlan, device: torch.device, *,
                     augment: dict[str, Any] | None = None,
                     rng: np.random.Generator | None = None,
                     resident: ResidentSplit | None = None,
                     generator: torch.Generator | None = None) -> Iterator[Batch]:
    """One epoch's training batches of ``shard`` as :func:`train_one_epoch` draws them.

    Batch size, shuffle buffer, augmentation and its placement come from ``run``; the order
    and the augmentations from ``rng`` / ``generator`` (the run's seed).
    """
    augment_on = resolve_augment_on(run.data.augment_on, device, resident=resident is not None)
    return model_batches(shard, run.train_plan, batch_size=run.config.data.batch_size,
                         device=device, shuffle=run.config.data.shuffle_buffer,
                         augment=augment, rng=rng, augment_on=augment_on, resident=resident,
                         generator=generator)


def train_one_epoch(model: torch.nn.Module, optimizer: Any, shard: Any, task: Task,
                    loss_meter: Any, run: RunPlan, device: torch.device,
                    modalities: tuple[str, ...], telemetry: Telemetry, *, epoch: int,
                    rank: int, world: int, augment: dict[str, Any] | None = None,
                    rng: np.random.Generator | None = None,
                    resident: ResidentSplit | None = None,
                    generator: torch.Generator | None = None) -> EpochStats:
    """Stream this worker's part of the training split once, stepping the optimiser.

    ``augment``: :attr:`~rsray.data.plan.DataPlan.augment` when this worker augments (a
    cached training split, or ``data.augment_on=device``), ``None`` when Ray Data did.
    ``resident``: the worker's device-resident share (``data.cache=device``) replaces
    ``shard``; ``generator`` draws on-device augmentations and permutations.
    """
    cfg = run.config
    model.train()
    loss_meter.reset()
    t0 = time.perf_counter()
    wait, samples, first = 0.0, 0, 0.0
    t_wait = time.perf_counter()
    window = StepWindow()
    loss = torch.zeros(())
    batches = training_batches(shard, run, device, augment=augment, rng=rng,
                               resident=resident, generator=generator)
    batch_norm = has_batch_norm(model)
    for step, item in enumerate(batches):
        step_wait = time.perf_counter() - t_wait
        if step == 0:
            first = step_wait
        wait += step_wait
        for name, nbytes in item.nbytes.items():
            telemetry.bytes_read(name, nbytes)
        batch = item.data  # resampled + normalised on the worker's device, one batch ahead
        target = task.target(batch)
        if batch_norm and target.shape[0] == 1 and step > 0:
            # the split's last batch holds one sample: BatchNorm cannot normalise a batch of
            # one, so it is left out of this epoch (as drop_last would; the next epoch's
            # shuffle puts another sample last)
            t_wait = time.perf_counter()
            continue
        with autocast(device, cfg.train.amp):
            logits = model(model_inputs(batch, modalities))
        if step == 0:
            task.check_output(logits, target, cfg.model.name)
        loss = task.loss(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        loss_meter.update(loss.detach(), weight=target.shape[0])
        samples += target.shape[0]
        window.add(target.shape[0], time.perf_counter() - t_wait, step_wait)
        if window.steps >= TELEMETRY_EVERY_N_STEPS:  # one loss sync per window, not per step
            window.flush(telemetry, loss, optimizer.param_groups[0]["lr"])
        if rank == 0 and (step + 1) % cfg.train.log_every_n_steps == 0:
            rate = samples / (time.perf_counter() - t0)
            print(f"[rsray] epoch {epoch + 1} step {step + 1} loss {loss.item():.4f} "
                  f"{rate * world:.1f} samples/s", flush=True)
        t_wait = time.perf_counter()
    if window.steps:
        window.flush(telemetry, loss, optimizer.param_groups[0]["lr"])
    return EpochStats(float(loss_meter.compute()), samples, time.perf_counter() - t0, wait,
                       first)


def evaluate_splits(model: torch.nn.Module, shards: dict[str, Any], task: Task, loss_meter: Any,
                    run: RunPlan, device: torch.device,
                    modalities: tuple[str, ...]) -> tuple[dict[str, dict[str, float]],
                                                          dict[str, Any]]:
    """Metrics of every evaluation split, and the segmentation confusion matrices."""
    cfg = run.config
    model.eval()
    evaluated, confusion = {}, {}
    for split, shard in shards.items():
        evaluated[split], cm = evaluate_split(model, shard, task, loss_meter, run.eval_plan,
                                              cfg.data.batch_size, device, cfg.train.amp,
                                              modalities)
        if cm is not None:
            confusion[split] = cm
    return evaluated, confusion

