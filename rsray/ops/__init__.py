"""Cluster operations: Grafana dashboards, Prometheus configuration, job submission."""
