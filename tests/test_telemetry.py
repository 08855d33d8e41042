"""Telemetry: what each call records, with which tags; a no-op without Ray.

The export path itself (Ray's metrics agent -> Prometheus) is checked end to end in
tests/test_prometheus_dashboards.py.
"""

import math

import pytest

from rsray.train import telemetry as tm


class FakeMetric:
    """Stands in for a ray.util.metrics object and validates tags like Ray does."""

    def __init__(self, spec: tm.MetricSpec) -> None:
        self.spec = spec
        self.calls: list[tuple[str, float, dict[str, str]]] = []

    def _check(self, tags: dict[str, str]) -> None:
        assert set(tags) == set(tm.TAG_KEYS + self.spec.extra_tags)
        assert all(isinstance(v, str) for v in tags.values())

    def set(self, value: float, tags: dict[str, str]) -> None:
        assert self.spec.kind == "gauge"
        self._check(tags)
        self.calls.append(("set", value, dict(tags)))

    def inc(self, value: float, tags: dict[str, str]) -> None:
        assert self.spec.kind == "counter" and value > 0
        self._check(tags)
        self.calls.append(("inc", value, dict(tags)))

    def observe(self, value: float, tags: dict[str, str]) -> None:
        assert self.spec.kind == "histogram"
        self._check(tags)
        self.calls.append(("observe", value, dict(tags)))


@pytest.fixture
def fake_ray(monkeypatch):
    registry = {name: FakeMetric(spec) for name, spec in tm.METRICS.items()}
    monkeypatch.setattr(tm, "_registry", registry)
    monkeypatch.setattr(tm.ray, "is_initialized", lambda: True)
    return registry


def test_noop_without_ray(monkeypatch):
    monkeypatch.setattr(tm.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(tm, "_registry", {})

    def boom(name):
        raise AssertionError(f"metric {name} touched without Ray")

    monkeypatch.setattr(tm, "_metric", boom)
    t = tm.Telemetry("exp", "trial_1", 0)
    assert not t.enabled
    t.step(samples=8, step_seconds=0.5, wait_seconds=0.1, loss=0.7, lr=1e-3)
    t.bytes_read("s2", 1024)
    t.epoch({"val_ap_macro": 0.5})


def test_step_records_throughput_wait_share_loss_lr(fake_ray):
    t = tm.Telemetry("exp", "trial_1", 1)
    t.step(samples=16, step_seconds=0.5, wait_seconds=0.2, loss=0.25, lr=3e-4)
    t.step(samples=16, step_seconds=0.25, wait_seconds=0.0, loss=float("nan"), lr=3e-4)
    tags = {"experiment": "exp", "trial": "trial_1", "rank": "1"}

    def calls(name):
        return fake_ray[f"rsray_{name}"].calls

    assert calls("train_samples") == [("inc", 16, tags), ("inc", 16, tags)]
    assert calls("train_steps") == [("inc", 1, tags), ("inc", 1, tags)]
    assert [c[1] for c in calls("train_seconds")] == [0.5, 0.25]
    assert calls("train_samples_per_second")[-1] == ("set", 64.0, tags)
    assert [c[1] for c in calls("train_step_seconds")] == [0.5, 0.25]
    shares = [c[1] for c in calls("train_data_wait_share")]
    assert shares == [pytest.approx(0.4), 0.0]
    assert calls("train_data_wait_seconds") == [("inc", 0.2, tags)]  # zero waits skipped
    assert calls("train_loss") == [("set", 0.25, tags)]  # NaN loss not recorded
    assert calls("train_lr")[-1] == ("set", 3e-4, tags)
    assert calls("gpu_memory_max_allocated_bytes") == []  # no CUDA here


def test_window_of_steps(fake_ray):
    t = tm.Telemetry("exp", "t", 0)
    t.step(samples=40, step_seconds=2.0, wait_seconds=0.5, loss=0.1, lr=0.01, steps=5)
    assert fake_ray["rsray_train_steps"].calls[0][1] == 5
    assert fake_ray["rsray_train_step_seconds"].calls[0][1] == pytest.approx(0.4)  # mean step
    assert fake_ray["rsray_train_samples_per_second"].calls[0][1] == 20.0
    assert fake_ray["rsray_train_data_wait_share"].calls[0][1] == 0.25


def test_bytes_read_per_modality(fake_ray):
    t = tm.Telemetry("exp", "exp", 0)
    t.bytes_read("s2", 1000)
    t.bytes_read("s1", 500)
    t.bytes_read("s1", 0)  # nothing to count; Ray's Counter refuses 0
    calls = fake_ray["rsray_shard_bytes_read"].calls
    assert [(c[1], c[2]["modality"]) for c in calls] == [(1000, "s2"), (500, "s1")]


def test_epoch_metrics_skip_non_numeric_and_nan(fake_ray):
    import numpy as np

    t = tm.Telemetry("exp", "t", 0)
    t.epoch({"epoch": 3, "val_ap_macro": np.float32(0.75), "val_miou": float("nan"),
             "val_loss": math.inf, "early_stopped": True, "note": "x"})
    calls = fake_ray["rsray_val_metric"].calls
    assert [(c[2]["metric"], c[1]) for c in calls] == [("val_ap_macro", 0.75)]
    assert fake_ray["rsray_epoch"].calls[0][1] == 3.0


def test_prometheus_names():
    assert tm.METRICS["rsray_train_samples"].prometheus_name == "ray_rsray_train_samples_total"
    assert tm.METRICS["rsray_train_loss"].prometheus_name == "ray_rsray_train_loss"
    assert all(name.startswith(tm.PREFIX) for name in tm.METRICS)


def test_real_ray_metric_objects_accept_our_tags():
    """The real ray.util.metrics classes (no Ray running: records are dropped) take our tags."""
    t = tm.Telemetry("exp", "t", 0)
    t.enabled = True  # exercise the real objects without a cluster
    t.step(samples=4, step_seconds=0.1, wait_seconds=0.05, loss=1.0, lr=0.1)
    t.bytes_read("s2", 10)
    t.epoch({"val_ap_macro": 0.5})
    assert set(tm._registry) >= {"rsray_train_samples", "rsray_val_metric",
                                 "rsray_shard_bytes_read"}
