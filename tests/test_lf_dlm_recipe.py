"""LF-DLM branch-wise training and the fusion weight chosen on validation (issue 10, item 6).

lf-dlm-flair2-late-fusion.txt trains the UNetFormer and the U-TAE separately and picks the
0.7 / 0.3 weights afterwards; rsray's recipe does the same through its real training and
evaluation path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import pytest
import torch

from rsray.errors import ConfigError
from rsray.models import create_model

MODALITIES = {"aerial": 5, "s2": 10}
K, B, T, SIZE, SERIES = 4, 2, 3, 64, 16


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"aerial": torch.randn(B, 5, SIZE, SIZE, generator=g),
            "s2": torch.randn(B, T, 10, SERIES, SERIES, generator=g),
            "s2_mask": torch.ones(B, T, dtype=torch.bool),
            "s2_dates": torch.arange(T).float().repeat(B, 1) * 30}


def _model(**kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("test_lf_dlm", modalities=MODALITIES, num_classes=K, crop_size=8,
                        **kw).eval()


def test_a_branch_alone_builds_only_itself_under_the_fused_names() -> None:
    fused = _model()
    aerial = _model(branch="aerial")
    series = _model(branch="series", output_size=SIZE)
    keys = set(fused.state_dict())
    assert set(aerial.state_dict()) == {k for k in keys if k.startswith("aerial.")}
    assert set(series.state_dict()) == {k for k in keys if k.startswith("series.")}
    assert aerial.modalities == ("aerial",) and series.modalities == ("s2",)
    # each branch needs only its own modality
    x = _inputs()
    only_s2 = {k: v for k, v in x.items() if k != "aerial"}
    assert series(only_s2).shape == (B, K, SIZE, SIZE)
    assert aerial({"aerial": x["aerial"]}).shape == (B, K, SIZE, SIZE)
    with pytest.raises(ConfigError, match="branch"):
        _model(branch="both_and_more")
    with pytest.raises(ConfigError, match="series_modality"):
        create_model("test_lf_dlm", modalities={"aerial": 5}, num_classes=K, branch="series")


def test_branches_trained_apart_load_into_the_fusion_exactly() -> None:
    """The fused model built from two branch models outputs their geometric mean."""
    torch.manual_seed(1)
    aerial = create_model("test_lf_dlm", modalities={"aerial": 5}, num_classes=K,
                          branch="aerial", crop_size=8).eval()
    torch.manual_seed(2)
    series = create_model("test_lf_dlm", modalities={"s2": 10}, num_classes=K,
                          branch="series", crop_size=8, output_size=SIZE).eval()
    fused = _model(aerial_weight=0.7)
    fused.aerial[0].load_state_dict(aerial.aerial[0].state_dict())
    fused.series.load_state_dict(series.series.state_dict())
    x = _inputs()
    with torch.no_grad():
        log_pa, log_ps = fused.branch_log_probs(x)
        torch.testing.assert_close(log_pa, aerial(x))
        torch.testing.assert_close(log_ps, series(x))
        expected = torch.log_softmax(0.7 * aerial(x) + 0.3 * series(x), dim=1)
        torch.testing.assert_close(fused(x), expected)


@pytest.mark.slow
def test_recipe_trains_branches_apart_and_picks_the_weight_on_validation(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, ray_session: Any) -> None:
    from rsray.config import Config
    from rsray.data.prepare import synthetic_shards
    from rsray.data.shards import read_manifest
    from rsray.evaluate import evaluate_checkpoint
    from rsray.recipes.lf_dlm import run_recipe

    uri = synthetic_shards("flair2", tmp_path_factory.mktemp("lfdlm"), 24, seed=0)
    size = int(read_manifest(uri).info["label"]["size"])  # train at the synthetic tiles' size
    cfg = Config().with_overrides({
        "data.uri": uri, "data.batch_size": 8, "data.image_size": size,
        "data.modalities": ["aerial", "s2"], "data.augment": False,
        "model.name": "test_lf_dlm", "model.params": {"crop_size": 10},
        "optim.scheduler": "poly", "optim.lr": 3e-3, "train.max_epochs": 1,
        "train.storage_path": str(tmp_path / "runs"), "train.name": "recipe",
        "train.log_every_n_steps": 1000, "scaling.num_workers": 1,
        "scaling.cpus_per_worker": 1.0, "scaling.use_gpu": "no",
    })
    out = "memory://lfdlm-recipe/out"  # object storage: everything is uploaded at the end
    result = run_recipe(cfg, out_dir=out, weights=[0.0, 0.5, 1.0], test_splits=["test"])

    assert len(result.aerial_checkpoints) == 1 and result.series_checkpoint
    assert result.metric == "val_miou"
    assert [r["aerial_weight"] for r in result.grid] == [0.0, 0.5, 1.0]
    best = max(result.grid, key=lambda r: r["val_miou"])
    assert result.best_weight == best["aerial_weight"]
    # weight 1 is the aerial branch alone, weight 0 the series alone: the grid's end points
    # are those checkpoints' own validation scores (nothing was retrained)
    alone = {w: evaluate_checkpoint(ckpt, uri, ["val"])["val"]["miou"]
             for w, ckpt in ((1.0, result.aerial_checkpoints[0]),
                             (0.0, result.series_checkpoint))}
    for row in result.grid:
        if row["aerial_weight"] in alone:
            assert row["val_miou"] == pytest.approx(alone[row["aerial_weight"]], abs=1e-5)
    # the fused checkpoint is an ordinary rsray checkpoint, evaluated on test
    assert set(result.test) == {"test"} and result.test["test"]["n_samples"] > 0
    assert result.fused_checkpoint == f"{out}/fused_checkpoint"
    again = evaluate_checkpoint(result.fused_checkpoint, uri, ["val"])["val"]["miou"]
    assert again == pytest.approx(best["val_miou"], abs=1e-5)
    fs = fsspec.filesystem("memory")
    doc = json.loads(fs.cat(f"{out}/recipe.json"))
    assert doc["best_weight"] == result.best_weight and doc["synthetic"] is True
    assert doc["fused_checkpoint"] == result.fused_checkpoint
    assert fs.size(f"{out}/weights.png") > 0
