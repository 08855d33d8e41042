"""Training telemetry through Ray's metrics system (``ray.util.metrics``).

Every Ray Train worker creates one :class:`Telemetry` and calls :meth:`Telemetry.step` once per
training step, :meth:`Telemetry.bytes_read` once per batch and :meth:`Telemetry.epoch` after
validation. Ray's metrics agent on each node exports the values to Prometheus; Ray prefixes
application metrics with ``ray_``, so ``rsray_train_loss`` is scraped as ``ray_rsray_train_loss``
(the dashboards in ``dashboards/`` query those names).

Every series carries the tags ``experiment``, ``trial`` and ``rank`` (the worker's world rank).
Recording is cheap: a gauge update or counter increment is buffered in-process by Ray's core
worker and exported asynchronously; nothing here blocks or talks to the network. When Ray is
not initialised (a plain unit test, a script outside Ray) every method is a no-op.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import ray

PREFIX = "rsray_"
"""Prefix of every rsray metric name (Prometheus adds Ray's own ``ray_`` in front)."""

TAG_KEYS: tuple[str, ...] = ("experiment", "trial", "rank")
"""Tags on every rsray metric."""

STEP_SECONDS_BOUNDARIES: list[float] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
]
"""Histogram buckets (seconds) for the time of one training step."""

GPU_MEMORY_EVERY_S = 10.0
"""Seconds between two GPU-memory readings (the value changes slowly; keep steps cheap)."""


@dataclass(frozen=True)
class MetricSpec:
    """One rsray metric: its name (without Ray's ``ray_`` prefix), kind and description."""

    name: str
    kind: str  # "gauge" | "counter" | "histogram"
    description: str
    extra_tags: tuple[str, ...] = ()

    @property
    def prometheus_name(self) -> str:
        """The name Prometheus sees: ``ray_`` + name (+ ``_total`` for counters)."""
        suffix = "_total" if self.kind == "counter" else ""
        return f"ray_{self.name}{suffix}"


METRICS: dict[str, MetricSpec] = {s.name: s for s in (
    MetricSpec(f"{PREFIX}train_samples", "counter",
               "Training samples processed by this worker (rate() = samples per second)."),
    MetricSpec(f"{PREFIX}train_steps", "counter", "Training steps taken by this worker."),
    MetricSpec(f"{PREFIX}train_seconds", "counter",
               "Wall seconds this worker spent in training steps, waiting for batches included."),
    MetricSpec(f"{PREFIX}train_data_wait_seconds", "counter",
               "Seconds this worker spent waiting for the next batch (over train_seconds: the "
               "data-wait share of any time window)."),
    MetricSpec(f"{PREFIX}train_samples_per_second", "gauge",
               "Samples per second of this worker over its last telemetry update."),
    MetricSpec(f"{PREFIX}train_data_wait_share", "gauge",
               "Share of the last update's step time spent waiting for the next batch "
               "(near 1: the worker is data-starved)."),
    MetricSpec(f"{PREFIX}train_step_seconds", "histogram",
               "Mean wall time of one training step (batch wait included), one observation "
               "per telemetry update."),
    MetricSpec(f"{PREFIX}train_loss", "gauge", "Training loss of the last step."),
    MetricSpec(f"{PREFIX}train_lr", "gauge", "Learning rate of the last step."),
    MetricSpec(f"{PREFIX}val_metric", "gauge",
               "Validation metrics of the last finished epoch (tag `metric`).", ("metric",)),
    MetricSpec(f"{PREFIX}epoch", "gauge", "Last finished epoch (1-based)."),
    MetricSpec(f"{PREFIX}gpu_memory_max_allocated_bytes", "gauge",
               "torch.cuda.max_memory_allocated() on this worker's GPU."),
    MetricSpec(f"{PREFIX}shard_bytes_read", "counter",
               "Bytes of shard data read by this worker, per modality (tag `modality`).",
               ("modality",)),
)}
"""Every metric rsray exports, by name."""

_registry: dict[str, Any] = {}
"""This process's Ray metric objects, created once and shared by every Telemetry instance."""


def _metric(name: str) -> Any:
    """The process-wide ``ray.util.metrics`` object of ``name`` (created on first use)."""
    metric = _registry.get(name)
    if metric is None:
        from ray.util.metrics import Counter, Gauge, Histogram

        spec = METRICS[name]
        tags = TAG_KEYS + spec.extra_tags
        if spec.kind == "gauge":
            metric = Gauge(spec.name, spec.description, tag_keys=tags)
        elif spec.kind == "counter":
            metric = Counter(spec.name, spec.description, tag_keys=tags)
        else:
            metric = Histogram(spec.name, spec.description,
                               boundaries=STEP_SECONDS_BOUNDARIES, tag_keys=tags)
        _registry[name] = metric
    return metric


def _finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is not a finite number."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int | float):
        try:
            value = float(value)  # numpy / torch scalars
        except (TypeError, ValueError):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


class Telemetry:
    """The metrics of one training worker, tagged by experiment, trial and rank.

    Args:
        experiment: experiment name (``train.name`` or the Tune experiment).
        trial: trial name (equal to ``experiment`` for a single training run).
        rank: the worker's world rank.
    """

    def __init__(self, experiment: str, trial: str, rank: int) -> None:
        self.tags: dict[str, str] = {"experiment": str(experiment), "trial": str(trial),
                                     "rank": str(int(rank))}
        self.enabled = ray.is_initialized()
        self._cuda = False
        if self.enabled:
            import torch

            self._cuda = torch.cuda.is_available()
        self._next_gpu_reading = 0.0
        self._modality_tags: dict[str, dict[str, str]] = {}

    def step(self, *, samples: int, step_seconds: float, wait_seconds: float, loss: float,
             lr: float, steps: int = 1) -> None:
        """Record one training step, or a window of ``steps`` steps.

        Args:
            samples: samples in this worker's batch(es).
            step_seconds: wall time of the step(s), waiting for the batch included.
            wait_seconds: the part of ``step_seconds`` spent waiting for batches.
            loss: the last step's training loss (NaN/inf are not recorded).
            lr: the optimiser's learning rate.
            steps: how many training steps the call covers (a caller may batch its updates).
        """
        if not self.enabled:
            return
        tags = self.tags
        if samples > 0:
            _metric(f"{PREFIX}train_samples").inc(samples, tags=tags)
        if steps > 0:
            _metric(f"{PREFIX}train_steps").inc(steps, tags=tags)
        if step_seconds > 0:
            _metric(f"{PREFIX}train_seconds").inc(step_seconds, tags=tags)
            _metric(f"{PREFIX}train_step_seconds").observe(step_seconds / max(steps, 1),
                                                           tags=tags)
            _metric(f"{PREFIX}train_samples_per_second").set(samples / step_seconds, tags=tags)
            share = min(max(wait_seconds / step_seconds, 0.0), 1.0)
            _metric(f"{PREFIX}train_data_wait_share").set(share, tags=tags)
        if wait_seconds > 0:
            _metric(f"{PREFIX}train_data_wait_seconds").inc(wait_seconds, tags=tags)
        value = _finite(loss)
        if value is not None:
            _metric(f"{PREFIX}train_loss").set(value, tags=tags)
        value = _finite(lr)
        if value is not None:
            _metric(f"{PREFIX}train_lr").set(value, tags=tags)
        if self._cuda:
            now = time.monotonic()
            if now >= self._next_gpu_reading:
                self._next_gpu_reading = now + GPU_MEMORY_EVERY_S
                self._record_gpu_memory()

    def bytes_read(self, modality: str, nbytes: int) -> None:
        """Count ``nbytes`` of shard data read for ``modality`` (one call per batch)."""
        if not self.enabled or nbytes <= 0:
            return
        tags = self._modality_tags.get(modality)
        if tags is None:
            tags = self._modality_tags[modality] = {**self.tags, "modality": str(modality)}
        _metric(f"{PREFIX}shard_bytes_read").inc(int(nbytes), tags=tags)

    def epoch(self, metrics: dict[str, float]) -> None:
        """Record one epoch's validation metrics (numeric values; NaN, inf and others skipped).

        An ``epoch`` key, when present, sets the ``rsray_epoch`` gauge instead.
        """
        if not self.enabled:
            return
        gauge = _metric(f"{PREFIX}val_metric")
        for key, raw in metrics.items():
            value = _finite(raw)
            if value is None:
                continue
            if key == "epoch":
                _metric(f"{PREFIX}epoch").set(value, tags=self.tags)
                continue
            gauge.set(value, tags={**self.tags, "metric": str(key)})
        if self._cuda:
            self._record_gpu_memory()

    def _record_gpu_memory(self) -> None:
        import torch

        _metric(f"{PREFIX}gpu_memory_max_allocated_bytes").set(
            float(torch.cuda.max_memory_allocated()), tags=self.tags)
