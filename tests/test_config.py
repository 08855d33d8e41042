from pathlib import Path

import pytest

from rsray.config import Config, load_config, parse_overrides
from rsray.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_validate():
    cfg = Config().validate()
    assert cfg.optim.name == "adamw"
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")),  # demo.yaml too
                         ids=lambda p: p.name)
def test_every_preset_parses(path):
    cfg = load_config(path)
    assert cfg.model.name


def test_override_types_are_coerced():
    cfg = load_config(None, ["optim.lr=3e-4", "train.max_epochs=3", "data.augment=false",
                             "data.modalities=[s2]", "model.params.depth=2"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.train.max_epochs == 3
    assert cfg.data.augment is False
    assert cfg.data.modalities == ["s2"]
    assert cfg.model.params == {"depth": 2}


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.name=sgd", "optim.name: 'sgd' is not allowed; choose one of 'adam', 'adamw'"),
        ("optim.scheduler=linear", "optim.scheduler"),
        ("train.loss=focal", "train.loss"),
        ("data.modality_dropout=1.5", "data.modality_dropout: 1.5 is outside"),
        ("train.max_epochs=0", "train.max_epochs"),
        ("train.max_epochs=abc", "train.max_epochs: expected an integer"),
        ("data.augment=maybe", "data.augment: expected true or false"),
        ("optim.lrr=1", "optim.lrr: unknown field"),
        ("nosection.x=1", "unknown section"),
    ],
)
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, [override])
    assert needle in str(info.value)


def test_cross_field_rule():
    with pytest.raises(ConfigError, match=r"tune.grace_period"):
        load_config(None, ["train.max_epochs=2", "tune.grace_period=3"])


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("optim:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"optim.lr: expected a number"):
        load_config(wrong)


def test_parse_overrides_rejects_garbage():
    with pytest.raises(ConfigError, match=r"expected section.field=value"):
        parse_overrides(["optim.lr"])


def test_yes_no_choices_survive_yaml_booleans(tmp_path):
    """``--set scaling.use_gpu=no`` and ``use_gpu: no`` in a file: YAML reads a bool."""
    assert load_config(None, ["scaling.use_gpu=no"]).scaling.use_gpu == "no"
    assert load_config(None, ["scaling.use_gpu=yes"]).scaling.use_gpu == "yes"
    path = tmp_path / "c.yaml"
    path.write_text("scaling:\n  use_gpu: no\n")
    assert load_config(str(path)).scaling.use_gpu == "no"
    with pytest.raises(ConfigError, match=r"scaling\.use_gpu"):
        load_config(None, ["scaling.use_gpu=maybe"])
