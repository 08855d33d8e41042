"""One-worker runs without Ray Train's controller: Train V2 local mode, rsray's own checkpoints.

A Tune trial whose run has one worker (``scaling.trial_mode``: ``auto`` with
``scaling.num_workers == 1``, or ``local``) runs its training function inside the trial's own
process through ``TorchTrainer(scaling_config=ScalingConfig(num_workers=0))``, Ray Train V2's
local mode: no controller actor, no worker group and its placement group, no fresh worker
process importing torch. The trial itself reserves the worker's resources (:func:`trial_resources`),
so it is placed where a worker would have been (a GPU node for a GPU run).

Local mode keeps only the last report and stores nothing, so the run does both itself:

- :class:`RunStore` keeps the checkpoints in the layout Ray Train uses
  (``<storage>/<name>/epoch_NNNN/{state.pt,meta.json}``), every file written through
  :mod:`rsray.storage` (``meta.json`` last: a checkpoint counts once it is there), and prunes
  them to ``train.num_to_keep`` best by ``train.metric`` (the newest always kept: it is what a
  retry resumes from);
- :class:`LocalRun` hands every epoch's metrics, with the checkpoint's URI as
  ``checkpoint_path``, to ``on_report`` (``ray.tune.report`` in a trial: ASHA prunes on it and
  the leaderboard reads it as before).

A trial whose process dies is retried by Tune (``tune.FailureConfig(max_failures=
train.max_failures)``, :func:`tune_max_failures`) and resumes from the newest checkpoint in its
folder, as a replaced Ray Train worker would.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train

from rsray.config import Config
from rsray.storage import get_fs, join, list_subdirs, parse, pyarrow_fs, read_bytes, write_bytes

CHECKPOINT_FILES = ("state.pt", "meta.json")
"""What a checkpoint folder holds, in the order they are written (meta.json marks it whole)."""


def trial_mode(cfg: Config) -> str:
    """``local`` or ``trainer``: how a trial runs ``cfg`` (``scaling.trial_mode``).

    ``auto``: ``local`` for one worker, the full ``TorchTrainer`` for more.
    """
    mode = cfg.scaling.trial_mode
    if mode == "auto":
        return "local" if cfg.scaling.num_workers == 1 else "trainer"
    return mode


TRAINER_DRIVER_CPUS = 0.01
"""What a trial that only waits on its ``TorchTrainer`` reserves (Tune refuses nothing)."""


def trial_resources(cfg: Config, use_gpu: bool) -> dict[str, float]:
    """What a Tune trial of ``cfg`` reserves for itself.

    Local mode: the worker's own share (``scaling.cpus_per_worker``, one GPU when ``use_gpu``):
    the training runs in the trial's process. Trainer mode: a token CPU share; the
    ``TorchTrainer``'s worker group reserves the rest.
    """
    if trial_mode(cfg) == "trainer":
        return {"CPU": TRAINER_DRIVER_CPUS}
    out = {"CPU": float(cfg.scaling.cpus_per_worker)}
    if use_gpu:
        out["GPU"] = 1.0
    return out


def tune_max_failures(cfg: Config) -> int:
    """Tune's trial retries: ``train.max_failures`` for local trials, 0 for trainer trials.

    No Train controller replaces a local trial's worker; a trainer trial's controller already
    retries its workers.
    """
    return cfg.train.max_failures if trial_mode(cfg) == "local" else 0


def tune_trial_settings(configs: list[Config]) -> tuple[Any, bool]:
    """Tune's ``FailureConfig`` and ``reuse_actors`` for an experiment of ``configs``' trials.

    Local trials are retried by Tune (``train.max_failures``) and, when every trial is local,
    a finished trial's process (torch imported, decoded splits at hand) runs the next one.
    """
    from ray import tune

    retries = max((tune_max_failures(c) for c in configs), default=0)
    local = bool(configs) and all(trial_mode(c) == "local" for c in configs)
    return tune.FailureConfig(max_failures=retries), local


def _epoch_of(name: str) -> int:
    return int(name.split("_", 1)[1])


class RunStore:
    """The checkpoints of one run at ``uri`` (``<storage>/<name>``), in Ray Train's layout."""

    def __init__(self, uri: str) -> None:
        self.uri = parse(uri).uri

    def epochs(self) -> list[str]:
        """Names of the whole checkpoints (``epoch_NNNN`` holding ``meta.json``), oldest first."""
        try:
            names = [n for n in list_subdirs(self.uri) if n.startswith("epoch_")]
        except FileNotFoundError:
            return []
        fs, root = get_fs(self.uri)
        return sorted(n for n in names if fs.exists(join(root, n, "meta.json")))

    def meta(self, name: str) -> dict[str, Any]:
        """``meta.json`` of checkpoint ``name``."""
        return json.loads(read_bytes(join(self.uri, name, "meta.json")))

    def latest(self) -> str | None:
        """URI of the newest whole checkpoint, or ``None``."""
        names = self.epochs()
        return join(self.uri, names[-1]) if names else None

    def checkpoint(self, uri: str) -> ray.train.Checkpoint:
        """``uri`` as a ``ray.train.Checkpoint`` (what ``ray.train.get_checkpoint`` returns)."""
        loc = parse(uri)
        if not loc.is_remote:
            return ray.train.Checkpoint(loc.path)
        return ray.train.Checkpoint(loc.path, filesystem=pyarrow_fs(loc.uri))

    def save(self, directory: Path, epoch: int) -> str:
        """Copy the checkpoint written to the local ``directory`` into ``epoch_NNNN``.

        Each file is written atomically through :mod:`rsray.storage`, ``meta.json`` last.
        Returns the checkpoint's URI.
        """
        target = join(self.uri, f"epoch_{epoch:04d}")
        names = sorted(p.name for p in directory.iterdir() if p.is_file())
        order = [n for n in names if n not in CHECKPOINT_FILES] + \
            [n for n in CHECKPOINT_FILES if n in names]
        for name in order:
            write_bytes(join(target, name), (directory / name).read_bytes())
        return target

    def prune(self, keep: int | None, metric: str, mode: str) -> list[str]:
        """Delete all but the ``keep`` best checkpoints by ``metric`` and the newest one.

        ``keep`` ``None`` or ``0`` keeps every checkpoint. Returns the names deleted.
        """
        names = self.epochs()
        if not keep or len(names) <= keep:
            return []

        def score(name: str) -> float:
            value = self.meta(name).get("metrics", {}).get(metric)
            if not isinstance(value, int | float) or not math.isfinite(value):
                return -math.inf
            return float(value) if mode == "max" else -float(value)

        best = sorted(names, key=lambda n: (score(n), _epoch_of(n)), reverse=True)[:keep]
        kept = set(best) | {names[-1]}
        fs, root = get_fs(self.uri)
        gone = [n for n in names if n not in kept]
        for name in gone:
            fs.rm(join(root, name), recursive=True)
        return gone

    def best(self, metric: str, mode: str) -> list[tuple[ray.train.Checkpoint, dict[str, Any]]]:
        """Every checkpoint with its metrics (``Result.best_checkpoints``' form), oldest first."""
        return [(self.checkpoint(join(self.uri, n)), dict(self.meta(n).get("metrics", {})))
                for n in self.epochs()]


@dataclass
class LocalRun:
    """What a local-mode training function needs beside its ``loop_config``.

    Only ever passed in-process (Train's local mode calls the function in the trial's own
    process), so ``on_report`` may be any callable.
    """

    uri: str
    """The run folder (``<storage>/<name>``)."""
    num_to_keep: int | None
    metric: str
    mode: str
    on_report: Callable[[dict[str, Any]], None] | None = None
    """Receives each epoch's metrics (with ``checkpoint_path`` when it checkpointed)."""

    @property
    def store(self) -> RunStore:
        """The run's checkpoints."""
        return RunStore(self.uri)

    @staticmethod
    def place(model: Any) -> tuple[Any, Any]:
        """``model`` on this process's device (the trial's GPU when it has one, else the CPU).

        What ``ray.train.torch.prepare_model`` does for one worker, without Train's context
        API (closed inside a Tune trial).
        """
        import torch

        if torch.cuda.is_available():
            device = torch.device(f"cuda:{torch.cuda.current_device()}")
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        return model.to(device), device

    def get_checkpoint(self) -> ray.train.Checkpoint | None:
        """The newest whole checkpoint of the run (what a retried trial resumes from)."""
        latest = self.store.latest()
        return self.store.checkpoint(latest) if latest else None

    def report(self, metrics: dict[str, Any], epoch: int,
               write: Callable[[Path], None] | None) -> None:
        """Store the checkpoint ``write`` writes (if any), prune, then hand on ``metrics``."""
        out = dict(metrics)
        if write is not None:
            with tempfile.TemporaryDirectory(prefix=f"rsray-epoch_{epoch:04d}-") as tmp:
                write(Path(tmp))
                out["checkpoint_path"] = self.store.save(Path(tmp), epoch)
            self.store.prune(self.num_to_keep, self.metric, self.mode)
        if self.on_report is not None:
            self.on_report(out)


def local_result(run: LocalRun, last: dict[str, Any] | None) -> ray.train.Result:
    """A ``ray.train.Result`` of a finished local run (best checkpoints from its folder)."""
    store = run.store
    latest = store.latest()
    return ray.train.Result(
        metrics=last or {}, checkpoint=store.checkpoint(latest) if latest else None,
        error=None, path=run.uri, best_checkpoints=store.best(run.metric, run.mode),
    )


def run_local(cfg: Config, *, train_fn: Callable[[dict[str, Any]], None],
              loop_config: dict[str, Any], datasets: dict[str, Any], run_uri: str,
              on_report: Callable[[dict[str, Any]], None] | None = None) -> ray.train.Result:
    """Run ``train_fn`` once in this process through Train V2's local mode.

    ``loop_config`` gains ``local_run`` (:class:`LocalRun`), which the training function uses
    instead of ``ray.train.report`` / ``ray.train.get_checkpoint``. Exceptions of the training
    function propagate (a Tune trial then fails and is retried).
    """
    from ray.train.torch import TorchTrainer

    last: dict[str, Any] = {}

    def remember(metrics: dict[str, Any]) -> None:
        last.clear()
        last.update(metrics)
        if on_report is not None:
            on_report(metrics)

    run = LocalRun(run_uri, cfg.train.num_to_keep, cfg.train.metric, cfg.train.mode, remember)
    config = {**loop_config, "local_run": run}
    trainer = TorchTrainer(
        train_fn, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=0),
        run_config=ray.train.RunConfig(name=run_uri.rstrip("/").rsplit("/", 1)[-1]),
        datasets=datasets,
    )
    trainer.fit()
    return local_result(run, last)
