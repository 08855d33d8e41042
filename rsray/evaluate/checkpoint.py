"""Open a training checkpoint (local or s3://) as a ready-to-run model for a shard set.

A checkpoint directory written by the training loop (:mod:`rsray.train.checkpoint`) holds
``state.pt`` (weights) and ``meta.json`` (the run's config, the data's channels and classes,
the task and the metrics reported for that epoch). A run or trial folder holding several
``epoch_NNNN`` / ``checkpoint_*`` directories is accepted too: its latest checkpoint is used.
The model is rebuilt from the saved config resolved against the shard set it is evaluated on
(:class:`~rsray.train.run_plan.RunPlan`), which must have the same classes, task and channels
as the training data.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsray.config import Config
from rsray.data.plan import DecodePlan
from rsray.data.shards import Manifest
from rsray.errors import RsrayError
from rsray.storage import get_fs, is_local, join
from rsray.train.checkpoint import META_FILE, STATE_FILE, load_checkpoint
from rsray.train.run_plan import RunPlan

_CHECKPOINT_PREFIXES = ("epoch_", "checkpoint_")


@dataclass
class LoadedCheckpoint:
    """A checkpoint's model (in eval mode) with the resolved run it belongs to."""

    uri: str
    """The checkpoint directory actually opened."""
    run: RunPlan
    """The checkpoint's run resolved for the shard set it is opened on."""
    epoch: int
    """Epochs trained (1-based, as in the training report)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The training-time report of that epoch (``val_ap_macro``, ``train_loss``...)."""
    model: nn.Module | None = None

    @property
    def config(self) -> Config:
        """The run's config (``data.uri``: the shard set it is opened on)."""
        return self.run.config

    @property
    def channels(self) -> dict[str, int]:
        """Raster modality -> channels, in the order the model reads them."""
        return self.run.channels

    @property
    def classes(self) -> list[str]:
        """Class (or regression target) names."""
        return list(self.run.classes)

    @property
    def task(self) -> str:
        """The task the model was trained for."""
        return self.run.task

    @property
    def plan(self) -> DecodePlan:
        """The decode plan of evaluation (no training subset, no augmentation)."""
        return self.run.eval_plan

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the model reads (a single-modality model ignores the others)."""
        return tuple(getattr(self.model, "modalities", tuple(self.channels)))


def _find_checkpoint(fs: Any, path: str, uri: str) -> tuple[str, str]:
    """``(path, uri)`` of the checkpoint directory at or (latest) below ``path``."""
    if fs.exists(join(path, STATE_FILE)):
        return path, uri
    if not fs.isdir(path):
        raise RsrayError(f"{uri}: no such checkpoint directory")
    children = sorted(
        p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)
        if p.rstrip("/").rsplit("/", 1)[-1].startswith(_CHECKPOINT_PREFIXES)
        and fs.exists(join(p, STATE_FILE))
    )
    if not children:
        raise RsrayError(f"{uri}: no {STATE_FILE} here nor in an epoch_*/checkpoint_* folder "
                         "below; pass a checkpoint directory written by `rsray train`/`tune`")
    latest = children[-1]
    print(f"[rsray] using the latest checkpoint {latest} of {uri}", flush=True)
    return join(path, latest), join(uri, latest)


def read_checkpoint_meta(uri: str) -> tuple[dict[str, Any], str, str]:
    """``(meta.json contents, local directory, resolved uri)``; s3 checkpoints are downloaded.

    The local directory of a remote checkpoint is a temporary folder that lives as long as the
    process.
    """
    fs, path = get_fs(uri)
    path, uri = _find_checkpoint(fs, path, uri)
    if is_local(fs):
        local = path
    else:
        local = tempfile.mkdtemp(prefix="rsray-ckpt-")
        for name in (STATE_FILE, META_FILE):
            fs.get(join(path, name), str(Path(local) / name))
    meta_path = Path(local) / META_FILE
    if not meta_path.is_file():
        raise RsrayError(f"{join(uri, META_FILE)}: missing; not a checkpoint of the rsray "
                         "training loop")
    meta = json.loads(meta_path.read_text())
    missing = [k for k in ("config", "channels", "classes", "task") if k not in meta]
    if missing:
        raise RsrayError(f"{join(uri, META_FILE)}: has no {', '.join(missing)}; it was not "
                         "written by the rsray training loop")
    return meta, local, uri


def _check_data(meta: dict[str, Any], manifest: Manifest, run: RunPlan, uri: str) -> None:
    if list(manifest.classes) != list(meta["classes"]):
        raise RsrayError(f"{manifest.uri}: classes {list(manifest.classes)} differ from the "
                         f"checkpoint's {meta['classes']} ({uri})")
    if manifest.task != meta["task"]:
        raise RsrayError(f"{manifest.uri}: task {manifest.task!r}, the checkpoint {uri} was "
                         f"trained for {meta['task']!r}")
    if run.channels != dict(meta["channels"]):
        raise RsrayError(f"{manifest.uri}: channels {run.channels} differ from the "
                         f"checkpoint's {meta['channels']} ({uri})")


def open_checkpoint(uri: str, manifest: Manifest, *, device: str | torch.device = "cpu",
                    with_weights: bool = True) -> LoadedCheckpoint:
    """Rebuild the checkpoint's model for ``manifest`` and load its weights.

    The checkpoint's config is resolved against ``manifest`` (:class:`RunPlan`), and the model
    built by :meth:`RunPlan.build_model`, as training built it.

    Args:
        uri: checkpoint directory (or a run folder holding ``epoch_*`` checkpoints).
        manifest: the shard set to run the model on; its classes, task and channels must be
            the training data's.
        device: where the model goes.
        with_weights: ``False`` reads only the metadata (config, plan, metrics); no model.

    Raises:
        RsrayError: a one-line message naming the checkpoint or the shard set.
    """
    meta, local, uri = read_checkpoint_meta(uri)
    config = Config.from_dict(meta["config"]).with_overrides({"data.uri": manifest.uri})
    # the plan's channel order, not meta.json's (written with sorted keys): early fusion
    # concatenates modalities in this order, so a sorted order would mix up the inputs
    run = RunPlan.build(config, manifest)
    _check_data(meta, manifest, run, uri)
    loaded = LoadedCheckpoint(
        uri=uri, run=run, epoch=int(meta["epoch"]) + 1,
        metrics={k: v for k, v in (meta.get("metrics") or {}).items()},
    )
    if with_weights:
        model = run.build_model()
        load_checkpoint(Path(local), model=model, restore_rng=False)
        loaded.model = model.to(device).eval()
    return loaded


__all__ = ["LoadedCheckpoint", "open_checkpoint", "read_checkpoint_meta"]
