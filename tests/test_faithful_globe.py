"""GLOBE (progressive-fusion-globe-lulc.txt): the baselines, optimisers and schedules it uses.

* 3.2.2 early fusion: the modalities "are concatenated or merged before the network's deep
  feature extraction layers" — the metadata vector enters at the input.
* 3.2.2 late fusion: "the encoder processes each modality separately ... the features are
  fused, usually through concatenation or addition" — feature-level, before the classifier.
* 4.2: RMSprop; LR x0.1 every 5 epochs or cyclic "oscillating every five epochs"; "an L2
  regularizer was applied to metadata"; dropout 0.5-0.7; 20 epochs, batch 32.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ray import tune

from rsray.config import OptimConfig, load_config
from rsray.data.augment import modality_ops
from rsray.errors import ConfigError
from rsray.models import create_model
from rsray.train.optim import build_optimizer, is_metadata_param
from rsray.tune.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs/globe_progressive.yaml"
PHOTOS = {"north": 3, "up": 3}
META = 5
TINY = {"backbone": "resnet18", "meta_embed_dim": 8,
        "backbone_kwargs": {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}}


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(2, c, 32, 32, generator=g) for m, c in PHOTOS.items()}
    x["metadata"] = torch.randn(2, META, generator=g)
    return x


def test_early_fusion_puts_the_metadata_in_at_the_input() -> None:
    torch.manual_seed(0)
    model = create_model("early_fusion_globe", modalities=PHOTOS, num_classes=2,
                         metadata_dim=META, **TINY).eval()
    assert model.meta_embed is None and model.head is None
    x = _inputs()
    meta = x["metadata"][:, :, None, None].expand(-1, -1, 32, 32)
    with torch.no_grad():
        want = model.backbone(torch.cat([x["north"], x["up"], meta], dim=1))
        assert torch.equal(model(x), want)
        # the metadata changes the prediction
        x2 = {**x, "metadata": x["metadata"] + 1.0}
        assert not torch.allclose(model(x2), want)
    # the registered full-size baseline is ResNet50 with the metadata channels at its stem
    with torch.device("meta"):
        full = create_model("early_fusion_globe", modalities=PHOTOS, num_classes=2,
                            metadata_dim=META)
    assert full.backbone.conv1.in_channels == 6 + META
    assert full.backbone.num_features == 2048
    with pytest.raises(ConfigError, match="metadata_at"):
        create_model("test_early_fusion_cnn", modalities=PHOTOS, num_classes=2,
                     metadata_at="stem")


@pytest.mark.parametrize("merge", ["concat", "add"])
def test_late_fusion_merges_encoder_features_before_the_classifier(merge: str) -> None:
    torch.manual_seed(0)
    model = create_model("late_fusion_globe", modalities=PHOTOS, num_classes=2,
                         metadata_dim=META, feature_merge=merge, fusion_dim=12, **TINY).eval()
    x = _inputs()
    with torch.no_grad():
        feats = [model.branches[m](x[m]) for m in PHOTOS] + [model.meta_branch(x["metadata"])]
        assert [f.shape[1] for f in feats[:2]] == [model.branches["north"].num_features] * 2
        if merge == "concat":
            want = model.head(torch.cat(feats, dim=1))
        else:
            names = ["north", "up", "metadata"]
            want = model.head(sum(model.proj[n](f) for n, f in zip(names, feats, strict=True)))
        assert torch.allclose(model(x), want, atol=1e-6)
    with torch.device("meta"):
        full = create_model("late_fusion_globe", modalities=PHOTOS, num_classes=2,
                            metadata_dim=META)
    assert full.head.in_features == 2 * 2048 + 64  # two ResNet50s + the metadata embedding
    with pytest.raises(ConfigError, match="weights"):
        create_model("late_fusion_globe", modalities=PHOTOS, num_classes=2,
                     weights=[0.5, 0.5], **TINY)


def test_l2_on_the_metadata_layers_only() -> None:
    """A zero loss + RMSprop step: only weights under L2 move; only the metadata layers have it."""
    torch.manual_seed(0)
    model = create_model("test_progressive_fusion", modalities=PHOTOS, num_classes=2,
                         metadata_dim=META)
    cfg = load_config(PRESET).optim
    assert cfg.name == "rmsprop" and cfg.weight_decay == 0.0 and cfg.metadata_weight_decay > 0
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.RMSprop)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    (model(_inputs()).sum() * 0.0).backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    meta_weights = {n for n, p in model.named_parameters()
                    if is_metadata_param(n) and p.ndim > 1}
    assert meta_weights and moved == meta_weights
    assert any(n.startswith("meta_embed.") for n in moved)
    assert any(n.startswith("fusion.") and ".meta." in n for n in moved)  # FiLM projections
    # without metadata_weight_decay the metadata weights are decayed like every other weight
    groups = build_optimizer(model, OptimConfig(weight_decay=0.1)).param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]


def test_the_papers_two_schedules(lr_trace) -> None:
    cfg = load_config(PRESET).optim
    assert cfg.scheduler == "cyclic" and cfg.lr == pytest.approx(1e-4)
    cyc = lr_trace(cfg, 20)
    # one full cycle every 5 epochs: lowest at 0, 5, 10, 15, a peak inside each cycle
    assert cyc[:5] == pytest.approx(cyc[5:10]) and cyc[:5] == pytest.approx(cyc[15:20])
    assert cyc[0] == pytest.approx(1e-5) and min(cyc) == pytest.approx(1e-5)
    assert cyc[0] < cyc[1] < cyc[2] and cyc[3] > cyc[4] > cyc[5]
    step = lr_trace(OptimConfig(**{**vars(cfg), "scheduler": "step"}), 20)
    assert step[0:5] == pytest.approx([1e-4] * 5)
    assert step[5:10] == pytest.approx([1e-5] * 5)
    assert step[10] == pytest.approx(1e-6)
    with pytest.raises(ConfigError, match="cycle_length"):
        load_config(PRESET, ["optim.cycle_length=1"])


def test_preset_is_the_papers_setup() -> None:
    cfg = load_config(PRESET)
    assert cfg.model.name == "progressive_fusion_globe"
    assert cfg.train.max_epochs == 20 and cfg.data.batch_size == 32
    assert cfg.train.loss == "combined"
    assert cfg.train.early_stopping_patience > 0  # "early stopping was introduced"
    # horizon photos get no quarter turns; the up/down photos do
    for d in ("north", "south", "east", "west"):
        assert "rot90" not in modality_ops(cfg.data.augment_ops, d)
    assert "rot90" in modality_ops(cfg.data.augment_ops, "up")
    space = get_space(cfg.tune.space)
    lr = space["optim.lr"]
    assert isinstance(lr, tune.search.sample.Float)
    assert lr.lower <= 1e-5 and lr.upper >= 1e-4
    assert space["model.params.dropout"].lower == 0.5
    assert space["model.params.dropout"].upper == 0.7
    assert set(space["optim.scheduler"].categories) == {"step", "cyclic"}
    assert get_space("progressive")["optim.lr"].lower <= 1e-5
