"""Driver of the node-loss test: train on a local 3-node Ray and lose a node mid-training.

``python node_loss_run.py SHARDS STORAGE RESULT_JSON``. Starts ``ray.cluster_utils.Cluster``:
a head with no CPUs (GCS and this driver only) and two 2-CPU worker nodes, so Ray Data's read
tasks and the training worker share the two. Once the first epoch's checkpoint exists, the
node holding the training worker is removed without warning (its raylet and every process on
it killed). Writes the run's result and what was removed to ``RESULT_JSON``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    """Start the cluster, train 3 epochs with ``max_failures=2``, remove a node after one."""
    shards, storage, result_path = sys.argv[1:4]
    dashboard_port = _free_port()
    # Processes of this cluster (Ray Train's controller and cleaner) use its state API only.
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dashboard_port}"
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from rsray.config import load_config
    from rsray.train.driver import fit

    fast_detection = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3,
                      "health_check_initial_delay_ms": 0}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": dashboard_port, "_system_config": fast_detection,
        # Ray's fixed default (52365) is taken by the test session's own Ray
        "dashboard_agent_listen_port": _free_port()})
    nodes = {"a": cluster.add_node(num_cpus=2), "b": cluster.add_node(num_cpus=2)}
    cluster.wait_for_nodes()
    os.environ["RAY_ADDRESS"] = cluster.address
    ray.init(address=cluster.address)
    run_dir = Path(storage, "node-loss")
    removed: dict[str, object] = {}

    def remove_worker_node() -> None:
        t0 = time.monotonic()
        snapshot = run_dir / "checkpoint_manager_snapshot.json"
        # a checkpoint Ray Train has registered (not just uploaded) is the one resumed from
        while not (snapshot.exists() and "epoch_0000" in snapshot.read_text()):
            if time.monotonic() - t0 > 500:
                return
            time.sleep(0.2)
        worker = list_actors(filters=[("class_name", "=", "RayTrainWorker"),
                                      ("state", "=", "ALIVE")])[0]
        for name, node in nodes.items():
            if node.node_id == worker.node_id:
                removed["node"] = name
                removed["checkpointed"] = len(set(re.findall(r"epoch_\d{4}",
                                                            snapshot.read_text())))
                cluster.remove_node(node, allow_graceful=False)

    threading.Thread(target=remove_worker_node, daemon=True).start()
    cfg = load_config(None, [
        f"data.uri={shards}", "data.batch_size=8", "data.augment=false",
        "model.name=test_progressive_fusion", "scaling.num_workers=1",
        "scaling.cpus_per_worker=0.5", "train.max_epochs=3", "train.max_failures=2",
        "train.num_to_keep=3", "train.checkpoint_every=1", f"train.storage_path={storage}",
        "train.name=node-loss",
        "train.log_every_n_steps=1000", "train.resource_wait_s=120",
    ])
    t0 = time.monotonic()
    result = fit(cfg)
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    Path(result_path).write_text(json.dumps({
        "removed": removed, "alive_nodes": len(alive), "seconds": time.monotonic() - t0,
        "error": None if result.error is None else repr(result.error),
        "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}}))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
