"""The paper presets' variants: smoke / proof only shrink, and `tuned` is a fair comparison.

* For every preset and both variants, ``SCALES`` lists exactly which settings ``--smoke-test``
  and ``--proof`` change; each must be a size (network width, data, image, epochs, seeds,
  trials, resources), never a recipe value.
* ``tuned``: every arm searches the same space (identical domains; only the dropout
  argument's name may differ between families) with the same budget, keeps the same encoder
  capacity, and differs from the other arms only in its model and modalities; each design-card
  dimension is searched or explained in ``not_searched``; arm identity is fixed (the middle
  arm is the paper's middle fusion, progressive fusion always backprojects).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray import tune

from rsray.study.faithfulness import resolve
from rsray.study.spec import StudySpec, load_spec
from rsray.tune.spaces import FAIR_DROPOUT_KEYS, get_space, list_spaces

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["covariates_efficiency_ood", "flair2_lfdlm", "globe_progressive", "sen12ms_resnet",
           "vit_bigearthnet"]

SIZES = {
    "model.name",                       # the tiny test_* networks
    "model.params.backbone",            # GLOBE: the tiny nets are timm resnet18 layouts
    "model.params.embed_dim", "model.params.depth", "model.params.num_heads",
    "model.params.fusion_depth", "model.params.width", "model.params.crop_size",
    "model.params.output_size", "model.params.aerial",
    "model.params.pretrained_file",     # no ImageNet weights exist for the tiny networks
    "space",                            # a *_smoke space: the same keys, tiny sizes
    "data.synthetic_n", "data.image_size", "data.batch_size", "train.max_epochs",
    "train.log_every_n_steps", "scaling.cpus_per_worker", "factors.seeds",
    "factors.fractions", "search.num_samples", "search.max_epochs", "search.grace_period",
}
"""Every setting a shrink-only scale may change."""

_TINY_NET = {"model.name", "model.params.pretrained_file"}
SCALES: dict[str, dict[str, set[str]]] = {
    "sen12ms_resnet": {
        "smoke": {"model.name", "data.synthetic_n", "data.image_size", "train.max_epochs",
                  "train.log_every_n_steps", "scaling.cpus_per_worker", "factors.seeds",
                  "search.num_samples", "search.max_epochs", "search.grace_period"},
        "proof": {"model.name", "data.synthetic_n", "data.image_size", "train.max_epochs",
                  "train.log_every_n_steps", "scaling.cpus_per_worker", "factors.seeds",
                  "search.num_samples", "search.max_epochs", "search.grace_period"},
    },
    "vit_bigearthnet": {
        "smoke": {"model.name", "model.params.embed_dim", "model.params.depth",
                  "model.params.num_heads", "model.params.fusion_depth", "space",
                  "data.synthetic_n", "data.batch_size", "train.max_epochs",
                  "train.log_every_n_steps", "scaling.cpus_per_worker", "factors.seeds",
                  "search.num_samples", "search.max_epochs", "search.grace_period"},
        "proof": {"model.name", "model.params.embed_dim", "model.params.depth",
                  "model.params.num_heads", "model.params.fusion_depth", "space",
                  "data.synthetic_n", "data.batch_size", "train.max_epochs",
                  "train.log_every_n_steps", "scaling.cpus_per_worker", "factors.seeds",
                  "search.num_samples", "search.max_epochs", "search.grace_period"},
    },
    "globe_progressive": {
        "smoke": {*_TINY_NET, "model.params.backbone", "data.synthetic_n", "data.image_size",
                  "data.batch_size", "train.max_epochs", "train.log_every_n_steps",
                  "scaling.cpus_per_worker", "factors.seeds", "search.num_samples",
                  "search.max_epochs", "search.grace_period"},
        "proof": {*_TINY_NET, "model.params.backbone", "data.image_size",
                  "train.log_every_n_steps", "scaling.cpus_per_worker", "factors.seeds",
                  "search.num_samples", "search.max_epochs", "search.grace_period"},
    },
    "flair2_lfdlm": {
        "smoke": {*_TINY_NET, "model.params.aerial", "model.params.crop_size",
                  "model.params.output_size", "data.synthetic_n", "data.image_size",
                  "data.batch_size", "train.max_epochs", "train.log_every_n_steps",
                  "scaling.cpus_per_worker", "factors.seeds", "search.num_samples",
                  "search.max_epochs", "search.grace_period"},
        "proof": {*_TINY_NET, "model.params.aerial", "model.params.crop_size",
                  "model.params.output_size", "data.image_size", "train.max_epochs",
                  "train.log_every_n_steps", "scaling.cpus_per_worker", "factors.seeds",
                  "search.num_samples", "search.max_epochs", "search.grace_period"},
    },
    "covariates_efficiency_ood": {
        "smoke": {"model.name", "model.params.width", "data.synthetic_n", "data.batch_size",
                  "train.max_epochs", "train.log_every_n_steps", "scaling.cpus_per_worker",
                  "factors.seeds", "factors.fractions", "search.num_samples",
                  "search.max_epochs"},
        "proof": {"model.name", "model.params.width", "train.log_every_n_steps",
                  "scaling.cpus_per_worker", "factors.seeds", "search.num_samples"},
    },
}
"""Per preset, exactly what each scale changes (over both variants)."""


@pytest.fixture(scope="module")
def specs() -> dict[tuple[str, str, str], StudySpec]:
    """Every preset x variant x scale, loaded once."""
    out = {}
    for preset in PRESETS:
        for variant in ("paper", "tuned"):
            for scale in ("", "smoke", "proof"):
                out[preset, variant, scale] = load_spec(
                    ROOT / "studies" / f"{preset}.yaml", variant=variant,
                    smoke=scale == "smoke", proof=scale == "proof")
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "model.params.aerial":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _changes(full: StudySpec, small: StudySpec) -> set[str]:
    changed = {f"data.{k}" for k in ("synthetic_n",)
               if getattr(full.data, k) != getattr(small.data, k)}
    for section in ("search", "factors"):
        a, b = getattr(full, section), getattr(small, section)
        changed |= {f"{section}.{k}" for k in vars(a) if getattr(a, k) != getattr(b, k)}
    assert [a.name for a in full.arms] == [a.name for a in small.arms]
    for a, b in zip(full.arms, small.arms, strict=True):
        ca, cb = _flat(full.arm_config(a).to_dict()), _flat(small.arm_config(b).to_dict())
        changed |= {k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k)}
        if a.space != b.space:
            changed.add("space")
            assert a.space and b.space and set(get_space(a.space)) == set(get_space(b.space))
        assert (a.modalities, a.init, a.recipe) == (b.modalities, b.init, b.recipe)
    return changed


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("scale", ["smoke", "proof"])
def test_scales_only_shrink(preset: str, scale: str, specs) -> None:
    changed: set[str] = set()
    for variant in ("paper", "tuned"):
        changed |= _changes(specs[preset, variant, ""], specs[preset, variant, scale])
        assert all(a.model.startswith("test_")
                   for a in specs[preset, variant, scale].arms), (variant, scale)
    assert changed <= SIZES, f"{scale} changes a recipe value: {sorted(changed - SIZES)}"
    assert changed == SCALES[preset][scale]


def _domain(d: Any) -> Any:
    if isinstance(d, tune.search.sample.Categorical):
        return ("choice", tuple(d.categories))
    if isinstance(d, tune.search.sample.Domain):
        return (type(d).__name__, d.lower, d.upper, type(d.get_sampler()).__name__)
    return d


def _normalised(space: str) -> dict[str, Any]:
    drop = FAIR_DROPOUT_KEYS.get(space)
    return {("<dropout>" if k == drop else k): _domain(v) for k, v in get_space(space).items()}


@pytest.mark.parametrize("preset", PRESETS)
def test_tuned_arms_share_one_search(preset: str, specs) -> None:
    spec = specs[preset, "tuned", ""]
    spaces = {a.name: a.space for a in spec.arms}
    assert all(spaces.values()), f"arms without a search: {spaces}"
    forms = {name: _normalised(s) for name, s in spaces.items()}
    first = next(iter(forms.values()))
    assert all(f == first for f in forms.values()), forms
    for name, space in spaces.items():
        if space not in FAIR_DROPOUT_KEYS:
            assert not any(k.endswith(("drop_rate", "dropout")) for k in forms[name]) or (
                "model.params.drop_rate" in forms[name] and space.startswith("vit"))
    # nothing but the model and its modalities differs between arms (searched keys aside)
    searched = {k for s in spaces.values() for k in get_space(s)}
    rest = []
    for arm in spec.arms:
        flat = _flat(spec.arm_config(arm).to_dict())
        rest.append({k: v for k, v in flat.items() if not k.startswith("model.")
                     and k != "data.modalities" and k not in searched})
    allowed = {"data.desync_augment", "data.modality_dropout"}  # 1 modality: nothing to desync
    singles = set(spec.single_modality_arms())
    for arm, r in zip(spec.arms, rest, strict=True):
        diff = {k for k in r.keys() | rest[0].keys() if r.get(k) != rest[0].get(k)}
        if arm.name in singles or spec.arms[0].name in singles:
            diff -= allowed
        assert not diff, f"{preset}: {arm.name} differs from {spec.arms[0].name} in {diff}"


DESIGN_CARD = {
    "lr": ("optim.lr",),
    "depth": ("model.params.depth", "model.params.backbone"),
    "patch_size": ("model.params.patch_size",),
    "dropout": ("model.params.drop_rate", "model.params.dropout"),
    "se_reduction": ("model.params.reduction",),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_tuned_covers_the_design_card_or_says_why(preset: str, specs) -> None:
    spec = specs[preset, "tuned", ""]
    keys = set(get_space(spec.arms[0].space))
    for dim, names in DESIGN_CARD.items():
        searched = any(n in keys for n in names)
        assert searched != (dim in spec.not_searched), (preset, dim)
        assert not searched or dim not in spec.not_searched
        if dim in spec.not_searched:
            assert len(spec.not_searched[dim]) > 10


@pytest.mark.parametrize("preset", ["sen12ms_resnet", "covariates_efficiency_ood",
                                    "globe_progressive"])
def test_tuned_cnn_arms_have_one_encoder(preset: str, specs) -> None:
    spec = specs[preset, "tuned", ""]
    backbones = {a.name: resolve(spec, a, "model.kwargs.backbone") for a in spec.arms}
    assert len(set(backbones.values())) == 1, backbones
    assert not any(k.endswith("backbone") for a in spec.arms for k in get_space(a.space))


def test_tuned_vit_arms_have_one_size(specs) -> None:
    spec = specs["vit_bigearthnet", "tuned", ""]
    sizes = {tuple(spec.arm_config(a).model.params[k] for k in
                   ("img_size", "patch_size", "depth", "embed_dim", "num_heads"))
             for a in spec.arms}
    assert sizes == {(120, 20, 8, 256, 8)}


def test_arm_identity_is_fixed(specs) -> None:
    for variant in ("paper", "tuned"):
        sen = specs["sen12ms_resnet", variant, ""]
        middle = sen.arm("middle")
        assert resolve(sen, middle, "model.kwargs.fusion_stage") == 2
        assert resolve(sen, middle, "model.kwargs.merge") == "mean"
        globe = specs["globe_progressive", variant, ""]
        assert resolve(globe, globe.arm("progressive"), "model.kwargs.refine_steps") >= 1
    for space in list_spaces():
        for key, dom in get_space(space).items():
            if key.endswith("refine_steps"):
                assert min(dom.categories) >= 1, space  # progressive always backprojects
            assert not key.endswith(("fusion_stage", "merge")) or space == "middle"


def test_missing_weights_are_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    from rsray.errors import ConfigError
    from rsray.study.spec import check_runnable

    monkeypatch.chdir(tmp_path)  # relative weight files are read from the working directory
    spec = load_spec(ROOT / "studies/globe_progressive.yaml", variant="paper")
    with pytest.raises(ConfigError) as info:
        check_runnable(spec)
    line = str(info.value)
    assert "\n" not in line and "arms.early" in line
    assert "timm.create_model('resnet50.tv_in1k', pretrained=True)" in line
    assert str(tmp_path / "weights" / "resnet50.tv_in1k.pth") in line
    (tmp_path / "weights").mkdir()
    for name in ("resnet50.tv_in1k.pth", "mobilenetv2_100.ra_in1k.pth"):
        (tmp_path / "weights" / name).write_bytes(b"")
    check_runnable(spec)  # every file is there
    check_runnable(load_spec(ROOT / "studies/globe_progressive.yaml", smoke=True))
    lfdlm = load_spec(ROOT / "studies/flair2_lfdlm.yaml", variant="paper")
    with pytest.raises(ConfigError, match=r"arms.aerial_only: model.params.pretrained_file "
                                          r".*maxvit_tiny_tf_512.in1k.pth not found"):
        check_runnable(lfdlm)
    for name in ("maxvit_tiny_tf_512.in1k.pth", "resnet34.tv_in1k.pth"):
        (tmp_path / "weights" / name).write_bytes(b"")
    check_runnable(lfdlm)  # the recipe arms run in the study: nothing else is refused


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


TINY = {
    "name": "tiny", "data": {"dataset": "bigearthnet", "synthetic_n": 64},
    "base_config": "cfg.yaml", "base": {"train.max_epochs": 3},
    "arms": [{"name": "s2_only", "model": "test_early_fusion_cnn", "modalities": ["s2"]},
             {"name": "early", "model": "test_early_fusion_cnn", "modalities": ["s2", "s1"]},
             {"name": "late", "model": "test_late_fusion_cnn", "modalities": ["s2", "s1"]}],
    "baseline": "s2_only", "metrics": ["ap_macro"],
    "paper_results": {"early": {"ap_macro": 0.8}, "late": {"ap_macro": 0.7}},
    "default_variant": "paper",
    "variants": {"paper": {"base": {"optim.lr": 0.01}},
                 "tuned": {"exclude_arms": ["late"], "arms": {"early": {"space": "cnn_fair"}}}},
}


def test_base_config_then_base_then_variant_then_arm(tmp_path: Path) -> None:
    from rsray.errors import ConfigError

    (tmp_path / "cfg.yaml").write_text(
        "data: {batch_size: 7}\noptim: {lr: 0.5, name: adam}\ntrain: {max_epochs: 9}\n"
        "model: {name: vit_sct_fusion}\ntune: {grace_period: 5}\n")  # tune: not used
    path = _write(tmp_path, TINY)
    paper = load_spec(path)
    cfg = paper.arm_config(paper.arm("early"))
    assert (cfg.data.batch_size, cfg.optim.name, cfg.optim.lr, cfg.train.max_epochs) == (
        7, "adam", 0.01, 3)
    assert cfg.model.name == "test_early_fusion_cnn"  # the config's model is not used
    assert paper.name == "tiny-paper" and paper.variant == "paper"
    tuned = load_spec(path, variant="tuned")
    assert [a.name for a in tuned.arms] == ["s2_only", "early"]
    assert tuned.paper_results == {"early": {"ap_macro": 0.8}}
    assert tuned.arm("early").space == "cnn_fair"
    assert tuned.arm_config(tuned.arm("early")).optim.lr == 0.5
    with pytest.raises(ConfigError, match="no nope variant"):
        load_spec(path, variant="nope")
    bad = {**TINY, "paper_results": {"early": {"ap_micro": 0.8}}}
    with pytest.raises(ConfigError, match=r"paper_results.early.ap_micro: not one of"):
        load_spec(_write(tmp_path, bad))
    bad = {**TINY, "paper_results": {"mid": {"ap_macro": 0.8}}}
    with pytest.raises(ConfigError, match=r"paper_results.mid: not an arm"):
        load_spec(_write(tmp_path, bad))
    with pytest.raises(ConfigError, match=r"base_config: .*nope.yaml not found"):
        load_spec(_write(tmp_path, {**TINY, "base_config": "nope.yaml"}))
    no_default = {k: v for k, v in TINY.items() if k != "default_variant"}
    with pytest.raises(ConfigError, match="name one with --variant"):
        load_spec(_write(tmp_path, no_default))
