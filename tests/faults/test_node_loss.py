"""A node lost mid-training on a local multi-node Ray (``ray.cluster_utils.Cluster``).

Promised (issue 12): when the node running the training worker dies without warning after
the first epoch's checkpoint (raylet and every process on it killed), the run recovers on the
node that remains: the worker is restarted there (``train.max_failures``), resumes from the
last checkpoint and finishes every epoch, its remaining epochs reading their data on what
remains.

This test starts its own 3-node Ray in a subprocess (the session's single-node Ray cannot lose
a node); it is the slowest of the fault suite.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO, SCRIPTS


@pytest.mark.slow
def test_training_survives_losing_the_workers_node(synthetic_shards, tmp_path):
    import os

    result_path = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",
                                                           "RAY_API_SERVER_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "node_loss_run.py"), synthetic_shards,
         str(tmp_path / "runs"), str(result_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = json.loads(result_path.read_text())
    assert out["removed"].get("node") in ("a", "b"), out
    assert out["alive_nodes"] == 2  # the head and the node that remained
    assert out["error"] is None, out
    assert out["metrics"]["epoch"] == 3
    assert out["metrics"]["resumed_from_epoch"] >= out["removed"]["checkpointed"] >= 1
    run_dir = tmp_path / "runs" / "node-loss"
    for e in range(3):
        meta = json.loads((run_dir / f"epoch_{e:04d}" / "meta.json").read_text())
        assert meta["epoch"] == e
