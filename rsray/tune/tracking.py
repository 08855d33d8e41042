"""Experiment tracking through Ray Tune's own logger callbacks (MLflow, TensorBoard).

``tracking.mlflow: true`` adds ``ray.air.integrations.mlflow.MLflowLoggerCallback``: one MLflow
run per trial, named after the trial, its sampled configuration as parameters and every
epoch's metrics (step = training iteration). ``tracking.tensorboard: true`` adds Tune's
``TBXLoggerCallback`` (event files in each trial's folder). The MLflow tracking URI is a server
(``http://...``), a database URI (``sqlite:///...``) or, by default, a SQLite store
``mlflow.db`` next to the results (:func:`mlflow_uri`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rsray.config import Config
from rsray.errors import RsrayError

MLFLOW_DB = "mlflow.db"
"""File name of the SQLite store rsray gives MLflow when no URI names one."""


def mlflow_uri(uri: str, storage_path: str = "rsray_results") -> str:
    """The MLflow tracking URI for ``tracking.mlflow_tracking_uri``.

    A URI with a scheme (``http://``, ``sqlite:///``, ``databricks``) is used unchanged; a
    ``.db`` file becomes its ``sqlite:///`` URI; a folder becomes the ``mlflow.db`` SQLite store
    inside it; empty means that store in ``storage_path`` (``rsray_results`` when that is not
    a local folder). MLflow 3.13+ refuses folder ("file") stores, hence SQLite.
    """
    if "://" in uri or uri.startswith("sqlite:") or uri == "databricks":
        return uri
    if not uri:
        uri = storage_path if "://" not in storage_path else "rsray_results"
    path = Path(uri).expanduser().resolve()
    db = path if path.suffix == ".db" else path / MLFLOW_DB
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


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
            tracking_uri=mlflow_uri(cfg.tracking.mlflow_tracking_uri, cfg.train.storage_path),
            experiment_name=cfg.tracking.mlflow_experiment or cfg.tune.name,
            tags={"rsray.model": cfg.model.name, "rsray.data": cfg.data.uri},
            save_artifact=False,
        ))
    if cfg.tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    return callbacks
