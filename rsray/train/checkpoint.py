"""Save and restore training state in a checkpoint directory.

A checkpoint directory holds two files:

- ``state.pt``: model weights (of the bare model, never a DDP / ``torch.compile`` wrapper, so a
  checkpoint written by N workers loads into one and vice versa), optimiser and scheduler
  state, the epoch just finished, the best metric so far, the caller's ``extra`` dict and the
  torch / CUDA / numpy / Python RNG states. It only holds tensors and plain Python values, so
  it is read with ``torch.load(weights_only=True)`` (no arbitrary code runs on load).
- ``meta.json``: epoch, best metric and the JSON-able part of ``extra`` (metrics), for humans
  and for tools that should not load torch.

Both are written to a temporary name and renamed into place, so a crash mid-write never leaves
a half-written ``state.pt``. The training loop writes into a temporary directory and hands it
to ``ray.train.Checkpoint.from_directory`` (with ``train.checkpoint_upload=async`` Ray Train's
upload thread copies it to storage and removes it; :func:`rsray.train.loop.report_and_checkpoint`);
on resume it opens
``ray.train.get_checkpoint().as_directory()`` and calls :func:`load_checkpoint`.
"""

from __future__ import annotations

import json
import math
import os
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from rsray.errors import RsrayError

STATE_FILE = "state.pt"
"""Name of the torch payload inside a checkpoint directory."""
META_FILE = "meta.json"
"""Name of the human-readable summary inside a checkpoint directory."""
FORMAT_VERSION = 1
"""Layout version of ``state.pt``; bumped when keys change incompatibly."""

_PLAIN = (type(None), bool, int, float, str, bytes, torch.Tensor)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the bare model inside DDP / DataParallel / ``torch.compile`` wrappers.

    Args:
        model: a model, possibly wrapped (several times).

    Returns:
        The innermost module, whose ``state_dict`` keys have no ``module.`` or ``_orig_mod.``
        prefix.
    """
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(
            getattr(model, "_orig_mod", None), nn.Module
        ):
            model = model._orig_mod
        else:
            return model


def _to_plain(value: Any, where: str) -> Any:
    """Convert numpy values to torch/Python ones; refuse anything ``weights_only`` can't load."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _to_plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, _PLAIN):
        return value
    raise RsrayError(
        f"save_checkpoint: {where} is a {type(value).__name__}, which a checkpoint cannot hold; "
        "convert it to numbers, strings, lists, dicts or tensors"
    )


def _to_json(value: Any) -> Any:
    """Best-effort JSON view: non-finite floats become null, big tensors a short summary."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return _to_json(value.item())
        if value.numel() <= 64:
            return _to_json(value.tolist())
        return f"<tensor {tuple(value.shape)} {value.dtype}>"
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return str(value)


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:
        s = state["numpy"]
        keys = s["keys"].cpu().numpy().astype(np.uint32)
        np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"]))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(
    directory: Path | str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: LRScheduler | None,
    epoch: int,
    best_metric: float | None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``state.pt`` and ``meta.json`` into ``directory`` (created if missing).

    Args:
        directory: checkpoint folder (usually a fresh temporary directory).
        model: the model; wrappers are removed with :func:`unwrap_model`.
        optimizer: its state is stored when given.
        scheduler: its state is stored when given.
        epoch: the epoch just finished (0-based); resume starts at ``epoch + 1``.
        best_metric: best value of ``train.metric`` so far, or ``None``.
        extra: anything else to keep, e.g. ``{"metrics": {...}, "config": cfg.to_dict()}``:
            numbers, strings, lists, dicts, tensors (numpy values are converted).

    Raises:
        RsrayError: if ``extra`` holds an object a checkpoint cannot store.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extra_plain = _to_plain(dict(extra or {}), "extra")
    best = None if best_metric is None else float(best_metric)
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "epoch": int(epoch),
        "best_metric": best,
        "model": unwrap_model(model).state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else _to_plain(scheduler.state_dict(), "scheduler"),
        "extra": extra_plain,
        "rng": _rng_state(),
    }
    _atomic_write(directory / STATE_FILE, lambda p: torch.save(payload, p))
    meta = {
        "epoch": int(epoch),
        "best_metric": _to_json(best),
        "torch_version": torch.__version__,
        **{k: _to_json(v) for k, v in extra_plain.items() if k not in ("epoch", "best_metric")},
    }
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n"
    _atomic_write(directory / META_FILE, lambda p: p.write_text(text))


def load_checkpoint(
    directory: Path | str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: LRScheduler | None = None,
    map_location: str | torch.device = "cpu",
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint`.

    Model weights are loaded strictly into the bare model (wrappers are looked through);
    optimiser state tensors are moved to the device of their parameters by torch.

    Args:
        directory: checkpoint folder holding ``state.pt``.
        model: model to load the weights into.
        optimizer: optimiser to restore, if given (built the same way as when saved).
        scheduler: scheduler to restore, if given.
        map_location: where tensors are loaded first (``"cpu"`` is always safe).
        restore_rng: also restore the torch / CUDA / numpy / Python RNG states. Under DDP every
            rank then gets the saving rank's state; pass ``False`` and reseed per rank if that
            matters.

    Returns:
        ``{"epoch", "best_metric", "extra", "format_version"}`` of the checkpoint.

    Raises:
        RsrayError: naming ``state.pt`` if it is missing, truncated or corrupt, or if its
            weights / optimiser state do not fit the given model / optimiser.
    """
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise RsrayError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip, pickle and EOF errors all mean the same to the user
        raise RsrayError(
            f"{path}: checkpoint is truncated or corrupt and cannot be read "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or "model" not in payload or "epoch" not in payload:
        raise RsrayError(f"{path}: not an rsray checkpoint (no 'model' / 'epoch' entries)")
    version = payload.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise RsrayError(
            f"{path}: checkpoint format {version} is newer than this rsray ({FORMAT_VERSION})"
        )
    try:
        unwrap_model(model).load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise RsrayError(f"{path}: model weights do not fit the model: {exc}") from exc
    if optimizer is not None:
        if payload.get("optimizer") is None:
            warnings.warn(f"{path}: holds no optimiser state; optimiser left as is", stacklevel=2)
        else:
            try:
                optimizer.load_state_dict(payload["optimizer"])
            except (ValueError, KeyError, RuntimeError) as exc:
                raise RsrayError(
                    f"{path}: optimiser state does not fit the optimiser: {exc}"
                ) from exc
    if scheduler is not None:
        if payload.get("scheduler") is None:
            warnings.warn(f"{path}: holds no scheduler state; scheduler left as is", stacklevel=2)
        else:
            scheduler.load_state_dict(payload["scheduler"])
    if restore_rng and payload.get("rng"):
        _set_rng_state(payload["rng"])
    return {
        "epoch": int(payload["epoch"]),
        "best_metric": payload.get("best_metric"),
        "extra": payload.get("extra", {}),
        "format_version": version,
    }


def should_checkpoint(epoch: int, *, improved: bool, last: bool, every: int) -> bool:
    """Whether epoch ``epoch`` (0-based) gets a checkpoint (``train.checkpoint_every``).

    The epochs that improve the metric (what the best checkpoint is), the last one (what a
    finished run and a restored experiment read) and every ``every``-th one (``0``: none more).
    Other epochs only report metrics, which is all ASHA compares.
    """
    return improved or last or (every > 0 and (epoch + 1) % every == 0)


__all__ = [
    "FORMAT_VERSION",
    "META_FILE",
    "STATE_FILE",
    "load_checkpoint",
    "save_checkpoint",
    "should_checkpoint",
    "unwrap_model",
]
