"""Evaluate a checkpoint on named splits (with modalities dropped) and write predictions.

The names below are imported on first use, so ``rsray.evaluate.cli`` (the argparse part that
``rsray --help`` builds) does not import torch and torchmetrics.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "evaluate_checkpoint": "rsray.evaluate.evaluate",
    "evaluation_name": "rsray.evaluate.evaluate",
    "predict": "rsray.evaluate.predict",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rsray.evaluate' has no attribute {name!r}")


__all__ = ["evaluate_checkpoint", "evaluation_name", "predict"]
