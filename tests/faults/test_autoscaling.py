"""Autoscaling, simulated: ``cluster.yaml``'s node types on Ray's fake multi-node provider.

Promised (issue 12): a Tune run that needs more than the head has (the head advertises no
CPUs, as in ``cluster.yaml``) gets nodes added by Ray's autoscaler, its trials run on them
and finish, and nodes left idle are removed after the idle timeout, down to the node type's
``min_workers``. What it does not prove (EC2, AMIs, setup commands, IAM, spot fallback, real
GPUs) is in the README's failure section and :mod:`rsray.ops.fake_cluster`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rsray.errors import RsrayError
from rsray.ops.fake_cluster import FAKE_HEAD_TYPE, REPO_CLUSTER_YAML, fake_autoscaler_config

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "scripts" / "autoscale_run.py"


def test_fake_config_keeps_cluster_yaml_node_types(tmp_path: Path) -> None:
    """Same node types, limits (capped), labels; CPUs scaled; the head keeps 0 CPUs."""
    real = yaml.safe_load(REPO_CLUSTER_YAML.read_text())
    cfg = fake_autoscaler_config(idle_timeout_minutes=0.1, gcs_address="127.0.0.1:1234")
    types = cfg["available_node_types"]
    workers = {n for n in real["available_node_types"] if n != real["head_node_type"]}
    assert set(types) == workers | {FAKE_HEAD_TYPE}
    assert types[FAKE_HEAD_TYPE]["resources"]["CPU"] == 0
    for name in workers:
        spec = real["available_node_types"][name]
        assert types[name]["max_workers"] == min(spec["max_workers"], 2)
        assert types[name]["min_workers"] == min(spec.get("min_workers", 0), 2)
        assert types[name]["labels"] == spec["labels"]
        assert types[name]["resources"]["CPU"] == 1
        assert types[name]["resources"].get("GPU") == spec["resources"].get("GPU")
    assert cfg["provider"] == {"type": "fake_multinode", "use_node_id_as_ip": True,
                               "disable_node_updaters": True,
                               "disable_launch_config_check": True,
                               "gcs_address": "127.0.0.1:1234"}
    assert cfg["idle_timeout_minutes"] == 0.1 and cfg["head_node_type"] == FAKE_HEAD_TYPE
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: x\n")
    with pytest.raises(RsrayError, match=r"bad\.yaml: no available_node_types"):
        fake_autoscaler_config(bad)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_tune_run_scales_the_fake_cluster_up_and_down(tmp_path: Path,
                                                      synthetic_shards: str) -> None:
    """Head with 0 CPUs: 2 concurrent trials add a node, finish on it, idle nodes go."""
    port, dash, agent, store = _free_ports(4)
    config = tmp_path / "fake.yaml"
    # 2 logical CPUs per fake node: a trial's resource check reserves its worker's CPU plus
    # rsray's 2 data CPUs (3), more than cluster.yaml's one min_workers cpu_worker node has,
    # so the autoscaler must add the second cpu_worker; both trials' workers then fit the two
    fake = fake_autoscaler_config(cpus_per_node=2, idle_timeout_minutes=0.1,
                                  gcs_address=f"127.0.0.1:{port}")
    min_nodes = sum(t.get("min_workers", 0) for t in fake["available_node_types"].values())
    config.write_text(yaml.safe_dump(fake))
    ray_tmp = Path(f"/tmp/rsray_fake_{port}")
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0",
           # a ~/.ray/auth_token left by any local ray.init() would otherwise turn token auth
           # on for this head (a loopback-only test cluster needs none)
           "RAY_AUTH_MODE": "disabled",
           # Ray's clients prefer it to the address they are given: the session's Ray (stopped
           # or not) must not be the one they reach
           "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash}",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # `--block` in its own process group: stopping that group stops the head, its autoscaler
    # and the fake nodes it started, and no other Ray on the machine (`ray stop` would)
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--autoscaling-config={config}",
         "--num-cpus=0", "--num-gpus=0", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--dashboard-agent-listen-port={agent}", f"--object-manager-port={store}",
         f"--temp-dir={ray_tmp}", "--object-store-memory=200000000",
         "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "head.log").open("w"),
        start_new_session=True)
    result = tmp_path / "result.json"
    try:
        run = subprocess.run(
            [sys.executable, str(SCRIPT), f"127.0.0.1:{port}", synthetic_shards,
             str(tmp_path / "results"), str(result), str(min_nodes)],
            env=env,
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
        out = (run.stdout + run.stderr)[-3000:]
        assert run.returncode == 0, out + (tmp_path / "head.log").read_text()[-2000:]
        got = json.loads(result.read_text())
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        _stop_fake_nodes(ray_tmp)
    assert [s for _, s, _ in got["trials"]] == ["DONE", "DONE"], got
    # the min_workers node from the start, a second one added for the second trial
    assert got["before"] == min_nodes >= 1 and got["peak"] > got["before"], got
    # nodes were added, the CPU type among them (Ray's autoscaler may also take a GPU type for
    # CPU work: which one comes first varied between runs, so the order is not asserted)
    assert "data" in got["added"], got
    assert got["after"] == got["before"], got  # idle nodes removed after the timeout


def _stop_fake_nodes(ray_tmp: Path) -> None:
    """Kill what is left of the fake nodes (their raylets run under ``ray_tmp``)."""
    import ray  # noqa: F401, I001  (puts Ray's vendored psutil on the path)
    import psutil

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [p for p in psutil.process_iter(["cmdline"])
                if str(ray_tmp) in " ".join(p.info["cmdline"] or [])]
        if not left:
            return
        for p in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        time.sleep(1)
