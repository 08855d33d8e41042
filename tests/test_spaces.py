"""Search spaces: every key is a config path, and sampled values build the models they target."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import torch
from ray import tune

from rsray.config import Config
from rsray.models import create_model, model_entrypoint
from rsray.models.cnn_fusion import EarlyFusionCNN, LateFusionCNN, SingleModalityCNN
from rsray.models.gated_fusion import AttentionFusionCNN, GatedFusionCNN
from rsray.models.layers.vit import ViTFusionBase
from rsray.models.middle_fusion import MiddleFusionCNN
from rsray.models.progressive import ProgressiveFusion
from rsray.models.vit_fusion import MiddleFusionViT
from rsray.tune.spaces import VIT_PATCH_SIZES, check_space, get_space, list_spaces

MODALITIES = {"s2": 10, "s1": 2}

# the model classes each space's ``model.params.*`` keys must fit
TARGETS: dict[str, list[type]] = {
    "cnn": [EarlyFusionCNN, LateFusionCNN, SingleModalityCNN, MiddleFusionCNN],
    "middle": [MiddleFusionCNN],
    "vit": [ViTFusionBase, MiddleFusionViT],
    "vit_smoke": [ViTFusionBase, MiddleFusionViT],
    "learned_fusion": [GatedFusionCNN, AttentionFusionCNN],
    "progressive": [ProgressiveFusion],
    "progressive_globe": [ProgressiveFusion],
    "progressive_smoke": [ProgressiveFusion],
}


def _sample(space: dict[str, Any], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {k: (v.sample(random_state=rng) if isinstance(v, tune.search.sample.Domain) else v)
            for k, v in space.items()}


def _params(sample: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("model.params."): v for k, v in sample.items()
            if k.startswith("model.params.")}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_space_keys_fit_config_and_models(name: str) -> None:
    assert name in list_spaces()
    space = get_space(name)
    for key in space:
        assert "." in key
    Config().with_overrides(_sample(space, 0)).validate()
    for cls in TARGETS[name]:
        accepted = inspect.signature(cls.__init__).parameters
        for key in _params(space):
            assert key in accepted, f"{name}: {cls.__name__} does not take {key!r}"


def test_vit_patch_sizes_divide_120_and_widths_fit_heads() -> None:
    assert all(120 % p == 0 for p in VIT_PATCH_SIZES)
    space = get_space("vit")
    assert sorted(space["model.params.patch_size"].categories) == list(VIT_PATCH_SIZES)
    for dim in space["model.params.embed_dim"].categories:
        assert dim % 8 == 0 and dim % 4 == 0  # thesis (8 heads) and _small (4 heads) variants
    for p in VIT_PATCH_SIZES:
        model = create_model("test_vit_early_fusion", modalities=MODALITIES, num_classes=3,
                             img_size=120, patch_size=p)
        assert model.num_patches == (120 // p) ** 2


@pytest.mark.parametrize(("space", "model"), [
    ("vit_smoke", "test_vit_sct_fusion"), ("vit_smoke", "test_vit_middle_fusion"),
    ("middle", "test_middle_fusion_cnn"), ("cnn", "test_single_modality_cnn"),
    ("learned_fusion", "test_gated_fusion_cnn"), ("learned_fusion", "test_attention_fusion_cnn"),
    ("progressive_smoke", "test_progressive_fusion"),
])
def test_sampled_configs_build_and_run(space: str, model: str) -> None:
    model_entrypoint(model)
    size = 120 if space.startswith("vit") else 64
    x = {m: torch.randn(2, c, size, size) for m, c in MODALITIES.items()}
    for seed in range(2):
        params = _params(_sample(get_space(space), seed))
        if space.startswith("vit"):
            params["img_size"] = 120
        net = create_model(model, modalities=MODALITIES, num_classes=3, **params)
        assert net(x).shape == (2, 3)


def test_tune_space_names_are_checked_by_the_tuner() -> None:
    """The config sits below the spaces; the tuner checks ``tune.space`` before Ray starts."""
    from rsray.errors import ConfigError

    for name in ("cnn", "conditional", *list_spaces()):
        check_space(name)
    with pytest.raises(ConfigError, match=r"tune\.space: 'random' is not allowed"):
        check_space("random")
