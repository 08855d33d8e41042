"""``ray job submit`` of ``jobs/study.py`` on ``cluster.yaml`` simulated by Ray's fake provider.

Promised: a study submitted as a Ray job to a head that advertises no CPUs (as
``cluster.yaml``'s) makes Ray's autoscaler add worker nodes of ``cluster.yaml``'s types; the
study completes with every record in S3 (moto); the nodes added for it are removed after the
idle timeout, down to the node types' ``min_workers``. The job gets no credentials: the head
(and the fake nodes it starts) read them from their environment, as from a node role.

What it does not prove is listed in :mod:`rsray.ops.fake_cluster`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rsray.ops.fake_cluster import fake_autoscaler_config

from .ns_cluster import RAY, free_ports
from .test_autoscaling import _stop_fake_nodes
from .test_no_shared_fs import SPEC

REPO = Path(__file__).resolve().parents[2]


def _workers(dashboard: str) -> int:
    """Alive worker nodes (the head excluded), by the state API."""
    from ray.util.state import list_nodes

    # (Ray counts the dead nodes too and calls the filtered answer truncated: not an error)
    alive = list_nodes(address=dashboard, filters=[("state", "=", "ALIVE")],
                       raise_on_missing_output=False)
    return sum(1 for n in alive if not n.is_head_node)


@pytest.mark.slow
@pytest.mark.own_ray_head
def test_study_job_scales_the_fake_cluster_and_lands_in_s3(
        tmp_path: Path, s3_server: str, synthetic_shards: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs
    from ray.job_submission import JobStatus, JobSubmissionClient

    from rsray.runtime import shutdown_ray

    shutdown_ray()  # the session's Ray prepared the shards; the fake cluster needs the memory
    bucket = f"rsray-job-{os.getpid()}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir(bucket)
    fs.put(synthetic_shards.rstrip("/") + "/", f"{bucket}/shards/", recursive=True)
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "name": "job"}))

    port, dash, agent, store = free_ports(4)
    config = tmp_path / "fake.yaml"
    fake = fake_autoscaler_config(cpus_per_node=2, idle_timeout_minutes=0.1,
                                  gcs_address=f"127.0.0.1:{port}")
    min_nodes = sum(t.get("min_workers", 0) for t in fake["available_node_types"].values())
    config.write_text(yaml.safe_dump(fake))
    ray_tmp = Path(f"/tmp/rsray_job_{port}")
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
           # Ray's clients prefer it to the address they are given: the session's stopped
           # Ray left its own in this process's environment
           "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash}",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--autoscaling-config={config}",
         "--num-cpus=0", "--num-gpus=0", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--dashboard-agent-listen-port={agent}", f"--object-manager-port={store}",
         f"--temp-dir={ray_tmp}", "--object-store-memory=200000000",
         "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "head.log").open("w"),
        start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    # and for the state and job clients of this process
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", address)
    monkeypatch.setenv("RAY_ADDRESS", address)
    counts: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # the dashboard may be busy
                counts.append(_workers(address))
            time.sleep(1)

    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the dashboard is still starting
                if _workers(address) >= min_nodes:
                    break
            time.sleep(1)
        before = _workers(address)
        threading.Thread(target=watch, daemon=True).start()
        study = f"s3://{bucket}/studies/job"
        submit = subprocess.run(
            [RAY, "job", "submit", f"--address={address}", "--no-wait",
             "--submission-id=rsray-study-job", "--",
             sys.executable, str(REPO / "jobs" / "study.py"), str(spec),
             "--data", f"s3://{bucket}/shards", "--out", study],
            env={**env, "RAY_ADDRESS": address}, capture_output=True, text=True, timeout=300)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        client = JobSubmissionClient(address)
        deadline = time.monotonic() + 1500
        while time.monotonic() < deadline:
            status = client.get_job_status("rsray-study-job")
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                break
            time.sleep(2)
        logs = client.get_job_logs("rsray-study-job")
        assert status == JobStatus.SUCCEEDED, logs[-4000:]
        peak = max(counts or [before])
        deadline = time.monotonic() + 300
        while _workers(address) > before and time.monotonic() < deadline:
            time.sleep(1)
        after = _workers(address)
    finally:
        stop.set()
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        _stop_fake_nodes(ray_tmp)
    assert before == min_nodes >= 1 and peak > before, (before, peak, counts[::5])
    assert after == before, (after, before)  # idle nodes removed after the timeout
    root = study.removeprefix("s3://")
    fs.invalidate_cache()
    df = pd.read_parquet(fs.open(f"{root}/results.parquet"))
    test = df[(df.split == "test") & (df.dropped == "") & (df.metric == "ap_macro")]
    assert sorted(map(tuple, test[["arm", "seed"]].to_numpy())) == [
        ("early", 0), ("early", 1), ("s2_only", 0), ("s2_only", 1)]
    for name in ("study.json", "hparams.json", "report.html"):
        assert fs.exists(f"{root}/{name}"), name
    assert "[study] results: s3://" in logs
