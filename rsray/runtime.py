"""Starting or joining Ray with rsray's defaults: exactly the Ray meant, loopback only, quiet.

Two modes, never mixed:

- **join**: ``address`` or ``RAY_ADDRESS`` names a cluster (``ray://...``, ``host:port``,
  ``auto``): rsray joins that one and sets no resources of its own.
- **local**: no address: rsray starts a *new* Ray with ``address="local"``, whatever Ray's
  address file (``<RAY_TMPDIR>/ray/ray_current_cluster``, left behind by a killed
  ``ray start``) or a running ``ray start --head`` says. Its processes are told which Ray they
  belong to (``RAY_API_SERVER_ADDRESS`` before start, ``RAY_ADDRESS`` after), so helpers such as
  Ray Train's placement-group cleaner never pick "the latest cluster" by accident.

A local Ray binds to 127.0.0.1 wherever Ray lets a local instance do so (see
:data:`LOOPBACK_ENV` and docs/security.md).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import ray

LOCAL_MIN_LOGICAL_CPUS = 4
"""A local Ray gets at least this many logical CPUs.

On a 2-core laptop, two training workers plus Ray Data's read tasks need more CPU *slots* than
there are cores; without them Ray Data's tasks wait forever behind the trainers ("backpressured
... 0 CPU"). Logical CPUs are scheduling slots, not cores: the OS shares the real cores.
"""

LOOPBACK = "127.0.0.1"

LOOPBACK_ENV: dict[str, str] = {
    # Ray's own switch for single-machine instances (its default on macOS/Windows): the node's
    # address is the loopback address, so GCS, raylet and agents advertise 127.0.0.1.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
"""Environment a local Ray is started with (inherited by every process it spawns)."""

_started: dict[str, str] = {}
"""Addresses of the local Ray this process started (to tell it from a user's RAY_ADDRESS)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _address_to_join(address: str | None) -> str | None:
    """The cluster to join, or ``None`` for a new local Ray.

    ``RAY_ADDRESS`` exported by :func:`ensure_ray` for a local Ray that has since been shut
    down is not a cluster to join (it is gone); ``"local"`` means a new local Ray.
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address == "local":
        return None
    if _started and address == _started.get("gcs_address"):
        return None
    return address


def ensure_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> None:
    """Join the cluster in ``address``/``RAY_ADDRESS``, or start a new local Ray on 127.0.0.1.

    The dashboard stays on: Ray Train V2 asks its state API whether a run's controller is alive
    before it frees the run's placement group; without it, finished trials leak their CPUs.
    """
    if ray.is_initialized():
        return
    from rsray.console import ray_init_kwargs

    kwargs = {**ray_init_kwargs(), **kwargs}  # workers' output on the terminal only with -v
    runtime_env = kwargs.pop("runtime_env", None)
    join = _address_to_join(address)
    if join:
        ray.init(address=join, runtime_env=runtime_env, logging_level=logging.WARNING, **kwargs)
        quiet_data_context()
        return
    start_local_ray(num_cpus=num_cpus, runtime_env=runtime_env, **kwargs)


def start_local_ray(num_cpus: int | None = None, **kwargs: Any) -> str:
    """Start a new local Ray (never joining one found on the machine); returns its address."""
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)
    _loopback_node_ip()
    dashboard_port = int(kwargs.pop("dashboard_port", 0) or _free_port())
    # Processes of this Ray (trial actors, Ray Train's controller and its placement-group
    # cleaner) find the state API here, not through Ray's address file.
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://{LOOPBACK}:{dashboard_port}"
    os.environ.pop("RAY_ADDRESS", None)
    cpus = num_cpus or max(os.cpu_count() or 1, LOCAL_MIN_LOGICAL_CPUS)
    ctx = ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=kwargs.pop("include_dashboard", True),
        dashboard_host=LOOPBACK,
        dashboard_port=dashboard_port,
        logging_level=kwargs.pop("logging_level", logging.WARNING),
        **kwargs,
    )
    gcs = ctx.address_info.get("gcs_address") or ray.get_runtime_context().gcs_address
    _started.clear()
    _started["gcs_address"] = gcs
    _started["api_server"] = os.environ["RAY_API_SERVER_ADDRESS"]
    # Anything this process starts later (a CLI call, a subprocess) joins this Ray.
    os.environ["RAY_ADDRESS"] = gcs
    _watch_local_ray()
    quiet_data_context()
    return gcs


def _watch_local_ray() -> None:
    """Have :mod:`rsray.reaper` end this Ray's agents if this driver is killed."""
    import psutil  # Ray ships it (ray/thirdparty_files) when not installed

    from rsray.reaper import watch

    watch([p.pid for p in psutil.Process().children(recursive=True)])


def _loopback_node_ip() -> None:
    """Make this driver see 127.0.0.1 as the node address, as Ray does on macOS/Windows.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when it is imported; rsray imports Ray
    before it knows it will start a local one, so the constant is set here as well.
    """
    from ray._private import ray_constants

    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
        ray_constants.ENABLE_RAY_CLUSTER = False


def shutdown_ray() -> None:
    """``ray.shutdown()``, and forget the addresses :func:`start_local_ray` exported.

    Ray's clients (state API, job submission) prefer ``RAY_API_SERVER_ADDRESS`` and
    ``RAY_ADDRESS`` from the environment to an address they are given, so a process that goes
    on to talk to another cluster (a notebook, a test) must not keep pointing at the stopped
    local Ray. A user's own ``RAY_ADDRESS`` (not one this process exported) is left alone.
    """
    ray.shutdown()
    if not _started:
        return
    if os.environ.get("RAY_ADDRESS") == _started.get("gcs_address"):
        os.environ.pop("RAY_ADDRESS", None)
    if os.environ.get("RAY_API_SERVER_ADDRESS") == _started.get("api_server"):
        os.environ.pop("RAY_API_SERVER_ADDRESS", None)
    _started.clear()


def local_ray_address() -> str | None:
    """GCS address of the local Ray started by this process (``None`` if it started none)."""
    return _started.get("gcs_address")


def quiet_data_context() -> None:
    """No Ray Data progress bars: rsray prints its own progress lines (logs stay readable)."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
