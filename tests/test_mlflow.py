"""MLflow tracking: the callbacks a config asks for, and metric names MLflow accepts.

The live check (a short tune run's trials, parameters and per-epoch metrics reaching a real
MLflow tracking server on 127.0.0.1, sqlite backend) rides on the smoke demo's run in
``tests/test_terminal.py``, so the suite trains once for both.
"""

from __future__ import annotations

import pytest

from rsray.config import load_config
from rsray.tune.tracking import mlflow_key, mlflow_uri, tracking_callbacks

mlflow = pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'rsray[mlflow]')")

def test_tracking_is_off_by_default_and_folders_become_file_uris(tmp_path):
    assert tracking_callbacks(load_config(None)) == []
    assert mlflow_uri(str(tmp_path / "mlruns")) == (tmp_path / "mlruns").as_uri()
    assert mlflow_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    cbs = tracking_callbacks(load_config(None, ["tracking.mlflow=true",
                                                "tracking.tensorboard=true"]))
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.logger import TBXLoggerCallback

    assert isinstance(cbs[0], MLflowLoggerCallback) and isinstance(cbs[1], TBXLoggerCallback)
    assert mlflow_key("val_ap_class/Land, with vegetation") == "val_ap_class/Land_ with vegetation"
