"""MLflow tracking: a short tune run's trials, parameters and per-epoch metrics reach a real
MLflow tracking server on 127.0.0.1 (sqlite backend)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rsray.config import load_config
from rsray.tune.tracking import mlflow_key, mlflow_uri, tracking_callbacks

mlflow = pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'rsray[mlflow]')")

SERVER_START_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """`mlflow server` on a free loopback port; its URI once /health answers."""
    port = _free_port()
    exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    log = open(tmp_path / "mlflow_server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--default-artifact-root", (tmp_path / "artifacts").as_uri()],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start in {SERVER_START_TIMEOUT_S:.0f} s: "
                            + (tmp_path / "mlflow_server.log").read_text()[-2000:])
            time.sleep(1.0)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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


@pytest.mark.slow
def test_tune_run_reaches_mlflow_server(mlflow_server, synthetic_shards, tmp_path, ray_session):
    from rsray.tune.run import tune_fusion

    cfg = load_config(None, [
        f"data.uri={synthetic_shards}", "model.name=test_progressive_fusion",
        "tune.space=progressive_smoke", "tune.num_samples=2", "train.max_epochs=2",
        "tune.grace_period=2", "data.batch_size=16", "scaling.num_workers=1",
        "tune.name=mlflow-test", f"train.storage_path={tmp_path / 'results'}",
        "tracking.mlflow=true", f"tracking.mlflow_tracking_uri={mlflow_server}",
    ])
    outcome = tune_fusion(cfg)
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("mlflow-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 == len(outcome.rows)
    trial_ids = {row.trial for row in outcome.rows}
    for run in runs:
        assert any(t in run.info.run_name for t in trial_ids), run.info.run_name
        assert "optim.lr" in run.data.params  # the sampled config, as parameters
        history = client.get_metric_history(run.info.run_id, "val_ap_macro")
        assert len(history) == 2  # one value per epoch
        assert [m.step for m in history] == sorted(m.step for m in history)
