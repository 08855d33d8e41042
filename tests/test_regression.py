"""The regression task: targets in the shards, loss, metrics, headline mode, the twin's rule.

Metric values are checked against numpy formulas (RMSE, MAE, R2 = 1 - SS_res / SS_tot per
target), the twin's rule against the pixels and covariate layers the reader returns, and the
shard round trip (float32 targets, training statistics, predict's per-target values) on one
small prepared twin shared by the tests of this file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rsray.config import Config
from rsray.data.schema import DatasetSpec, Discovery
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError

N_TWIN = 12


def _np_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    err = pred - y
    ss_res = (err**2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return {"rmse": np.sqrt((err**2).mean(0)), "mae": np.abs(err).mean(0),
            "r2": 1 - ss_res / ss_tot}


def test_regression_metrics_match_numpy_in_target_units():
    from rsray.train.task_metrics import RegressionMetrics

    rng = np.random.default_rng(0)
    mean, std = np.array([10.0, -3.0]), np.array([4.0, 0.5])
    y = rng.normal(size=(37, 2)) * std + mean
    pred = y + rng.normal(size=(37, 2)) * np.array([2.0, 0.1])
    m = RegressionMetrics(2, ["lst", "greenness"], mean.tolist(), std.tolist())
    z = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    m.update(z(pred[:20]), z(y[:20]))  # two batches: the states add up
    m.update(z(pred[20:]), z(y[20:]))
    got, want = m.compute(), _np_metrics(pred, y)
    for i, name in enumerate(["lst", "greenness"]):
        for k in ("rmse", "mae", "r2"):
            assert got[f"{k}/{name}"] == pytest.approx(want[k][i], rel=1e-4, abs=1e-5), (k, name)
    for k in ("rmse", "mae", "r2"):
        assert got[f"{k}_mean"] == pytest.approx(want[k].mean(), rel=1e-4)
    assert got["r2/lst"] < got["r2/greenness"] < 1  # lst got the larger error
    m.reset()
    perfect = torch.tensor([[0.0], [1.0], [2.0]])
    one = RegressionMetrics(1, ["t"])
    one.update(perfect, perfect)
    assert one.compute() == {"rmse_mean": 0.0, "mae_mean": 0.0, "r2_mean": 1.0, "rmse/t": 0.0,
                             "mae/t": 0.0, "r2/t": 1.0}
    with pytest.raises(ValueError, match=r"expected \(N, 1\)"):
        one.update(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="std"):
        RegressionMetrics(1, ["t"], [0.0], [0.0])


def test_loss_choice_values_and_misfits():
    from rsray.train.losses import RegressionLoss, build_loss

    p, y = torch.tensor([[1.0, 2.0], [0.0, -1.0]]), torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    auto = build_loss(Config().train, "regression")
    assert isinstance(auto, RegressionLoss) and auto.kind == "mse"
    assert float(auto(p, y)) == pytest.approx((1 + 0 + 4 + 1) / 4)
    mae = build_loss(Config().with_overrides({"train.loss": "mae"}).train, "regression")
    assert float(mae(p, y)) == pytest.approx((1 + 0 + 2 + 1) / 4)
    with pytest.raises(ConfigError, match="does not fit a regression dataset"):
        build_loss(Config().with_overrides({"train.loss": "bce"}).train, "regression")
    with pytest.raises(ConfigError, match="does not fit a multilabel"):
        build_loss(Config().with_overrides({"train.loss": "mse"}).train, "multilabel")


def test_headline_metric_and_its_direction():
    from rsray.train.tasks import early_stopping_metric, metric_mode, resolve_for_task

    cfg = resolve_for_task(Config(), "regression")
    assert (cfg.train.metric, cfg.train.mode) == ("val_r2_mean", "max")
    for metric, mode in [("val_rmse_mean", "min"), ("test_mae/lst", "min"), ("val_loss", "min"),
                         ("val_hamming_loss", "min"), ("val_r2/lst", "max"), ("val_miou", "max"),
                         ("val_ap_macro", "max")]:
        assert metric_mode(metric) == mode, metric
        cfg = resolve_for_task(Config().with_overrides({"train.metric": metric}), "regression")
        assert cfg.train.mode == mode
    stop = Config().with_overrides({"train.metric": "val_r2_mean", "train.mode": "max",
                                    "train.early_stopping_metric": "val_rmse_mean"})
    assert early_stopping_metric(stop) == ("val_rmse_mean", "min")


def test_task_standardises_targets_from_the_manifest_stats():
    from rsray.train.tasks import build_task

    info = {"target_stats": {"a": {"mean": 10.0, "std": 2.0}, "b": {"mean": 0.0, "std": 0.0}}}
    task = build_task(Config(), "regression", ["a", "b"], (), info)
    z = task.target({"label": torch.tensor([[14.0, 3.0]])})
    assert z.tolist() == [[2.0, 3.0]]  # a constant target (std 0) keeps std 1
    task.metrics.update(z, z)
    assert task.metrics.units(z).tolist() == [[14.0, 3.0]]
    with pytest.raises(ConfigError, match=r"\['b'\] have no training statistics"):
        build_task(Config(), "regression", ["a", "b"], (), {"target_stats": {"a": {}}})


class _Listing:
    """A source of three label-less patches (what WithTargets wraps)."""

    spec = DatasetSpec("fake", "multilabel", ("x",), ())

    def discover(self) -> Discovery:
        return Discovery([{"patch_id": p, "split": "train"} for p in ("p1", "p2", "p3")])

    def read(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"patch_id": item["patch_id"], "split": "train", "label": np.ones(1, np.uint8),
                "arrays": {}, "meta": {}}


def test_targets_table_validation(tmp_path: Path):
    from rsray.data.sources.covariates import WithTargets

    table = tmp_path / "t.csv"
    table.write_text("patch_id,a,b\np1,1.5,2\np2,nan,1\np2,3,4\nzz,1,1\n")
    src = WithTargets(_Listing(), table)
    disc = src.discover()
    assert src.spec.task == "regression" and src.spec.classes == ("a", "b")
    assert [it["patch_id"] for it in disc.items] == ["p1"]
    reasons = sorted(r["reason"] for r in disc.rejects)
    assert all(r["path"] == str(table) for r in disc.rejects)
    assert reasons == ["line 3: patch p2: target a='nan' is not a finite number",
                       "line 4: patch p2: a second row for this patch",
                       "no target row for patch p3"]
    assert disc.info["targets"]["unused_rows"] == 1
    assert src.read(disc.items[0])["label"].tolist() == [1.5, 2.0]
    assert WithTargets(_Listing(), table, ["b"]).discover().items[0]["targets"] == [2.0]
    with pytest.raises(DatasetNotFoundError, match=r"no\.csv: targets table not found"):
        WithTargets(_Listing(), tmp_path / "no.csv").discover()
    (tmp_path / "bad.csv").write_text("id,a\np1,1\n")
    with pytest.raises(RsrayError, match=r"bad\.csv: the targets table needs a 'patch_id'"):
        WithTargets(_Listing(), tmp_path / "bad.csv").discover()
    with pytest.raises(RsrayError, match=r"t\.csv: target column\(s\) \['c'\] not in the header"):
        WithTargets(_Listing(), table, ["c"]).discover()


def test_prepare_rejects_non_finite_or_misshaped_targets():
    from rsray.data.prepare import _add_label

    spec = DatasetSpec("fake", "regression", ("a", "b"), ())
    rows: dict[str, list[Any]] = {"label": []}
    _add_label(rows, spec, {"patch_id": "p0", "label": np.array([1.0, 2.5])})
    assert rows["label"] == [[1.0, 2.5]]
    with pytest.raises(PatchError) as exc:
        _add_label(rows, spec, {"patch_id": "dir/p1", "label": np.array([1.0, np.inf])})
    assert exc.value.path == "dir/p1" and "target b is not a finite float32" in exc.value.reason
    with pytest.raises(PatchError, match=r"label of shape \(3,\), expected \(2,\)"):
        _add_label(rows, spec, {"patch_id": "p2", "label": np.zeros(3)})


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rsray.data.sources.covariates.regression import write_regression_twin

    return write_regression_twin(tmp_path_factory.mktemp("reg_twin") / "raw", N_TWIN, 1,
                                 progress=False)


def test_twin_target_follows_the_temperature_layer(twin: Path):
    """The rule on what the reader returns: lst minus its S2 part tracks the warped layer."""
    from rsray.data.sources.covariates.regression import (
        GREEN_GAIN,
        LST_NDVI_GAIN,
        LST_NDVI_REF,
        regression_source,
    )

    src = regression_source(twin)
    disc = src.discover()
    assert src.spec.classes == ("lst", "greenness") and not disc.rejects
    cov, rest, green, ndvi = [], [], [], []
    for item in disc.items:
        s = src.read(item)
        b = s["arrays"]["s2_10m"].astype(np.float64)  # B02 B03 B04 B08
        v = float(((b[3] - b[2]) / (b[3] + b[2])).mean())
        cov.append(float(s["arrays"]["temperature"].mean()))
        rest.append(float(s["label"][0]) - LST_NDVI_GAIN * (LST_NDVI_REF - v))
        green.append(float(s["label"][1]))
        ndvi.append(GREEN_GAIN * v)
    assert len(cov) == N_TWIN and np.std(cov) > 2.0  # the patches span several degrees
    assert np.corrcoef(rest, cov)[0, 1] > 0.9
    assert abs(np.mean(np.subtract(rest, cov))) < 1.0  # T_air itself, not just correlated
    assert np.corrcoef(green, ndvi)[0, 1] > 0.9


def test_shards_hold_float_targets_stats_and_predict_writes_values(twin: Path,
                                                                   tmp_path: Path, ray_session):
    import pyarrow.parquet as pq

    from rsray.config import DataConfig
    from rsray.data.decode import decode_raw
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import prepare
    from rsray.data.sources.covariates.regression import regression_source
    from rsray.evaluate.predict import Predictor
    from rsray.models import create_model
    from rsray.train.run_plan import RunPlan
    from rsray.train.tasks import build_task

    uri = str(tmp_path / "shards")
    m = prepare(regression_source(twin), uri).manifest
    assert (m.dataset, m.task, m.classes) == ("covariates_regression", "regression",
                                              ["lst", "greenness"])
    table = pq.read_table(m.shard_paths("train")[0])
    label_type = table.schema.field("label").type
    assert label_type.list_size == 2 and str(label_type.value_type) == "float"
    y = np.asarray(table["label"].to_pylist(), dtype=np.float64)
    stats = m.info["label"]["target_stats"]
    if len(m.shard_paths("train")) == 1:
        assert stats["lst"]["mean"] == pytest.approx(y[:, 0].mean(), rel=1e-5)
        assert stats["greenness"]["std"] == pytest.approx(y[:, 1].std(), rel=1e-4)

    cfg = DataConfig(uri=uri, image_size=32, modalities=["s2", "temperature"])
    plan = make_plan(m, cfg)
    raw = decode_raw(table, plan)
    assert raw["label"].dtype == np.float32 and np.allclose(raw["label"], y, atol=1e-5)
    batch = finalize_batch(raw, plan)
    model = create_model("test_early_fusion_cnn", modalities=plan.channels, num_classes=2)
    task = build_task(Config(), "regression", m.classes, (), m.info["label"])
    loss = task.loss(model(batch), task.target(batch))
    loss.backward()
    assert torch.isfinite(loss) and abs(float(task.target(batch).mean())) < 1.0

    model.eval()
    conf = Config().with_overrides({"data.uri": uri, "data.modalities": cfg.modalities,
                                    "data.image_size": 32, "model.name": "test_early_fusion_cnn",
                                    "model.params": {}})
    run = RunPlan.build(conf, m)  # what predict() hands its actors
    assert run.model_kwargs() == {"modalities": plan.channels, "num_classes": 2}
    spec = {"run": run, "drop": []}
    pred = Predictor(spec, [ray_session.put(model.state_dict())])(table)
    with torch.no_grad():
        want = model(batch).numpy() * np.array([stats[c]["std"] for c in m.classes]) + np.array(
            [stats[c]["mean"] for c in m.classes])
    assert pred["pred"].shape == (len(y), 2) and np.allclose(pred["target"], y, atol=1e-5)
    assert np.allclose(pred["pred"], want, rtol=1e-4, atol=1e-3)
    assert not math.isnan(float(pred["pred"].sum()))
