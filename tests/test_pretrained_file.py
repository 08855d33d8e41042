"""``pretrained_file``: a local timm checkpoint in every CNN fusion family.

The papers' CNN baselines start from ImageNet weights (GLOBE's ResNet50 / MobileNetV2, the
FLAIR-2 baseline's ResNet34); a cluster without hub access passes the weights as a file. Each
family must load the file into every backbone it builds (timm adapts the first convolution
to the modality's channels), and a missing file must fail with one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.models import adapt_input_conv

from rsray.errors import ConfigError
from rsray.models import create_model

SMALL = {"layers": (1, 1, 1, 1), "channels": (8, 8, 16, 16)}
MODS = {"s2": 3, "s1": 2}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny resnet18 checkpoint (3 input channels, 1000 classes), as timm saves one."""
    torch.manual_seed(3)
    ref = timm.create_model("resnet18", in_chans=3, **SMALL)
    path = tmp_path_factory.mktemp("w") / "resnet18_small.pth"
    torch.save(ref.state_dict(), path)
    return path, ref.state_dict()


def _layer_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [v for k, v in module.state_dict().items() if k.startswith("layer")]


def _want(saved: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [v for k, v in saved.items() if k.startswith("layer")]


def _same(got: list[torch.Tensor], want: list[torch.Tensor]) -> bool:
    return len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want,
                                                                            strict=True))


@pytest.mark.parametrize("name", ["early_fusion_cnn", "single_modality_cnn"])
def test_single_backbone_families_load_the_file(name: str, weights) -> None:
    path, saved = weights
    model = create_model(name, modalities=MODS, num_classes=4, backbone="resnet18",
                         backbone_kwargs=SMALL, pretrained_file=str(path))
    assert _same(_layer_weights(model.backbone), _want(saved))
    stem = model.backbone.conv1.weight
    chans = 5 if name == "early_fusion_cnn" else 3
    assert torch.allclose(stem, adapt_input_conv(chans, saved["conv1.weight"]))
    fresh = create_model(name, modalities=MODS, num_classes=4, backbone="resnet18",
                         backbone_kwargs=SMALL)
    assert not _same(_layer_weights(fresh.backbone), _want(saved))


@pytest.mark.parametrize("name", ["late_fusion_cnn", "gated_fusion_cnn", "attention_fusion_cnn"])
def test_every_branch_loads_the_file(name: str, weights) -> None:
    path, saved = weights
    model = create_model(name, modalities=MODS, num_classes=4, backbone="resnet18",
                         backbone_kwargs=SMALL, pretrained_file=str(path))
    branches = model.branches if name == "late_fusion_cnn" else model.branches.backbones
    for m, c in MODS.items():
        assert _same(_layer_weights(branches[m]), _want(saved)), m
        assert torch.allclose(branches[m].conv1.weight,
                              adapt_input_conv(c, saved["conv1.weight"]))


def test_late_fusion_takes_one_file_per_modality(weights, tmp_path: Path) -> None:
    path, saved = weights
    other = timm.create_model("resnet18", in_chans=3, **SMALL)
    other_path = tmp_path / "other.pth"
    torch.save(other.state_dict(), other_path)
    model = create_model("late_fusion_cnn", modalities=MODS, num_classes=4,
                         backbone="resnet18", backbone_kwargs=SMALL,
                         pretrained_file={"s2": str(path), "s1": str(other_path)})
    assert _same(_layer_weights(model.branches["s2"]), _want(saved))
    assert _same(_layer_weights(model.branches["s1"]), _want(other.state_dict()))
    with pytest.raises(ConfigError, match="no checkpoint given for modality 's1'"):
        create_model("late_fusion_cnn", modalities=MODS, num_classes=4, backbone="resnet18",
                     backbone_kwargs=SMALL, pretrained_file={"s2": str(path)})


def test_middle_fusion_loads_branches_and_trunk(weights) -> None:
    path, saved = weights
    model = create_model("middle_fusion_cnn", modalities=MODS, num_classes=4,
                         backbone="resnet18", backbone_kwargs=SMALL, fusion_stage=2,
                         pretrained_file=str(path))
    state = model.state_dict()
    # the trunk after the merge holds the file's layer3 / layer4
    trunk = [v for k, v in state.items() if k.startswith("trunk.")]
    tail = [v for k, v in saved.items() if k.startswith(("layer3", "layer4"))]
    assert _same(trunk, tail)
    for m in MODS:
        branch = [v for k, v in state.items() if k.startswith(f"branches.{m}.")
                  and "layer" in k]
        head = [v for k, v in saved.items() if k.startswith(("layer1", "layer2"))]
        assert _same(branch, head), m


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        create_model("early_fusion_cnn", modalities=MODS, num_classes=4, backbone="resnet18",
                     backbone_kwargs=SMALL, pretrained_file=str(tmp_path / "nope.pth"))
    assert "nope.pth" in str(info.value) and "\n" not in str(info.value)
