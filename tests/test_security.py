"""Security checks on what rsray starts (issue 12 item 4): sockets, token authentication.

The socket test reads the listening sockets of every process of rsray's local Ray and fails
on any that is not on loopback, so a Ray upgrade that opens a new port shows at once.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}

NOT_ON_LOOPBACK: dict[str, str] = {}
"""Sockets of a local Ray that Ray does not let rsray bind to loopback (process name ->
why). Empty: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` and ``dashboard_host=127.0.0.1``
(rsray/runtime.py) GCS, raylet (node and object manager), dashboard, dashboard agent (gRPC,
HTTP, metrics export), runtime-env agent and workers all listen on 127.0.0.1 (Ray 2.60)."""


def _listening(ray_session) -> list[tuple[str, str, int]]:
    import psutil

    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            name = proc.name()
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        out += [(name, c.laddr.ip, c.laddr.port) for c in conns
                if c.status == psutil.CONN_LISTEN]
    return out


def test_every_socket_of_the_local_ray_is_on_loopback(ray_session):
    sockets = _listening(ray_session)
    names = {n for n, _, _ in sockets}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), names
    exposed = [s for s in sockets if s[1] not in LOOPBACK and s[0] not in NOT_ON_LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_token_authentication_is_on_for_the_local_ray(ray_session):
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    from rsray.ops.submit import auth_headers

    assert is_token_auth_enabled()
    url = ray_session.worker.get_dashboard_url()
    url = url if url.startswith("http") else f"http://{url}"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{url}/api/version", timeout=30)
    assert info.value.code in (401, 403)
    headers = auth_headers()
    assert headers, "no Ray token found where Ray keeps it"
    req = urllib.request.Request(f"{url}/api/version", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def test_every_ray_start_of_the_cluster_uses_token_auth():
    import yaml

    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    head = [c for c in cfg["head_start_ray_commands"] if re.search(r"\bray start\b", c)]
    workers = [c for c in cfg["worker_start_ray_commands"] if re.search(r"\bray start\b", c)]
    assert head and workers
    assert all("RAY_AUTH_MODE=token" in c for c in head + workers), head + workers
    assert all("--dashboard-host=127.0.0.1" in c for c in head), head
