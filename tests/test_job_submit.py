"""`ray job submit --working-dir . -- python jobs/tune_progressive.py --smoke-test` end to end.

Starts its own Ray head (`ray start --head --block`, localhost only) on free ports, submits the
job through the Jobs API like a user would, waits for SUCCEEDED and checks the results files.
The head is stopped by terminating its `--block` process, which leaves any other Ray on this
machine (the test session's own) alone.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


@pytest.mark.slow
def test_job_submit_smoke_test(tmp_path):
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", "--num-cpus=4", "--disable-usage-stats",
         f"--temp-dir={tmp_path / 'ray'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    results = tmp_path / "results"
    try:
        _wait_http(f"{address}/api/version", 120)
        submit = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", address, "--no-wait",
             "--working-dir", str(REPO), "--",
             "python", "jobs/tune_progressive.py", "--smoke-test",
             "--storage-path", str(results)],
            env=env, capture_output=True, text=True, timeout=300, check=True,
        )
        job_id = next(w for line in submit.stdout.splitlines() for w in line.split()
                      if w.startswith("raysubmit_"))
        job_id = job_id.strip("'\"")
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(address)
        deadline = time.time() + 900
        status = client.get_job_status(job_id)
        while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.time() < deadline, "job did not finish in 15 minutes"
            time.sleep(3)
            status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        assert status == JobStatus.SUCCEEDED, logs[-4000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)

    assert "Leaderboard" in logs and "SYNTHETIC" in logs
    exp = results / "tune-progressive-smoke"
    with open(exp / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert all(r["status"] in {"DONE", "PRUNED", "EARLY-STOP"} for r in rows)
    assert any(r["status"] == "DONE" for r in rows)  # ASHA lets at least one trial finish
    best = json.loads((exp / "best.json").read_text())
    assert best["metric"] == "val_ap_macro"
    assert 0.0 <= best["metrics"]["val_ap_macro"] <= 1.0
    assert best["checkpoint"]
    assert best["synthetic"] is True
