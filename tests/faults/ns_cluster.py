"""A local multi-node Ray cluster whose worker nodes share no filesystem with the driver.

The head (``ray start --head --num-cpus=0``, as ``cluster.yaml``'s head) runs in this
machine's mount namespace; every worker node runs in its own (``unshare --mount
--propagation private``) with a private ``tmpfs`` over each folder in ``hide`` (the driver's
temporary folders, the head's Ray folder): what the driver writes there the worker cannot see,
and what the worker writes there the driver cannot see, as on two cloud machines. Both share
the network (loopback), so they reach the head and a moto S3 server on 127.0.0.1.

Needs root on Linux (``unshare --mount`` and ``mount -t tmpfs``); :func:`why_unavailable`
says why not elsewhere, for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports of 127.0.0.1."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def why_unavailable() -> str | None:
    """Why private mount namespaces cannot be made here (``None`` when they can)."""
    if sys.platform != "linux":
        return f"needs Linux mount namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return "needs root for `unshare --mount` and a private tmpfs"
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs tmpfs /mnt"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot mount a private tmpfs: {probe.stderr.strip()[:200]}"
    return None


@dataclass
class NsCluster:
    """A running head plus worker nodes; ``env`` is what a driver needs to join it."""

    address: str
    dashboard: str
    env: dict[str, str]
    ray_tmp: Path
    head: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: Path | None = None
    specs: dict[str, tuple[list[str], float]] = field(default_factory=dict)

    def add_worker(self, name: str, hide: list[str], num_cpus: float) -> subprocess.Popen:
        """Start worker node ``name`` in its own mount namespace (``hide``: private tmpfs)."""
        self.specs[name] = (list(hide), num_cpus)
        nm, om, agent, grpc, rte, metrics = free_ports(6)
        script = " && ".join(f'mkdir -p "{h}" && mount -t tmpfs tmpfs "{h}"' for h in hide)
        cmd = [RAY, "start", f"--address={self.address}", "--block",
               f"--num-cpus={num_cpus}", "--num-gpus=0", "--node-ip-address=127.0.0.1",
               f"--node-manager-port={nm}", f"--object-manager-port={om}",
               f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
               f"--runtime-env-agent-port={rte}", f"--metrics-export-port={metrics}",
               "--object-store-memory=150000000", "--disable-usage-stats",
               # its own Ray folder (inside its private tmpfs): nothing of the head's
               f"--temp-dir={self.ray_tmp}/{name}",
               f"--resources={{\"nsnode_{name}\": 1}}"]
        shell = f"{script} && exec " + " ".join(f"'{c}'" for c in cmd)
        log = (self.logs or self.ray_tmp) / f"worker_{name}.log"
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 shell], env=self.env, stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.workers[name] = proc
        return proc

    def wait_for_nodes(self, n: int, timeout_s: float = 300) -> None:
        """Until ``n`` nodes (head included) are alive."""
        deadline, restarts = time.monotonic() + timeout_s, 0
        while time.monotonic() < deadline:
            out = subprocess.run([RAY, "list", "nodes", "--filter", "state=ALIVE",
                                  f"--address={self.dashboard}", "--format=json"],
                                 capture_output=True, text=True, env=self.env, timeout=60)
            if out.returncode == 0 and out.stdout.count('"node_id"') >= n:
                return
            for name, p in list(self.workers.items()):
                # a raylet gets 30 s to register (Ray's fixed limit); on a loaded machine it
                # may not: start that node again
                if p.poll() is not None and restarts < 5:
                    restarts += 1
                    self.add_worker(name, *self.specs[name])
            time.sleep(1)
        logs = "".join(p.read_text()[-1500:] for p in (self.logs or self.ray_tmp).glob("*.log"))
        raise TimeoutError(f"{n} Ray nodes not alive after {timeout_s} s: {logs}")

    def node_running(self, *titles: str) -> str | None:
        """The worker node (name) with a process whose command line contains one of ``titles``.

        Ray names a worker process after what it runs (``ray::ImplicitFunc.train`` for a Tune
        trial, ``ray::RayTrainWorker`` for a Ray Train worker); a node is its mount namespace.
        Read from ``/proc``: no state API round trip, so a test can act within milliseconds.
        """
        spaces = {ns: name for name, p in self.workers.items()
                  if (ns := _namespace(p.pid)) is not None}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                if any(t in cmdline for t in titles):
                    name = spaces.get(os.readlink(f"/proc/{pid}/ns/mnt"))
                    if name is not None:
                        return name
        return None

    def freeze_worker(self, name: str) -> None:
        """SIGSTOP every process of worker node ``name``: the node stops dead, as a machine
        that lost power, while the test looks at what it left; :meth:`kill_worker` ends it."""
        ns = _namespace(self.workers[name].pid)
        if ns is not None:
            _kill_namespace(ns, signal.SIGSTOP)

    def kill_worker(self, name: str) -> None:
        """SIGKILL every process of worker node ``name`` (its raylet and its workers)."""
        proc = self.workers.pop(name)
        ns = _namespace(proc.pid)  # every process in the node's mount namespace is the node
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if ns is not None:
            _kill_namespace(ns)

    def stop(self) -> None:
        """Stop the workers, then the head, then anything left of this cluster."""
        for name in list(self.workers):
            self.kill_worker(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.head.pid, signal.SIGTERM)
        try:
            self.head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.head.pid, signal.SIGKILL)
        _kill_under(str(self.ray_tmp))
        _kill_under(self.address)


def _namespace(pid: int) -> str | None:
    """The mount namespace (``mnt:[...]``) of process ``pid``; ``None`` when it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _kill_namespace(ns: str, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to every process in the mount namespace ``ns`` (``mnt:[...]``)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/mnt") == ns:
                os.kill(int(pid), sig)


def _kill_under(token: str) -> None:
    """SIGKILL processes whose command line names ``token`` (this cluster's temp or address)."""
    import ray  # noqa: F401, I001  (puts Ray's vendored psutil on the path)
    import psutil

    me = os.getpid()
    for p in psutil.process_iter(["cmdline", "pid"]):
        if p.info["pid"] != me and token in " ".join(p.info["cmdline"] or []):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def start_head(env: dict[str, str], logs: Path) -> NsCluster:
    """A head with no CPUs, its own temp folder and ports; its process group is its own."""
    port, dash, agent, grpc, store, rte, metrics = free_ports(7)
    ray_tmp = Path(f"/tmp/rsray_ns_{port}")
    # RAY_AUTH_MODE: a ~/.ray/auth_token left by any local ray.init() would otherwise turn
    # token auth on for this head (a loopback-only test cluster needs none)
    env = {**env, "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled",
           # rsray's local Ray exports "0" (single-machine mode), which refuses worker nodes
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
           # a raylet waits 15 s for its dashboard agent by default; a loaded 2-core machine
           # may need longer to start that Python process
           "RAY_agent_register_timeout_ms": "120000",
           # Ray's memory monitor judges the whole machine: on a shared machine it kills this
           # cluster's trials for memory other processes use
           "RAY_memory_monitor_refresh_ms": "0",
           "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash}",
           "RAY_ADDRESS": f"127.0.0.1:{port}"}
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--num-cpus=0", "--num-gpus=0",
         "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
         f"--runtime-env-agent-port={rte}", f"--metrics-export-port={metrics}",
         f"--object-manager-port={store}", f"--temp-dir={ray_tmp}",
         "--object-store-memory=150000000", "--disable-usage-stats"],
        env={k: v for k, v in env.items() if k != "RAY_ADDRESS"},
        stdout=(logs / "head.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    cluster = NsCluster(address=f"127.0.0.1:{port}", dashboard=f"http://127.0.0.1:{dash}",
                        env=env, ray_tmp=ray_tmp, head=head, logs=logs)
    deadline = time.monotonic() + 300
    while "will now block" not in (logs / "head.log").read_text():  # the head is up
        if head.poll() is not None or time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError("the Ray head did not start: "
                               + (logs / "head.log").read_text()[-2000:])
        time.sleep(0.5)
    return cluster


__all__ = ["NsCluster", "free_ports", "start_head", "why_unavailable"]
