"""Dashboards and Prometheus config: committed files = generator output; panel checks.

Every panel query is run against a live Prometheus in tests/test_prometheus_dashboards.py.
"""

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from rsray.ops import dashboards as dm
from rsray.ops.dashboards import PROMETHEUS_FILE, prometheus_config, render_prometheus_config
from rsray.train.telemetry import METRICS

DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "dashboards"


@pytest.mark.parametrize("dash", dm.DASHBOARDS, ids=lambda d: d.uid)
def test_committed_json_is_generated(dash):
    path = DASHBOARDS_DIR / dash.file_name
    assert path.is_file(), f"{path} missing: run python -m rsray.ops.dashboards --out dashboards"
    assert path.read_text() == dash.render(), (
        f"{path} is stale: run python -m rsray.ops.dashboards --out dashboards")


def test_committed_prometheus_config_is_generated():
    assert (DASHBOARDS_DIR / PROMETHEUS_FILE).read_text() == render_prometheus_config()


@pytest.mark.parametrize("dash", dm.DASHBOARDS, ids=lambda d: d.uid)
def test_panel_ids_unique_and_layout_sane(dash):
    model = dash.to_grafana()
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for p in model["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= dm.GRID_WIDTH
        if p["type"] == "timeseries":
            assert p["targets"] and all(t["expr"] for t in p["targets"])
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    names = [v["name"] for v in model["templating"]["list"]]
    assert names[0] == "datasource" and len(names) == len(set(names))


def test_duplicate_id_is_refused():
    row = dm.TRAINING.rows[0]
    clash = replace(row.panels[1], id=row.panels[0].id, title="another title")
    bad = replace(dm.TRAINING, rows=(replace(row, panels=(*row.panels, clash)),))
    with pytest.raises(ValueError, match="duplicate panel ids"):
        bad.check()


def test_undefined_variable_is_refused():
    row = dm.RAY_CLUSTER.rows[0]
    panel = replace(row.panels[0], targets=(dm.Target('up{node=~"$nodes"}', "x"),))
    bad = replace(dm.RAY_CLUSTER, rows=(replace(row, panels=(panel,)),))
    with pytest.raises(ValueError, match=r"undefined \$nodes"):
        bad.check()


def test_every_telemetry_metric_has_a_panel():
    exprs = " ".join(t.expr for p in dm.TRAINING.panels() for t in p.targets)
    for spec in METRICS.values():
        base = spec.prometheus_name
        assert re.search(re.escape(base) + r"(_bucket|_sum|_count)?\b", exprs), base


def test_expand_sets_all_values_and_rate_interval():
    expr = dm.TRAINING.panels()[0].targets[0].expr
    out = dm.TRAINING.expand(expr, rate_interval="20s")
    assert "$" not in out and "[20s]" in out and 'trial=~".+"' in out
    only = dm.TRAINING.expand(expr, values={"trial": "t1"})
    assert 'trial=~"t1"' in only


def test_prometheus_config_uses_ray_service_discovery():
    cfg = yaml.safe_load(render_prometheus_config())
    job = cfg["scrape_configs"][0]
    assert job["file_sd_configs"][0]["files"] == ["/tmp/ray/prom_metrics_service_discovery.json"]
    local = prometheus_config("/x/sd.json", loopback_targets=True)
    assert local["scrape_configs"][0]["relabel_configs"][0]["replacement"] == "127.0.0.1:$1"


def test_promtool_accepts_config(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    path = tmp_path / "prometheus.yml"
    path.write_text(render_prometheus_config())
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_generator_cli_writes_files(tmp_path):
    assert dm.main(["--out", str(tmp_path)]) == 0
    for dash in dm.DASHBOARDS:
        assert json.loads((tmp_path / dash.file_name).read_text())["uid"] == dash.uid
    assert (tmp_path / PROMETHEUS_FILE).is_file()
