"""Seeds of one configuration trained as one vectorised step (``torch.func.vmap``) equal
their separate runs: each seed its own initialisation, batch order and augmentation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from rsray.config import Config, load_config
from rsray.data.datasets import load_shard_set
from rsray.models.registry import create_model, list_models
from rsray.train.local import run_local
from rsray.train.loop import train_fn_per_worker
from rsray.train.run_plan import RunPlan, WorkerInput
from rsray.train.trial import warm_training_data
from rsray.train.vmapped import PackedRun, run_packed, vectorisable

VIT = "test_vit_early_fusion"
EPOCHS = 2
REL = 1e-4
"""Vectorising batches the matrix products, so sums may run in another order: each step may
differ by float32 rounding (~1e-7 relative), growing through the optimiser steps. Measured on
these runs (two epochs): at most 1.0e-7 relative; the bound leaves three orders of magnitude
for other CPUs' kernels. A seed with another's batch order, initialisation or augmentation
is off by 3e-2 to 1.4e-1 relative (measured by breaking the implementation that way)."""


def test_vectorisable_families() -> None:
    """The ViT fusions qualify; BatchNorm families do not, and the reason says why."""
    vits = [n for n in list_models() if n.startswith("test_vit_")]
    assert len(vits) >= 6
    for name in vits:
        model = create_model(name, modalities={"s2": 4, "s1": 2}, num_classes=3)
        assert vectorisable(model) is None, name
    reason = vectorisable(create_model("test_progressive_fusion", modalities={"s2": 4},
                                       num_classes=3))
    assert reason is not None and "BatchNorm" in reason


def _cfg(shards: str, tmp_path: Any, drop_path: float, model: str = VIT,
         modality_dropout: float = 0.0) -> Config:
    return load_config(None, [
        f"data.uri={shards}", "data.batch_size=16", "data.eval_splits=[val]",
        "data.image_size=32", f"data.modality_dropout={modality_dropout}",
        f"model.name={model}", f"model.params.drop_path_rate={drop_path}",
        "scaling.num_workers=1", "scaling.cpus_per_worker=0.5", f"train.max_epochs={EPOCHS}",
        "train.log_every_n_steps=1000", f"train.storage_path={tmp_path}"])


def _reports(cfg: Config, seeds: list[int], tmp_path: Any, packed: bool,
             tag: str) -> list[list[dict[str, Any]]]:
    """Every epoch's report of each seed's run: all packed in one vectorised step, or alone."""
    manifest = load_shard_set(cfg.data, ("train", "val"))
    reports: list[list[dict[str, Any]]] = [[] for _ in seeds]
    runs = []
    for i, seed in enumerate(seeds):
        c = cfg.with_overrides({"train.seed": seed})
        run = RunPlan.build(c, manifest, trial=f"{tag}{i}")
        data = warm_training_data(run.data, manifest)
        given = WorkerInput(run=run, augment=data.augment, streams=data.streams)
        uri = str(tmp_path / f"{tag}{i}")
        if packed:
            runs.append(PackedRun(given, data.datasets, uri, reports[i].append))
        else:
            run_local(c, train_fn=train_fn_per_worker, loop_config={"input": given},
                      datasets=data.datasets, run_uri=uri, on_report=reports[i].append)
    if packed:
        results = run_packed(runs)
        assert all(r.checkpoint is not None for r in results)
    return reports


def _curve(reports: list[dict[str, Any]]) -> list[float]:
    return [r[k] for r in reports for k in ("train_loss", "val_loss", "val_ap_macro")]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "vectorised"), [
    (VIT, True), ("test_vit_modality_token_fusion", False)])
def test_vectorised_seeds_equal_their_separate_runs(synthetic_shards, tmp_path, ray_session,
                                                    capfd, model: str,
                                                    vectorised: bool) -> None:
    """Three seeds in one vectorised step, the same three alone: per-epoch train loss,
    validation loss and AP equal within :data:`REL`; the seeds differ from each other (own
    initialisation, batch order, augmentation, modality dropout). The split's short last batch
    of each epoch trains outside the vectorised step.

    The modality-token ViT skips its token mask when every sample has every modality (a
    branch on a tensor's value, which ``vmap`` cannot take): its pack notices at the first
    batch with a dropped modality and trains seed by seed from there, still equal.
    """
    cfg = _cfg(synthetic_shards, tmp_path, 0.0, model, modality_dropout=0.3)
    seeds = [0, 1, 2]
    packed = _reports(cfg, seeds, tmp_path, True, "packed")
    fell_back = "cannot run under vmap" in capfd.readouterr().out
    assert fell_back != vectorised
    alone = _reports(cfg, seeds, tmp_path, False, "alone")
    for p, a in zip(packed, alone, strict=True):
        assert len(p) == len(a) == EPOCHS
        assert _curve(p) == pytest.approx(_curve(a), rel=REL, abs=1e-5)
        assert p[-1]["train_samples"] == a[-1]["train_samples"]
    losses = [tuple(_curve(p)) for p in packed]
    for i in range(len(seeds)):
        for j in range(i):
            assert max(abs(x - y) for x, y in zip(losses[i], losses[j], strict=True)) > 1e-2


@pytest.mark.slow
def test_vectorised_dropout_is_drawn_per_seed(synthetic_shards, tmp_path, ray_session) -> None:
    """Stochastic depth > 0: two runs of the same seed in one vectorised step still draw their
    own masks (their losses differ), and three packed seeds' final train losses spread like
    three separate seeds' (means within twice the larger standard deviation, plus 5 %)."""
    cfg = _cfg(synthetic_shards, tmp_path, 0.3)
    twins = _reports(cfg, [0, 0], tmp_path, True, "twin")
    assert _curve(twins[0]) != pytest.approx(_curve(twins[1]), rel=1e-4)
    seeds = [3, 4, 5]
    packed = [r[-1]["train_loss"] for r in _reports(cfg, seeds, tmp_path, True, "pk")]
    alone = [r[-1]["train_loss"] for r in _reports(cfg, seeds, tmp_path, False, "al")]
    assert all(math.isfinite(v) for v in packed + alone)
    spread = max(np.std(packed), np.std(alone))
    assert abs(np.mean(packed) - np.mean(alone)) <= 2 * spread + 0.05 * np.mean(alone)
    assert torch.tensor(packed).unique().numel() == len(seeds)


@pytest.mark.slow
def test_a_resumed_seed_joins_at_its_next_epoch(synthetic_shards, tmp_path,
                                                ray_session) -> None:
    """Seed 1 was interrupted after epoch 1 (its checkpoint in its run folder), seed 2 never
    started: packed, seed 2 trains epoch 1 alone, then both train epoch 2 vectorised; seed 1
    reports only epoch 2, equal to its separate run resumed from the same checkpoint."""
    import shutil

    cfg = _cfg(synthetic_shards, tmp_path, 0.0)
    _reports(cfg.with_overrides({"train.max_epochs": 1}), [1], tmp_path, False, "pre")
    for run in ("packed0", "alone0"):
        shutil.copytree(tmp_path / "pre0", tmp_path / run)
    packed = _reports(cfg, [1, 2], tmp_path, True, "packed")
    alone = _reports(cfg, [1], tmp_path, False, "alone")
    assert [r["epoch"] for r in packed[0]] == [2] and packed[0][0]["resumed_from_epoch"] == 1
    assert [r["epoch"] for r in packed[1]] == [1, 2]
    assert _curve(packed[0]) == pytest.approx(_curve(alone[0]), rel=REL, abs=1e-5)
