"""Missing modalities: zeros plus a presence bit that the fusion models honour.

A sample whose ``<modality>_present`` bit is 0 must get the same output whatever that
modality's tensor holds (the model weights, gates or attends over present modalities only);
with every bit 1 the output is what the model gives without bits.
"""

from __future__ import annotations

import pytest
import torch

from rsray.models import create_model

MODELS = ["test_late_fusion_cnn", "test_middle_fusion_cnn", "test_gated_fusion_cnn",
          "test_attention_fusion_cnn"]
MIDDLE_CONCAT = ("test_middle_fusion_cnn", {"merge": "concat"})
LATE_FEATURE = ("test_late_fusion_cnn", {"level": "feature"})
LATE_GEOMETRIC = ("test_late_fusion_cnn", {"combine": "geometric"})
SOFTMAX_GATES = ("test_gated_fusion_cnn", {"gate_activation": "softmax"})


@pytest.mark.parametrize(("name", "params"), [(m, {}) for m in MODELS]
                         + [MIDDLE_CONCAT, LATE_FEATURE, LATE_GEOMETRIC, SOFTMAX_GATES])
def test_missing_modality_does_not_reach_the_output(name: str, params: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, modalities={"s2": 4, "s1": 2}, num_classes=3, **params).eval()
    s2, s1 = torch.randn(4, 4, 32, 32), torch.randn(4, 2, 32, 32)
    present = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        a = model({"s2": s2, "s1": s1 * present[:, None, None, None], "s1_present": present})
        b = model({"s2": s2, "s1": s1 * 5 + 3, "s1_present": present})
        full = model({"s2": s2, "s1": s1, "s1_present": torch.ones(4)})
        plain = model({"s2": s2, "s1": s1})
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a[present == 0], b[present == 0])  # absent: input ignored
    assert not torch.allclose(a[present == 1], b[present == 1])  # present: input used
    torch.testing.assert_close(full, plain)  # all present: the model as without bits


def test_gradients_flow_with_missing_modalities() -> None:
    model = create_model("test_gated_fusion_cnn", modalities={"s2": 4, "s1": 2}, num_classes=3)
    out = model({"s2": torch.randn(2, 4, 32, 32), "s1": torch.zeros(2, 2, 32, 32),
                 "s1_present": torch.tensor([0.0, 1.0])})
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _plan():
    from rsray.data.plan import DecodePlan, GroupPlan, ModalityPlan

    mods = tuple(ModalityPlan(m, (GroupPlan(m, (c, 8, 8), "float32"),), tuple("ab"[:c]),
                              (0.0,) * c, (1.0,) * c, optional=True)
                 for m, c in (("s2", 2), ("s1", 1)))
    return DecodePlan(mods, num_classes=3, image_size=8, resample="bilinear")


def test_dropout_never_removes_the_last_present_modality() -> None:
    import numpy as np

    from rsray.data.augment import augment_device, augment_raw

    plan = _plan()
    n = 64
    missing_s1 = (np.arange(n) % 2).astype(np.uint8)  # odd rows have no s1
    batch = {"label": np.zeros((n, 3), np.uint8), "s2": np.ones((n, 2, 8, 8), np.float32),
             "s1": np.ones((n, 1, 8, 8), np.float32), "drop_s2": np.zeros(n, np.uint8),
             "drop_s1": missing_s1.copy()}
    out = augment_raw({k: v.copy() for k, v in batch.items()}, plan, modality_dropout=1.0,
                      ops={"s2": (), "s1": ()}, rng=np.random.default_rng(0))
    assert not (out["drop_s2"] & out["drop_s1"]).any()  # never both
    assert (out["drop_s1"][missing_s1 == 1] == 1).all()  # missing stays missing
    assert out["drop_s2"][missing_s1 == 1].sum() == 0  # its only modality is kept
    assert (out["drop_s2"] | out["drop_s1"])[missing_s1 == 0].all()  # p=1: one dropped
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}
    out_t = augment_device(tb, plan, modality_dropout=1.0, ops={"s2": (), "s1": ()},
                           generator=torch.Generator().manual_seed(0))
    d2, d1 = out_t["drop_s2"].numpy(), out_t["drop_s1"].numpy()
    assert not (d2 & d1).any() and (d1[missing_s1 == 1] == 1).all()
    assert (d2 | d1)[missing_s1 == 0].all()


def test_finalize_emits_presence_bits() -> None:
    import numpy as np

    from rsray.data.finalize import finalize_batch

    plan = _plan()
    batch = {"label": np.zeros((2, 3), np.uint8), "s2": np.ones((2, 2, 8, 8), np.float32),
             "s1": np.full((2, 1, 8, 8), 7.0, np.float32),
             "drop_s2": np.zeros(2, np.uint8), "drop_s1": np.array([0, 1], np.uint8)}
    out = finalize_batch(batch, plan)
    assert out["s1_present"].tolist() == [1.0, 0.0] and out["s2_present"].tolist() == [1, 1]
    assert out["s1"][1].abs().sum() == 0 and out["s1"][0].abs().sum() > 0
