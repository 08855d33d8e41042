"""The conditional space: each family gets only its own parameters, every family is reached."""

from __future__ import annotations

import inspect
import pickle
from collections import Counter

import pytest

from rsray.config import Config, load_config
from rsray.errors import ConfigError
from rsray.models import create_model
from rsray.tune.conditional import (
    ConditionalOptunaSearch,
    ConditionalSpace,
    conditional_searcher,
    default_space,
    make_searcher,
    parse_families,
)
from rsray.tune.spaces import get_space

MODALITIES = {"s2": 10, "s1": 2}
FAMILIES = ["test_vit_early_fusion", "test_middle_fusion_cnn", "test_progressive_fusion",
            "test_gated_fusion_cnn", "test_late_fusion_cnn:cnn"]


def _cfg(families: list[str], seed: int = 0) -> Config:
    return load_config(None, ["tune.space=conditional", f"tune.families=[{','.join(families)}]",
                              f"tune.seed={seed}"])


def _accepted(model: str) -> set[str]:
    """Keyword arguments the model class's constructor takes."""
    m = create_model(model, modalities=MODALITIES, num_classes=3)
    return set(inspect.signature(type(m).__init__).parameters)


def test_default_spaces_follow_the_family() -> None:
    assert default_space("test_vit_early_fusion") == "vit_smoke"
    assert default_space("vit_sct_fusion") == "vit"
    assert default_space("middle_fusion_resnet18") == "middle"
    assert default_space("test_progressive_fusion") == "progressive_smoke"
    assert default_space("gated_fusion_resnet18") == "learned_fusion"
    fams = parse_families(FAMILIES)
    assert [f.space for f in fams] == ["vit_smoke", "middle", "progressive_smoke",
                                       "learned_fusion", "cnn"]


def test_bad_families_fail_before_any_trial() -> None:
    with pytest.raises(ConfigError, match="not a registered model"):
        parse_families(["no_such_model"])
    with pytest.raises(ConfigError, match="unknown space"):
        parse_families(["test_vit_early_fusion:nope"])
    with pytest.raises(ConfigError, match="listed twice"):
        parse_families(["test_vit_early_fusion", "test_vit_early_fusion"])
    with pytest.raises(ConfigError, match=r"tune\.families"):
        load_config(None, ["tune.space=conditional"])
    with pytest.raises(ConfigError, match="no default search space"):
        parse_families(["test_utae"])


def test_sampled_trials_only_get_their_familys_parameters() -> None:
    cfg = _cfg(FAMILIES, seed=3)
    searcher = conditional_searcher(cfg, metric="val_ap_macro", mode="max")
    space: ConditionalSpace = searcher._space
    accepted = {f.split(":")[0]: _accepted(f.split(":")[0]) for f in FAMILIES}
    all_keys = set().union(*(space.keys(m) for m in accepted))
    seen: Counter[str] = Counter()
    built: set[str] = set()
    for i in range(150):  # beyond TPE's 10 start-up trials, so the model-based sampler runs too
        trial_id = f"t{i}"
        config = searcher.suggest(trial_id)
        model = config["model.name"]
        seen[model] += 1
        own = space.keys(model)
        assert set(config) == {"model.name", *own}, f"trial {i}: {sorted(config)}"
        assert not (set(config) - {"model.name"}) & (all_keys - own)
        assert all("::" not in k for k in config)
        params = {k.removeprefix("model.params."): v for k, v in config.items()
                  if k.startswith("model.params.")}
        assert set(params) <= accepted[model], f"{model}: {set(params) - accepted[model]}"
        trial_cfg = Config().with_overrides(config)  # every sampled value is a valid config
        assert trial_cfg.model.name == model
        if model not in built:  # the model really builds with what was sampled
            size = {"img_size": 120} if "img_size" in accepted[model] else {}  # the ViT space's
            create_model(model, modalities=MODALITIES, num_classes=3, **size, **params)
            built.add(model)
        score = 1.0 if model == "test_progressive_fusion" else 0.1 * (i % 5)
        searcher.on_trial_complete(trial_id, {"val_ap_macro": score, "training_iteration": 1})
    assert set(seen) == set(accepted), f"families never reached: {set(accepted) - set(seen)}"
    # TPE learns from the results: the best family is drawn most once the model kicks in
    assert seen.most_common(1)[0][0] == "test_progressive_fusion"


def test_same_seed_same_proposals_and_picklable() -> None:
    a = conditional_searcher(_cfg(FAMILIES, seed=1), "val_oa", "max")
    b = conditional_searcher(_cfg(FAMILIES, seed=1), "val_oa", "max")
    assert [a.suggest(f"x{i}") for i in range(5)] == [b.suggest(f"x{i}") for i in range(5)]
    pickle.loads(pickle.dumps(a._space))  # Tune checkpoints the searcher with its space


def test_make_searcher_selects_named_or_conditional() -> None:
    searcher, space = make_searcher(_cfg(FAMILIES), "val_oa", "max")
    assert isinstance(searcher, ConditionalOptunaSearch) and space == {}
    searcher, space = make_searcher(Config().with_overrides({"tune.space": "vit"}), "val_oa",
                                    "max")
    assert not isinstance(searcher, ConditionalOptunaSearch)
    assert set(space) == set(get_space("vit"))
