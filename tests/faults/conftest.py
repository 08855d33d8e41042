"""Fixtures of the fault suite: drivers run as separate processes, so a test can SIGKILL them.

A driver joins the test session's Ray (``RAY_ADDRESS``, exported by :func:`rsray.runtime.
ensure_ray` when the session's Ray started), so a killed driver costs no Ray start-up and
leaves the session's Ray running, as a killed ``rsray`` command on a cluster would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"

Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def driver(ray_session, tmp_path: Path) -> Iterator[Spawn]:
    """``driver("script.py", *args, env={...})`` starts ``scripts/script.py`` in its own group.

    Its output goes to ``<tmp_path>/<script>.log`` (shown when a test fails); every driver
    still running when the test ends is SIGKILLed.
    """
    import ray

    started: list[subprocess.Popen[str]] = []
    address = ray.get_runtime_context().gcs_address

    def spawn(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = open(tmp_path / f"{script}.log", "w")  # noqa: SIM115  (closed by the child)
        full_env = {**os.environ, "RAY_ADDRESS": address,
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                    **(env or {})}
        proc = subprocess.Popen([sys.executable, str(SCRIPTS / script), *args], env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, cwd=tmp_path)
        proc.log_path = tmp_path / f"{script}.log"  # type: ignore[attr-defined]
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def driver_log(proc: subprocess.Popen[str]) -> str:
    """The last 3000 characters a driver printed (for assertion messages)."""
    return Path(proc.log_path).read_text()[-3000:]  # type: ignore[attr-defined]
