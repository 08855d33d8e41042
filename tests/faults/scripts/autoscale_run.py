"""Driver of the autoscaling test: a Tune run on a fake-multinode head with no CPUs.

``python autoscale_run.py ADDRESS SHARDS STORAGE RESULT_JSON MIN_NODES``. Joins the head at
``ADDRESS`` (started by the test with ``cluster.yaml``'s node types through Ray's fake
provider), waits for the ``MIN_NODES`` nodes of the types' ``min_workers``, watches the
cluster's alive nodes on a thread, runs 2 concurrent one-worker trials (each one's resource
check reserves its worker's CPU plus rsray's data CPUs, more than one fake node has; the head
has no CPUs), then waits for the idle nodes to be removed. Writes the node timeline
and the trials' outcome to ``RESULT_JSON``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def _alive_workers(ray: object) -> list[dict[str, object]]:
    """Alive non-head nodes: id, CPUs and ``rsray/role`` label (from ``cluster.yaml``)."""
    out = []
    for n in ray.nodes():  # type: ignore[attr-defined]
        res = n.get("Resources", {})
        if not n.get("Alive") or "node:__internal_head__" in res:
            continue
        labels = n.get("Labels", {}) or {}
        out.append({"id": n["NodeID"], "cpus": res.get("CPU", 0),
                    "role": labels.get("rsray/role")})
    return out


def main() -> None:
    """Run the trials on the autoscaled cluster and record what the autoscaler did."""
    address, shards, storage, result_path = sys.argv[1:5]
    min_nodes = int(sys.argv[5])
    os.environ["RAY_ADDRESS"] = address
    import ray

    from rsray.config import load_config
    from rsray.tune.run import tune_fusion

    ray.init(address=address)
    timeline: list[tuple[float, int, list[str]]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    seen: dict[str, str] = {}  # node id -> role, in the order nodes appeared

    def watch() -> None:
        while not stop.is_set():
            nodes = _alive_workers(ray)
            for n in nodes:
                seen.setdefault(str(n["id"]), str(n["role"]))
            timeline.append((round(time.monotonic() - t0, 1), len(nodes),
                             sorted({str(n["role"]) for n in nodes})))
            time.sleep(0.5)

    deadline = time.monotonic() + 180
    while len(_alive_workers(ray)) < min_nodes and time.monotonic() < deadline:
        time.sleep(0.5)  # the min_workers nodes the autoscaler starts with the head
    before = len(_alive_workers(ray))
    initial = {str(n["id"]) for n in _alive_workers(ray)}
    threading.Thread(target=watch, daemon=True).start()
    cfg = load_config(None, [
        f"data.uri={shards}", "data.batch_size=16", "data.augment=false",
        "model.name=test_progressive_fusion", "tune.space=progressive_smoke",
        "tune.num_samples=2", "tune.max_concurrent_trials=2", "train.max_epochs=1",
        "tune.grace_period=1", "scaling.num_workers=1", "scaling.cpus_per_worker=1",
        "scaling.use_gpu=no",
        f"train.storage_path={storage}", "tune.name=autoscale",
        "train.log_every_n_steps=1000", "train.resource_wait_s=300",
    ])
    outcome = tune_fusion(cfg)
    ended = time.monotonic() - t0
    stop.set()
    time.sleep(1.0)
    peak = max(n for _, n, _ in timeline)
    # The driver leaves, as a finished `ray job submit` driver does: while it stays connected
    # Ray keeps resources reserved for it (a placement group and a request_resources demand
    # seen in the autoscaler's status), and the extra node is never idle.
    ray.shutdown()
    ray.init(address=address)
    deadline = time.monotonic() + 180
    while len(_alive_workers(ray)) > before and time.monotonic() < deadline:
        time.sleep(0.5)
    after = len(_alive_workers(ray))
    with open(result_path, "w") as f:
        json.dump({"before": before, "peak": peak, "after": after,
                   "tune_ended_s": round(ended, 1),
                   "scaled_down_s": round(time.monotonic() - t0, 1),
                   "roles": sorted({r for _, _, rs in timeline for r in rs}),
                   "added": [r for i, r in seen.items() if i not in initial],
                   "trials": [[r.trial, r.status, r.epochs] for r in outcome.rows],
                   "timeline": timeline[::4]}, f)
    ray.shutdown()


if __name__ == "__main__":
    main()
