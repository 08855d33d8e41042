"""``evaluate_checkpoint`` reproduces the training-time validation metrics of the epoch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rsray.errors import RsrayError
from rsray.evaluate import evaluate_checkpoint
from rsray.train.checkpoint import META_FILE


def _close(a: float, b: float | None) -> bool:
    b = math.nan if b is None else b  # meta.json stores NaN (a class absent from val) as null
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_evaluate_reproduces_validation_metrics(synthetic_shards, trained_checkpoint, tmp_path,
                                                ray_session):
    ckpt = trained_checkpoint
    meta = json.loads((Path(ckpt) / META_FILE).read_text())
    trained = meta["metrics"]
    assert trained["epoch"] == 2

    out = tmp_path / "eval"
    # another batch size than training's: the metrics must not depend on it
    results = evaluate_checkpoint(ckpt, synthetic_shards, ["val", "test"],
                                  drop_modalities=["s1"], out_dir=str(out), batch_size=5)
    assert set(results) == {"val", "val@drop=s1", "test", "test@drop=s1"}
    val = results["val"]
    expected = {k.removeprefix("val_"): v for k, v in trained.items() if k.startswith("val_")}
    assert any(k.startswith("ap_class/") for k in expected) and "ap_macro" in expected
    assert set(val) == {*expected, "n_samples"}
    for key, value in expected.items():
        assert _close(val[key], value), f"{key}: evaluate {val[key]} != training {value}"
    assert val["n_samples"] > 0

    # dropping S1 zeroes it (after normalisation): a different prediction, same samples
    dropped = results["val@drop=s1"]
    assert dropped["n_samples"] == val["n_samples"]
    assert dropped["loss"] != pytest.approx(val["loss"], rel=1e-6)

    doc = json.loads((out / "metrics.json").read_text())
    assert doc["epoch"] == 2 and doc["synthetic"] is True and doc["task"] == "multilabel"
    assert set(doc["evaluations"]) == set(results)
    for key, value in results["test"].items():
        stored = doc["evaluations"]["test"][key]
        assert (stored is None and math.isnan(value)) or stored == pytest.approx(value)

    # the run folder itself: its latest checkpoint (epoch 2) is picked
    again = evaluate_checkpoint(str(Path(ckpt).parent), None, ["val"])
    assert _close(again["val"]["ap_macro"], val["ap_macro"])

    with pytest.raises(RsrayError, match="not a modality"):
        evaluate_checkpoint(ckpt, synthetic_shards, ["val"], drop_modalities=["dem"])
    with pytest.raises(RsrayError, match="no split 'nope'"):
        evaluate_checkpoint(ckpt, synthetic_shards, ["nope"])
    with pytest.raises(RsrayError, match="no such checkpoint"):
        evaluate_checkpoint(str(tmp_path / "missing"), synthetic_shards, ["val"])
