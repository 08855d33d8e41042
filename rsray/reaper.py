"""A watchdog that ends a local Ray's leftover processes once the driver that started it dies.

When a driver is SIGKILLed, its local Ray's raylet and GCS die with it, but Ray's dashboard
agent and runtime-env agent first try to tell the (dead) GCS that their raylet died and hang
there: measured still running minutes later (tests/test_runtime.py). rsray therefore starts
this small process beside every local Ray it starts: it waits for the driver to exit, gives
Ray a grace period to stop on its own, then SIGKILLs whatever of the processes it was given
is still alive. A process is matched by pid *and* start time, so a reused pid is never hit.

Run as ``python -m rsray.reaper DRIVER_PID PID:START ...`` (Linux ``/proc``; elsewhere it
exits at once). It imports nothing heavy, so it costs a few MiB.
"""

from __future__ import annotations

import os
import signal
import sys
import time

GRACE_S = 3.0
"""Seconds Ray gets to stop its own processes after the driver is gone."""
POLL_S = 1.0


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat``), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] == "Z":
        return None  # a zombie is dead; only its parent's wait() is missing
    return int(fields[19]) if len(fields) > 19 else None


def reap(driver: tuple[int, int], targets: list[tuple[int, int]]) -> list[int]:
    """Wait for ``driver`` to exit, then SIGKILL the ``targets`` still alive; return those."""
    while start_time(driver[0]) == driver[1]:
        time.sleep(POLL_S)
    time.sleep(GRACE_S)
    killed = []
    for pid, started in targets:
        if start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def watch(pids: list[int]) -> None:
    """Start a reaper for ``pids`` (processes of a local Ray) of the current process."""
    import subprocess

    me = os.getpid()
    mine = start_time(me)
    targets = [f"{p}:{t}" for p in pids if (t := start_time(p)) is not None]
    if mine is None or not targets:
        return
    subprocess.Popen([sys.executable, "-m", "rsray.reaper", f"{me}:{mine}", *targets],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _parse(item: str) -> tuple[int, int]:
    pid, started = item.split(":")
    return int(pid), int(started)


if __name__ == "__main__":
    if not os.path.isdir("/proc") or len(sys.argv) < 3:
        sys.exit(0)
    reap(_parse(sys.argv[1]), [_parse(a) for a in sys.argv[2:]])
