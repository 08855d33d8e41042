"""Cluster operations against a live local Ray head, end to end.

One Ray head (localhost, own temp dir, free ports, token auth, metrics export) and, when
installed, one real Prometheus scraping it through Ray's service-discovery file. A short tuning
job (1 trial x 1 epoch x 2 workers, rsray's real training path) is submitted with
``rsray submit`` while a fake AWS secret is planted in the head's and the client's
environment. Then:

- every panel query of both dashboards is evaluated through Prometheus's HTTP API and must
  return data (GPU panels: data exactly when the cluster has GPUs);
- the planted secret must not appear in Ray's logs, the job's runtime_env or logs, or any
  results file (configs, leaderboard, checkpoints' metadata);
- ``rsray submit`` uploads the working directory without .venv / rsray_data and reports a
  failing job as failed;
- the README's ``ray job submit --working-dir . -- python jobs/tune_progressive.py
  --smoke-test``, through Ray's own CLI, succeeds and writes its leaderboard and best.json.

Prometheus comes from Debian's package (``apt-get install prometheus``); PyPI has no package
that ships it. Without it the panel test is skipped with that reason; the rest still runs.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rsray.ops.dashboards import prometheus_config
from rsray.ops.prometheus import active_targets, check_dashboards, query_range

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
SCRAPE_S = 2

pytestmark = [pytest.mark.slow, pytest.mark.own_ray_head]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait(url: str, timeout: float, ok_codes: tuple[int, ...] = (200,)) -> None:
    import urllib.error

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in ok_codes:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok_codes:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@dataclass
class Live:
    address: str
    prometheus: str | None
    ray_tmp: Path
    results: Path
    job_id: str
    submit: subprocess.CompletedProcess
    secret: str
    key_id: str
    env: dict[str, str]
    start: float
    end: float
    shards: str


def _rsray_submit(env: dict[str, str], address: str, *args: str,
                  timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "rsray"), "submit", "--address", address, *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, synthetic_shards: str):
    import ray

    # The session's in-process Ray holds Ray's default ports; later tests restart it.
    if ray.is_initialized():
        from rsray.runtime import shutdown_ray

        shutdown_ray()  # and forget its addresses, which Ray's clients would prefer
    work = tmp_path_factory.mktemp("live")
    alphabet = string.ascii_letters + string.digits
    secret = "".join(secrets.choice(alphabet) for _ in range(40))
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(16))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in {
               "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}}
    env.update({"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                "RAY_metrics_report_interval_ms": "2000",
                "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret})
    ray_tmp = Path(tempfile.mkdtemp(prefix="rsray-", dir="/tmp"))  # AF_UNIX paths <= 107 B
    # all ports at once, each socket held until the last is bound: one at a time, the OS may
    # hand the same free port out twice (Ray then refuses "port used by other components")
    dash, gcs, metrics, agent, agent_grpc, env_agent, client, prom_port = _free_ports(8)
    # Ray processes that look up "the" local cluster (Train's placement-group cleaner) must
    # find this head, not another Ray on the same machine.
    env["RAY_ADDRESS"] = f"127.0.0.1:{gcs}"
    ports = {"--port": gcs, "--dashboard-port": dash,
             "--metrics-export-port": metrics,
             "--dashboard-agent-listen-port": agent,
             "--dashboard-agent-grpc-port": agent_grpc,
             "--runtime-env-agent-port": env_agent,
             "--ray-client-server-port": client}
    head_log = open(work / "head.log", "wb")  # noqa: SIM115 - closed below
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", "--num-cpus=4", "--disable-usage-stats",
         f"--temp-dir={ray_tmp}",
         *[f"{k}={v}" for k, v in ports.items()]],
        env=env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True)
    prom = None
    address = f"http://127.0.0.1:{dash}"
    try:
        try:
            _wait(f"{address}/api/version", 120, ok_codes=(200, 401, 403))
        except TimeoutError:
            pytest.fail("Ray head did not start:\n" + (work / "head.log").read_text()[-3000:])
        prom_url = None
        if PROMETHEUS:
            cfg = prometheus_config(str(ray_tmp / "prom_metrics_service_discovery.json"),
                                    scrape_interval=f"{SCRAPE_S}s", loopback_targets=True)
            (work / "prometheus.yml").write_text(yaml.safe_dump(cfg))
            prom = subprocess.Popen(
                [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                 f"--storage.tsdb.path={work / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                stdout=open(work / "prometheus.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT, start_new_session=True)
            prom_url = f"http://127.0.0.1:{prom_port}"
            _wait(f"{prom_url}/-/ready", 60)
        start = time.time()
        results = work / "results"
        job_id = f"rsray-live-{secrets.token_hex(4)}"
        # The job agent comes up a little after the dashboard: retry while it is missing.
        for _ in range(20):
            submit = _rsray_submit(
                env, address, "--working-dir", str(REPO), "--submission-id", job_id,
                "--timeout", "540", "--",
                "python", "jobs/tune_progressive.py", "--smoke-test", "--data", synthetic_shards,
                "--storage-path", str(results), "--name", "live-ops", "--num-samples", "1",
                "--max-epochs", "1",
                "--num-workers", "2", "--set", "scaling.cpus_per_worker=0.5")
            if "No available agent" not in submit.stderr + submit.stdout:
                break
            time.sleep(5)
        time.sleep(3 * SCRAPE_S + 2)  # one more metrics export and scrape after the job
        yield Live(address, prom_url, ray_tmp, results, job_id, submit, secret, key_id, env,
                   start, time.time(), synthetic_shards)
    finally:
        if prom is not None:
            _stop(prom)
        _stop(head)
        head_log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_submit_runs_the_training_job(live: Live):
    out = live.submit.stdout + live.submit.stderr
    assert live.submit.returncode == 0, out[-5000:]
    assert f"submitted job {live.job_id}" in out
    assert f"job {live.job_id}: SUCCEEDED" in out
    assert "Leaderboard" in out  # the job's own logs were followed
    assert (live.results / "live-ops" / "leaderboard.csv").is_file()


def test_every_panel_returns_data(live: Live):
    if live.prometheus is None:
        pytest.skip("Prometheus not installed: `apt-get install prometheus` (Debian's package; "
                    "no PyPI package ships the server)")
    assert live.submit.returncode == 0, (live.submit.stdout + live.submit.stderr)[-3000:]
    targets = active_targets(live.prometheus)
    assert targets and all(t["health"] == "up" for t in targets), targets
    gpus = bool(query_range(live.prometheus, 'ray_resources{Name="GPU"}', live.start,
                            live.end, SCRAPE_S))
    checks = check_dashboards(live.prometheus, live.start, live.end, step=SCRAPE_S,
                              rate_interval=f"{5 * SCRAPE_S}s")
    assert len(checks) >= 30
    errors = [(c.dashboard, c.title, c.error) for c in checks if c.error]
    assert not errors, errors
    empty = [(c.dashboard, c.title, c.expr) for c in checks
             if not c.series and (gpus or not c.needs_gpu)]
    assert not empty, "panels without data:\n" + "\n".join(map(str, empty))
    if not gpus:  # GPU panels are well-formed and empty on a CPU-only cluster
        assert all(c.series == 0 for c in checks if c.needs_gpu)


def _files_containing(root: Path, needles: list[str]) -> list[str]:
    """Files under ``root`` containing any needle, each with its context (needle masked)."""
    hits = []
    raw = [n.encode() for n in needles]
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for n in raw:
                at = data.find(n)
                if at >= 0:
                    context = data[max(0, at - 300):at + len(n) + 100].replace(n, b"<SECRET>")
                    hits.append(f"{path}: ...{context.decode(errors='replace')}...")
    return hits


def test_planted_secret_does_not_leak(live: Live):
    assert live.submit.returncode == 0, (live.submit.stdout + live.submit.stderr)[-3000:]
    needles = [live.secret, live.key_id]
    # what the client printed (the job's logs included)
    assert not any(n in live.submit.stdout + live.submit.stderr for n in needles)
    # results: leaderboard, best.json (full resolved config), Tune/Train state, checkpoints
    assert list(live.results.rglob("*.json")), "no results files to search"
    assert not _files_containing(live.results, needles)
    # Ray's session: every log file of the head, the job driver and the workers
    assert list(live.ray_tmp.rglob("*.log")) or list(live.ray_tmp.rglob("*.out"))
    assert not _files_containing(live.ray_tmp, needles)
    # the job as the cluster stores it: runtime_env, metadata, logs
    code = ("import json, sys; from rsray.ops.submit import _client; "
            f"c = _client({live.address!r}); i = c.get_job_info({live.job_id!r}); "
            f"print(json.dumps({{'runtime_env': i.runtime_env, 'metadata': i.metadata, "
            f"'entrypoint': i.entrypoint}})); print(c.get_job_logs({live.job_id!r}))")
    info = subprocess.run([sys.executable, "-c", code], env=live.env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stderr[-2000:]
    assert "working_dir" in info.stdout and "Leaderboard" in info.stdout
    assert not any(n in info.stdout for n in needles)


def test_submit_excludes_and_failure_status(live: Live):
    probe = ("import os, sys; print('LISTING', sorted(os.listdir('.'))); "
             "print('AWS_IN_ENV', 'AWS_SECRET_ACCESS_KEY' in os.environ); sys.exit(3)")
    done = _rsray_submit(live.env, live.address, "--working-dir", str(REPO), "--timeout", "120",
                         "--", "python", "-c", probe, timeout=180)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-3000:]
    assert "FAILED" in out
    listing = next(line for line in out.splitlines() if line.startswith("LISTING"))
    assert "'rsray'" in listing and "'jobs'" in listing
    for excluded in (".venv", "rsray_data", "rsray_results", ".git"):
        assert f"'{excluded}'" not in listing, listing


def _ray_job(live: Live, what: str, job_id: str) -> str:
    """A job's status or logs through Ray's SDK in a fresh process (it sends the token)."""
    code = ("from ray.job_submission import JobSubmissionClient as C; "
            f"c = C({live.address!r}); "
            f"print(c.get_job_status({job_id!r}).value if {what!r} == 'status' "
            f"else c.get_job_logs({job_id!r}))")
    return subprocess.run([sys.executable, "-c", code], env=live.env, capture_output=True,
                          text=True, timeout=120, check=True).stdout


def test_ray_job_submit_runs_the_readme_command(live: Live):
    """`ray job submit --working-dir . -- python jobs/tune_progressive.py --smoke-test`.

    The README's command, through Ray's own CLI and Jobs API as a user types it (not rsray's
    wrapper), on the same localhost head; two trials of one epoch on the test's shards.
    """
    results = live.results.parent / "ray-job-submit"
    job_id = f"rsray-smoke-{secrets.token_hex(4)}"
    env = {k: v for k, v in live.env.items() if not k.startswith("AWS_")}
    for _ in range(20):  # the job agent may come up a little after the dashboard
        submit = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", live.address, "--no-wait",
             "--submission-id", job_id, "--working-dir", str(REPO), "--",
             "python", "jobs/tune_progressive.py", "--smoke-test", "--data",
             str(live.shards), "--storage-path", str(results), "--num-samples", "2",
             "--max-epochs", "1"],
            env=env, capture_output=True, text=True, timeout=300)
        transient = ("No available agent" in submit.stderr
                     or "Failed to connect to Ray" in submit.stderr)
        if submit.returncode == 0 or not transient:
            break
        time.sleep(5)
    assert submit.returncode == 0, submit.stderr[-3000:]
    deadline = time.time() + 600
    status = ""
    while status.strip() not in {"SUCCEEDED", "FAILED", "STOPPED"}:
        if time.time() > deadline:
            pytest.fail("job did not finish in 10 minutes:\n"
                        + _ray_job(live, "logs", job_id)[-6000:])
        time.sleep(3)
        status = _ray_job(live, "status", job_id)
    logs = _ray_job(live, "logs", job_id)
    assert status.strip() == "SUCCEEDED", logs[-4000:]
    assert "Leaderboard" in logs and "SYNTHETIC" in logs
    exp = results / "tune-progressive-smoke"
    with open(exp / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    assert all(r["status"] in {"DONE", "PRUNED", "EARLY-STOP"} for r in rows)
    best = json.loads((exp / "best.json").read_text())
    assert best["metric"] == "val_ap_macro" and 0.0 <= best["metrics"]["val_ap_macro"] <= 1.0
    assert best["checkpoint"] and best["synthetic"] is True
