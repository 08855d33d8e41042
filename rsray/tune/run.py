"""The Tuner: Optuna TPE proposes configurations, ASHA stops weak trials early.

Each trial is a small driver function that trains its configuration
(:func:`rsray.train.trial.run_in_trial`): a one-worker trial runs the training function in its
own process (Ray Train V2 local mode, reporting each epoch to Tune itself), a multi-worker trial
builds a ``TorchTrainer`` and passes its reports to Tune through ``TuneReportCallback``. The
splits are decoded into the object store once per experiment (when they fit) and every trial
reads them from there.
Trials' runs are named after the trial id, so a restored experiment (``--resume``) continues
each unfinished trial from its last checkpoint.
The experiment lives at ``<train.storage_path>/<tune.name>``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from rsray.config import Config
from rsray.data.datasets import CachedSplit, cache_splits, training_datasets
from rsray.data.shards import Manifest
from rsray.storage import join, parse, ray_storage
from rsray.train.driver import check_data, resolve_use_gpu
from rsray.train.local import trial_resources, tune_trial_settings
from rsray.train.run_plan import RunPlan
from rsray.train.tasks import table_metrics
from rsray.tune.conditional import make_searcher
from rsray.tune.leaderboard import TrialRow, format_table, sort_rows, write_results
from rsray.tune.spaces import check_space


@dataclass
class TuneOutcome:
    """What a tuning run produced."""

    experiment_uri: str
    rows: list[TrialRow]
    best: dict[str, Any]
    leaderboard_path: str
    best_path: str
    seconds: float
    trial_timing: list[dict[str, float]] = field(default_factory=list)
    """Per trial, from its reports (:func:`trial_timing`): where its time went."""


def _storage(cfg: Config) -> tuple[str, Any]:
    """Tune's (storage_path, storage_filesystem) for ``train.storage_path``."""
    return ray_storage(cfg.train.storage_path)


def experiment_uri(cfg: Config) -> str:
    """Where the experiment folder is (local absolute path or s3:// URI)."""
    return join(parse(cfg.train.storage_path).uri, cfg.tune.name)


DATA_CPUS_PER_TRIAL = 2.0
"""CPU slots a trial's Ray Data pipelines need beside its workers (train + val streams).
Fewer and the streams of concurrent trials starve each other ("backpressured ... 0 CPU")."""


def auto_concurrency(cfg: Config) -> int:
    """Trials that fit at once.

    GPUs / workers per trial; on CPU-only clusters the CPU slots divided by what one trial
    takes (its workers plus its Ray Data streams).
    """
    res = ray.cluster_resources()
    if resolve_use_gpu(cfg):
        return max(1, int(res.get("GPU", 0) // cfg.scaling.num_workers))
    per_trial = cfg.scaling.num_workers * cfg.scaling.cpus_per_worker + DATA_CPUS_PER_TRIAL
    return max(1, int(res.get("CPU", 1) // per_trial))


def make_trainable(run: RunPlan, manifest: Manifest, trials_storage: str,
                   shared: dict[str, CachedSplit] | None = None) -> Any:
    """The per-trial driver function Tune runs.

    Each trial resolves its own run (:class:`~rsray.train.run_plan.RunPlan`) from the
    experiment's resolved config with the trial's parameters. ``shared``: splits the
    experiment's driver decoded into the object store once
    (:func:`~rsray.data.datasets.cache_splits`); every trial whose data settings decode the
    same rows reads them from there instead of reading the shards again. They reach the
    trials through ``tune.with_parameters`` (the object store, so the block references are
    tracked and stay alive while the experiment runs).
    """
    base = run.config.to_dict()
    experiment = run.config.tune.name

    def trial_driver(params: dict[str, Any], shared: dict[str, CachedSplit] | None = None,
                     ) -> None:
        from rsray.runtime import quiet_data_context

        quiet_data_context()
        trial_cfg = Config.from_dict(base).with_overrides(params)
        trial_id = tune.get_context().get_trial_id()
        name = f"trial_{trial_id}"
        finished = finished_result(trials_storage, name, trial_cfg.train.max_epochs)
        if finished is not None:
            # Finished before the driver was killed, but Tune's state had not recorded it:
            # hand Tune the final result again instead of a run that reports nothing.
            print(f"[rsray] {name} had finished (epoch {finished['epoch']}); keeping its "
                  "result", flush=True)
            tune.report(finished)
            return
        from rsray.train.trial import run_in_trial, wait_for_trial_resources

        trial_run = RunPlan.build(trial_cfg, manifest, experiment=experiment, trial=name)
        wait_for_trial_resources(trial_cfg, f"trial {trial_id}", DATA_CPUS_PER_TRIAL)
        data = training_datasets(trial_run.data, manifest, shared=shared)
        run_in_trial(trial_run, manifest, data=data, name=name, storage_path=trials_storage)

    use_gpu = resolve_use_gpu(run.config)

    def resources(params: dict[str, Any]) -> dict[str, float]:
        # A local trial trains in its own process: it reserves the worker's share. A trainer
        # trial only waits on its TorchTrainer: a token CPU share (Tune refuses an empty
        # request), the slots going to the worker group.
        return trial_resources(Config.from_dict(base).with_overrides(params), use_gpu)

    return tune.with_resources(tune.with_parameters(trial_driver, shared=shared or {}),
                               resources)


def finished_result(trials_storage: str, name: str, max_epochs: int) -> dict[str, Any] | None:
    """The last reported metrics of run ``name`` if its latest checkpoint ends the run.

    A run has ended when its checkpoint is of the last epoch or records an early stop. Reads
    ``meta.json`` of the newest ``epoch_*`` checkpoint (no torch load); ``None`` otherwise.
    """
    import json

    from rsray.storage import get_fs, join

    fs, root = get_fs(join(trials_storage, name))
    try:
        if not fs.isdir(root):
            return None
        ckpts = sorted(p for p in fs.ls(root, detail=False)
                       if p.rstrip("/").rsplit("/", 1)[-1].startswith("epoch_"))
        if not ckpts:
            return None
        meta_path = join(ckpts[-1], "meta.json")
        if not fs.exists(meta_path):
            return None
        meta = json.loads(fs.cat_file(meta_path))
    except (OSError, ValueError):
        return None
    metrics = dict(meta.get("metrics") or {})
    epoch = int(metrics.get("epoch", 0))
    if epoch < max_epochs and not metrics.get("early_stopped"):
        return None
    metrics["checkpoint_path"] = ckpts[-1] if is_local_path(trials_storage) else \
        join(trials_storage, name, ckpts[-1].rstrip("/").rsplit("/", 1)[-1])
    metrics["kept_from_checkpoint"] = True
    return metrics


def is_local_path(uri: str) -> bool:
    """Whether ``uri`` is on the local filesystem."""
    from rsray.storage import parse

    return not parse(uri).is_remote


def trial_status(error: Any, metrics: dict[str, Any], max_epochs: int) -> str:
    """Status of a trial in the leaderboard.

    ERROR, NO-REPORT (never reported an epoch: it did not start or died first), EARLY-STOP
    (patience ran out), PRUNED (stopped by ASHA) or DONE.
    """
    if error:
        return "ERROR"
    if "epoch" not in metrics:
        return "NO-REPORT"
    if metrics.get("early_stopped"):
        return "EARLY-STOP"
    if int(metrics.get("epoch", 0)) < max_epochs:
        return "PRUNED"
    return "DONE"


def _rows(results: Any, metric: str, mode: str, max_epochs: int,
          columns: list[str]) -> list[TrialRow]:
    rows = []
    for r in results:
        m = r.metrics or {}
        params = dict(r.config or {})
        status = trial_status(r.error, m, max_epochs)
        trial_id = m.get("trial_id") or Path(r.path).name
        # best epoch value of the metric (ASHA compares last values; report both honestly)
        hist = r.metrics_dataframe
        best_metrics = {k: m.get(k, math.nan) for k in columns}
        if hist is not None and metric in hist and len(hist):
            col = hist[metric]
            best_metrics[f"best_{metric}"] = float(col.max() if mode == "max" else col.min())
        rows.append(TrialRow(
            trial=str(trial_id), status=status, params=params,
            metrics={k: float(v) if v is not None else math.nan for k, v in best_metrics.items()},
            epochs=int(m.get("epoch", 0)), checkpoint=str(m.get("checkpoint_path", "")),
        ))
    return rows


def trial_timing(results: Any) -> list[dict[str, float]]:
    """Per trial: seconds in training loops, evaluation and reports, samples trained, start-up.

    ``startup_seconds``/``setup_seconds`` are the trial's fixed cost before its first epoch
    (see :mod:`rsray.train.loop`); ``later_first_batch_seconds`` is the mean time to the first
    batch of its second and later epochs.
    """
    out = []
    for r in results:
        hist = r.metrics_dataframe
        if hist is None or "train_seconds" not in hist or not len(hist):
            continue
        row = {k: float(hist[k].sum()) for k in ("train_seconds", "eval_seconds",
                                                  "report_seconds") if k in hist}
        row["samples"] = float((hist["train_samples_per_second"] * hist["train_seconds"]).sum())
        for k in ("startup_seconds", "setup_seconds"):
            if k in hist:
                row[k] = float(hist[k].iloc[0])
        later = hist["train_first_batch_seconds"].iloc[1:]
        row["later_first_batch_seconds"] = float(later.mean()) if len(later) else math.nan
        out.append(row)
    return out


def run_callbacks(cfg: Config) -> list[Any]:
    """The Tuner's callbacks: rsray's progress lines, then MLflow / TensorBoard when asked."""
    from rsray.console import TuneProgress
    from rsray.tune.tracking import tracking_callbacks

    return [TuneProgress(cfg.train.metric, cfg.train.max_epochs), *tracking_callbacks(cfg)]


def tune_fusion(cfg: Config, *, resume: bool = False,
                callbacks: list[Any] | None = None) -> TuneOutcome:
    """Run (or ``resume``) the experiment ``cfg.tune.name``; print and save the leaderboard.

    ``callbacks``: more Tune callbacks (a benchmark's clock) beside :func:`run_callbacks`.
    """
    from rsray.runtime import ensure_ray
    from rsray.security import keep_credentials_out_of_runtime_envs

    t0 = time.perf_counter()
    check_space(cfg.tune.space)
    manifest = check_data(cfg)  # a bad or unreachable shard URI is reported before Ray starts
    run = RunPlan.build(cfg, manifest, experiment=cfg.tune.name)  # and a misfit setting too
    cfg = run.config
    ensure_ray()
    keep_credentials_out_of_runtime_envs()  # Tune would copy AWS keys into trials' runtime_env
    if manifest.synthetic:
        print(f"[rsray] tuning on SYNTHETIC data from {manifest.uri}", flush=True)
    storage, storage_fs = _storage(cfg)
    exp_uri = experiment_uri(cfg)
    # Decoded once for every trial (when they fit data.cache_fraction of the object store).
    shared = cache_splits(run.data, manifest)
    trainable = make_trainable(run, manifest, join(exp_uri, "trials"), shared)
    metric, mode = run.metric, run.mode
    exp_path = join(storage, cfg.tune.name)
    if resume and tune.Tuner.can_restore(exp_path, storage_filesystem=storage_fs):
        print(f"[rsray] resuming experiment {exp_uri}", flush=True)
        tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=storage_fs)
    else:
        if resume:
            print(f"[rsray] nothing to resume at {exp_uri}; starting a new experiment",
                  flush=True)
        concurrency = cfg.tune.max_concurrent_trials or auto_concurrency(cfg)
        searcher, param_space = make_searcher(cfg, metric, mode)  # named or conditional space
        scheduler = ASHAScheduler(
            time_attr="epoch", max_t=cfg.train.max_epochs,
            grace_period=cfg.tune.grace_period, reduction_factor=cfg.tune.reduction_factor,
        )
        failure, reuse = tune_trial_settings([cfg])
        models = " | ".join(cfg.tune.families) if not param_space else cfg.model.name
        print(f"[rsray] experiment {exp_uri}: {cfg.tune.num_samples} trial(s) of "
              f"{models}, up to {cfg.train.max_epochs} epoch(s), "
              f"{concurrency} at a time", flush=True)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, search_alg=searcher, scheduler=scheduler,
                num_samples=cfg.tune.num_samples, max_concurrent_trials=concurrency,
                reuse_actors=reuse,
            ),
            run_config=tune.RunConfig(
                name=cfg.tune.name, storage_path=storage, storage_filesystem=storage_fs,
                verbose=0, callbacks=[*run_callbacks(cfg), *(callbacks or [])],
                failure_config=failure,
            ),
        )
    results = tuner.fit()
    columns = table_metrics(run.task, run.data.eval_splits)
    rows = sort_rows(_rows(results, metric, mode, cfg.train.max_epochs, columns), metric, mode)
    metric_keys = [*columns, f"best_{metric}"]
    best_row = next((r for r in rows if not math.isnan(r.metrics.get(metric, math.nan))), None)
    best: dict[str, Any] = {"experiment": exp_uri, "metric": metric, "mode": mode,
                            "synthetic": manifest.synthetic, "data": manifest.uri}
    if best_row is not None:
        best.update({"trial": best_row.trial, "params": best_row.params,
                     "metrics": best_row.metrics, "epochs": best_row.epochs,
                     "checkpoint": best_row.checkpoint,
                     "config": Config.from_dict(cfg.to_dict())
                     .with_overrides(best_row.params).to_dict()})
    lb_path, best_path = write_results(exp_uri, rows, best, metric_keys)
    title = f"Leaderboard ({metric}, {mode}){' - SYNTHETIC data' if manifest.synthetic else ''}"
    print(format_table(rows, metric_keys, title=title), flush=True)
    if best_row is not None:
        print(f"\nbest trial {best_row.trial}: {metric} = {best_row.metrics[metric]:.4f}")
        print("best configuration: " + ", ".join(f"{k}={v}" for k, v in best_row.params.items()))
        print(f"best checkpoint: {best_row.checkpoint}")
    print(f"results: {lb_path}\n         {best_path}", flush=True)
    return TuneOutcome(exp_uri, rows, best, lb_path, best_path, time.perf_counter() - t0,
                       trial_timing(results))
