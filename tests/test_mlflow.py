"""MLflow tracking: the callbacks a config asks for, and metric names MLflow accepts.

The live check (a short tune run's trials, parameters and per-epoch metrics reaching MLflow
through the default tracking URI, a SQLite store next to the results, read back with MLflow's
client) rides on the smoke tune run in ``tests/test_terminal.py``, so the suite trains once
for both.
"""

from __future__ import annotations

import pytest

from rsray.config import load_config
from rsray.tune.tracking import mlflow_key, mlflow_uri, tracking_callbacks

mlflow = pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'rsray[mlflow]')")

def test_tracking_is_off_by_default_and_stores_are_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the s3 case below makes ./rsray_results
    assert tracking_callbacks(load_config(None)) == []
    assert mlflow_uri("", str(tmp_path / "results")) == f"sqlite:///{tmp_path}/results/mlflow.db"
    assert (tmp_path / "results").is_dir()
    assert mlflow_uri(str(tmp_path / "mlruns")) == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert mlflow_uri(str(tmp_path / "t.db")) == f"sqlite:///{tmp_path}/t.db"
    assert mlflow_uri("", "s3://bucket/runs") == f"sqlite:///{tmp_path}/rsray_results/mlflow.db"
    assert mlflow_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert mlflow_uri("sqlite:///x.db") == "sqlite:///x.db"
    cbs = tracking_callbacks(load_config(None, ["tracking.mlflow=true",
                                                "tracking.tensorboard=true"]))
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.logger import TBXLoggerCallback

    assert isinstance(cbs[0], MLflowLoggerCallback) and isinstance(cbs[1], TBXLoggerCallback)
    assert mlflow_key("val_ap_class/Land, with vegetation") == "val_ap_class/Land_ with vegetation"


def test_default_store_is_one_current_mlflow_accepts(tmp_path):
    """MLflow 3.13+ refuses file stores; the default URI is a SQLite store it opens."""
    uri = mlflow_uri("", str(tmp_path / "results"))
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("rsray-default-store")
    run = client.create_run(exp, run_name="trial_0")
    client.log_metric(run.info.run_id, "val_ap_macro", 0.5, step=1)
    again = mlflow.MlflowClient(tracking_uri=uri)
    (found,) = again.search_runs([exp])
    assert found.data.metrics == {"val_ap_macro": 0.5}
    assert (tmp_path / "results" / "mlflow.db").is_file()
