"""Studies on a cluster whose worker nodes share no disk with the driver (or each other).

The cluster (:mod:`tests.faults.ns_cluster`): a head with 0 CPUs, as ``cluster.yaml``'s, and
two worker nodes, each in its own mount namespace with private tmpfs folders over the test
session's temporary folder and the head's Ray folder, so every trial runs on a machine that
cannot see the driver's files. The object store is moto S3 on 127.0.0.1; the nodes and drivers get
S3 credentials from their environment (as from a node role), distinctive values that the
test then looks for in every object the study wrote.

Promised:

- ``rsray study SPEC --out s3://...`` puts every record in the bucket (searches, seeds,
  predictions, Tune/Train storage, tables, report and figures), the driver reads them from
  there, and after the driver is SIGKILLed mid-stage-2 a new driver in another folder with
  ``--resume`` finishes from the URI alone without re-running a finished seed;
- no credential value reaches any object of the study;
- the same study with a LOCAL ``--out`` stops at once, in one line naming the folder and the
  node that cannot see it and suggesting an ``s3://`` folder;
- the worker node running a stage-2 seed is lost mid-training (every process on it stopped
  dead the moment the seed's first checkpoint is in S3, then killed, as a spot reclaim): the
  seed's run starts again on the other node and resumes from its last checkpoint in S3, the
  finished seed is not re-run, the study completes with every row.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import REPO
from .ns_cluster import NsCluster, start_head, why_unavailable

pytestmark = pytest.mark.own_ray_head  # the cluster below; the session's Ray stays stopped

SEED_RECORD = re.compile(r"cells/[^/]+/seed_\d+/result\.json")
"""A finished seed's record (Tune and Ray Train write ``result.json`` files of their own)."""

SECRET_ID, SECRET_KEY = "AKIARSRAYNEVERINRECORDS", "rsray-secret-value-never-in-records"

SPEC = {
    "name": "nsfs",
    "data": {"dataset": "bigearthnet", "synthetic_n": 64},
    "base": {"data.image_size": 32, "data.batch_size": 16, "train.max_epochs": 1,
             "train.log_every_n_steps": 1000, "scaling.cpus_per_worker": 0.5,
             "tune.max_concurrent_trials": 2, "train.max_failures": 1},
    "arms": [
        {"name": "s2_only", "model": "test_early_fusion_cnn", "modalities": ["s2"],
         "space": "cnn"},
        {"name": "early", "model": "test_early_fusion_cnn", "modalities": ["s2", "s1"]},
    ],
    "baseline": "s2_only",
    "metrics": ["ap_macro"],
    "search": {"num_samples": 1, "max_epochs": 1},
    "factors": {"seeds": 2},
    "evaluation": {"splits": ["test"], "drop_modalities": False, "predictions": True},
}
"""2 arms x 2 seeds, one searched (1 trial), 32 px, 1 epoch: the smallest study that has a
search, seeds, predictions and a report."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: str,
            synthetic_shards: str) -> Iterator[tuple[NsCluster, str, Path]]:
    """``(cluster, s3 bucket URI with the shard set under shards/, spec path)``."""
    why = why_unavailable()
    if why:
        pytest.skip(f"no private mount namespaces here: {why}")
    import s3fs

    from rsray.runtime import shutdown_ray

    shutdown_ray()  # the session's Ray prepared the shards; this test needs the memory
    bucket = f"rsray-nsfs-{os.getpid()}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir(bucket)
    fs.put(synthetic_shards.rstrip("/") + "/", f"{bucket}/shards/", recursive=True)
    logs = tmp_path_factory.mktemp("nsfs_logs")
    spec = logs / "nsfs.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": SECRET_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    c = start_head(env, logs)
    try:
        # a worker sees neither the test session's folders (the driver's study folder, logs,
        # local shards) nor the head's Ray folder, nor what the other worker writes there
        for name in ("w1", "w2"):
            c.add_worker(name, hide=[str(tmp_path_factory.getbasetemp()), str(c.ray_tmp)],
                         num_cpus=2)
        c.wait_for_nodes(3)
        yield c, f"s3://{bucket}", spec
    finally:
        c.stop()


def _study(c: NsCluster, spec: Path, out: str, data: str, cwd: Path,
           *extra: str) -> list[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "rsray.cli", "study", str(spec), "--out", out,
            "--data", data, *extra]


@pytest.mark.slow
def test_local_study_folder_stops_at_once_when_a_worker_cannot_see_it(cluster, tmp_path):
    c, bucket, spec = cluster
    out = tmp_path / "local_study"
    t0 = time.monotonic()
    run = subprocess.run(_study(c, spec, str(out), f"{bucket}/shards", tmp_path / "d"),
                         env=c.env, cwd=tmp_path / "d", capture_output=True, text=True,
                         timeout=300)
    seconds = time.monotonic() - t0
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("rsray: error")
              or "error:" in ln]
    assert run.returncode == 2, (run.stdout + run.stderr)[-3000:]
    assert len(errors) == 1, run.stderr[-3000:]
    assert str(out) in errors[0] and "cannot see" in errors[0] and "s3://" in errors[0]
    assert re.search(r"\d+\.\d+\.\d+\.\d+ \([0-9a-f]{8}\)", errors[0])  # names the node(s)
    assert "[study]" not in run.stdout  # nothing started (the [check] plan lines come first)
    assert seconds < 120, seconds


def _objects(fs, root: str) -> dict[str, dict]:
    fs.invalidate_cache()
    return {p[len(root) + 1:]: info for p, info in fs.find(root, detail=True).items()}


@pytest.mark.slow
def test_study_in_s3_survives_a_driver_kill_on_a_worker_without_shared_disk(cluster,
                                                                            tmp_path):
    import s3fs

    c, bucket, spec = cluster
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    study = f"{bucket}/studies/nsfs"
    root = study.removeprefix("s3://")
    first_cwd = tmp_path / "first"
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(_study(c, spec, study, f"{bucket}/shards", first_cwd, "--no-report"),
                            env=c.env, cwd=first_cwd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        fs.invalidate_cache()
        if fs.glob(f"{root}/cells/*/seed_*/result.json"):
            break
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Ray ends a dead driver's trials on the worker nodes within seconds; one may still write
    # its record meanwhile, so the finished seeds are counted once none is left
    deadline = time.monotonic() + 120
    while c.node_running("ray::ImplicitFunc", "ray::RayTrainWorker") and \
            time.monotonic() < deadline:
        time.sleep(0.5)
    first = (tmp_path / "first.log").read_text()
    before = _objects(fs, root)
    finished = {k: v for k, v in before.items() if SEED_RECORD.fullmatch(k)}
    assert 0 < len(finished) < 4, first[-3000:]
    assert "results.parquet" not in before, "the study finished before the driver was killed"
    assert not (first_cwd / "s3:").exists()  # nothing written to a local folder named s3:

    # a new driver "machine": another folder, only the URI in common
    second_cwd = tmp_path / "second"
    with (tmp_path / "second.log").open("w") as log2:
        done = subprocess.run(_study(c, spec, study, f"{bucket}/shards", second_cwd,
                                     "--resume"),
                              env=c.env, cwd=second_cwd, stdout=log2,
                              stderr=subprocess.STDOUT, timeout=900)
    out = (tmp_path / "second.log").read_text()
    assert done.returncode == 0, first[-2000:] + out[-3000:]
    assert f"{len(finished)} finished before" in out, out[-3000:]
    after = _objects(fs, root)
    for key, info in finished.items():  # a finished seed was not re-run
        assert after[key]["ETag"] == info["ETag"] and \
            after[key]["LastModified"] == info["LastModified"], key
    seeds = sorted(k for k in after if SEED_RECORD.fullmatch(k))
    assert len(seeds) == 4, seeds
    df = pd.read_parquet(fs.open(f"{root}/results.parquet"))
    test = df[(df.split == "test") & (df.dropped == "") & (df.metric == "ap_macro")]
    assert sorted(map(tuple, test[["arm", "seed"]].to_numpy())) == [
        ("early", 0), ("early", 1), ("s2_only", 0), ("s2_only", 1)]
    for name in ("study.json", "results.csv", "hparams.json", "hparams.csv", "report.md",
                 "report.html", "cells/s2_only__f1__all/search.json"):
        assert name in after, name
    assert any(k.startswith("figures/") and k.endswith(".png") for k in after)
    for arm in ("s2_only", "early"):  # predictions and checkpoints in the bucket
        for seed in (0, 1):
            assert any(k.startswith(f"cells/{arm}__f1__all/seed_{seed}/pred_test.parquet/")
                       and k.endswith(".parquet") for k in after), (arm, seed)
            assert any(k.startswith(f"runs/stage2/{arm}__f1__all__seed{seed}/") for k in after)
    assert any(k.startswith("runs/stage1-r0/") for k in after)
    assert any(k.startswith("runs/stage2-r") for k in after)
    report = fs.cat_file(f"{root}/report.md").decode()
    assert "paired bootstrap" in report.lower() or "bootstrap" in report.lower()
    # no credential value in any object of the study (records, Tune state, checkpoints)
    for key in after:
        blob = fs.cat_file(f"{root}/{key}")
        assert SECRET_KEY.encode() not in blob and SECRET_ID.encode() not in blob, key


NODE_LOSS_EPOCHS = 10
NODE_LOSS = {**SPEC, "name": "nodeloss",
             "base": {**SPEC["base"], "train.max_epochs": NODE_LOSS_EPOCHS,
                      "data.batch_size": 8, "train.checkpoint_every": 1,
                      "train.num_to_keep": NODE_LOSS_EPOCHS, "train.max_failures": 2,
                      "tune.max_concurrent_trials": 1},
             "arms": [SPEC["arms"][1]], "baseline": "early",
             "evaluation": {"splits": ["test"], "drop_modalities": False,
                            "predictions": False}}
"""One arm, 2 seeds one after the other, 10 short epochs with a checkpoint each (batch 8: 69
training rows leave a last batch of 5, not 1, which BatchNorm refuses; enough for
the test to see seed 1's first checkpoint while it still trains): seed 0 finishes, then seed
1's node is lost after its first checkpoint."""


def _first_checkpoint_kept(fs, run: str) -> bool:
    """Whether the run's first checkpoint is one a restart resumes from: registered in Ray
    Train's snapshot (a Ray Train run), or whole, its ``meta.json`` written last (a one-worker
    run checkpointing through rsray's storage layer, which keeps no snapshot)."""
    snapshot = f"{run}/checkpoint_manager_snapshot.json"
    if not fs.exists(f"{run}/epoch_0000/meta.json"):
        return False
    return not fs.exists(snapshot) or "epoch_0000" in fs.cat_file(snapshot).decode()


@pytest.mark.slow
def test_study_survives_losing_the_node_of_a_training_seed(cluster, tmp_path):
    import json

    import s3fs

    c, bucket, _ = cluster
    spec = tmp_path / "nodeloss.yaml"
    spec.write_text(yaml.safe_dump(NODE_LOSS))
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    study = f"{bucket}/studies/nodeloss"
    root = study.removeprefix("s3://")
    seed0 = f"{root}/cells/early__f1__all/seed_0/result.json"
    run1 = f"{root}/runs/stage2/early__f1__all__seed1"
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen(_study(c, spec, study, f"{bucket}/shards", tmp_path / "d",
                                   "--no-report"),
                            env=c.env, cwd=tmp_path / "d", stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    killed, finished0, left, seed1_done = None, None, None, None
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None and killed is None:
            fs.invalidate_cache()
            if fs.exists(seed0) and _first_checkpoint_kept(fs, run1):
                # the node of the process training seed 1 (a one-worker run trains in its
                # trial's process), stopped dead at once, then looked at, then killed
                node = c.node_running("ray::RayTrainWorker", "ray::ImplicitFunc")
                if node:
                    c.freeze_worker(node)
                    fs.invalidate_cache()
                    finished0 = fs.info(seed0)
                    left = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(run1) if "/epoch_" in p)
                    seed1_done = fs.exists(seed0.replace("seed_0", "seed_1"))
                    c.kill_worker(node)  # every process of that node, without warning
                    killed = node
            time.sleep(0.1)
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = (tmp_path / "driver.log").read_text()
    assert killed, out[-3000:]
    # the node was lost mid-training: seed 1 had not finished, and had checkpoints to resume
    assert left and len(left) < NODE_LOSS_EPOCHS and seed1_done is False, (left, seed1_done)
    assert proc.returncode == 0, out[-3000:]
    assert "[study] run failed, retrying (1 of at most 2): cell 1/1 early fraction 1 seed " \
        "2/2; it resumes from its last checkpoint" in out, out[-3000:]
    fs.invalidate_cache()
    assert fs.info(seed0)["ETag"] == finished0["ETag"]  # the finished seed was not re-run
    df = pd.read_parquet(fs.open(f"{root}/results.parquet"))
    test = df[(df.split == "test") & (df.metric == "ap_macro")]
    assert sorted(test.seed) == [0, 1] and len(df) == 2 * len(df[df.seed == 0])
    epochs = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(run1) if "/epoch_" in p)
    assert epochs == [f"epoch_{i:04d}" for i in range(NODE_LOSS_EPOCHS)], epochs
    last = NODE_LOSS_EPOCHS - 1
    meta = json.loads(fs.cat_file(f"{run1}/epoch_{last:04d}/meta.json"))
    assert meta["metrics"]["epoch"] == NODE_LOSS_EPOCHS
    assert meta["metrics"]["resumed_from_epoch"] >= 1  # from its checkpoint, not from scratch
