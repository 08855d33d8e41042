"""cluster.yaml: valid for Ray's autoscaler (its own schema and checks) and secure by default."""

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _ray_schema() -> dict:
    import json

    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_validates_against_autoscaler_schema_and_checks(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    jsonschema.validate(config, _ray_schema())
    validate_config(prepare_config(copy.deepcopy(config)))  # Ray's own `ray up` validation


def test_schema_check_is_not_vacuous(config):
    from ray.autoscaler._private.util import validate_config

    bad = copy.deepcopy(config)
    bad["available_node_types"]["gpu_spot"]["gpus_per_node"] = 1  # not a schema field
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _ray_schema())
    bad = copy.deepcopy(config)
    bad["available_node_types"]["cpu_worker"]["min_workers"] = 50  # > global max_workers
    bad.setdefault("cluster_synced_files", [])
    with pytest.raises(ValueError, match="max_workers"):
        validate_config(bad)


def test_head_runs_no_training(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 0}
    start = " ".join(config["head_start_ray_commands"])
    assert "--num-cpus=0" in start and "--num-gpus=0" in start


def test_gpu_spot_with_on_demand_fallback(config):
    types = config["available_node_types"]
    spot, od = types["gpu_spot"], types["gpu_ondemand"]
    assert spot["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert "InstanceMarketOptions" not in od["node_config"]
    assert spot["resources"] == od["resources"] and spot["resources"]["GPU"] >= 1
    assert spot["node_config"]["InstanceType"] == od["node_config"]["InstanceType"]
    assert spot["priority"] > od["priority"]  # autoscaler v2: spot first, then on demand
    cpu = types["cpu_worker"]
    assert cpu["resources"].get("GPU", 0) == 0 and cpu["resources"]["CPU"] >= 8
    for name, t in types.items():
        if name != config["head_node_type"]:
            assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0


def test_s3_through_instance_profiles_no_keys(config):
    for name, t in config["available_node_types"].items():
        assert t["node_config"]["IamInstanceProfile"]["Name"], name
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"(?i)aws_(secret_access_key|access_key_id|session_token)", text)


def test_dashboard_local_only_and_token_auth(config):
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in CLUSTER_YAML.read_text()
    assert "--web.listen-address=127.0.0.1:" in start  # Prometheus too
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        ray_start = [c for c in config[key] if "ray start" in c]
        assert ray_start and all("RAY_AUTH_MODE=token" in c for c in ray_start)
    assert any("RAY_AUTH_MODE=token" in c for c in config["initialization_commands"])
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"


def test_setup_installs_rsray_from_the_synced_checkout(config):
    assert config["file_mounts"]["~/rsray"] == "."
    assert any("pip install" in c and "-e ~/rsray" in c for c in config["setup_commands"])
    # our head_setup_commands replace Ray's defaults, which install boto3 for the autoscaler
    assert any("boto3" in c for c in config["head_setup_commands"])
    for path in (".venv", "rsray_data", "rsray_results"):
        assert path in config["rsync_exclude"]
    # The Prometheus config it starts is the committed one.
    start = " ".join(config["head_start_ray_commands"])
    rel = re.search(r"--config.file=\$HOME/rsray/(\S+)", start).group(1)
    assert (REPO / rel).is_file()
    for t in config["available_node_types"].values():
        assert t["node_config"]["ImageId"].startswith("resolve:ssm:/aws/service/")
