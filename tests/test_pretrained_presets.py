"""The papers' pretrained initialisation in the presets: named, loadable, refused in one line.

GLOBE starts its ResNet50 / MobileNetV2 encoders from ImageNet weights and LF-DLM its
MaxViT-T (the FLAIR-2 baseline its ResNet34); the SEN12MS, covariates and ViT papers train
from scratch. For every preset's `paper` variant: each arm with an ``init`` loads exactly
``weights/<init>.pth`` into a backbone of that architecture, each arm without one loads
nothing, and a missing file stops the study in one line that says how to fetch it. Each family
those arms use loads a tiny weights file written here into every backbone it builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import timm
import torch

from rsray.models import create_model
from rsray.models.layers.unetformer import TINY_MAXVIT
from rsray.models.layers.utae import TINY_UTAE
from rsray.study.faithfulness import resolve
from rsray.study.spec import check_runnable, load_spec, weight_files

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["covariates_efficiency_ood", "flair2_lfdlm", "globe_progressive", "sen12ms_resnet",
           "vit_bigearthnet"]
PRETRAINED = {"flair2_lfdlm", "globe_progressive"}
"""The presets whose papers start from ImageNet weights."""


def _backbone(spec: Any, arm: Any) -> str:
    params = spec.arm_config(arm).model.params
    key = "model.kwargs.aerial.backbone" if isinstance(params.get("aerial"), dict) \
        else "model.kwargs.backbone"
    return resolve(spec, arm, key)


@pytest.mark.parametrize("preset", PRESETS)
def test_paper_arms_name_the_papers_weights(preset: str) -> None:
    spec = load_spec(ROOT / "studies" / f"{preset}.yaml", variant="paper")
    inits = {a.name: a.init for a in spec.arms if a.init}
    assert bool(inits) == (preset in PRETRAINED), inits
    for arm in spec.arms:
        files = weight_files(spec.arm_config(arm).model.params)
        if not arm.init:
            assert files == [], arm.name
            continue
        assert {Path(f).name for f in files} == {f"{arm.init}.pth"}, arm.name
        assert all(Path(f).is_absolute() and Path(f).parent.name == "weights" for f in files)
        # the fetch command downloads the architecture the arm builds
        assert arm.init.split(".")[0] == _backbone(spec, arm), arm.name


@pytest.mark.parametrize("preset", PRESETS)
def test_missing_weights_stop_the_paper_variant_in_one_line(preset: str, tmp_path: Path,
                                                             monkeypatch) -> None:
    from rsray.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    spec = load_spec(ROOT / "studies" / f"{preset}.yaml", variant="paper")
    if preset not in PRETRAINED:
        check_runnable(spec)  # nothing to fetch
        return
    first = next(a for a in spec.arms if a.init)
    with pytest.raises(ConfigError) as info:
        check_runnable(spec)
    line = str(info.value)
    assert "\n" not in line and f"arms.{first.name}: model.params.pretrained_file" in line
    assert f"timm.create_model('{first.init}', pretrained=True)" in line
    assert str(tmp_path / "weights" / f"{first.init}.pth") in line
    (tmp_path / "weights").mkdir()
    for arm in spec.arms:
        if arm.init:
            (tmp_path / "weights" / f"{arm.init}.pth").write_bytes(b"")
    check_runnable(spec)


def _saved(name: str, tmp_path: Path, **kwargs: Any) -> tuple[str, dict[str, torch.Tensor]]:
    """A tiny full timm model of architecture ``name``, saved as timm saves one."""
    torch.manual_seed(7)
    ref = timm.create_model(name, **kwargs)
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    return str(path), ref.state_dict()


def _copies(model: torch.nn.Module, tensor: torch.Tensor) -> int:
    """How many of ``model``'s tensors equal ``tensor`` (a weight no random init repeats)."""
    return sum(1 for v in model.state_dict().values()
               if v.shape == tensor.shape and torch.equal(v, tensor))


TINY_RESNET = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}
PHOTOS = {"north": 3, "up": 3}
CASES = {
    # family of the arm, its architecture, the tiny stand-in, a body weight, backbones built
    "early_fusion_globe": ("resnet18", TINY_RESNET, "layer3.0.conv1.weight", 1),
    "late_fusion_globe": ("resnet18", TINY_RESNET, "layer3.0.conv1.weight", 2),
    "progressive_fusion_globe": ("mobilenetv2_035", {}, "blocks.3.0.conv_pw.weight", 2),
    "unet_utae": ("resnet18", TINY_RESNET, "layer3.0.conv1.weight", 1),
}


@pytest.mark.parametrize("family", sorted(CASES))
def test_every_pretrained_arms_family_loads_the_file(family: str, tmp_path: Path) -> None:
    arch, kwargs, key, copies = CASES[family]
    path, saved = _saved(arch, tmp_path, **kwargs)
    args: dict[str, Any] = {"num_classes": 3, "backbone": arch, "backbone_kwargs": kwargs}
    if family == "unet_utae":
        args.update(modalities={"aerial": 5, "s2": 10}, series=TINY_UTAE,
                    decoder_channels=(16, 16, 8, 8, 8))
    else:
        args.update(modalities=PHOTOS, metadata_dim=5)
    if family == "progressive_fusion_globe":
        args.pop("backbone_kwargs")
    model = create_model(family, **args, pretrained_file=path)
    assert _copies(model, saved[key]) == copies
    assert _copies(create_model(family, **args), saved[key]) == 0


def test_lf_dlm_ensemble_loads_the_file_into_both_unetformers(tmp_path: Path) -> None:
    kwargs = TINY_MAXVIT["backbone_kwargs"]
    path, saved = _saved("maxvit_tiny_tf_512", tmp_path, img_size=64, **kwargs)
    key = next(k for k in saved if k.startswith("stages.2.") and k.endswith("weight")
               and saved[k].dim() > 1)
    aerial = {**TINY_MAXVIT, "extra_channel_init": "random"}
    args = {"modalities": {"aerial": 5, "s2": 10}, "num_classes": 3,
            "series": {**TINY_UTAE, "out_conv": (8,)}, "crop_size": 8}
    model = create_model("lf_dlm_ensemble", **args, aerial={**aerial, "pretrained_file": path})
    assert len(model.aerial) == 2 and _copies(model, saved[key]) == 2
    assert _copies(create_model("lf_dlm_ensemble", **args, aerial=aerial), saved[key]) == 0
