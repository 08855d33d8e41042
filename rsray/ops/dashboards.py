"""Grafana dashboards as Python panel definitions, rendered to the JSON in ``dashboards/``.

Two dashboards, both reading Prometheus (which scrapes Ray's metrics agents):

- ``rsray-training``: rsray's own training metrics (:mod:`rsray.train.telemetry`): throughput,
  data-wait share, step time, loss, learning rate and validation metrics per trial, and a
  per-worker view (rank), GPU memory per worker.
- ``rsray-ray-cluster``: the Ray built-in metrics that matter on a training cluster: CPU and
  GPU utilisation per node, logical CPU/GPU slots in use, object store memory and spilling,
  Ray Data operator throughput, and the time Ray Train workers wait on Ray Data.

Regenerate the committed JSON after editing a panel::

    python -m rsray.ops.dashboards --out dashboards

The same command writes ``dashboards/prometheus.yml``: every Ray head lists the metrics endpoints
of all alive nodes in ``<ray temp dir>/prom_metrics_service_discovery.json``; Prometheus's
file-based service discovery follows that file as nodes come and go, so one static configuration
covers an autoscaling cluster. Run Prometheus on the head node with
``prometheus --config.file=dashboards/prometheus.yml``.

``tests/test_dashboards.py`` fails when the committed files differ from what this module
renders, and ``tests/test_prometheus_dashboards.py`` runs every panel's query against a real
Prometheus scraping a real Ray training run.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rsray.train.telemetry import METRICS

PANEL_HEIGHT = 8
GRID_WIDTH = 24
RATE_INTERVAL = "$__rate_interval"
"""Grafana's rate window (at least four scrape intervals)."""

_VARIABLE = re.compile(r"\$(\w+)")
_BUILTINS = {"__rate_interval", "__interval", "__range"}


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel and the legend of its series (Grafana ``{{label}}`` syntax)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """A time-series panel.

    ``needs_gpu`` marks panels whose metrics exist only on nodes with GPUs (the live test
    expects them empty on a cluster without GPUs and filled on one with GPUs).
    """

    id: int
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    needs_gpu: bool = False
    width: int = 12
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Row:
    """A titled row of panels (Grafana row panels take part in the id space too)."""

    id: int
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A multi-select dashboard variable filled from ``label_values(...)``."""

    name: str
    label: str
    query: str
    all_value: str = ".+"
    regex: str = ""


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: rows of panels plus the variables their queries use."""

    uid: str
    title: str
    description: str
    file_name: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...]
    tags: tuple[str, ...] = ("rsray",)
    refresh: str = "30s"
    links: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def panels(self) -> list[Panel]:
        """Every panel, in layout order."""
        return [p for row in self.rows for p in row.panels]

    def check(self) -> None:
        """Refuse duplicate ids, empty queries and queries using undefined variables."""
        ids = [r.id for r in self.rows] + [p.id for p in self.panels()]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"dashboard {self.uid}: duplicate panel ids {dupes}")
        if any(i <= 0 for i in ids):
            raise ValueError(f"dashboard {self.uid}: panel ids must be positive")
        titles = [p.title for p in self.panels()]
        if len(set(titles)) != len(titles):
            raise ValueError(f"dashboard {self.uid}: duplicate panel titles")
        defined = {v.name for v in self.variables} | {"datasource"}
        for v in self.variables:
            self._check_refs(v.query, defined, f"variable {v.name}")
        for p in self.panels():
            if not p.targets:
                raise ValueError(f"dashboard {self.uid}: panel {p.id} {p.title!r} has no query")
            if not 1 <= p.width <= GRID_WIDTH:
                raise ValueError(f"dashboard {self.uid}: panel {p.id} width {p.width}")
            for t in p.targets:
                if not t.expr.strip():
                    raise ValueError(f"dashboard {self.uid}: panel {p.id} has an empty query")
                self._check_refs(t.expr, defined, f"panel {p.id} {p.title!r}")

    def _check_refs(self, expr: str, defined: set[str], where: str) -> None:
        for name in _VARIABLE.findall(expr):
            if name not in defined and name not in _BUILTINS:
                raise ValueError(f"dashboard {self.uid}: {where} uses undefined ${name}")

    def to_grafana(self) -> dict[str, Any]:
        """The Grafana dashboard JSON model (import it, or provision it from a folder)."""
        self.check()
        panels: list[dict[str, Any]] = []
        y = 0
        for row in self.rows:
            panels.append({"type": "row", "id": row.id, "title": row.title, "collapsed": False,
                           "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                           "panels": []})
            y += 1
            x = 0
            for panel in row.panels:
                if x + panel.width > GRID_WIDTH:
                    x, y = 0, y + PANEL_HEIGHT
                panels.append(_panel_json(panel, x, y))
                x += panel.width
            y += PANEL_HEIGHT
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "editable": True,
            "graphTooltip": 1,
            "refresh": self.refresh,
            "schemaVersion": 39,
            "time": {"from": "now-1h", "to": "now"},
            "timezone": "",
            "links": list(self.links),
            "annotations": {"list": []},
            "templating": {"list": [_DATASOURCE_VARIABLE]
                           + [_variable_json(v) for v in self.variables]},
            "panels": panels,
        }

    def render(self) -> str:
        """The JSON text committed under ``dashboards/``."""
        return json.dumps(self.to_grafana(), indent=2) + "\n"

    def expand(self, expr: str, rate_interval: str = "1m",
               values: dict[str, str] | None = None) -> str:
        """``expr`` as Prometheus sees it, every variable set to ``values`` or to "All"."""
        chosen = {v.name: v.all_value for v in self.variables} | (values or {})

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "__rate_interval":
                return rate_interval
            if name not in chosen:
                raise ValueError(f"no value for ${name}")
            return chosen[name]

        return _VARIABLE.sub(sub, expr)


_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_DATASOURCE_VARIABLE = {
    "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
    "hide": 0, "current": {}, "options": [], "refresh": 1, "regex": "",
}


def _variable_json(v: Variable) -> dict[str, Any]:
    return {
        "name": v.name, "label": v.label, "type": "query", "datasource": _DATASOURCE,
        "definition": v.query, "query": {"query": v.query, "refId": f"{v.name}-values"},
        "refresh": 2, "includeAll": True, "multi": True, "allValue": v.all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "regex": v.regex, "sort": 1, "hide": 0,
    }


def _panel_json(p: Panel, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": p.unit,
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                   "showPoints": "never", "spanNulls": True,
                   "stacking": {"mode": "none", "group": "A"}},
    }
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    return {
        "type": "timeseries",
        "id": p.id,
        "title": p.title,
        "description": p.description,
        "datasource": _DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                       "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {"datasource": _DATASOURCE, "expr": t.expr, "legendFormat": t.legend,
             "refId": chr(ord("A") + i), "range": True}
            for i, t in enumerate(p.targets)
        ],
    }


def _rs(name: str) -> str:
    """Prometheus name of an rsray telemetry metric (fails on unknown names)."""
    return METRICS[name].prometheus_name


# --- rsray training dashboard ---------------------------------------------------------------

_RUN = 'experiment=~"$experiment", trial=~"$trial"'
_WORKER = f'{_RUN}, rank=~"$rank"'
_R = RATE_INTERVAL


def _rate(name: str, by: str, flt: str = _WORKER) -> str:
    return f"sum by ({by}) (rate({_rs(name)}{{{flt}}}[{_R}]))"


def _wait_share(by: str) -> str:
    return (f"{_rate('rsray_train_data_wait_seconds', by)}\n  / "
            f"{_rate('rsray_train_seconds', by)}")


TRAINING = Dashboard(
    uid="rsray-training",
    title="rsray training",
    description="rsray training metrics per experiment, trial and worker (rsray.train.telemetry)",
    file_name="rsray_training.json",
    variables=(
        Variable("experiment", "Experiment",
                 f"label_values({_rs('rsray_train_samples')}, experiment)"),
        Variable("trial", "Trial",
                 f'label_values({_rs("rsray_train_samples")}{{experiment=~"$experiment"}}, '
                 "trial)"),
        Variable("rank", "Worker rank",
                 f"label_values({_rs('rsray_train_samples')}{{{_RUN}}}, rank)"),
        Variable("metric", "Validation metric",
                 f'label_values({_rs("rsray_val_metric")}{{experiment=~"$experiment"}}, metric)',
                 regex="/^[^/]+$/"),
    ),
    rows=(
        Row(1, "Throughput and input", (
            Panel(2, "Training throughput per trial (samples/s)",
                  "Training samples per second, all workers of a trial together.",
                  (Target(_rate("rsray_train_samples", "experiment, trial"), "{{trial}}"),)),
            Panel(3, "Data-wait share per trial",
                  "Share of training-step time spent waiting for the next batch. Near 1 the "
                  "GPUs are data-starved: add CPU nodes for Ray Data or raise its parallelism.",
                  (Target(_wait_share("experiment, trial"), "{{trial}}"),),
                  unit="percentunit", min=0, max=1),
            Panel(4, "Shard bytes read per modality",
                  "Bytes per second of shard data that reached the training workers, per "
                  "modality (decoded, native dtypes).",
                  (Target(_rate("rsray_shard_bytes_read", "modality"), "{{modality}}"),),
                  unit="Bps"),
            Panel(5, "Step time per trial (p50 / p95)",
                  "Wall time of one training step, waiting for the batch included.",
                  tuple(Target(f"histogram_quantile({q}, sum by (le, trial) (rate("
                               f"{_rs('rsray_train_step_seconds')}_bucket{{{_WORKER}}}"
                               f"[{_R}])))", f"{{{{trial}}}} p{int(q * 100)}")
                        for q in (0.5, 0.95)),
                  unit="s"),
        )),
        Row(6, "Loss and validation", (
            Panel(7, "Training loss per trial",
                  "Training loss of the last step, averaged over the trial's workers.",
                  (Target(f"avg by (experiment, trial) ({_rs('rsray_train_loss')}{{{_WORKER}}})",
                          "{{trial}}"),)),
            Panel(8, "Validation metrics per trial",
                  "Validation metrics of the last finished epoch (synced across workers; "
                  "read from rank 0). Pick metrics with the Validation metric variable.",
                  (Target(f'max by (experiment, trial, metric) ({_rs("rsray_val_metric")}'
                          f'{{{_RUN}, rank="0", metric=~"$metric", metric!~".*/.*"}})',
                          "{{trial}} {{metric}}"),)),
            Panel(9, "Learning rate per trial", "The optimiser's learning rate.",
                  (Target(f"max by (experiment, trial) ({_rs('rsray_train_lr')}{{{_WORKER}}})",
                          "{{trial}}"),)),
            Panel(10, "Epoch per trial", "Last finished epoch of each trial.",
                  (Target(f"max by (experiment, trial) ({_rs('rsray_epoch')}{{{_WORKER}}})",
                          "{{trial}}"),)),
            Panel(11, "Per-class validation metrics",
                  "Per-class validation metrics (e.g. val_ap_class/<class>) of the last epoch.",
                  (Target(f'max by (trial, metric) ({_rs("rsray_val_metric")}'
                          f'{{{_RUN}, rank="0", metric=~".*/.*"}})',
                          "{{trial}} {{metric}}"),),
                  width=24),
        )),
        Row(12, "Per worker", (
            Panel(13, "Throughput per worker (samples/s)",
                  "Training samples per second of each worker (rank).",
                  (Target(_rate("rsray_train_samples", "trial, rank"),
                          "{{trial}} rank {{rank}}"),)),
            Panel(14, "Data-wait share per worker",
                  "Share of each worker's step time spent waiting for the next batch.",
                  (Target(_wait_share("trial, rank"), "{{trial}} rank {{rank}}"),),
                  unit="percentunit", min=0, max=1),
            Panel(15, "Mean step time per worker",
                  "Training seconds per step of each worker, waiting included.",
                  (Target(f"{_rate('rsray_train_seconds', 'trial, rank')}\n  / "
                          f"{_rate('rsray_train_steps', 'trial, rank')}",
                          "{{trial}} rank {{rank}}"),),
                  unit="s"),
            Panel(16, "Last update per worker: samples/s and data-wait share",
                  "The gauges of each worker's last telemetry update (no rate window).",
                  (Target(f"max by (trial, rank) "
                          f"({_rs('rsray_train_samples_per_second')}{{{_WORKER}}})",
                          "{{trial}} rank {{rank}} samples/s"),
                   Target(f"max by (trial, rank) "
                          f"({_rs('rsray_train_data_wait_share')}{{{_WORKER}}})",
                          "{{trial}} rank {{rank}} wait share"))),
            Panel(17, "Training loss per worker", "Training loss of each worker's last step.",
                  (Target(f"max by (trial, rank) ({_rs('rsray_train_loss')}{{{_WORKER}}})",
                          "{{trial}} rank {{rank}}"),)),
            Panel(18, "GPU memory per worker (max allocated)",
                  "torch.cuda.max_memory_allocated() of each worker's GPU.",
                  (Target(f"max by (trial, rank) "
                          f"({_rs('rsray_gpu_memory_max_allocated_bytes')}{{{_WORKER}}})",
                          "{{trial}} rank {{rank}}"),),
                  unit="bytes", needs_gpu=True),
        )),
    ),
)


# --- Ray built-ins for a training cluster ---------------------------------------------------

_S = 'SessionName=~"$SessionName", instance=~"$instance"'

RAY_CLUSTER = Dashboard(
    uid="rsray-ray-cluster",
    title="rsray: Ray training cluster",
    description="Ray's built-in node, object store, Ray Data and Ray Train metrics that matter "
                "to an rsray training cluster",
    file_name="ray_training_cluster.json",
    variables=(
        Variable("SessionName", "Ray session",
                 "label_values(ray_node_cpu_utilization, SessionName)"),
        Variable("instance", "Node",
                 'label_values(ray_node_cpu_utilization{SessionName=~"$SessionName"}, instance)'),
    ),
    rows=(
        Row(1, "Nodes", (
            Panel(2, "CPU utilisation per node",
                  "Host CPU utilisation of each Ray node (head: Ray services only; CPU "
                  "workers: Ray Data; GPU workers: training + input).",
                  (Target(f"avg by (instance, RayNodeType) (ray_node_cpu_utilization{{{_S}}})"
                          " / 100", "{{RayNodeType}} {{instance}}"),),
                  unit="percentunit", min=0, max=1),
            Panel(3, "GPU utilisation per GPU",
                  "Utilisation of each GPU (NVIDIA/AMD, read by Ray's metrics agent).",
                  (Target("avg by (instance, GpuIndex, GpuDeviceName) "
                          f"(ray_node_gpus_utilization{{{_S}}}) / 100",
                          "{{instance}} GPU {{GpuIndex}} {{GpuDeviceName}}"),),
                  unit="percentunit", min=0, max=1, needs_gpu=True),
            Panel(4, "GPU memory used per GPU", "GPU memory in use on each GPU.",
                  (Target("sum by (instance, GpuIndex) "
                          f"(ray_node_gram_used{{{_S}}}) * 1024 * 1024",
                          "{{instance}} GPU {{GpuIndex}}"),),
                  unit="bytes", needs_gpu=True),
            Panel(5, "Node memory used", "Host memory used on each node, and its total.",
                  (Target(f"sum by (instance) (ray_node_mem_used{{{_S}}})", "{{instance}}"),
                   Target(f"sum by (instance) (ray_node_mem_total{{{_S}}})",
                          "{{instance}} total")),
                  unit="bytes"),
            Panel(6, "Nodes by type", "Alive Ray nodes by type (head / worker).",
                  (Target(f"count by (RayNodeType) (ray_node_cpu_count{{{_S}}})",
                          "{{RayNodeType}}"),)),
            Panel(7, "Logical CPU and GPU slots in use",
                  "Ray's logical resources in use and in total (the head advertises no CPU "
                  "or GPU: it runs no training).",
                  (Target(f'sum by (Name) (ray_resources{{Name=~"CPU|GPU", State="USED", {_S}}})',
                          "{{Name}} used"),
                   Target(f'sum by (Name) (ray_resources{{Name=~"CPU|GPU", {_S}}})',
                          "{{Name}} total"))),
        )),
        Row(8, "Object store", (
            Panel(9, "Object store memory by location",
                  "Object store bytes in shared memory, on disk (fallback) and spilled.",
                  (Target(f"sum by (Location) (ray_object_store_memory{{{_S}}})",
                          "{{Location}}"),),
                  unit="bytes"),
            Panel(10, "Object store usage",
                  "Used object store memory over the object store's capacity, per node.",
                  (Target(f"sum by (instance) (ray_object_store_used_memory{{{_S}}})\n  / "
                          f'sum by (instance) (ray_resources{{Name="object_store_memory", {_S}}})',
                          "{{instance}}"),),
                  unit="percentunit", min=0),
        )),
        Row(11, "Ray Data", (
            Panel(12, "Operator output rows/s",
                  "Rows per second produced by each Ray Data operator (read, decode, "
                  "augment...).",
                  (Target(f"sum by (dataset, operator) "
                          f"(rate(ray_data_output_rows{{{_S}}}[{_R}]))",
                          "{{operator}} {{dataset}}"),)),
            Panel(13, "Operator output bytes/s", "Bytes per second produced by each operator.",
                  (Target(f"sum by (dataset, operator) "
                          f"(rate(ray_data_output_bytes{{{_S}}}[{_R}]))",
                          "{{operator}} {{dataset}}"),),
                  unit="Bps"),
            Panel(14, "Operator tasks running", "Ray Data tasks running per operator.",
                  (Target(f"sum by (dataset, operator) (ray_data_num_tasks_running{{{_S}}})",
                          "{{operator}} {{dataset}}"),)),
            Panel(15, "Operator object store memory",
                  "Object store bytes held by each operator's queues and outputs.",
                  (Target(f"sum by (dataset, operator) (ray_data_obj_store_mem_used{{{_S}}})",
                          "{{operator}} {{dataset}}"),),
                  unit="bytes"),
            Panel(16, "Train ingest: share of time blocked on Ray Data",
                  "Seconds per second that each training split iterator spent blocked "
                  "waiting for Ray Data (Ray's view of the data-starved signal).",
                  (Target(f"sum by (dataset, split) "
                          f"(rate(ray_data_iter_total_blocked_seconds{{{_S}}}[{_R}]))",
                          "{{split}} {{dataset}}"),),
                  unit="percentunit", min=0),
        )),
        Row(17, "Ray Train and tasks", (
            Panel(18, "Train runs by controller state",
                  "Ray Train controller state of each run (1 = the current state).",
                  (Target("max by (ray_train_run_name, ray_train_controller_state) "
                          f"(ray_train_controller_state{{{_S}}})",
                          "{{ray_train_run_name}} {{ray_train_controller_state}}"),)),
            Panel(19, "Tasks by state", "Ray tasks by scheduling state, cluster-wide.",
                  (Target(f"sum by (State) (ray_tasks{{{_S}}})", "{{State}}"),)),
        )),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (TRAINING, RAY_CLUSTER)
"""Every dashboard rendered into ``dashboards/``."""


PROMETHEUS_FILE = "prometheus.yml"
RAY_SERVICE_DISCOVERY_FILE = "/tmp/ray/prom_metrics_service_discovery.json"
"""Where a Ray head (default ``--temp-dir``) writes its Prometheus service-discovery file."""


def prometheus_config(sd_file: str = RAY_SERVICE_DISCOVERY_FILE, *,
                      scrape_interval: str = "10s",
                      loopback_targets: bool = False) -> dict[str, Any]:
    """A Prometheus configuration that scrapes every node listed in Ray's discovery file.

    Args:
        sd_file: Ray's service-discovery file (``<ray temp dir>/prom_metrics_service_discovery
            .json``).
        scrape_interval: how often to scrape (Ray's agents refresh their values every ~10 s).
        loopback_targets: rewrite every target's host to 127.0.0.1, keeping its port (single-
            machine use: Ray lists the node's network address, but the check never leaves
            the loopback interface).
    """
    job: dict[str, Any] = {"job_name": "ray", "file_sd_configs": [{"files": [sd_file]}]}
    if loopback_targets:
        job["relabel_configs"] = [{"source_labels": ["__address__"], "regex": r".*:(\d+)",
                                   "target_label": "__address__", "replacement": "127.0.0.1:$1"}]
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [job],
    }


def render_prometheus_config(**kwargs: Any) -> str:
    """:func:`prometheus_config` as the YAML committed in ``dashboards/prometheus.yml``."""
    header = ("# Prometheus scraping a Ray cluster through Ray's service-discovery file.\n"
              "# Generated by `python -m rsray.ops.dashboards --out dashboards`; run on the "
              "head node:\n#   prometheus --config.file=dashboards/prometheus.yml\n")
    return header + yaml.safe_dump(prometheus_config(**kwargs), sort_keys=False)



def write_all(out: Path) -> list[Path]:
    """Render every dashboard and the Prometheus configuration into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for dash in DASHBOARDS:
        path = out / dash.file_name
        path.write_text(dash.render())
        written.append(path)
    path = out / PROMETHEUS_FILE
    path.write_text(render_prometheus_config())
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m rsray.ops.dashboards --out dashboards``."""
    parser = argparse.ArgumentParser(description="Render rsray's Grafana dashboards and "
                                                 "Prometheus configuration.")
    parser.add_argument("--out", default="dashboards", help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in write_all(Path(args.out)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
