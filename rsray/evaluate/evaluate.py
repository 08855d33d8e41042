"""``evaluate_checkpoint``: a checkpoint's metrics on named splits, as training computes them.

Optionally once more per dropped modality (missing-modality robustness).

Each split is streamed through the training pipeline (:func:`rsray.data.datasets.build_split`,
no augmentation) and scored by the training loop's own evaluation function
(:func:`rsray.train.step.evaluate_split`), so the numbers are the validation metrics training
reported for that epoch (up to float summation order). Dropping a modality sets its
``drop_<modality>`` flag, which :func:`~rsray.data.finalize.finalize_batch` turns into zeros
after normalisation: what training-time modality dropout does (``data.modality_dropout``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torchmetrics

from rsray.config import Config
from rsray.data.datasets import build_split, load_shard_set
from rsray.data.shards import Manifest
from rsray.errors import RsrayError
from rsray.evaluate.checkpoint import LoadedCheckpoint, open_checkpoint, read_checkpoint_meta
from rsray.storage import get_fs, join

METRICS_JSON = "metrics.json"
PROGRESS_EVERY_S = 10.0
"""Seconds between progress lines while a split is scored."""


def evaluation_name(split: str, drop: Sequence[str] = ()) -> str:
    """``test``, or ``test@drop=s1`` (``s1+dem`` when several are dropped together)."""
    return f"{split}@drop={'+'.join(drop)}" if drop else split


def parse_drops(drop_modalities: Sequence[str], known: Sequence[str]) -> list[tuple[str, ...]]:
    """``["s1", "s2+dem"]`` -> ``[("s1",), ("s2", "dem")]``, checked against ``known``."""
    out = []
    for spec in drop_modalities:
        group = tuple(m for m in str(spec).split("+") if m)
        unknown = [m for m in group if m not in known]
        if not group or unknown:
            raise RsrayError(f"--drop-modality {spec!r}: {', '.join(unknown) or 'empty'} is "
                             f"not a modality of this model's data ({', '.join(known)})")
        out.append(group)
    return out


class _Stream:
    """A Ray Dataset seen as a Ray Train shard: sets drop flags, counts, shows a progress bar.

    The bar (:class:`~rsray.console.Progress`: rate and ETA on a terminal, a line every
    ``PROGRESS_EVERY_S`` seconds in a log) runs over ``total`` samples, the split's row count
    in the manifest.
    """

    def __init__(self, dataset: Any, name: str, drop: Sequence[str],
                 total: int | None = None) -> None:
        self.dataset, self.name, self.drop, self.total = dataset, name, tuple(drop), total
        self.samples = 0

    def iter_torch_batches(self, **kwargs: Any) -> Iterator[dict[str, torch.Tensor]]:
        """The dataset's torch batches, with ``drop_<m>`` set for every dropped modality."""
        from rsray.console import Progress

        t0 = time.perf_counter()
        with Progress(total=self.total, desc=f"evaluate {self.name}", unit="sample",
                      log_every_s=PROGRESS_EVERY_S) as bar:
            for batch in self.dataset.iter_torch_batches(**kwargs):
                for m in self.drop:
                    flag = batch[f"drop_{m}"]
                    batch[f"drop_{m}"] = torch.ones_like(flag)
                n = int(batch["label"].shape[0])
                self.samples += n
                bar.update(n)
                yield batch
        seconds = time.perf_counter() - t0
        print(f"[rsray] evaluate {self.name}: {self.samples} samples in {seconds:.1f} s "
              f"({self.samples / max(seconds, 1e-9):.1f} samples/s)", flush=True)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def score_split(loaded: LoadedCheckpoint, manifest: Manifest, split: str,
                drop: Sequence[str] = (), batch_size: int | None = None,
                device: torch.device | None = None) -> tuple[dict[str, Any], Any]:
    """``(metrics + n_samples, confusion matrix or None)`` of one split, one drop setting."""
    from rsray.train.step import evaluate_split

    cfg: Config = loaded.config
    device = device or _device()
    task = loaded.run.build_task().to(device)
    stream = _Stream(build_split(manifest, split, loaded.plan),
                     evaluation_name(split, drop), drop, total=manifest.splits.get(split))
    assert loaded.model is not None
    metrics, confusion = evaluate_split(loaded.model, stream, task,
                                        torchmetrics.MeanMetric().to(device), loaded.plan,
                                        batch_size or cfg.data.batch_size, device,
                                        cfg.train.amp, loaded.modalities)
    if stream.samples == 0:
        raise RsrayError(f"{manifest.uri}: split {split!r} has no samples")
    return {**{k: float(v) for k, v in metrics.items()}, "n_samples": stream.samples}, confusion


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None``, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def evaluate_checkpoint(
    checkpoint: str,
    data_uri: str | None,
    splits: Sequence[str],
    drop_modalities: Sequence[str] = (),
    out_dir: str | None = None,
    batch_size: int | None = None,
    *,
    manifest: Manifest | None = None,
) -> dict[str, dict[str, Any]]:
    """A checkpoint's task metrics on ``splits``, each also once per dropped modality.

    Args:
        checkpoint: checkpoint directory (local or ``s3://``), or a run folder holding
            ``epoch_*`` checkpoints (the latest is used).
        data_uri: shard set to evaluate on; ``None`` uses the one the checkpoint trained on.
        splits: split names of the shard set, e.g. ``["test", "ood"]``.
        drop_modalities: modalities to zero (one evaluation each, per split); ``"a+b"``
            drops two together.
        out_dir: folder (local or ``s3://``) to write ``metrics.json`` to.
        batch_size: evaluation batch size (default: the checkpoint's ``data.batch_size``).
        manifest: the shard set, already read and verified (``data_uri`` is then not read
            again).

    Returns:
        ``{"test": {...}, "test@drop=s1": {...}, ...}``: the training-time metric names
        without the split prefix (``loss``, ``ap_macro``, ``ap_class/<name>``, ``oa``,
        ``miou``, ``iou/<name>``...) plus ``n_samples``.
    """
    from rsray.runtime import ensure_ray, quiet_data_context

    if not splits:
        raise RsrayError("--splits: name at least one split, e.g. test")
    if manifest is None:
        meta, _, _ = read_checkpoint_meta(checkpoint)
        cfg = Config.from_dict(meta["config"])
        if data_uri:
            cfg = cfg.with_overrides({"data.uri": data_uri})
        manifest = load_shard_set(cfg.data, tuple(splits))
    ensure_ray()
    quiet_data_context()
    missing = [s for s in splits if s not in manifest.splits]
    if missing:
        raise RsrayError(f"{manifest.uri}: no split {', '.join(map(repr, missing))} (it has "
                         f"{', '.join(sorted(manifest.splits))})")
    device = _device()
    loaded = open_checkpoint(checkpoint, manifest, device=device)
    drops = parse_drops(drop_modalities, [m.name for m in loaded.plan.modalities])
    if manifest.synthetic:
        print(f"[rsray] evaluating on SYNTHETIC data from {manifest.uri}", flush=True)
    print(f"[rsray] evaluating {loaded.config.model.name} (epoch {loaded.epoch}) from "
          f"{loaded.uri} on {device}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    confusion: dict[str, Any] = {}
    for split in splits:
        for drop in [(), *drops]:
            name = evaluation_name(split, drop)
            results[name], cm = score_split(loaded, manifest, split, drop, batch_size, device)
            if cm is not None:
                confusion[name] = cm
    if out_dir:
        write_metrics(out_dir, loaded, manifest, results, confusion)
    return results


def write_metrics(out_dir: str, loaded: LoadedCheckpoint, manifest: Manifest,
                  results: dict[str, dict[str, Any]], confusion: dict[str, Any]) -> str:
    """Write ``metrics.json`` (NaN as ``null``) into ``out_dir``; return its path."""
    doc = {
        "checkpoint": loaded.uri, "epoch": loaded.epoch, "model": loaded.config.model.name,
        "task": loaded.task, "classes": loaded.classes, "data": manifest.uri,
        "synthetic": manifest.synthetic, "evaluations": results,
        "confusion_matrix": confusion, "training_metrics": loaded.metrics,
    }
    text = json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"
    fs, root = get_fs(out_dir)
    fs.makedirs(root, exist_ok=True)
    path = join(root, METRICS_JSON)
    with fs.open(path, "w") as f:
        f.write(text)
    where = join(out_dir, METRICS_JSON) if "://" in out_dir else str(Path(path))
    print(f"[rsray] metrics: {where}", flush=True)
    return where


__all__ = ["METRICS_JSON", "evaluate_checkpoint", "evaluation_name", "parse_drops",
           "score_split", "write_metrics"]
