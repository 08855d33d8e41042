"""``train_fn_per_worker``: the code every Ray Train worker runs.

One epoch (:mod:`rsray.train.step`) = stream the worker's part of the training split, step
the optimiser, then stream its part of every evaluation split (``data.eval_splits``: ``val``,
and ``ood`` for a hold-out study) and compute the task's metrics (torchmetrics syncs them
across workers); they are reported as ``<split>_<metric>``. The task (multi-label,
single-label, binary heads, segmentation) comes from the shard set's manifest
(:mod:`rsray.train.tasks`).
Every epoch ends with ``ray.train.report(metrics)``; on the epochs that
:func:`~rsray.train.checkpoint.should_checkpoint`
picks (an improvement, the last epoch, every ``train.checkpoint_every``-th) rank 0 attaches a
checkpoint of model, optimiser, scheduler, epoch and early-stopping state. A restarted worker
group (after a failure, or a new run with the same name) resumes from
``ray.train.get_checkpoint()``, the newest checkpoint. Batches are prepared one step ahead on a
background thread (:mod:`rsray.train.batches`), augmented on the device or the host
(``data.augment_on``), or sliced from the worker's device-resident share of the training split
(``data.cache=device``). Checkpoints are written locally and uploaded by Ray Train's own upload
thread (``train.checkpoint_upload=async``). Each report carries the samples the epoch trained
(``train_samples``, all workers) and the run's fixed costs (``startup_seconds``,
``setup_seconds``, ``train_first_batch_seconds``, ``report_seconds``).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torchmetrics

from rsray.config import Config
from rsray.data.passes import EpochStream
from rsray.data.stream import PassStream
from rsray.errors import ConfigError
from rsray.train.batches import Batch, ResidentSplit, device_generator
from rsray.train.checkpoint import load_checkpoint, save_checkpoint, should_checkpoint
from rsray.train.local import LocalRun
from rsray.train.optim import build_optimizer, build_scheduler
from rsray.train.run_plan import WorkerInput
from rsray.train.step import EpochStats, evaluate_splits, train_one_epoch, training_batches
from rsray.train.tasks import early_stopping_metric
from rsray.train.telemetry import Telemetry


def _improved(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


@dataclass
class _State:
    """What survives a restart: the epoch to start from and the early-stopping state."""

    start_epoch: int = 0
    best: float | None = None
    stale: int = 0
    stop_best: float | None = None
    """Best value of the early-stopping metric (``train.early_stopping_metric``)."""
    stop_stale: int = 0
    """Epochs without improvement of the early-stopping metric."""


def update_early_stopping(state: _State, report: dict[str, Any], cfg: Config) -> bool:
    """Fold one epoch's ``report`` into the early-stopping state; ``True``: stop now."""
    metric, mode = early_stopping_metric(cfg)
    if metric not in report:
        raise ConfigError(f"train.early_stopping_metric: {metric!r} is not reported; choose "
                          f"one of {sorted(k for k in report if '_' in k)}")
    if _improved(report[metric], state.stop_best, mode):
        state.stop_best, state.stop_stale = report[metric], 0
    else:
        state.stop_stale += 1
    return 0 < cfg.train.early_stopping_patience <= state.stop_stale


def restore(model: torch.nn.Module, optimizer: Any, scheduler: Any, rank: int,
            local: LocalRun | None = None) -> _State:
    """Load ``ray.train.get_checkpoint()`` into model/optimiser/scheduler (if there is one).

    ``local``: a local-mode run reads its newest checkpoint from its own folder instead.
    """
    checkpoint = local.get_checkpoint() if local is not None else ray.train.get_checkpoint()
    if checkpoint is None:
        return _State()
    with checkpoint.as_directory() as ckpt_dir:
        payload = load_checkpoint(Path(ckpt_dir), model=model, optimizer=optimizer,
                                  scheduler=scheduler, restore_rng=False)
    extra = payload.get("extra", {})
    stale = int(extra.get("epochs_without_improvement", 0))
    state = _State(int(payload["epoch"]) + 1, payload.get("best_metric"), stale,
                   extra.get("early_stopping_best", payload.get("best_metric")),
                   int(extra.get("early_stopping_stale", stale)))
    if rank == 0:
        print(f"[rsray] resuming from checkpoint at epoch {state.start_epoch + 1}", flush=True)
    return state


def report_and_checkpoint(report: dict[str, Any], *, epoch: int, rank: int, model: Any,
                          optimizer: Any, scheduler: Any, state: _State,
                          extra: dict[str, Any], checkpoint: bool = True,
                          upload: str = "sync", local: LocalRun | None = None) -> None:
    """``ray.train.report`` the epoch; with ``checkpoint``, rank 0 attaches the whole state.

    The state is written to a local directory on this thread. ``upload="async"``
    (``train.checkpoint_upload``) hands its copy to the run's storage to Ray Train's upload
    thread (``CheckpointUploadMode.ASYNC``, which deletes the local directory afterwards and
    registers the checkpoint, and this epoch's metrics, once it is stored); ``sync`` copies it
    before returning. ``local``: a local-mode run stores the checkpoint itself and reports to
    its own receiver (:meth:`rsray.train.local.LocalRun.report`).
    """
    if local is not None:
        def write(path: Path) -> None:
            _save(path, report, epoch=epoch, model=model, optimizer=optimizer,
                  scheduler=scheduler, state=state, extra=extra)

        local.report(report, epoch, write if checkpoint else None)
        return
    if not checkpoint:
        ray.train.report(report)
        return
    if upload == "async":
        from ray.train import CheckpointUploadMode

        ckpt = None
        if rank == 0:
            tmp = tempfile.mkdtemp(prefix=f"rsray-epoch_{epoch:04d}-")
            _save(Path(tmp), report, epoch=epoch, model=model, optimizer=optimizer,
                  scheduler=scheduler, state=state, extra=extra)
            ckpt = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(report, checkpoint=ckpt, checkpoint_dir_name=f"epoch_{epoch:04d}",
                         checkpoint_upload_mode=CheckpointUploadMode.ASYNC)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = None
        if rank == 0:
            _save(Path(tmp), report, epoch=epoch, model=model, optimizer=optimizer,
                  scheduler=scheduler, state=state, extra=extra)
            ckpt = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(report, checkpoint=ckpt, checkpoint_dir_name=f"epoch_{epoch:04d}")


def _save(path: Path, report: dict[str, Any], *, epoch: int, model: Any, optimizer: Any,
          scheduler: Any, state: _State, extra: dict[str, Any]) -> None:
    """Write the training state of ``epoch`` into ``path`` (:func:`save_checkpoint`)."""
    save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                    best_metric=state.best,
                    extra={"epochs_without_improvement": state.stale,
                           "early_stopping_best": state.stop_best,
                           "early_stopping_stale": state.stop_stale,
                           "metrics": {k: v for k, v in report.items()
                                       if isinstance(v, int | float)}, **extra})


def _all_workers(count: int, device: torch.device, world: int) -> int:
    """``count`` summed over the worker group (one all-reduce; the value itself when alone)."""
    if world == 1 or not torch.distributed.is_initialized():
        return int(count)
    t = torch.tensor([count], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t)
    return int(t.item())


def _startup(trainer_built: float, t_start: float) -> dict[str, float]:
    """The run's fixed cost before its first epoch, in seconds.

    ``startup_seconds``: from the driver building the trainer to this function starting
    (Train controller, worker group and process start-up, imports, dataset shards);
    ``setup_seconds``: this function until its first epoch (model, optimiser, restore).
    """
    out = {"setup_seconds": time.time() - t_start}
    if trainer_built:
        out["startup_seconds"] = t_start - trainer_built
    return out


class RunSession:
    """One run's training state in its worker, driven epoch by epoch.

    The constructor sets it up (seed, model, optimiser, scheduler, restore, device, data); per
    epoch :meth:`train_epoch` trains (or a driver that trains several runs at once, e.g.
    :mod:`rsray.train.vmapped`, trains on :meth:`batches` and hands back the
    :class:`~rsray.train.step.EpochStats`), :meth:`end_epoch` evaluates, reports, checkpoints
    and decides early stopping; :meth:`close` ends the run's streams.
    ``train_fn_per_worker`` is this for one run.
    """

    def __init__(self, given: WorkerInput, *, local: LocalRun | None = None,
                 shards: dict[str, Any] | None = None, t_start: float | None = None) -> None:
        """Set the run up; ``shards`` (split -> dataset) replace Ray Train's dataset shards.

        ``local``: a local-mode run (rank 0 of 1) with its own checkpoints and receiver.
        ``t_start``: when the worker function started (its set-up time is measured from it).
        """
        t_start = time.time() if t_start is None else t_start
        run = given.run
        cfg = run.config
        self.given, self.run, self.cfg, self.local = given, run, cfg, local
        if local is None:
            ctx = ray.train.get_context()
            rank, world = ctx.get_world_rank(), ctx.get_world_size()
        else:  # Train's context API is closed inside a Tune trial: a local run is rank 0 of 1
            rank, world = 0, 1
        self.rank, self.world = rank, world
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed + rank)

        model = run.build_model()
        self.modalities = tuple(getattr(model, "modalities", tuple(run.channels)))
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.max_epochs)
        self.state = restore(model, self.optimizer, self.scheduler, rank, local)
        self.resumed_from = self.state.start_epoch

        if local is None:
            model = ray.train.torch.prepare_model(model)
            device = ray.train.torch.get_device()
        else:
            model, device = local.place(model)
        self.model, self.device = model, device
        self.task = run.build_task().to(device)
        self.train_loss = torchmetrics.MeanMetric().to(device)
        self.eval_loss = torchmetrics.MeanMetric().to(device)
        self.telemetry = Telemetry(run.experiment, run.trial, rank)
        shard_of = (shards.get if shards is not None
                    else ray.train.get_dataset_shard)  # type: ignore[assignment]
        train_shard = shard_of("train")
        self.eval_shards = {s: shard_of(s) for s in run.data.eval_splits}
        self.rng = np.random.default_rng([cfg.train.seed, rank, self.resumed_from])
        self.generator = device_generator(device, [cfg.train.seed, rank, self.resumed_from])
        self.resident = None
        state = self.state
        if run.data.resident:  # this worker's share of the training split, on its device
            t_res = time.perf_counter()
            self.resident = ResidentSplit.load(train_shard, device)
            if rank == 0:
                print(f"[rsray] train: {self.resident.rows} rows "
                      f"({self.resident.nbytes / 2**20:.0f} MiB) resident on {device} per "
                      f"worker in {time.perf_counter() - t_res:.1f} s; epochs need no host "
                      "work", flush=True)
        elif "train" in given.streams and world == 1 and state.start_epoch < cfg.train.max_epochs:
            # one execution streams every epoch, each epoch's rows in an order drawn from the
            # seed
            train_shard = PassStream.over(
                given.streams["train"], passes=cfg.train.max_epochs - state.start_epoch,
                seed=cfg.train.seed, first_epoch=state.start_epoch).start()
        else:  # each epoch's pass starts while the previous epoch is evaluated
            train_shard = EpochStream(train_shard,
                                      passes=cfg.train.max_epochs - state.start_epoch)
        self.train_shard = train_shard
        left = cfg.train.max_epochs - state.start_epoch
        if world == 1 and left > 0:  # a streamed evaluation split: one execution for every
            for s in self.eval_shards:  # epoch (started at the first evaluation)
                if s != "train" and s in given.streams:
                    self.eval_shards[s] = PassStream.over(
                        given.streams[s], passes=left, seed=cfg.train.seed,
                        first_epoch=state.start_epoch)
        # Fixed cost of this run before its first epoch (see _startup): seconds since the
        # trainer was built (controller, worker group, imports) and this function's own set-up.
        self.startup = _startup(given.trainer_built, t_start)
        self.last_report = 0.0
        self.meta = run.checkpoint_meta()
        self.done = state.start_epoch >= cfg.train.max_epochs
        """No epoch left: the last one ran, or early stopping fired."""

    @property
    def epochs(self) -> range:
        """The epochs this run still trains (a resumed run starts after its checkpoint)."""
        return range(self.state.start_epoch, self.cfg.train.max_epochs)

    def batches(self) -> Iterator[Batch]:
        """One epoch's training batches, drawn as :meth:`train_epoch` draws them."""
        return training_batches(self.train_shard, self.run, self.device,
                                augment=self.given.augment, rng=self.rng,
                                resident=self.resident, generator=self.generator)

    def train_epoch(self, epoch: int) -> EpochStats:
        """Train one epoch of this run alone (:func:`~rsray.train.step.train_one_epoch`)."""
        return train_one_epoch(self.model, self.optimizer, self.train_shard, self.task,
                               self.train_loss, self.run, self.device, self.modalities,
                               self.telemetry, epoch=epoch, rank=self.rank, world=self.world,
                               augment=self.given.augment, rng=self.rng,
                               resident=self.resident, generator=self.generator)

    def end_epoch(self, epoch: int, stats: EpochStats, t0: float) -> bool:
        """Evaluate, report and checkpoint ``epoch`` (trained from ``t0``); ``True``: stop."""
        cfg, run, state = self.cfg, self.run, self.state
        t_eval = time.perf_counter()
        evaluated, confusion = evaluate_splits(self.model, self.eval_shards, self.task,
                                               self.eval_loss, run, self.device,
                                               self.modalities)
        eval_seconds = time.perf_counter() - t_eval
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()

        report: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": stats.loss,
            **{f"{split}_{k}": float(v) for split, vals in evaluated.items()
               for k, v in vals.items()},
            "lr": float(lr),
            "epoch_seconds": time.perf_counter() - t0,
            "train_samples": _all_workers(stats.samples, self.device, self.world),
            "train_samples_per_second": stats.samples * self.world / max(stats.seconds, 1e-9),
            "data_wait_share": stats.wait / max(stats.seconds, 1e-9),
            "train_seconds": stats.seconds,
            "train_first_batch_seconds": stats.first_batch,
            "eval_seconds": eval_seconds,
            "resumed_from_epoch": self.resumed_from,
            **self.startup,
        }
        self.telemetry.epoch({"epoch": epoch + 1, **{k: v for k, v in report.items()
                                                      if k.split("_")[0] in evaluated}})
        value = report.get(run.metric, float("nan"))
        improved = _improved(value, state.best, run.mode)
        if improved:
            state.best, state.stale = value, 0
        else:
            state.stale += 1
        report["best_" + run.metric] = state.best if state.best is not None else math.nan
        stop = update_early_stopping(state, report, cfg)
        report["early_stopped"] = stop
        keep = should_checkpoint(epoch, improved=improved,
                                 last=stop or epoch + 1 == cfg.train.max_epochs,
                                 every=cfg.train.checkpoint_every)
        report["checkpointed"] = keep
        report["report_seconds"] = self.last_report  # the previous epoch's report + checkpoint
        t_report = time.perf_counter()
        report_and_checkpoint(report, epoch=epoch, rank=self.rank, model=self.model,
                              optimizer=self.optimizer, scheduler=self.scheduler, state=state,
                              checkpoint=keep,
                              extra={**self.meta, "confusion_matrix": confusion},
                              upload=cfg.train.checkpoint_upload, local=self.local)
        self.last_report = time.perf_counter() - t_report
        if stop and self.rank == 0:
            watched = run.early_stopping[0]
            print(f"[rsray] early stopping: no {watched} improvement for "
                  f"{state.stop_stale} epoch(s)", flush=True)
        self.done = stop or epoch + 1 >= cfg.train.max_epochs
        return stop

    def close(self) -> None:
        """End the run's streamed splits (their executions)."""
        for shard in (self.train_shard, *self.eval_shards.values()):
            if isinstance(shard, PassStream):
                shard.close()


def train_fn_per_worker(loop_config: dict[str, WorkerInput]) -> None:
    """Ray Train worker entry point: restore, then per epoch train, evaluate, report.

    Args:
        loop_config: ``{"input": WorkerInput}``: the run's :class:`RunPlan`, how the workers
            augment, when the trainer was built (:func:`rsray.train.driver.build_trainer`).
    """
    t_start = time.time()
    session = RunSession(loop_config["input"], t_start=t_start,
                         local=loop_config.get("local_run"))  # type: ignore[arg-type]
    for epoch in session.epochs:
        t0 = time.perf_counter()
        stats = session.train_epoch(epoch)
        if session.end_epoch(epoch, stats, t0):
            break
    session.close()
