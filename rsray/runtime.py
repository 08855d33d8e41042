"""Starting or joining Ray with rsray's defaults (localhost only, quiet, enough logical CPUs)."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray

LOCAL_MIN_LOGICAL_CPUS = 4
"""A local Ray gets at least this many logical CPUs.

On a 2-core laptop, two training workers plus Ray Data's read tasks need more CPU *slots* than
there are cores; without them Ray Data's tasks wait forever behind the trainers ("backpressured
... 0 CPU"). Logical CPUs are scheduling slots, not cores: the OS shares the real cores.
"""


def ensure_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> None:
    """Join the cluster in ``address``/``RAY_ADDRESS``, or start a local Ray on 127.0.0.1.

    A local Ray started here binds the dashboard and every service to localhost only. The
    dashboard stays on: Ray Train V2 asks its state API whether a run's controller is alive
    before it frees the run's placement group; without it, finished trials leak their CPUs.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    runtime_env = kwargs.pop("runtime_env", None)
    if address:
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING,
                 **kwargs)
        quiet_data_context()
        return
    cpus = num_cpus or max(os.cpu_count() or 1, LOCAL_MIN_LOGICAL_CPUS)
    ray.init(
        num_cpus=cpus,
        include_dashboard=kwargs.pop("include_dashboard", True),
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
        runtime_env=runtime_env,
        **kwargs,
    )
    quiet_data_context()


def quiet_data_context() -> None:
    """No Ray Data progress bars: rsray prints its own progress lines (logs stay readable)."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
