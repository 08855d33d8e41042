"""Experiment tracking through Ray Tune's own logger callbacks (MLflow, TensorBoard).

``tracking.mlflow: true`` adds ``ray.air.integrations.mlflow.MLflowLoggerCallback``: one MLflow
run per trial, named after the trial, its sampled configuration as parameters and every
epoch's metrics (step = training iteration). ``tracking.tensorboard: true`` adds Tune's
``TBXLoggerCallback`` (event files in each trial's folder). The MLflow tracking URI is a server
(``http://...``), a database URI (``sqlite:///...``) or a local folder (default ``mlruns``,
turned into a ``file://`` URI).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rsray.config import Config
from rsray.errors import RsrayError


def mlflow_uri(uri: str) -> str:
    """``uri`` unchanged when it has a scheme, else the absolute ``file://`` URI of a folder."""
    if "://" in uri or uri.startswith("sqlite:"):
        return uri
    return Path(uri).expanduser().resolve().as_uri()


_MLFLOW_BAD = re.compile(r"[^\w\-. :/]")
"""Characters MLflow refuses in a metric or parameter name (BigEarthNet class names have commas)."""


def mlflow_key(key: str) -> str:
    """``key`` with every character MLflow refuses in a name replaced by ``_``."""
    return _MLFLOW_BAD.sub("_", key)


def _mlflow_callback(**kwargs: Any) -> Any:
    """Ray's ``MLflowLoggerCallback`` with metric names MLflow accepts."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class _Callback(MLflowLoggerCallback):
        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            super().log_trial_result(iteration, trial,
                                     {mlflow_key(str(k)): v for k, v in result.items()})

    return _Callback(**kwargs)


def tracking_callbacks(cfg: Config) -> list[Any]:
    """Tune logger callbacks for ``cfg.tracking`` (empty when tracking is off)."""
    callbacks: list[Any] = []
    if cfg.tracking.mlflow:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise RsrayError("tracking.mlflow: mlflow is not installed; "
                             "pip install 'rsray[mlflow]'") from None
        callbacks.append(_mlflow_callback(
            tracking_uri=mlflow_uri(cfg.tracking.mlflow_tracking_uri),
            experiment_name=cfg.tracking.mlflow_experiment or cfg.tune.name,
            tags={"rsray.model": cfg.model.name, "rsray.data": cfg.data.uri},
            save_artifact=False,
        ))
    if cfg.tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    return callbacks
