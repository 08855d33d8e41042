"""k8s/rayjob-study.yaml, the KubeRay path, checked without a cluster.

It parses as one ``ray.io/v1`` ``RayJob``; its cluster has a head that schedules no trials, a
CPU group and GPU groups (GPU resources on the GPU groups only); its entrypoint is a valid
``jobs/study.py`` command line with an ``s3://`` study folder; S3 credentials appear only as
references to a Kubernetes secret. With KubeRay's RayJob CRD at hand (``RSRAY_KUBERAY_CRD``
pointing at ``ray.io_rayjobs.yaml`` from the kuberay repository's
``ray-operator/config/crd/bases``) the manifest is also validated against its schema.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rsray.security import CREDENTIAL_ENV_VARS

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "k8s" / "rayjob-study.yaml"


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    assert len(docs) == 1, "one RayJob per file"
    return docs[0]


def _containers(job: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = job["spec"]["rayClusterSpec"]
    for c in spec["headGroupSpec"]["template"]["spec"]["containers"]:
        yield "head", c
    for group in spec["workerGroupSpecs"]:
        for c in group["template"]["spec"]["containers"]:
            yield group["groupName"], c
    for c in (job["spec"].get("submitterPodTemplate") or {}).get("spec", {}).get(
            "containers", []):
        yield "submitter", c


def _gpus(container: dict[str, Any]) -> int:
    res = container.get("resources") or {}
    return int((res.get("limits") or {}).get("nvidia.com/gpu", 0))


def test_rayjob_with_head_cpu_and_gpu_groups(job: dict[str, Any]) -> None:
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    cluster = job["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # trials never run on the head
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu = {n for n, g in groups.items()
           if any(_gpus(c) for c in g["template"]["spec"]["containers"])}
    cpu = set(groups) - gpu
    assert cpu and gpu, groups.keys()
    for name in gpu:  # requests == limits for GPUs, as Kubernetes requires
        for c in groups[name]["template"]["spec"]["containers"]:
            assert c["resources"]["requests"]["nvidia.com/gpu"] == _gpus(c) >= 1
        assert groups[name]["minReplicas"] == 0  # GPU nodes start at zero, as cluster.yaml
    for name in cpu:
        for c in groups[name]["template"]["spec"]["containers"]:
            assert _gpus(c) == 0
    for g in groups.values():
        assert 0 <= g["minReplicas"] <= g["maxReplicas"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert any((g.get("labels") or {}).get("rsray/capacity") == "spot" for g in groups.values())


def test_entrypoint_is_a_study_with_an_s3_folder(job: dict[str, Any]) -> None:
    from rsray.study.cli import add_study_args

    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "python" and argv[1].endswith("jobs/study.py")
    assert (REPO / "jobs" / "study.py").is_file()
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_study_args(parser)
    args = parser.parse_args(argv[2:])  # the job script's own flags: a typo fails here
    assert args.out.startswith("s3://") and args.resume
    assert args.data.startswith("s3://")
    assert "scaling.use_gpu=yes" in " ".join(argv)


def test_credentials_only_by_secret_reference(job: dict[str, Any]) -> None:
    text = MANIFEST.read_text()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "an AWS access key id"
    secret_like = re.compile("|".join(re.escape(v) for v in CREDENTIAL_ENV_VARS)
                             + r"|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
    seen = 0
    for where, container in _containers(job):
        for env in container.get("env") or []:
            if secret_like.search(env["name"]):
                seen += 1
                assert "value" not in env, f"{where}: {env['name']} has a literal value"
                assert "secretKeyRef" in env["valueFrom"], (where, env)
    assert seen >= 2 * 4  # access key + secret on the head and each worker group
    runtime_env = yaml.safe_load(job["spec"].get("runtimeEnvYAML") or "{}") or {}
    assert not secret_like.search(" ".join(runtime_env.get("env_vars", {}))), runtime_env


def test_valid_against_the_kuberay_rayjob_crd(job: dict[str, Any]) -> None:
    crd_path = os.environ.get("RSRAY_KUBERAY_CRD")
    if not crd_path or not Path(crd_path).is_file():
        pytest.skip("KubeRay's RayJob CRD is not here: set RSRAY_KUBERAY_CRD to "
                    "ray-operator/config/crd/bases/ray.io_rayjobs.yaml of the kuberay repo")
    import jsonschema

    crd = yaml.safe_load(Path(crd_path).read_text())
    assert crd["spec"]["names"]["kind"] == "RayJob"
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]
                  if v["name"] == "v1")
    jsonschema.validate(job, schema)
    with pytest.raises(jsonschema.ValidationError):  # the schema does check: a wrong type
        jsonschema.validate({**job, "spec": {**job["spec"], "backoffLimit": "two"}}, schema)
