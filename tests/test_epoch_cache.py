"""Issue 11: the cheap finiteness guard, splits kept in memory across epochs, checkpoint cadence."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rsray.data.pipeline import DecodePlan, GroupPlan, ModalityPlan, finalize_batch
from rsray.errors import ShardIntegrityError


def _plan(**kw) -> DecodePlan:
    s2 = ModalityPlan("s2", (GroupPlan("s2_10m", (2, 8, 8), "uint16"),), ("a", "b"),
                      (100.0, 100.0), (10.0, 10.0))
    s1 = ModalityPlan("s1", (GroupPlan("s1", (1, 8, 8), "float32"),), ("vv",), (0.0,), (1.0,))
    return DecodePlan((s2, s1), 3, 8, "bilinear", **kw)


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    return {"label": torch.zeros(n, 3, dtype=torch.uint8),
            "s2_10m": torch.full((n, 2, 8, 8), 7, dtype=torch.int32).to(torch.uint16),
            "s1": torch.zeros(n, 1, 8, 8), "drop_s2": torch.zeros(n, dtype=torch.uint8),
            "drop_s1": torch.zeros(n, dtype=torch.uint8)}


@pytest.mark.parametrize("full", [False, True])
def test_finite_guard_catches_nan_in_float_groups(full):
    plan = _plan(check_finite=full)
    out = finalize_batch(_batch(), plan)
    assert out["s2"].shape == (4, 2, 8, 8) and torch.isfinite(out["s1"]).all()
    bad = _batch()
    bad["s1"][2, 0, 3, 3] = float("nan")
    with pytest.raises(ShardIntegrityError, match="modality s1: non-finite"):
        finalize_batch(bad, plan)


def test_huge_finite_values_are_not_reported():
    # a sum that overflows to inf is confirmed element-wise before anything is raised
    batch = _batch()
    batch["s1"][:] = 3e38
    out = finalize_batch(batch, _plan())
    assert torch.isfinite(out["s1"]).all()


def test_integer_groups_are_never_scanned(monkeypatch):
    calls = []
    real = torch.isfinite

    def spy(x):
        calls.append(x.shape)
        return real(x)

    monkeypatch.setattr(torch, "isfinite", spy)
    finalize_batch(_batch(), dataclasses.replace(_plan(), modalities=_plan().modalities[:1]))
    assert calls == []
