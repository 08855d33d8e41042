"""`ray job submit --working-dir . -- python jobs/tune_progressive.py --smoke-test` end to end.

Starts its own Ray head (`ray start --head --block`, localhost only) on free ports, submits the
job through the Jobs API like a user would, waits for SUCCEEDED and checks the results files.
The head is stopped by terminating its `--block` process, which leaves any other Ray on this
machine (the test session's own) alone.
"""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (401 without the token: Ray's token authentication is on)
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


@pytest.fixture
def session_ray_paused():
    """Stop the session's in-process Ray for this test, start it again after.

    It holds Ray's fixed default ports, so a second head's job agent cannot start ("No
    available agent"). Later tests using the session-scoped ``ray_session`` need it back.
    """
    import ray

    from rsray.runtime import ensure_ray

    was_running = ray.is_initialized()
    if was_running:
        ray.shutdown()
    yield
    if was_running:
        ensure_ray(num_cpus=4)


@pytest.mark.slow
def test_job_submit_smoke_test(tmp_path, session_ray_paused):
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    # rsray.runtime's local-mode settings of the session's own Ray (its address, its state
    # API, Ray's single-machine switch): this test's head is a user's `ray start --head`
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        env.pop(key, None)
    for key in [k for k in env if k.startswith("AWS_")]:  # the tests' moto settings
        env.pop(key)
    # Ray's unix sockets live under --temp-dir: keep it short (AF_UNIX paths are <= 107 bytes)
    ray_tmp = tempfile.mkdtemp(prefix="rsray-", dir="/tmp")
    head_log = open(tmp_path / "head.log", "wb")  # noqa: SIM115 - closed in finally
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", "--num-cpus=4", "--disable-usage-stats",
         f"--temp-dir={ray_tmp}"],
        env=env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    results = tmp_path / "results"
    try:
        try:
            _wait_http(f"{address}/api/version", 120)
        except TimeoutError:
            raise TimeoutError((tmp_path / "head.log").read_text()[-3000:]) from None
        job_id = f"rsray-smoke-{uuid.uuid4().hex[:8]}"
        # The job agent comes up a little after the dashboard, and on a loaded machine the
        # dashboard may briefly refuse connections: retry while either is not there yet.
        for attempt in range(20):  # noqa: B007 - reported below
            submit = subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--address", address, "--no-wait",
                 "--submission-id", job_id,
                 "--working-dir", str(REPO), "--",
                 "python", "jobs/tune_progressive.py", "--smoke-test",
                 "--storage-path", str(results)],
                env=env, capture_output=True, text=True, timeout=300,
            )
            transient = ("No available agent" in submit.stderr
                         or "Failed to connect to Ray" in submit.stderr)
            if submit.returncode == 0 or not transient:
                break
            time.sleep(6)
        assert submit.returncode == 0, f"after {attempt + 1} tries:\n{submit.stderr[-3000:]}"
        def ray_job(what: str, job_id: str) -> str:
            # Ray's SDK in a fresh process: it reads RAY_AUTH_MODE at import and sends the token
            code = ("import sys; from ray.job_submission import JobSubmissionClient as C; "
                    f"c = C({address!r}); "
                    f"print(c.get_job_status({job_id!r}).value if {what!r} == 'status' "
                    f"else c.get_job_logs({job_id!r}))")
            return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, timeout=120, check=True).stdout

        deadline = time.time() + 900
        status = ""
        while status.strip() not in {"SUCCEEDED", "FAILED", "STOPPED"}:
            if time.time() > deadline:
                pytest.fail("job did not finish in 15 minutes:\n" + ray_job("logs", job_id)[-6000:])
            time.sleep(5)
            status = ray_job("status", job_id)
        logs = ray_job("logs", job_id)
        assert status.strip() == "SUCCEEDED", logs[-4000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        head_log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)

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
