"""Missing modalities: zeros plus a presence bit that the fusion models honour.

A sample whose ``<modality>_present`` bit is 0 must get the same output whatever that
modality's tensor holds (the model weights, gates or attends over present modalities only);
with every bit 1 the output is what the model gives without bits.
"""

from __future__ import annotations

import pytest
import torch

from rsray.models import create_model

CNN = ["test_late_fusion_cnn", "test_middle_fusion_cnn", "test_gated_fusion_cnn",
       "test_attention_fusion_cnn", "test_early_fusion_cnn", "test_progressive_fusion",
       "test_progressive_fusion_encoder"]
VIT = ["test_vit_early_fusion", "test_vit_modality_token_fusion",
       "test_vit_channel_token_fusion", "test_vit_middle_fusion",
       "test_vit_cross_attention_fusion", "test_vit_sct_fusion"]
VARIANTS = [("test_middle_fusion_cnn", {"merge": "concat"}),
            ("test_late_fusion_cnn", {"level": "feature"}),
            ("test_late_fusion_cnn", {"combine": "geometric"}),
            ("test_gated_fusion_cnn", {"gate_activation": "softmax"}),
            ("test_single_modality_cnn", {"modality": "s1"}),
            ("test_early_fusion_cnn", {"metadata_at": "input"})]
ALL = [(m, {}) for m in CNN + VIT] + VARIANTS
S2_PRESENT = torch.tensor([1.0, 1.0, 0.0, 1.0])  # sample 2 has only s1
S1_PRESENT = torch.tensor([1.0, 0.0, 1.0, 0.0])  # samples 1 and 3 only s2


def _build(name: str, params: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    meta = 3 if params.get("metadata_at") == "input" else 0
    return create_model(name, modalities={"s2": 4, "s1": 2}, num_classes=3, metadata_dim=meta,
                        **params)


def _inputs(model: torch.nn.Module, s2: torch.Tensor, s1: torch.Tensor,
            bits: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    x = {"s2": s2, "s1": s1, **{f"{m}_present": b for m, b in (bits or {}).items()}}
    if getattr(model, "metadata_dim", 0):
        x["metadata"] = torch.linspace(-1, 1, 4 * model.metadata_dim).reshape(4, -1)
    return x


def _absent(x: torch.Tensor, present: torch.Tensor, garbage: torch.Tensor) -> torch.Tensor:
    return torch.where(present[:, None, None, None] == 1, x, garbage)


@pytest.mark.parametrize(("name", "params"), ALL)
def test_missing_modality_does_not_reach_the_output(name: str, params: dict) -> None:
    model = _build(name, params).eval()
    g = torch.Generator().manual_seed(1)
    s2, s1 = torch.randn(4, 4, 32, 32, generator=g), torch.randn(4, 2, 32, 32, generator=g)
    bits = {"s2": S2_PRESENT, "s1": S1_PRESENT}
    zeros = {"s2": _absent(s2, S2_PRESENT, torch.zeros(())),
             "s1": _absent(s1, S1_PRESENT, torch.zeros(()))}
    noise = {"s2": _absent(s2, S2_PRESENT, torch.randn(4, 4, 32, 32, generator=g) * 5 + 3),
             "s1": _absent(s1, S1_PRESENT, torch.randn(4, 2, 32, 32, generator=g) * 5 + 3)}
    used = {m: _absent(x * 2 - 1, bits[m], x) for m, x in zeros.items()}  # present values move
    with torch.no_grad():
        a = model(_inputs(model, zeros["s2"], zeros["s1"], bits))
        b = model(_inputs(model, noise["s2"], noise["s1"], bits))
        c = model(_inputs(model, zeros["s2"], used["s1"], bits))
        full = model(_inputs(model, s2, s1, {"s2": torch.ones(4), "s1": torch.ones(4)}))
        plain = model(_inputs(model, s2, s1))
    assert torch.isfinite(a).all()
    # absent: whatever the missing tensor holds (zeros or noise), the same output
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[S1_PRESENT == 1], c[S1_PRESENT == 1])  # present: input used
    assert torch.equal(full, plain)  # every bit 1: exactly the model without bits


@pytest.mark.parametrize(("name", "params"), ALL)
def test_training_with_missing_modalities(name: str, params: dict) -> None:
    """A few steps with samples missing either modality: finite loss, stand-ins learn."""
    model = _build(name, params).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fills = {n: p.detach().clone() for n, p in model.named_parameters() if "missing" in n}
    g = torch.Generator().manual_seed(2)
    for _ in range(2):
        s2, s1 = torch.randn(4, 4, 32, 32, generator=g), torch.randn(4, 2, 32, 32, generator=g)
        x = _inputs(model, s2 * S2_PRESENT[:, None, None, None],
                    s1 * S1_PRESENT[:, None, None, None], {"s2": S2_PRESENT, "s1": S1_PRESENT})
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
    moved = [n for n, p in model.named_parameters() if n in fills and not torch.equal(p, fills[n])]
    assert moved == list(fills)  # every stand-in was trained by the samples that lack it


def _seg_inputs(garbage: float | None, bits: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = {"aerial": torch.randn(4, 3, 64, 64, generator=g),
         "dem": torch.randn(4, 1, 64, 64, generator=g),
         "s2": torch.randn(4, 2, 4, 16, 16, generator=g),
         "s2_mask": torch.ones(4, 2, dtype=torch.bool),
         "s2_dates": torch.tensor([[10.0, 50.0]] * 4)}
    if garbage is not None:  # aerial missing in sample 2, dem and s2 in samples 1 and 3
        for m, p in (("aerial", S2_PRESENT), ("dem", S1_PRESENT), ("s2", S1_PRESENT)):
            keep = p.reshape(-1, *([1] * (x[m].ndim - 1))) == 1
            x[m] = torch.where(keep, x[m], torch.full_like(x[m], garbage))
    if bits:
        x |= {"aerial_present": S2_PRESENT, "dem_present": S1_PRESENT,
              "s2_present": S1_PRESENT}
    return x


@pytest.mark.parametrize(("name", "params"), [
    ("test_unetformer", {"image_modality": "aerial", "extra_modalities": ["dem"]}),
    ("test_lf_dlm", {"image_modality": "aerial", "series_modality": "s2", "crop_size": 16,
                     "output_size": 64}),
    ("test_unet_utae", {"image_modality": "aerial", "series_modality": "s2", "crop_size": 16}),
])
def test_segmentation_models_ignore_a_missing_modality(name: str, params: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, modalities={"aerial": 3, "dem": 1, "s2": 4}, num_classes=3,
                         **params).eval()
    with torch.no_grad():
        a, b = model(_seg_inputs(0.0)), model(_seg_inputs(7.0))
        full = model({**_seg_inputs(None, bits=False), "aerial_present": torch.ones(4),
                      "dem_present": torch.ones(4), "s2_present": torch.ones(4)})
        plain = model(_seg_inputs(None, bits=False))
    assert a.shape == (4, 3, 64, 64) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(full, plain)


def test_old_checkpoints_load_without_the_stand_ins() -> None:
    model = _build("test_vit_sct_fusion", {})
    state = {k: v for k, v in model.state_dict().items() if "missing" not in k}
    fresh = _build("test_vit_sct_fusion", {})
    with torch.no_grad():
        for p in fresh.missing.fill.values():
            p.fill_(1.0)
    fresh.load_state_dict(state)  # strict: the stand-ins are filled in as zeros
    assert all(not p.any() for p in fresh.missing.fill.values())


def test_token_mask_keeps_every_sample_complete_batch_unmasked() -> None:
    from rsray.models.layers.fusion import token_keep_mask

    assert token_keep_mask(None, [3, 2]) is None
    assert token_keep_mask(torch.ones(2, 2), [3, 2]) is None
    mask = token_keep_mask(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), [3, 2])
    assert mask.shape == (2, 1, 1, 6)
    assert mask[0, 0, 0].tolist() == [True, True, True, True, False, False]
    assert mask[1].all()


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
