"""Evaluate a checkpoint on named splits (with modalities dropped) and write predictions."""

from rsray.evaluate.evaluate import evaluate_checkpoint, evaluation_name
from rsray.evaluate.predict import predict

__all__ = ["evaluate_checkpoint", "evaluation_name", "predict"]
