"""``rsray evaluate`` and ``rsray predict``: what the commands do.

Their flags are in :mod:`rsray.cli`, which builds them without importing this package.
"""

from __future__ import annotations

import argparse
import math
from typing import Any


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


__all__ = ["cmd_evaluate", "cmd_predict", "format_results"]
