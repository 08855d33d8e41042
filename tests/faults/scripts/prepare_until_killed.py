"""Driver of the prepare-kill test: ``prepare`` slowed down so the test can SIGKILL it mid-write.

``python prepare_until_killed.py RAW OUT MARKERS block|slow``: prepares the synthetic
BigEarthNet-MM patches in ``RAW`` into ``OUT`` (2 tasks at a time, about 7 rows a shard),
each patch read after a 0.15 s pause. With ``block``, the second shard a Ray worker writes
stops for good inside :func:`rsray.storage.atomic_write_bytes`, after its temporary file is
written and before it is published, and a file ``blocked-<pid>`` appears in ``MARKERS``: the
test kills the driver there, i.e. mid-write. Joins the Ray named by ``RAY_ADDRESS``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from rsray.data.prepare import prepare
from rsray.data.sources.bigearthnet import BigEarthNetMM
from rsray.runtime import ensure_ray


class SlowBigEarthNet(BigEarthNetMM):
    """The v1 reader, slowed; with ``block`` a worker's second shard write never finishes."""

    markers: str = ""
    block: bool = False

    def read(self, item: dict[str, Any]) -> dict[str, Any]:
        """Pause, arm the write block in this worker process once, then read the patch."""
        if self.block and not getattr(os, "_rsray_block_armed", False):
            real_fsync, calls = os.fsync, []
            markers = self.markers

            def fsync(fd: int) -> None:
                real_fsync(fd)
                calls.append(fd)
                if len(calls) >= 2:  # the first shard is published, the second hangs here
                    Path(markers, f"blocked-{os.getpid()}").touch()
                    time.sleep(3600)

            os.fsync = fsync
            os._rsray_block_armed = True  # type: ignore[attr-defined]
        time.sleep(0.15)
        return super().read(item)


def main() -> None:
    """Parse the arguments and run the (slowed) prepare."""
    raw, out, markers, mode = sys.argv[1:5]
    ensure_ray()
    source = SlowBigEarthNet(str(Path(raw, "BigEarthNet-S2")), str(Path(raw, "BigEarthNet-S1")))
    source.markers, source.block = markers, mode == "block"
    prepare(source, out, target_shard_mb=2.0, concurrency=2)
    print("prepare finished (the test should have killed it)", flush=True)


if __name__ == "__main__":
    main()
