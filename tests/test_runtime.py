"""rsray's local Ray is exactly the Ray it means: never one found by accident (issue 12).

Each case runs a driver in a subprocess with its own short ``RAY_TMPDIR`` (Unix socket paths
must stay under 108 bytes), so what Ray finds on the machine is what the test planted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import ray
    from rsray.runtime import ensure_ray

    ensure_ray(num_cpus=2)

    @ray.remote
    def probe():
        from ray.dashboard.utils import get_address_for_submission_client
        return {"api": get_address_for_submission_client(None),
                "ray_address": os.environ.get("RAY_ADDRESS")}

    import psutil
    info = {"gcs": ray.get_runtime_context().gcs_address,
            "env_ray_address": os.environ.get("RAY_ADDRESS"),
            "dashboard": ray.worker.get_dashboard_url(),
            "task": ray.get(probe.remote()),
            "children": [p.pid for p in psutil.Process().children(recursive=True)]}
    print("INFO " + json.dumps(info), flush=True)
    if len(sys.argv) > 1 and sys.argv[1] == "wait":
        time.sleep(600)
""")


@pytest.fixture
def ray_tmpdir():
    """A short, private RAY_TMPDIR (removed afterwards)."""
    path = tempfile.mkdtemp(prefix="rsr", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(tmpdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",
                                                           "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_TMPDIR=tmpdir, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    return env


def _run_driver(tmpdir: str, timeout: float = 240) -> dict:
    proc = subprocess.run([sys.executable, "-c", DRIVER], env=_env(tmpdir), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("INFO "))
    return json.loads(line[5:])


def test_stale_address_file_is_ignored(ray_tmpdir):
    """A killed `ray start` leaves ray_current_cluster behind: rsray starts its own Ray."""
    stale = Path(ray_tmpdir) / "ray" / "ray_current_cluster"
    stale.parent.mkdir(parents=True)
    stale.write_text("127.0.0.1:1")  # nothing listens there
    info = _run_driver(ray_tmpdir)
    assert info["gcs"] != "127.0.0.1:1"
    assert info["gcs"].startswith("127.0.0.1:")
    assert info["env_ray_address"] == info["gcs"]  # later children join this Ray
    # a process of this Ray resolves the state API to this Ray's dashboard, not the file's
    assert info["task"]["api"] == info["dashboard"] or \
        info["task"]["api"].endswith(info["dashboard"].split("://")[-1])


def test_running_head_is_not_joined(ray_tmpdir):
    """With a `ray start --head` on the machine, local mode starts a separate Ray."""
    env = _env(ray_tmpdir)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # `--block` in its own process group, stopped by signalling that group: `ray stop` would
    # stop every Ray on the machine (the test session's own included)
    head_proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--num-cpus=1", f"--port={port}",
         "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    address_file = Path(ray_tmpdir) / "ray" / "ray_current_cluster"
    try:
        deadline = time.monotonic() + 240
        while not address_file.exists():
            assert head_proc.poll() is None, head_proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.5)
        head = address_file.read_text().strip()
        info = _run_driver(ray_tmpdir)
        assert info["gcs"] != head
        assert info["env_ray_address"] == info["gcs"]
        assert info["task"]["api"].endswith(info["dashboard"].split("://")[-1])
    finally:
        os.killpg(head_proc.pid, signal.SIGTERM)
        try:
            head_proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head_proc.pid, signal.SIGKILL)


def _alive(pids: list[int]) -> list[int]:
    import ray  # noqa: F401, I001  (puts Ray's vendored psutil on the path)
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


KILL_BOUND_S = 30
"""Every process of a SIGKILLed driver's local Ray is gone within this many seconds."""


def test_sigkilled_driver_leaves_no_ray_process(ray_tmpdir):
    """Issue 12: dashboard agent and runtime-env agent outlived a SIGKILLed `rsray train`."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, "wait"], env=_env(ray_tmpdir),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        info = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("INFO "):
                info = json.loads(line[5:])
                break
            if not line and proc.poll() is not None:
                break
        assert info is not None, "driver did not start Ray"
        assert info["children"], "no Ray processes found under the driver"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + KILL_BOUND_S
        while _alive(info["children"]) and time.monotonic() < deadline:
            time.sleep(1)
        left = _alive(info["children"])
        if left:
            import psutil

            names = []
            for pid in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    names.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:80]}")
            pytest.fail(f"still running {KILL_BOUND_S} s after the driver's SIGKILL: {names}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _alive(info["children"] if info else []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_resources_that_never_come_fail_with_what_was_awaited(ray_session):
    """Issue 12: a trial that cannot get its resources fails in bounded time, saying why."""
    from rsray.config import load_config
    from rsray.errors import ResourceWaitError
    from rsray.train.driver import wait_for_resources

    cfg = load_config(None, ["scaling.num_workers=2", "scaling.cpus_per_worker=64",
                             "train.resource_wait_s=3"])
    t0 = time.monotonic()
    with pytest.raises(ResourceWaitError) as info:
        wait_for_resources(cfg, "trial abc", extra_cpus=2.0)
    assert time.monotonic() - t0 < 30
    text = str(info.value)
    assert text.startswith("trial abc: waited 3 s (train.resource_wait_s) for CPU 130 in 3")
    assert "free" in text and "\n" not in text
    # a 64-CPU worker bundle fits on no node of this machine: said so, with the largest node
    assert "A bundle of CPU 64 fits on no node (the largest has CPU" in text
    # nothing is left reserved: the same resources as before are free afterwards
    ok = load_config(None, ["scaling.num_workers=1", "scaling.cpus_per_worker=0.5",
                            "train.resource_wait_s=60"])
    wait_for_resources(ok, "trial ok", extra_cpus=0.5)


def test_shutdown_forgets_only_the_addresses_this_process_exported(monkeypatch):
    """Ray's clients prefer RAY_ADDRESS / RAY_API_SERVER_ADDRESS to an address they are given:
    after shutdown_ray the stopped local Ray's are gone, a user's own are kept."""
    import rsray.runtime as runtime

    monkeypatch.setattr(runtime.ray, "shutdown", lambda: None)
    monkeypatch.setattr(runtime, "_started", {"gcs_address": "127.0.0.1:6379",
                                              "api_server": "http://127.0.0.1:8265"})
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265")
    runtime.shutdown_ray()
    assert "RAY_ADDRESS" not in os.environ and "RAY_API_SERVER_ADDRESS" not in os.environ
    assert runtime.local_ray_address() is None

    monkeypatch.setattr(runtime, "_started", {"gcs_address": "127.0.0.1:6379",
                                              "api_server": "http://127.0.0.1:8265"})
    monkeypatch.setenv("RAY_ADDRESS", "ray://cluster.example:10001")  # the user's own
    runtime.shutdown_ray()
    assert os.environ["RAY_ADDRESS"] == "ray://cluster.example:10001"
