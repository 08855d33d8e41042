"""Model registry and fusion families (timm's tests/test_models.py habit).

Every registered model runs forward + backward on tiny inputs; every parameter must get a
finite gradient and the logits must have the right shape and no NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rsray.errors import ConfigError
from rsray.models import (
    create_model,
    is_model,
    list_models,
    model_entrypoint,
    model_task,
    register_model,
)
from rsray.models.cnn_fusion import SingleModalityCNN
from rsray.models.layers import (
    BackProjection,
    MetadataInjection,
    SqueezeExcite,
    StageFusion,
    se_hidden_width,
)
from rsray.models.layers.late_fusion import geometric_mean_logits
from rsray.models.progressive import ProgressiveFusion

MODALITIES = {"s2": 10, "s1": 2}
NUM_CLASSES = 5
META_DIM = 4
TINY_RESNET = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16), "stem_width": 4,
               "stem_type": "deep"}

# Small settings for the generic family names (they default to full-size backbones).
GENERIC_SMALL: dict[str, dict[str, Any]] = {
    "early_fusion_cnn": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET},
    "late_fusion_cnn": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET},
    "progressive_fusion": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET, "depth": 2},
    "single_modality_cnn": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET},
    "middle_fusion_cnn": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET},
    "gated_fusion_cnn": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET, "width": 16},
    "attention_fusion_cnn": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET,
                             "width": 16},
    "early_fusion_globe": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET},
    "late_fusion_globe": {"backbone": "resnet18", "backbone_kwargs": TINY_RESNET,
                          "meta_embed_dim": 8},
}
# Segmentation families (model_task == "segmentation") are tested in their own test file.
CLASSIFICATION = [n for n in list_models() if model_task(n) == "classification"]
CHEAP = {n for n in CLASSIFICATION if n.startswith("test_")} | set(GENERIC_SMALL)


def _inputs(
    batch: int = 2, size: int = 32, metadata_dim: int = 0, seed: int = 0
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(batch, c, size, size, generator=g) for m, c in MODALITIES.items()}
    if metadata_dim:
        x["metadata"] = torch.randn(batch, metadata_dim, generator=g)
    return x


def _build(name: str, metadata_dim: int = 0, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    kw = {**GENERIC_SMALL.get(name, {}), **kwargs}
    return create_model(
        name, modalities=MODALITIES, num_classes=NUM_CLASSES, metadata_dim=metadata_dim, **kw
    )


def _check_forward_backward(model: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    model.train()
    model.zero_grad()
    out = model(inputs)
    assert out.shape == (next(iter(inputs.values())).shape[0], NUM_CLASSES)
    assert torch.isfinite(out).all()
    out.mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_family() -> None:
    names = list_models()
    assert names == sorted(names)
    for expected in [
        "early_fusion_cnn", "early_fusion_resnet18", "early_fusion_resnet50",
        "early_fusion_mobilenetv2", "late_fusion_cnn", "late_fusion_resnet18",
        "late_fusion_resnet50", "progressive_fusion", "progressive_fusion_small",
        "progressive_fusion_base", "progressive_fusion_mobilenetv2", "test_early_fusion_cnn",
        "test_late_fusion_cnn", "test_progressive_fusion", "progressive_fusion_globe",
        "early_fusion_resnet101", "late_fusion_resnet101", "late_fusion_mobilenetv2",
        "single_modality_cnn", "single_modality_resnet101", "single_modality_mobilenetv2",
        "middle_fusion_cnn", "middle_fusion_resnet18", "middle_fusion_resnet50",
        "middle_fusion_resnet101", "middle_fusion_mobilenetv2", "gated_fusion_cnn",
        "gated_fusion_spatial_resnet18", "attention_fusion_cnn", "attention_fusion_resnet50",
        *(f"{p}vit_{k}_fusion{s}" for k in ("early", "modality_token", "channel_token",
                                            "middle", "cross_attention", "sct")
          for p, s in (("", ""), ("", "_small"), ("test_", ""))),
    ]:  # fmt: skip
        assert expected in names and is_model(expected)
    assert list_models("progressive_*") == [n for n in names if n.startswith("progressive_")]
    tests = list_models("test_*")
    assert tests == [n for n in names if n.startswith("test_")]
    assert {"test_early_fusion_cnn", "test_late_fusion_cnn", "test_progressive_fusion"} <= set(
        tests
    )
    assert list_models("nothing*") == []
    assert not is_model("resnet18")


def test_unknown_model_name_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match="unknown model 'progresive_fusion_smal'") as e:
        create_model("progresive_fusion_smal", modalities=MODALITIES, num_classes=3)
    assert "progressive_fusion_small" in str(e.value)
    with pytest.raises(ConfigError, match="unknown model"):
        model_entrypoint("nope")


def test_bad_kwarg_names_model_and_argument() -> None:
    with pytest.raises(ConfigError, match=r"'progressive_fusion_small'.*'depht'.*'depth'"):
        create_model("progressive_fusion_small", modalities=MODALITIES, num_classes=3, depht=3)
    with pytest.raises(ConfigError, match=r"'test_late_fusion_cnn': combine"):
        create_model("test_late_fusion_cnn", modalities=MODALITIES, num_classes=3,
                     combine="max")
    with pytest.raises(ConfigError, match=r"'progressive_fusion'.*depth"):
        create_model("progressive_fusion", modalities=MODALITIES, num_classes=3, depth=7)
    with pytest.raises(ConfigError, match=r"'early_fusion_cnn'.*'modalities'"):
        create_model("early_fusion_cnn", num_classes=3)
    with pytest.raises(ConfigError, match=r"'early_fusion_cnn'.*resnet18"):
        create_model("early_fusion_cnn", modalities=MODALITIES, num_classes=3,
                     backbone="resnet181")
    with pytest.raises(ConfigError, match="reserved"):
        create_model("test_progressive_fusion", modalities={"metadata": 3}, num_classes=3)
    with pytest.raises(ConfigError, match="weights"):
        create_model("test_late_fusion_cnn", modalities=MODALITIES, num_classes=3,
                     weights=[1.0])


def test_model_task_reads_the_family_module() -> None:
    for name in ("test_progressive_fusion", "test_middle_fusion_cnn", "test_vit_sct_fusion",
                 "test_gated_fusion_cnn", "test_single_modality_cnn"):
        assert model_task(name) == "classification"
    assert "test_early_fusion_cnn" in CLASSIFICATION
    with pytest.raises(ConfigError, match="unknown model"):
        model_task("nope")


def test_register_model_with_explicit_signature_is_checked() -> None:
    @register_model
    def _tmp_test_model(*, modalities: dict[str, int], num_classes: int,
                        metadata_dim: int = 0) -> nn.Module:
        return nn.Identity()

    try:
        assert is_model("_tmp_test_model")
        with pytest.raises(ConfigError, match=r"'_tmp_test_model'.*'width'"):
            create_model("_tmp_test_model", modalities=MODALITIES, num_classes=2, width=3)
    finally:
        from rsray.models import registry

        registry._model_entrypoints.pop("_tmp_test_model")
        registry._model_to_module.pop("_tmp_test_model")


def test_variant_defaults_can_be_overridden() -> None:
    m = _build("progressive_fusion_small", depth=2, width=8, reduction=4, dropout=0.5,
               refine_steps=3)
    assert isinstance(m, ProgressiveFusion)
    assert (m.depth, m.channels, m.refine_steps) == (2, (8, 16), 3)
    assert m.head_drop.p == 0.5
    assert m.model_name == "progressive_fusion_small"
    assert m.model_kwargs["depth"] == 2 and m.model_kwargs["num_classes"] == NUM_CLASSES
    assert m.modalities == ("s2", "s1")
    # Ray Tune / Optuna may sample NumPy scalars
    m = _build("progressive_fusion_small", depth=np.int64(2), width=np.int64(8),
               dropout=np.float32(0.25), metadata_dim=np.int64(3))
    assert m.depth == 2 and isinstance(m.depth, int) and m.metadata_dim == 3


# --------------------------------------------------------------------------- whole registry


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_model_forward_backward(name: str) -> None:
    """Every registered model: forward + backward, shapes, no NaN, every grad present."""
    model = _build(name)
    # single-modality baselines use one modality (the first by default), fusion models all
    single = isinstance(model, SingleModalityCNN)
    assert model.modalities == (("s2",) if single else tuple(MODALITIES))
    _check_forward_backward(model, _inputs())
    # with presence bits: sample 0 lacks s1, sample 1 lacks s2 (every weight still learns)
    bits = {"s2_present": torch.tensor([1.0, 0.0]), "s1_present": torch.tensor([0.0, 1.0])}
    _check_forward_backward(model, {**_inputs(), **bits})
    model.eval()
    with torch.no_grad():
        assert model(_inputs(batch=1, size=40)).shape == (1, NUM_CLASSES)


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_model_with_metadata(name: str) -> None:
    model = _build(name, metadata_dim=META_DIM)
    _check_forward_backward(model, _inputs(metadata_dim=META_DIM))
    with pytest.raises(KeyError, match="metadata"):
        model(_inputs())


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_zero_modality_gives_finite_output(name: str) -> None:
    """Modality dropout zeroes a whole modality: no NaN, in train and eval mode."""
    model = _build(name)
    x = _inputs()
    x["s1"] = torch.zeros_like(x["s1"])
    _check_forward_backward(model, x)
    x["s2"] = torch.zeros_like(x["s2"])
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_missing_modality_raises(name: str) -> None:
    model = _build(name)
    x = _inputs()
    used = model.modalities[-1]
    del x[used]
    with pytest.raises(KeyError, match=f"'{used}' is missing"):
        model(x)


# --------------------------------------------------------------------------- progressive


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backbone": "mobilenetv2_100", "backbone_kwargs": {}, "depth": 2, "reduction": 4},
        {"backbone": "resnet50", "backbone_kwargs": {}, "depth": 2, "width": 8,
         "fusion_at": "encoder"},
        {"backbone": "resnet18", "backbone_kwargs": {"layers": (1, 1, 1, 1)}, "depth": 2,
         "width": 8, "refine_steps": 0},
        {"backbone": "resnet18", "backbone_kwargs": {"layers": (1, 1, 1, 1)}, "depth": 2,
         "width": 8, "refine_steps": 2, "gated_fusion": True, "metadata_mode": "add"},
    ],
    ids=["mobilenetv2", "resnet50_encoder_fusion", "no_refine", "gated_add_refine2"],
)
def test_progressive_options(kwargs: dict[str, Any]) -> None:
    model = _build("progressive_fusion", metadata_dim=META_DIM, **kwargs)
    _check_forward_backward(model, _inputs(metadata_dim=META_DIM))


@pytest.mark.parametrize("size", [32, 33, 120])
def test_progressive_any_input_size(size: int) -> None:
    """Non-power-of-two sizes (BigEarthNet's 120) work at the largest depth."""
    model = _build("progressive_fusion", backbone="resnet18", backbone_kwargs=TINY_RESNET, depth=4)
    _check_forward_backward(model, _inputs(size=size))


def test_refine_steps_change_the_compute() -> None:
    model = _build("test_progressive_fusion", refine_steps=1).eval()
    x = _inputs()
    outs, flops = [], []
    for steps in (0, 1, 2):
        model.refine_steps = steps
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            outs.append(model(x))
        flops.append(counter.get_total_flops())
    assert flops[0] < flops[1] < flops[2]
    # the feedback changes the output (small at initialisation: BN + SE damp it)
    assert not torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[1], outs[2])
    # refine_steps=0 builds no backprojection layers at all
    plain = _build("test_progressive_fusion", refine_steps=0)
    assert plain.backproj is None
    assert not any(isinstance(m, BackProjection) for m in plain.modules())
    assert any(isinstance(m, BackProjection) for m in model.modules())


def test_progressive_uses_metadata() -> None:
    model = _build("test_progressive_fusion", metadata_dim=META_DIM).eval()
    x = _inputs(metadata_dim=META_DIM)
    with torch.no_grad():
        a = model(x)
        x["metadata"] = x["metadata"] + 1.0
        b = model(x)
    assert not torch.allclose(a, b)


def test_progressive_reduction_changes_se_width() -> None:
    r4 = _build("progressive_fusion_small", depth=2, width=32, reduction=4)
    r16 = _build("progressive_fusion_small", depth=2, width=32, reduction=16)
    assert r4.encoders["s2"].se[0].hidden == 8 and r16.encoders["s2"].se[0].hidden == 2
    assert r4.encoders["s2"].se[1].hidden == 16 and r16.encoders["s2"].se[1].hidden == 4
    n4 = sum(p.numel() for p in r4.parameters())
    n16 = sum(p.numel() for p in r16.parameters())
    assert n4 > n16


# --------------------------------------------------------------------------- layers


def test_se_reduction_and_min_hidden() -> None:
    assert SqueezeExcite(64, reduction=4).hidden == 16
    assert SqueezeExcite(64, reduction=8).hidden == 8
    assert SqueezeExcite(64, reduction=16).hidden == 4  # floor 1: plain C // r
    assert SqueezeExcite(64, reduction=16, min_hidden=2).hidden == 4
    assert SqueezeExcite(256, reduction=32).fc1.out_channels == 8
    assert se_hidden_width(512, 16) == 32
    with pytest.raises(ConfigError, match="reduction"):
        SqueezeExcite(64, reduction=0)
    se = SqueezeExcite(16, reduction=4)
    x = torch.randn(2, 16, 5, 7)
    y = se(x)
    assert y.shape == x.shape
    # the gate is in (0, 1) and per channel: y / x is constant over space
    ratio = y / x
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()


def test_backprojection_resizes_to_any_size() -> None:
    bp = BackProjection(16, 8)
    out = bp(torch.randn(2, 16, 15, 15), (30, 30))
    assert out.shape == (2, 8, 30, 30)
    assert bp(torch.randn(2, 16, 8, 8), (15, 15)).shape == (2, 8, 15, 15)


def test_stage_fusion_gated_and_metadata() -> None:
    fuse = StageFusion([4, 6], 8, gated=True, meta_embed_dim=3)
    a, b = torch.randn(2, 4, 9, 9), torch.randn(2, 6, 5, 5)  # sizes may differ
    out = fuse([a, b], torch.randn(2, 3))
    assert out.shape == (2, 8, 9, 9)
    with pytest.raises(ValueError, match="meta_emb"):
        fuse([a, b])
    inj = MetadataInjection(3, 8, mode="add")
    x = torch.zeros(2, 8, 4, 4)
    e = torch.randn(2, 3)
    # "add" is a broadcast bias: constant over space
    y = inj(x, e)
    assert torch.allclose(y, y[..., :1, :1].expand_as(y))


# --------------------------------------------------------------------------- late fusion


def test_geometric_late_fusion_matches_manual_computation() -> None:
    weights = [0.7, 0.3]
    model = _build("test_late_fusion_cnn", combine="geometric", weights=weights).eval()
    x = _inputs()
    with torch.no_grad():
        z = model.branch_logits(x)
        out = model(x)
    p = torch.sigmoid(z[0].double()) ** 0.7 * torch.sigmoid(z[1].double()) ** 0.3
    assert torch.allclose(out.double(), torch.logit(p), atol=1e-5)

    # mapping weights (normalised) give the same result
    model2 = _build("test_late_fusion_cnn", combine="geometric", weights={"s2": 7, "s1": 3})
    assert torch.allclose(model2.combine_weights, torch.tensor(weights))

    # mean of logits
    model.combine = "mean_logits"
    with torch.no_grad():
        assert torch.allclose(model(x), 0.7 * z[0] + 0.3 * z[1], atol=1e-6)


def test_geometric_late_fusion_with_metadata_branch() -> None:
    model = _build("test_late_fusion_cnn", metadata_dim=META_DIM,
                   weights={"s2": 2.0, "s1": 1.0, "metadata": 1.0}).eval()
    x = _inputs(metadata_dim=META_DIM)
    with torch.no_grad():
        z = [t.double() for t in model.branch_logits(x)]
        out = model(x)
    assert model.branch_names == ("s2", "s1", "metadata")
    logp = 0.5 * nn.functional.logsigmoid(z[0]) + 0.25 * (
        nn.functional.logsigmoid(z[1]) + nn.functional.logsigmoid(z[2]))
    assert torch.allclose(out.double(), torch.logit(logp.exp()), atol=1e-5)


def test_geometric_mean_logits_is_stable() -> None:
    z = torch.tensor([[-300.0, -40.0, -5.0, 0.0, 5.0, 40.0, 300.0]], requires_grad=True)
    # one branch: logit(sigmoid(z)) == z exactly, even where sigmoid saturates
    single = geometric_mean_logits([z], [1.0])
    assert torch.allclose(single, z, rtol=1e-5, atol=1e-4)
    # identical branches give the same result
    assert torch.allclose(geometric_mean_logits([z, z], [0.3, 0.7]), z, rtol=1e-5, atol=1e-4)
    # saturated and opposite branches stay finite, gradients too
    out = geometric_mean_logits([z, -z, z.flip(-1)], [0.5, 0.25, 0.25])
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    # matches float64 where float64 can still compute it directly
    a, b = torch.randn(4, 6) * 8, torch.randn(4, 6) * 8
    ref = torch.logit(torch.sigmoid(a.double()) ** 0.6 * torch.sigmoid(b.double()) ** 0.4)
    assert torch.allclose(geometric_mean_logits([a, b], [0.6, 0.4]).double(), ref, atol=1e-4)


def test_geometric_mean_multiclass_is_normalised_product() -> None:
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    out = geometric_mean_logits([a, b], [0.7, 0.3], task="multiclass")
    p = a.softmax(-1) ** 0.7 * b.softmax(-1) ** 0.3
    assert torch.allclose(out.exp(), p / p.sum(-1, keepdim=True), atol=1e-6)
    model = _build("test_late_fusion_cnn", task="multiclass", weights=[0.7, 0.3])
    _check_forward_backward(model, _inputs())
    assert math.isclose(model(_inputs()).exp().sum(-1)[0].item(), 1.0, rel_tol=1e-5)


# --------------------------------------------------------------------------- single modality


def test_single_modality_uses_only_its_modality() -> None:
    model = _build("test_single_modality_cnn", modality="s1").eval()
    assert model.modalities == ("s1",) and model.in_chans == {"s1": 2}
    x = _inputs()
    with torch.no_grad():
        a = model(x)
        x["s2"] = x["s2"] + 5.0
        assert torch.equal(model(x), a)
        x["s1"] = x["s1"] + 1.0
        assert not torch.allclose(model(x), a)
    with pytest.raises(ConfigError, match=r"'test_single_modality_cnn'.*modality.*'s3'"):
        _build("test_single_modality_cnn", modality="s3")


# --------------------------------------------------------------------------- middle fusion


@pytest.mark.parametrize("stage", [0, 1, 2, 3, 4])
def test_middle_fusion_stage(stage: int) -> None:
    """Branches run stages 0..k, the trunk the rest; the merged map is the branches' mean."""
    model = _build("test_middle_fusion_cnn", fusion_stage=stage, metadata_dim=META_DIM)
    resnet = ["act1", "layer1", "layer2", "layer3", "layer4"]  # last module of each stage
    assert list(model.branches["s2"].named_children())[-1][0] == resnet[stage]
    assert [n for n, _ in model.trunk.named_children() if n.startswith("layer")] == [
        f"layer{i}" for i in range(stage + 1, 5)
    ]
    _check_forward_backward(model, _inputs(metadata_dim=META_DIM))
    model.eval()
    x = _inputs()
    with torch.no_grad():
        mean = (model.branches["s2"](x["s2"]) + model.branches["s1"](x["s1"])) / 2
        assert torch.allclose(model.fused_map(x), mean)


def test_middle_fusion_concat_mobilenet_and_errors() -> None:
    model = _build("middle_fusion_cnn", backbone="mobilenetv2_050", fusion_stage=3,
                   merge="concat", backbone_kwargs=None)
    assert model.fuse is not None and model.fuse[0].in_channels == 2 * model.fuse[0].out_channels
    assert [n for n, _ in model.trunk.named_children()] == ["blocks_5", "blocks_6", "conv_head",
                                                            "bn2"]
    _check_forward_backward(model, _inputs())
    with pytest.raises(ConfigError, match=r"'test_middle_fusion_cnn'.*fusion_stage.*0\.\.4"):
        _build("test_middle_fusion_cnn", fusion_stage=5)
    with pytest.raises(ConfigError, match="merge"):
        _build("test_middle_fusion_cnn", merge="max")
    with pytest.raises(ConfigError, match="ConvNeXt is not supported"):
        _build("middle_fusion_cnn", backbone="convnext_atto", backbone_kwargs=None)


# --------------------------------------------------------------------------- ViT fusion

VIT_KINDS = ["early", "modality_token", "channel_token", "middle", "cross_attention", "sct"]
BEN = {"s2": 10, "s1": 2}  # BigEarthNet-MM, 120 x 120


@pytest.mark.parametrize("kind", VIT_KINDS)
def test_vit_fusion_on_bigearthnet_inputs(kind: str) -> None:
    """All six methods on 120x120 S2 (10) + S1 (2) at the thesis' patch size, small dims."""
    torch.manual_seed(0)
    model = create_model(f"test_vit_{kind}_fusion", modalities=BEN, num_classes=NUM_CLASSES,
                         img_size=120, patch_size=20, drop_rate=0.1)
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(2, c, 120, 120, generator=g) for m, c in BEN.items()}
    _check_forward_backward(model, x)


def test_vit_token_counts() -> None:
    cfg = {"modalities": BEN, "num_classes": 3, "img_size": 120, "patch_size": 20}
    x = {m: torch.randn(1, c, 120, 120) for m, c in BEN.items()}
    early = create_model("test_vit_early_fusion", **cfg)
    assert early.patch_embed(torch.cat([x["s2"], x["s1"]], 1)).shape == (1, 36, 32)
    tokens = create_model("test_vit_modality_token_fusion", **cfg)
    assert tokens._tokens([x["s2"], x["s1"]]).shape == (1, 72, 32)
    chans = create_model("test_vit_channel_token_fusion", **cfg).eval()
    t = chans._tokens([x["s2"], x["s1"]])
    assert t.shape == (1, 12 * 36, 32)
    # one filter per channel: changing channel 3 changes only channel 3's 36 tokens
    x2 = x["s2"].clone()
    x2[:, 3] += 1.0
    changed = (chans._tokens([x2, x["s1"]]) - t).abs().sum(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == list(range(3 * 36, 4 * 36))


def test_vit_thesis_preset_parameter_counts() -> None:
    """Defaults are the thesis' (patch 20, depth 8, dim 256, 8 heads, stochastic depth 0.25)."""
    counts = {}
    for kind in VIT_KINDS:
        m = create_model(f"vit_{kind}_fusion", modalities=BEN, num_classes=19)
        counts[kind] = sum(p.numel() for p in m.parameters())
    m = create_model("vit_early_fusion", modalities=BEN, num_classes=19)
    assert (m.patch_size, m.depth, m.embed_dim, m.num_heads) == (20, 8, 256, 8)
    assert m.blocks[-1].drop_path1.drop_prob == pytest.approx(0.25)
    d = 256
    block = 12 * d * d + 13 * d  # timm Block: qkv, proj, fc1 (4d), fc2, two LayerNorms
    early = 12 * 20 * 20 * d + d + 36 * d + d + 8 * block + 2 * d + (d * 19 + 19)
    assert counts["early"] == early + 12  # 7.56 M, + a missing-modality value per channel
    # token and channel fusion only change the embedding, not the model size (thesis 5.3)
    for kind in ("modality_token", "channel_token"):
        assert abs(counts[kind] / counts["early"] - 1) < 0.01
    # a second encoder "approximately doubles" the parameters (thesis 5.7)
    for kind in ("cross_attention", "sct"):
        assert 1.8 < counts[kind] / counts["early"] < 2.1
    assert counts["middle"] == pytest.approx(counts["early"] + 6 * block + 2 * 2 * d * d, rel=0.02)


def test_vit_fusion_n_modalities_and_errors() -> None:
    mods = {"s2": 10, "s1": 2, "dem": 1}
    x = {m: torch.randn(2, c, 32, 32) for m, c in mods.items()}
    for kind in ("early", "modality_token", "channel_token", "middle", "sct"):
        model = create_model(f"test_vit_{kind}_fusion", modalities=mods, num_classes=3)
        assert model(x).shape == (2, 3)
    with pytest.raises(ConfigError, match="exactly 2 modalities, got 3"):
        create_model("test_vit_cross_attention_fusion", modalities=mods, num_classes=3)
    with pytest.raises(ConfigError, match=r"patch_size: 25 does not divide img_size 120.*20, 24"):
        create_model("vit_early_fusion", modalities=BEN, num_classes=3, patch_size=25)
    with pytest.raises(ConfigError, match="num_heads: 3 does not divide embed_dim 256"):
        create_model("vit_sct_fusion", modalities=BEN, num_classes=3, num_heads=3)
    with pytest.raises(ConfigError, match="fusion_depth"):
        create_model("vit_middle_fusion", modalities=BEN, num_classes=3, fusion_depth=9)
    with pytest.raises(ConfigError, match="drop_path_rate"):
        create_model("vit_sct_fusion", modalities=BEN, num_classes=3, drop_path_rate=1.5)
    model = create_model("test_vit_middle_fusion", modalities=BEN, num_classes=3)
    bad = {"s2": torch.randn(1, 10, 32, 32), "s1": torch.randn(1, 2, 16, 16)}
    with pytest.raises(ValueError, match="same number of tokens"):
        model(bad)


@pytest.mark.parametrize(("kind", "layer"), [("cross_attention", "fuse_cls"), ("sct", "sync")])
def test_vit_modalities_exchange_information_inside_the_encoders(kind: str, layer: str) -> None:
    """With the final fusion blind to S1's class token, S1 still reaches the output: through
    the swapped queries (cross-attention) or the per-layer class token sync (SCT)."""
    torch.manual_seed(0)
    model = create_model(f"test_vit_{kind}_fusion", modalities=BEN, num_classes=3,
                         drop_path_rate=0.0).eval()
    final = getattr(model, layer)
    final = final[-1] if isinstance(final, nn.ModuleList) else final
    with torch.no_grad():
        final.weight[:, model.embed_dim:] = 0.0
        x = {m: torch.randn(2, c, 32, 32) for m, c in BEN.items()}
        a = model(x)
        x["s1"] = torch.randn(2, 2, 32, 32)
        assert not torch.allclose(model(x), a, atol=1e-6)
        # and the S2 encoder alone (no exchange) would not see S1
        if kind == "sct":
            for lin in model.sync[:-1]:
                lin.weight[:, model.embed_dim:] = 0.0
            b = model(x)
            x["s1"] = torch.randn(2, 2, 32, 32)
            assert torch.allclose(model(x), b, atol=1e-6)


# --------------------------------------------------------------------------- learned fusion

COVARIATES = {"s2": 10, "dem": 1, "climate": 2, "indices": 2}


def _covariate_inputs(batch: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(batch, c, 32, 32, generator=g) for m, c in COVARIATES.items()}
    x["metadata"] = torch.randn(batch, META_DIM, generator=g)
    return x


@pytest.mark.parametrize("spatial", [False, True])
def test_gated_fusion_is_the_gated_sum(spatial: bool) -> None:
    torch.manual_seed(0)
    model = create_model("test_gated_fusion_cnn", modalities=COVARIATES, num_classes=4,
                         metadata_dim=META_DIM, spatial_gates=spatial).eval()
    assert model.branch_names == ("s2", "dem", "climate", "indices", "metadata")
    x = _covariate_inputs()
    with torch.no_grad():
        gates, feats = model.gates_and_features(x)
        h = 1  # per sample, or per location of the tiny ResNet's 1x1 map (stride 32)
        assert gates.shape == (3, 5, h, h) and feats.shape == (3, 5, 16, h, h)
        assert torch.allclose(gates.sum(dim=1), torch.ones(3, h, h))  # softmax: convex mix
        z = sum(gates[:, k : k + 1] * feats[:, k] for k in range(5))
        assert torch.allclose(model(x), model.head(z.mean(dim=(2, 3))), atol=1e-6)
    _check_forward_backward_k(model, x, 4)


def test_gated_fusion_sigmoid_and_spatial_maps() -> None:
    model = create_model("test_gated_fusion_cnn", modalities=BEN, num_classes=4,
                         gate_activation="sigmoid", spatial_gates=True).eval()
    x = {m: torch.randn(2, c, 96, 96) for m, c in BEN.items()}
    x["s1"] = torch.randn(2, 2, 64, 64)  # a coarser covariate map is resized to S2's grid
    with torch.no_grad():
        gates, _ = model.gates_and_features(x)
    assert gates.shape == (2, 2, 3, 3)  # a gate per modality and location (stride 32)
    assert ((gates > 0) & (gates < 1)).all()
    with pytest.raises(ConfigError, match="gate_activation"):
        create_model("test_gated_fusion_cnn", modalities=BEN, num_classes=4, gate_activation="relu")


def test_attention_fusion_weights() -> None:
    torch.manual_seed(0)
    model = create_model("test_attention_fusion_cnn", modalities=COVARIATES, num_classes=4,
                         metadata_dim=META_DIM, backbone={"s2": "resnet18", "dem": "resnet18",
                                                          "climate": "resnet18",
                                                          "indices": "resnet18"})
    x = _covariate_inputs()
    model.eval()
    with torch.no_grad():
        w = model.attention(x)
    assert w.shape == (3, 2, 5)  # (batch, heads, branches incl. metadata)
    assert torch.allclose(w.sum(-1), torch.ones(3, 2))
    _check_forward_backward_k(model, x, 4)
    with pytest.raises(ConfigError, match="backbone: no backbone given"):
        create_model("test_attention_fusion_cnn", modalities=COVARIATES, num_classes=4,
                     backbone={"s2": "resnet18"})


def _check_forward_backward_k(model: nn.Module, x: dict[str, torch.Tensor], k: int) -> None:
    model.train()
    out = model(x)
    assert out.shape == (next(iter(x.values())).shape[0], k) and torch.isfinite(out).all()
    out.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_every_registered_name_is_a_def_in_its_family_file() -> None:
    """timm habit: ``grep "def <name>("`` finds every registered model."""
    import importlib
    import inspect
    import re

    from rsray.models import model_entrypoint

    for name in list_models():
        module = importlib.import_module(model_entrypoint(name).__module__)
        source = inspect.getsource(module)
        assert re.search(rf"^@register_model\ndef {name}\(", source, re.M), name


def test_families_import_no_private_name_of_another_family() -> None:
    """Model families are leaves over ``rsray.models.layers``: no ``_private`` cross-imports."""
    import ast
    from pathlib import Path

    import rsray.models as pkg

    root = Path(pkg.__file__).parent
    families = {p.stem for p in root.glob("*.py")} - {"__init__", "registry"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["rsray", "models"] and len(parts) == 3 and parts[2] in families:
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{path.name} imports {private} from {node.module}"
