"""The driver layer: from a :class:`~rsray.config.Config` to a running ``TorchTrainer``.

``fit(cfg)`` resolves the run (:class:`~rsray.train.run_plan.RunPlan`) and feeds the shard
set named in ``cfg.data.uri`` to ``cfg.scaling.num_workers`` workers: splits that fit
``data.cache_fraction`` of the object store are decoded once and read from memory by every
epoch, larger ones are streamed.
The run lives at ``<train.storage_path>/<train.name>``; running again with the same
name resumes from the run's latest checkpoint (Ray Train V2 restores a run from its storage).
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from rsray.config import Config
from rsray.data.datasets import TrainingData, load_shard_set, training_datasets
from rsray.data.shards import Manifest
from rsray.errors import ResourceWaitError, RsrayError
from rsray.storage import ray_storage
from rsray.train.loop import train_fn_per_worker
from rsray.train.run_plan import RunPlan, WorkerInput


def resolve_use_gpu(cfg: Config) -> bool:
    """``scaling.use_gpu``: yes/no, or ``auto`` = the cluster has at least one GPU."""
    if cfg.scaling.use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return cfg.scaling.use_gpu == "yes"


def scaling_config(cfg: Config) -> ray.train.ScalingConfig:
    """One GPU per worker when GPUs are used, else ``cpus_per_worker`` (may be fractional)."""
    use_gpu = resolve_use_gpu(cfg)
    resources: dict[str, float] = {"CPU": cfg.scaling.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = 1
    return ray.train.ScalingConfig(
        num_workers=cfg.scaling.num_workers, use_gpu=use_gpu, resources_per_worker=resources
    )


def needed_bundles(cfg: Config, extra_cpus: float = 0.0,
                   workers: bool = True) -> list[dict[str, float]]:
    """Resource bundles a run of ``cfg`` needs at once.

    One per worker (unless not ``workers``: a trial holding its worker's share itself), plus
    ``extra_cpus``.
    """
    worker: dict[str, float] = {"CPU": cfg.scaling.cpus_per_worker}
    if workers and resolve_use_gpu(cfg):
        worker["GPU"] = 1.0
    bundles = [dict(worker) for _ in range(cfg.scaling.num_workers if workers else 0)]
    if extra_cpus > 0:
        bundles.append({"CPU": extra_cpus})
    return bundles


def wait_for_resources(cfg: Config, what: str, extra_cpus: float = 0.0,
                       workers: bool = True) -> None:
    """Wait until the cluster can hold what ``what`` needs, at most ``train.resource_wait_s``.

    A placement group of the run's bundles is reserved and released again: on an autoscaling
    cluster this is also the demand that makes the autoscaler add nodes. ``0`` skips the check.

    Raises:
        ResourceWaitError: naming ``what``, the resources it waited for, what the cluster has
            in total and what was free at the end, so a leak or an undersized cluster shows.
    """
    from ray.util.placement_group import placement_group, remove_placement_group

    limit = cfg.train.resource_wait_s
    if not limit:
        return
    bundles = needed_bundles(cfg, extra_cpus, workers)
    if not bundles:
        return
    t0 = time.monotonic()
    pg = placement_group(bundles, strategy="PACK")
    try:
        ready = pg.wait(timeout_seconds=limit)
    finally:
        remove_placement_group(pg)
    if ready:
        return
    need: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            need[k] = need.get(k, 0.0) + v
    total, free = ray.cluster_resources(), ray.available_resources()
    fmt = ", ".join
    raise ResourceWaitError(
        f"{what}: waited {time.monotonic() - t0:.0f} s (train.resource_wait_s) for "
        f"{fmt(f'{k} {v:g}' for k, v in need.items())} in {len(bundles)} bundle(s); the "
        f"cluster has {fmt(f'{k} {total.get(k, 0):g}' for k in need)} in total, "
        f"{fmt(f'{k} {free.get(k, 0):g}' for k in need)} free.{_oversized(bundles)} Lower "
        "scaling.num_workers / cpus_per_worker or tune.max_concurrent_trials, or find what "
        "holds the rest (`ray status`)"
    )


def _oversized(bundles: list[dict[str, float]]) -> str:
    """`` A bundle of CPU 2 fits on no node (the largest has CPU 1).`` or ``""``.

    A bundle is placed on one node, so a cluster with enough resources in total can still
    never hold it (small nodes; an autoscaler with no node type that large).
    """
    largest: dict[str, float] = {}
    for node in ray.nodes():
        if node.get("Alive"):
            for k, v in node.get("Resources", {}).items():
                largest[k] = max(largest.get(k, 0.0), float(v))
    for b in bundles:
        for k, v in b.items():
            if v > largest.get(k, 0.0):
                return (f" A bundle of {k} {v:g} fits on no node (the largest has {k} "
                        f"{largest.get(k, 0.0):g}).")
    return ""


def run_config(cfg: Config, name: str | None = None, storage_path: str | None = None,
               callbacks: list[Any] | None = None) -> ray.train.RunConfig:
    """Run name, storage (local or s3://), failure policy and checkpoint retention."""
    storage, storage_fs = ray_storage(storage_path or cfg.train.storage_path)
    return ray.train.RunConfig(
        name=name or cfg.train.name,
        storage_path=storage,
        failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=cfg.train.num_to_keep,
            checkpoint_score_attribute=cfg.train.metric,
            checkpoint_score_order=cfg.train.mode,
        ),
        callbacks=callbacks,
        storage_filesystem=storage_fs,
    )


def build_trainer(
    run: RunPlan,
    manifest: Manifest,
    *,
    data: TrainingData | None = None,
    datasets: dict[str, Any] | None = None,
    name: str | None = None,
    storage_path: str | None = None,
    callbacks: list[Any] | None = None,
) -> TorchTrainer:
    """A ``TorchTrainer`` for the resolved run ``run`` on the shard set ``manifest``.

    Its datasets: ``data`` (:func:`~rsray.data.datasets.training_datasets`: cached splits
    where they fit, the workers augmenting a cached training split), else ``datasets`` as
    given (streams that Ray Data augments, :func:`~rsray.data.datasets.build_datasets`), else
    :func:`~rsray.data.datasets.training_datasets` of ``run.data``. ``name`` names the run in
    its storage (default ``train.name``); its workers receive ``run`` (:class:`WorkerInput`).
    """
    if data is None and datasets is None:
        data = training_datasets(run.data, manifest)
    augment, streams = None, {}
    if data is not None:
        datasets, augment, streams = data.datasets, data.augment, data.streams
    # read by the controller, which Ray Train starts with the variables set here
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    given = WorkerInput(run=run, augment=augment, trainer_built=time.time(),
                        streams=streams)
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"input": given},
        scaling_config=scaling_config(run.config),
        run_config=run_config(run.config, name=name, storage_path=storage_path,
                              callbacks=callbacks),
        datasets=datasets,
    )


HEALTH_CHECK_INTERVAL_S = "0.5"
"""How often a ``TorchTrainer``'s controller polls its workers (Ray's default: 2 s). Each
report, and the run's end, waits for the next poll: at 2 s that is up to 2 s per epoch and per
run. Set ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` to choose another value."""


DATA_CPUS = 1.0
"""CPU slots a run's Ray Data streams need beside its workers."""


def check_data(cfg: Config) -> Manifest:
    """Read and verify the shard set (one line if missing, corrupt, or its store unreachable).

    Runs before Ray starts, so a typo in ``--data`` or a corrupt shard costs no Ray start-up.
    """
    from rsray.storage import check_reachable

    check_reachable(cfg.data.uri)
    return load_shard_set(cfg.data)


def fit(cfg: Config) -> ray.train.Result:
    """Train one configuration; returns Ray Train's ``Result`` (metrics, best checkpoints).

    The shard set is read and verified and the run resolved (:class:`RunPlan`) before Ray
    starts, so a bad ``--data`` or a setting that does not fit the data costs no start-up.
    """
    manifest = check_data(cfg)
    return fit_run(RunPlan.build(cfg, manifest), manifest)


def fit_run(run: RunPlan, manifest: Manifest) -> ray.train.Result:
    """Train the resolved run ``run`` on ``manifest`` (see :func:`fit`)."""
    from rsray.console import TrainProgress
    from rsray.runtime import ensure_ray

    ensure_ray()
    if run.synthetic:
        print(f"[rsray] training on SYNTHETIC data from {manifest.uri}", flush=True)
    cfg = run.config
    wait_for_resources(cfg, f"run {cfg.train.name}", extra_cpus=DATA_CPUS)
    data = training_datasets(run.data, manifest)  # decoded once here when they fit in memory
    trainer = build_trainer(run, manifest, data=data,
                            callbacks=[TrainProgress(run.metric, cfg.train.max_epochs)])
    return trainer.fit()


def best_checkpoint(result: ray.train.Result, run: RunPlan, what: str) -> ray.train.Checkpoint:
    """The run's best checkpoint by its headline metric (else its latest).

    Raises:
        RsrayError: the run failed or kept no checkpoint, naming ``what`` (the run).
    """
    if result.error is not None:
        raise RsrayError(f"{what} failed: {result.error}")
    try:
        ckpt = result.get_best_checkpoint(metric=run.metric, mode=run.mode)
    except (AttributeError, RuntimeError, ValueError):
        ckpt = None
    ckpt = ckpt or result.checkpoint
    if ckpt is None:
        raise RsrayError(f"{what}: training produced no checkpoint")
    return ckpt
