"""One training run inside a Tune trial: in the trial's own process, or through a TorchTrainer.

Every trial driver (``rsray tune``, a study's search and its seeded runs) calls
:func:`run_in_trial`; :func:`~rsray.train.local.trial_mode` picks the route:

- ``local`` (one worker): Train V2's local mode in the trial's process
  (:func:`rsray.train.local.run_local`), the trial reserving the worker's resources
  (:func:`rsray.train.local.trial_resources`) and reporting each epoch to Tune itself;
- ``trainer``: a ``TorchTrainer`` whose reports reach Tune through ``TuneReportCallback``.

Both return a ``ray.train.Result`` whose best checkpoints are the run's, in the same layout
under ``<storage_path>/<name>``.
"""

from __future__ import annotations

import time
from typing import Any

import ray.train

from rsray.config import Config
from rsray.data.datasets import CachedSplit, TrainingData, training_datasets
from rsray.data.plan import DataPlan
from rsray.data.shards import Manifest
from rsray.storage import join
from rsray.train.driver import build_trainer, wait_for_resources
from rsray.train.local import run_local, trial_mode
from rsray.train.loop import train_fn_per_worker
from rsray.train.run_plan import RunPlan, WorkerInput

_WARM: dict[str, dict[str, CachedSplit]] = {}
"""Splits this process decoded for its last run, by shard set (at most one shard set kept)."""


def warm_training_data(data: DataPlan, manifest: Manifest) -> TrainingData:
    """:func:`~rsray.data.datasets.training_datasets`, reusing what this process decoded last.

    A reused trial process (``reuse_actors``) trains one cell's seeds one after another: the
    splits they share (same rows, same decode) are decoded once, not once per seed. Only the
    last shard set's splits are kept, so a process holds one set of blocks at a time.
    """
    out = training_datasets(data, manifest, shared=_WARM.get(manifest.uri))
    _WARM.clear()
    _WARM[manifest.uri] = dict(out.cached)
    return out


def wait_for_trial_resources(cfg: Config, what: str, extra_cpus: float) -> None:
    """:func:`~rsray.train.driver.wait_for_resources` for what a trial still has to get.

    A local trial already holds its worker's share (the trial's own reservation): it waits
    only for its data pipelines' ``extra_cpus``.
    """
    wait_for_resources(cfg, what, extra_cpus=extra_cpus,
                       workers=trial_mode(cfg) == "trainer")


def run_in_trial(run: RunPlan, manifest: Manifest, *, data: TrainingData, name: str,
                 storage_path: str, to_tune: bool = True) -> ray.train.Result:
    """Train the resolved ``run`` as run ``name`` under ``storage_path``; returns its result.

    ``to_tune``: report every epoch to the Tune trial this runs in (ASHA, the leaderboard).
    A run with checkpoints in its folder resumes from the newest (a retried or restored
    trial).
    """
    if trial_mode(run.config) == "trainer":
        from ray.tune.integration.ray_train import TuneReportCallback

        trainer = build_trainer(run, manifest, data=data, name=name, storage_path=storage_path,
                                callbacks=[TuneReportCallback()] if to_tune else None)
        return trainer.fit()
    on_report = None
    if to_tune:
        from ray import tune

        def on_report(metrics: dict[str, Any]) -> None:
            tune.report(metrics)

    given = WorkerInput(run=run, augment=data.augment, trainer_built=time.time(),
                        streams=data.streams)
    return run_local(run.config, train_fn=train_fn_per_worker, loop_config={"input": given},
                     datasets=data.datasets, run_uri=join(storage_path, name),
                     on_report=on_report)
