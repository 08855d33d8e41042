"""The driver layer: from a :class:`~rsray.config.Config` to a running ``TorchTrainer``.

``fit(cfg)`` streams the shard set named in ``cfg.data.uri`` into ``cfg.scaling.num_workers``
workers. The run lives at ``<train.storage_path>/<train.name>``; running again with the same
name resumes from the run's latest checkpoint (Ray Train V2 restores a run from its storage).
"""

from __future__ import annotations

from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from rsray.config import Config
from rsray.data.pipeline import build_datasets, make_plan
from rsray.data.shards import Manifest, pyarrow_fs
from rsray.train.loop import train_fn_per_worker
from rsray.train.tasks import resolve_for_task


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


def run_config(cfg: Config, name: str | None = None, storage_path: str | None = None,
               callbacks: list[Any] | None = None) -> ray.train.RunConfig:
    """Run name, storage (local or s3://), failure policy and checkpoint retention."""
    storage = storage_path or cfg.train.storage_path
    kwargs: dict[str, Any] = {}
    if storage.startswith("s3://"):
        kwargs["storage_filesystem"] = pyarrow_fs(storage)
        storage = storage[len("s3://"):]
    else:
        from pathlib import Path

        storage = str(Path(storage).expanduser().resolve())
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
        **kwargs,
    )


def loop_config(cfg: Config, manifest: Manifest, *, experiment: str | None = None,
                trial: str | None = None) -> dict[str, Any]:
    """What the workers receive: the config and what the shard set says about the data.

    ``experiment``/``trial`` tag the run's metrics (default: ``train.name`` for both).
    """
    plan = make_plan(manifest, cfg.data, for_training=True)
    label = manifest.info.get("label", {})
    return {
        "config": cfg.to_dict(),
        "channels": plan.channels,
        "classes": list(manifest.classes),
        "plan": plan,
        "eval_plan": make_plan(manifest, cfg.data),
        "task": manifest.task,
        "exclude_from_mean": list(label.get("exclude_from_mean", [])),
        "synthetic": manifest.synthetic,
        "tags": {"experiment": experiment or cfg.train.name, "trial": trial or cfg.train.name},
    }


def build_trainer(
    cfg: Config,
    *,
    manifest: Manifest | None = None,
    datasets: dict[str, Any] | None = None,
    name: str | None = None,
    storage_path: str | None = None,
    callbacks: list[Any] | None = None,
    experiment: str | None = None,
) -> TorchTrainer:
    """A ``TorchTrainer`` for ``cfg`` (datasets built from ``cfg.data`` unless given)."""
    if datasets is None or manifest is None:
        manifest, datasets = build_datasets(cfg.data, manifest=manifest)
    cfg = resolve_for_task(cfg, manifest.task)
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config=loop_config(cfg, manifest, experiment=experiment, trial=name),
        scaling_config=scaling_config(cfg),
        run_config=run_config(cfg, name=name, storage_path=storage_path, callbacks=callbacks),
        datasets=datasets,
    )


def fit(cfg: Config) -> ray.train.Result:
    """Train one configuration; returns Ray Train's ``Result`` (metrics, best checkpoints)."""
    from rsray.runtime import ensure_ray

    ensure_ray()
    manifest, datasets = build_datasets(cfg.data)
    if manifest.synthetic:
        print(f"[rsray] training on SYNTHETIC data from {manifest.uri}", flush=True)
    from rsray.console import TrainProgress

    trainer = build_trainer(cfg, manifest=manifest, datasets=datasets,
                            callbacks=[TrainProgress(cfg.train.metric, cfg.train.max_epochs)])
    return trainer.fit()
