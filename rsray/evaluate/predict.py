"""``predict``: per-sample predictions of a checkpoint on one split, as Parquet, in parallel.

The split's shard rows are read with Ray Data and scored by ``map_batches`` over a pool of
actors, each holding the model: one actor per GPU (``num_gpus=1``) when the cluster has GPUs,
else a few CPU actors. The weights go to the actors through the object store, so a local
checkpoint works on a multi-node cluster too. Rows are decoded with the training pipeline's
functions (:func:`~rsray.data.decode.decode_raw`, :func:`~rsray.data.finalize.finalize_batch`),
so inputs are exactly what evaluation sees.

Columns of the written Parquet dataset (a folder of part files plus ``_predictions.json``
describing them):

============== =================================================================
multilabel     ``patch_id``, ``target`` (list<float>, multi-hot), ``probs``
               (list<float>, sigmoid)
binary         same, one entry per head
multiclass     ``patch_id``, ``target`` (int, class index), ``pred`` (argmax),
               ``probs`` (list<float>, softmax)
segmentation   ``patch_id``, ``target`` and ``pred`` (list<uint8>, the class map
               flattened row-major), ``height``, ``width``
regression     ``patch_id``, ``target`` and ``pred`` (list<float>, one value per target
               in the target's own units, in ``classes`` order)
============== =================================================================

Every task adds a ``group`` column (string) when the shard set records a spatial group per
sample (scene, tile, zone, site: :mod:`rsray.data.groups`); the study's bootstrap resamples
these groups.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from rsray.config import Config
from rsray.data.datasets import READ_BLOCKS_PER_SHARD
from rsray.data.groups import GROUP_COLUMN, group_rule, shard_columns
from rsray.data.plan import DecodePlan
from rsray.data.shards import Manifest
from rsray.errors import RsrayError
from rsray.storage import get_fs, join, pyarrow_fs
from rsray.train.run_plan import RunPlan

PREDICTIONS_META = "_predictions.json"
CPU_ACTORS_MAX = 4


class Predictor:
    """A Ray Data actor: decodes shard rows and returns the model's per-sample predictions."""

    def __init__(self, spec: dict[str, Any], state_ref: list[Any]) -> None:
        import ray
        import torch

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        run: RunPlan = spec["run"]
        self.plan: DecodePlan = run.eval_plan
        self.task: str = run.task
        self.drop: tuple[str, ...] = tuple(spec["drop"])
        self.classes: list[str] = list(run.classes)
        self.label_info: dict[str, Any] = dict(run.label_info)
        self.amp: str = run.config.train.amp
        model = run.build_model()
        dataset, group_columns = spec.get("group") or ("", ())
        self.group = group_rule(dataset, group_columns) if group_columns else None
        model.load_state_dict(ray.get(state_ref[0]))
        self.model = model.to(self.device).eval()
        self.modalities = tuple(getattr(model, "modalities", tuple(run.channels)))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Shard rows -> ``patch_id``, ``target`` and ``probs`` / ``pred`` columns."""
        import torch

        from rsray.data.decode import decode_raw
        from rsray.data.finalize import finalize_batch
        from rsray.train.step import autocast, model_inputs

        patch_id = np.asarray([str(p) for p in batch["patch_id"]], dtype=object)
        raw = decode_raw(batch, self.plan)
        for m in self.drop:
            raw[f"drop_{m}"][:] = 1
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device)
                   for k, v in raw.items()}
        with torch.no_grad():
            inputs = finalize_batch(tensors, self.plan)
            with autocast(self.device, self.amp):
                logits = self.model(model_inputs(inputs, self.modalities)).float()
        label = inputs["label"]
        out: dict[str, Any] = {"patch_id": patch_id}
        if self.group is not None:
            out[GROUP_COLUMN] = self.group.values(batch)
        if self.task == "segmentation":
            n, h, w = label.shape
            out["target"] = label.to(torch.uint8).reshape(n, -1).cpu().numpy()
            out["pred"] = logits.argmax(1).to(torch.uint8).reshape(n, -1).cpu().numpy()
            out["height"] = np.full(n, h, dtype=np.int32)
            out["width"] = np.full(n, w, dtype=np.int32)
        elif self.task == "regression":  # the model predicts standardised targets
            from rsray.train.tasks import target_standardisation

            mean, std = target_standardisation(self.label_info, self.classes)
            out["target"] = label.cpu().numpy().astype(np.float32)
            out["pred"] = (logits.cpu().numpy() * np.float32(std) + np.float32(mean)).astype(
                np.float32)
        elif self.task == "multiclass":
            probs = torch.softmax(logits, dim=1)
            out["target"] = label.argmax(1).cpu().numpy().astype(np.int64)
            out["pred"] = probs.argmax(1).cpu().numpy().astype(np.int64)
            out["probs"] = probs.cpu().numpy().astype(np.float32)
        else:
            out["target"] = label.cpu().numpy().astype(np.float32)
            out["probs"] = torch.sigmoid(logits).cpu().numpy().astype(np.float32)
        return out


def actor_resources(concurrency: int | None = None) -> dict[str, Any]:
    """``map_batches`` resources: one actor per GPU, else up to a few one-CPU actors."""
    import ray

    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus > 0:
        return {"concurrency": concurrency or gpus, "num_gpus": 1}
    cpus = int(res.get("CPU", 1))
    return {"concurrency": concurrency or max(1, min(CPU_ACTORS_MAX, cpus // 2)), "num_cpus": 1}


def _write_local(predictor: Predictor, batches: Any, fs: Any, root: str) -> None:
    """Score ``batches`` (Arrow tables) here and write one part file under ``root``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = [predictor(b) for b in batches]
    if not parts:
        raise RsrayError(f"{root}: the split has no rows to predict")
    columns = {}
    for key in parts[0]:
        values = np.concatenate([p[key] for p in parts])
        columns[key] = pa.array(list(values)) if values.ndim > 1 else pa.array(values.tolist())
    fs.makedirs(root, exist_ok=True)
    with fs.open(join(root, "part-00000.parquet"), "wb") as f:
        pq.write_table(pa.table(columns), f)


def _pa_path(uri: str) -> str:
    if uri.startswith("s3://"):
        return uri[len("s3://"):]
    from pathlib import Path

    return str(Path(uri).expanduser().resolve())


def predict(
    checkpoint: str,
    data_uri: str | None,
    split: str,
    out_uri: str,
    drop_modalities: Sequence[str] = (),
    concurrency: int | None = None,
    batch_size: int | None = None,
    *,
    manifest: Manifest | None = None,
) -> str:
    """Write a checkpoint's per-sample predictions on ``split`` to ``out_uri`` (Parquet).

    Args:
        checkpoint: checkpoint directory (local or ``s3://``) or a run folder.
        data_uri: shard set (``None``: the one the checkpoint trained on).
        split: the split to score.
        out_uri: output folder (local or ``s3://``); its part files are replaced.
        drop_modalities: modalities zeroed for every sample (``a+b`` for several).
        concurrency: number of model actors (default: one per GPU, else a few CPU actors);
            ``0`` scores in this process, without actors (a small split inside a Tune trial,
            where starting an actor costs more than the scoring).
        batch_size: rows per model call (default: the checkpoint's ``data.batch_size``).
        manifest: the shard set, already read and verified (``data_uri`` is then not read
            again).

    Returns:
        ``out_uri``.
    """
    import ray

    from rsray.data.datasets import load_shard_set
    from rsray.evaluate.checkpoint import open_checkpoint, read_checkpoint_meta
    from rsray.evaluate.evaluate import parse_drops
    from rsray.runtime import ensure_ray, quiet_data_context

    if manifest is None:
        meta, _, _ = read_checkpoint_meta(checkpoint)
        cfg = Config.from_dict(meta["config"])
        if data_uri:
            cfg = cfg.with_overrides({"data.uri": data_uri})
        manifest = load_shard_set(cfg.data, (split,))
    ensure_ray()
    quiet_data_context()
    paths = manifest.shard_paths(split)
    if not paths:
        raise RsrayError(f"{manifest.uri}: no split {split!r} (it has "
                         f"{', '.join(sorted(manifest.splits))})")
    loaded = open_checkpoint(checkpoint, manifest)
    assert loaded.model is not None
    drops = parse_drops(drop_modalities, [m.name for m in loaded.plan.modalities])
    drop = tuple(m for group in drops for m in group)
    rule = group_rule(manifest.dataset, shard_columns(paths, pyarrow_fs(manifest.uri)))
    spec = {"run": loaded.run, "drop": drop,
            "group": (manifest.dataset, rule.columns) if rule else None}
    state_ref = ray.put({k: v.cpu() for k, v in loaded.model.state_dict().items()})
    local = concurrency == 0
    resources = {} if local else actor_resources(concurrency)
    columns = list(dict.fromkeys([*loaded.plan.columns, "patch_id",
                                  *(rule.columns if rule else ())]))
    rows = batch_size or loaded.config.data.batch_size
    if not local:
        ds = ray.data.read_parquet(paths, filesystem=pyarrow_fs(manifest.uri), columns=columns,
                                   override_num_blocks=READ_BLOCKS_PER_SHARD * len(paths))
        ds = ds.map_batches(Predictor, batch_size=rows, batch_format="numpy",
                            fn_constructor_kwargs={"spec": spec, "state_ref": [state_ref]},
                            **resources)
    if manifest.synthetic:
        print(f"[rsray] predicting on SYNTHETIC data from {manifest.uri}", flush=True)
    where = "in this process" if local else (
        f"{resources['concurrency']} actor(s){' on GPUs' if 'num_gpus' in resources else ''}")
    print(f"[rsray] predicting {split} ({manifest.splits.get(split, '?')} samples) with "
          f"{loaded.config.model.name} from {loaded.uri}: {where}", flush=True)
    fs, root = get_fs(out_uri)
    if fs.exists(root):
        for p in fs.ls(root, detail=False):
            if p.endswith(".parquet") or p.rstrip("/").endswith(PREDICTIONS_META):
                fs.rm(p)
    if local:  # a plain Arrow read: Ray Data's executor costs more than a small split
        import pyarrow.parquet as pq

        table = pq.read_table(paths, filesystem=pyarrow_fs(manifest.uri), columns=columns)
        _write_local(Predictor(spec, [state_ref]),
                     (table.slice(i, rows) for i in range(0, table.num_rows, rows)), fs, root)
    else:
        ds.write_parquet(_pa_path(out_uri), filesystem=pyarrow_fs(out_uri))
    info = {"checkpoint": loaded.uri, "epoch": loaded.epoch, "model": loaded.config.model.name,
            "data": manifest.uri, "synthetic": manifest.synthetic, "split": split,
            "task": loaded.task, "classes": loaded.classes, "drop_modalities": list(drop),
            "group": rule.what if rule else None}
    with fs.open(join(root, PREDICTIONS_META), "w") as f:
        f.write(json.dumps(info, indent=2) + "\n")
    print(f"[rsray] predictions: {out_uri}", flush=True)
    return out_uri


__all__ = ["PREDICTIONS_META", "Predictor", "actor_resources", "predict"]
