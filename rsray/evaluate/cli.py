"""``rsray evaluate`` and ``rsray predict``."""

from __future__ import annotations

import argparse
import math
from typing import Any

from rsray.cliargs import add_command


def _split_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def format_results(results: dict[str, dict[str, Any]]) -> str:
    """One line per evaluation: ``n_samples`` and every summary metric (no per-class ones)."""
    lines = []
    for name, values in results.items():
        parts = [f"n={values.get('n_samples', 0)}"]
        for k, v in values.items():
            if "/" in k or k == "n_samples":
                continue
            parts.append(f"{k}={'nan' if isinstance(v, float) and math.isnan(v) else f'{v:.4f}'}")
        lines.append(f"{name:<24} " + " ".join(parts))
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> None:
    """``rsray evaluate CHECKPOINT --data URI --splits test,ood``."""
    from rsray.evaluate.evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(args.checkpoint, args.data, _split_list(args.splits),
                                  drop_modalities=args.drop_modality, out_dir=args.out,
                                  batch_size=args.batch_size)
    print(format_results(results), flush=True)


def cmd_predict(args: argparse.Namespace) -> None:
    """``rsray predict CHECKPOINT --data URI --split S --out URI``."""
    from rsray.evaluate.predict import predict

    predict(args.checkpoint, args.data, args.split, args.out,
            drop_modalities=args.drop_modality, concurrency=args.concurrency,
            batch_size=args.batch_size)


def add_commands(subparsers: Any) -> None:
    """Register ``evaluate`` and ``predict`` on the ``rsray`` command's subparsers."""
    p = add_command(
        subparsers, "evaluate",
        help="a checkpoint's metrics on named splits (and with modalities dropped)",
        description="Stream the named splits through the training pipeline and write the "
                    "task's metrics (per class too; confusion matrix for segmentation) as JSON.",
        examples=["rsray evaluate rsray_results/rsray-train --splits test,ood",
                  "rsray evaluate s3://b/runs/first/checkpoint_000009 --data s3://b/s12/shards "
                  "--drop-modality s1 --out s3://b/eval/first"])
    p.add_argument("checkpoint", help="checkpoint directory (local or s3://), or a run folder "
                                      "(its latest epoch_* checkpoint)")
    p.add_argument("--data", help="shard set URI (default: the one the checkpoint trained on)")
    p.add_argument("--splits", default="test", help="comma-separated splits, e.g. test,ood")
    p.add_argument("--drop-modality", action="append", default=[], metavar="M",
                   help="also evaluate with modality M zeroed after normalisation, as "
                        "training-time modality dropping does (repeatable; a+b drops both)")
    p.add_argument("--out", help="folder for metrics.json (local or s3://)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.set_defaults(fn=cmd_evaluate)

    p = add_command(
        subparsers, "predict",
        help="per-sample predictions of a checkpoint on one split, as Parquet",
        description="Score a split with the model in Ray Data actors (one per GPU) and write "
                    "patch id, target and probabilities (class maps for segmentation).",
        examples=["rsray predict rsray_results/rsray-train --split test --out preds/test",
                  "rsray predict s3://b/runs/first --data s3://b/s12/shards --out s3://b/pred"])
    p.add_argument("checkpoint", help="checkpoint directory (local or s3://), or a run folder")
    p.add_argument("--data", help="shard set URI (default: the one the checkpoint trained on)")
    p.add_argument("--split", default="test", help="split to score")
    p.add_argument("--out", required=True, help="output folder (local or s3://)")
    p.add_argument("--drop-modality", action="append", default=[], metavar="M",
                   help="zero modality M for every sample (repeatable)")
    p.add_argument("--concurrency", type=int, help="model actors (default: one per GPU, else "
                                                   "up to 4 CPU actors; 0: in this process)")
    p.add_argument("--batch-size", type=int, help="rows per model call")
    p.set_defaults(fn=cmd_predict)
