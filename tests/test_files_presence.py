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
