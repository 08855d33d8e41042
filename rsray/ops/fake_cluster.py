"""``cluster.yaml`` simulated on one machine: Ray's fake multi-node autoscaler provider.

:func:`fake_autoscaler_config` turns the AWS autoscaler config into one for Ray's
``fake_multinode`` provider: the same node types, ``min_workers``/``max_workers``, labels,
``upscaling_speed`` and ``head_node_type``, each node type's resources scaled down to what a
laptop can host (a fake node is a raylet process on this machine, not a VM). Start a head
with it and Ray's own autoscaler adds fake nodes when tasks, actors or placement groups wait
for resources, and removes them after ``idle_timeout_minutes``::

    python -m rsray.ops.fake_cluster --out /tmp/fake.yaml --idle-timeout-minutes 0.5
    RAY_FAKE_CLUSTER=1 ray start --head --num-cpus=0 --autoscaling-config=/tmp/fake.yaml
    rsray tune --smoke-test ...      # with RAY_ADDRESS=auto, joins that head
    ray status                       # fake nodes come and go

What this proves and what not: the node types, limits and labels of ``cluster.yaml`` are
accepted by Ray's autoscaler, a Tune run on a head with no CPUs gets its trials placed on
nodes the autoscaler launched for them, and idle nodes go away. It does not launch EC2
instances, resolve AMIs, run ``setup_commands`` or test IAM, spot fallback (autoscaler v2's
``priority``) or GPUs (a fake node's GPUs are only a logical resource).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import yaml

from rsray.errors import RsrayError

REPO_CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
"""The repository's AWS autoscaler configuration."""

FAKE_HEAD_TYPE = "ray.head.default"
"""The head node type name the fake provider tags its head with."""


def _scaled(resources: dict[str, Any], cpus: float, object_store_bytes: int) -> dict[str, Any]:
    """A node type's resources on this machine: ``cpus`` CPUs (0 stays 0), the rest as is."""
    out = dict(resources)
    if float(out.get("CPU", 0)) > 0:
        out["CPU"] = cpus
    out["object_store_memory"] = object_store_bytes
    return out


def fake_autoscaler_config(
    cluster_yaml: str | Path = REPO_CLUSTER_YAML,
    *,
    cpus_per_node: float = 1,
    object_store_mb: int = 200,
    max_workers_per_type: int | None = 2,
    idle_timeout_minutes: float | None = None,
    gcs_address: str | None = None,
) -> dict[str, Any]:
    """An autoscaler config for Ray's ``fake_multinode`` provider derived from ``cluster_yaml``.

    Args:
        cluster_yaml: the real cluster's autoscaler config.
        cpus_per_node: CPUs of every fake node whose type has CPUs (a head advertising 0 CPU
            keeps 0, as in ``cluster.yaml``).
        object_store_mb: object store of every fake node.
        max_workers_per_type: cap on each type's ``max_workers`` (and the cluster's), so a
            runaway request cannot start 20 raylets on a laptop; ``None`` keeps the file's.
        idle_timeout_minutes: override the file's idle timeout (tests use seconds).
        gcs_address: the head's ``host:port`` when it is not ``<node ip>:6379``.

    Raises:
        RsrayError: the file is missing, not YAML, or has no ``available_node_types`` /
            ``head_node_type``.
    """
    path = Path(cluster_yaml)
    try:
        real = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RsrayError(f"{path}: cannot read the cluster config ({e})") from e
    if not isinstance(real, dict) or not isinstance(real.get("available_node_types"), dict):
        raise RsrayError(f"{path}: no available_node_types mapping")
    head_type = real.get("head_node_type")
    if head_type not in real["available_node_types"]:
        raise RsrayError(f"{path}: head_node_type {head_type!r} is not a node type")

    store = int(object_store_mb) * 1024 * 1024
    types: dict[str, Any] = {}
    for name, spec in real["available_node_types"].items():
        resources = _scaled(spec.get("resources") or {}, cpus_per_node, store)
        if name == head_type:
            # the fake provider's head is the `ray start --head` process itself
            types[FAKE_HEAD_TYPE] = {"resources": resources, "node_config": {},
                                     "max_workers": 0}
            continue
        max_workers = int(spec.get("max_workers", real.get("max_workers", 1)))
        if max_workers_per_type is not None:
            max_workers = min(max_workers, max_workers_per_type)
        types[name] = {
            "resources": resources,
            "node_config": {},
            "min_workers": min(int(spec.get("min_workers", 0)), max_workers),
            "max_workers": max_workers,
            **({"labels": dict(spec["labels"])} if spec.get("labels") else {}),
        }
    total = sum(t["max_workers"] for n, t in types.items() if n != FAKE_HEAD_TYPE)
    provider: dict[str, Any] = {"type": "fake_multinode", "use_node_id_as_ip": True,
                                "disable_node_updaters": True,
                                "disable_launch_config_check": True}
    if gcs_address:
        provider["gcs_address"] = gcs_address
    empty_lists = ["initialization_commands", "setup_commands", "head_setup_commands",
                   "worker_setup_commands", "head_start_ray_commands",
                   "worker_start_ray_commands", "cluster_synced_files", "rsync_exclude",
                   "rsync_filter"]
    return {
        "cluster_name": f"{real.get('cluster_name', 'rsray')}-fake",
        "max_workers": min(int(real.get("max_workers", total)), total),
        "upscaling_speed": float(real.get("upscaling_speed", 1.0)),
        "idle_timeout_minutes": float(idle_timeout_minutes if idle_timeout_minutes is not None
                                      else real.get("idle_timeout_minutes", 5)),
        "provider": provider,
        "auth": {},
        "available_node_types": copy.deepcopy(types),
        "head_node_type": FAKE_HEAD_TYPE,
        "docker": {},
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        **{k: [] for k in empty_lists},
    }


def main(argv: list[str] | None = None) -> None:
    """Write the fake autoscaler config (``python -m rsray.ops.fake_cluster --out F``)."""
    p = argparse.ArgumentParser(
        prog="python -m rsray.ops.fake_cluster",
        description="Write an autoscaler config for Ray's fake multi-node provider, derived "
                    "from cluster.yaml, to simulate the cluster's autoscaling on this machine.")
    p.add_argument("--cluster-yaml", default=str(REPO_CLUSTER_YAML))
    p.add_argument("--out", required=True, help="where to write the fake config (YAML)")
    p.add_argument("--cpus-per-node", type=float, default=1)
    p.add_argument("--object-store-mb", type=int, default=200)
    p.add_argument("--max-workers-per-type", type=int, default=2)
    p.add_argument("--idle-timeout-minutes", type=float)
    p.add_argument("--gcs-address", help="head host:port when not <node ip>:6379")
    args = p.parse_args(argv)
    cfg = fake_autoscaler_config(
        args.cluster_yaml, cpus_per_node=args.cpus_per_node,
        object_store_mb=args.object_store_mb, max_workers_per_type=args.max_workers_per_type,
        idle_timeout_minutes=args.idle_timeout_minutes, gcs_address=args.gcs_address)
    Path(args.out).write_text(yaml.safe_dump(cfg, sort_keys=False))
    kinds = ", ".join(f"{n} ({t['min_workers']}-{t['max_workers']})"
                      for n, t in cfg["available_node_types"].items() if n != FAKE_HEAD_TYPE)
    print(f"[rsray] wrote {args.out}: {kinds}; idle timeout "
          f"{cfg['idle_timeout_minutes']} min")


if __name__ == "__main__":
    main()
