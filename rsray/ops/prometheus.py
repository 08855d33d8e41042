"""A live check of rsray's dashboards against a running Prometheus.

The scrape configuration itself is rendered with the dashboards
(:func:`rsray.ops.dashboards.prometheus_config`); this module only reads them (one-way import).

``python -m rsray.ops.prometheus check --url http://127.0.0.1:9090`` evaluates every panel
query of rsray's dashboards against a running Prometheus and lists those that return no data.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from rsray.ops.dashboards import DASHBOARDS


class PrometheusError(RuntimeError):
    """Prometheus refused a query or could not be reached."""


def _get(url: str, path: str, params: dict[str, Any], timeout: float = 30) -> Any:
    full = f"{url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(full, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # 400/422 carry Prometheus's error message
        try:
            body = json.load(exc)
        except ValueError:
            raise PrometheusError(f"{full}: HTTP {exc.code}") from None
    except OSError as exc:
        raise PrometheusError(f"{url}: {exc}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"{params.get('query', path)}: {body.get('errorType')}: "
                              f"{body.get('error')}")
    return body["data"]


def query_range(url: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    """Prometheus ``/api/v1/query_range``: the series (with their values) of ``expr``."""
    return _get(url, "/api/v1/query_range",
                {"query": expr, "start": start, "end": end, "step": step})["result"]


def active_targets(url: str) -> list[dict]:
    """Prometheus ``/api/v1/targets``: the active scrape targets with their health."""
    return _get(url, "/api/v1/targets", {"state": "active"})["activeTargets"]


@dataclass(frozen=True)
class PanelCheck:
    """One query of one panel evaluated against Prometheus."""

    dashboard: str
    panel_id: int
    title: str
    expr: str
    needs_gpu: bool
    series: int
    error: str = ""


def check_dashboards(url: str, start: float, end: float, *, step: float = 5.0,
                     rate_interval: str = "1m") -> list[PanelCheck]:
    """Evaluate every panel query of rsray's dashboards over ``[start, end]``.

    Dashboard variables are set to "All"; ``$__rate_interval`` to ``rate_interval``.
    """
    checks = []
    for dash in DASHBOARDS:
        for panel in dash.panels():
            for target in panel.targets:
                expr = dash.expand(target.expr, rate_interval=rate_interval)
                try:
                    series, error = len(query_range(url, expr, start, end, step)), ""
                except PrometheusError as exc:
                    series, error = 0, str(exc)
                checks.append(PanelCheck(dash.uid, panel.id, panel.title, expr,
                                         panel.needs_gpu, series, error))
    return checks


def main(argv: list[str] | None = None) -> int:
    """``python -m rsray.ops.prometheus check --url URL [--minutes N]``."""
    parser = argparse.ArgumentParser(description="Check rsray's dashboards against Prometheus.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="evaluate every panel query; list empty ones")
    check.add_argument("--url", default="http://127.0.0.1:9090")
    check.add_argument("--minutes", type=float, default=60.0, help="look-back window")
    args = parser.parse_args(argv)
    end = time.time()
    results = check_dashboards(args.url, end - args.minutes * 60, end, step=15.0)
    empty = 0
    for r in results:
        state = "ERROR " + r.error if r.error else f"{r.series} series"
        if r.error or not r.series:
            empty += 1
        gpu = " (needs GPUs)" if r.needs_gpu else ""
        print(f"{r.dashboard:18s} {r.panel_id:3d} {r.title}{gpu}: {state}")
    print(f"{len(results) - empty}/{len(results)} queries returned data")
    return 1 if empty else 0


if __name__ == "__main__":
    raise SystemExit(main())
