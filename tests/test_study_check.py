"""``rsray study SPEC --check``: every preset passes in seconds without Ray; each bad input
fails with one line naming the spec, the arm and the field, before Ray starts."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import ray
import yaml

from rsray.cli import main
from rsray.errors import ConfigError
from rsray.presets import list_presets
from rsray.study.check import check_model_arguments, check_study
from rsray.study.cli import StudyRequest, load_request_spec
from rsray.study.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SEN12MS = yaml.safe_load((REPO / "studies" / "sen12ms_resnet.yaml").read_text())


@pytest.fixture(autouse=True)
def _no_ray_running(monkeypatch):
    """Checks never start Ray: any attempt fails the test (another test may have left the
    session's Ray running, so ``ray.is_initialized()`` alone proves nothing)."""
    import rsray.runtime

    def refuse(*args, **kwargs):
        raise AssertionError("a check tried to start Ray")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(rsray.runtime, "ensure_ray", refuse)
    was = ray.is_initialized()
    yield
    assert ray.is_initialized() == was


@pytest.mark.parametrize("name", list_presets("study"))
@pytest.mark.parametrize("variant", ["", "smoke"])
def test_every_preset_checks_without_ray(name, variant, tmp_path, capsys):
    spec = load_spec(name, smoke=variant == "smoke")
    report = check_study(spec, study_dir=tmp_path / "study")
    plan = report.plan
    cells = len(spec.arms) * len(spec.factors.fractions) * len(spec.factors.holdouts)
    assert plan.cells == cells and plan.seeded_runs == cells * spec.factors.seeds
    searched = sum(1 for a in spec.arms if a.space) * cells // len(spec.arms)
    assert plan.search_trials == searched * spec.search.num_samples
    assert plan.evaluations >= plan.seeded_runs and plan.total_seconds > 0
    assert [a.arm for a in report.arms] == [a.name for a in spec.arms]


def test_check_command_prints_plan_and_cost(capsys):
    assert main(["study", "demo", "--check"]) == 0
    out = capsys.readouterr().out
    assert "[check] plan: 3 cell(s)" in out and "6 search trial(s)" in out
    assert "9 seeded run(s)" in out and "estimated cost" in out and "an estimate" in out


def test_measured_run_time_replaces_the_assumption(tmp_path):
    import json

    spec = load_spec("demo")
    for seed, seconds in enumerate((30.0, 50.0)):
        record = tmp_path / "cells" / "early__f1__all" / f"seed_{seed}" / "result.json"
        record.parent.mkdir(parents=True)
        record.write_text(json.dumps({"seconds": seconds}))
    plan = check_study(spec, study_dir=tmp_path).plan
    assert plan.run_seconds == 40.0 and "2 finished run(s)" in plan.measured
    assert plan.finished_runs == 2


def _spec_file(tmp_path: Path, change) -> str:
    raw = copy.deepcopy(SEN12MS)
    if raw.get("base_config"):  # relative to the preset's folder, not to tmp_path
        raw["base_config"] = str((REPO / "studies" / raw["base_config"]).resolve())
    change(raw)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


BAD = {
    "metric": (lambda r: r.__setitem__("metrics", ["oa", "acc_mirco"]),
               "metrics[1]: 'acc_mirco' is not a metric", "did you mean 'acc_micro'?"),
    "modality": (lambda r: r["arms"][2].__setitem__("modalities", ["s2", "s1x"]),
                 "arms.early.modalities: 's1x' is not in", "did you mean 's1'?"),
    "params": (lambda r: r["arms"][2].__setitem__("params", {"model.params.drop_rat": 0.1}),
               "arms.early: model.params: model 'early_fusion_resnet101': unexpected argument "
               "'drop_rat'", "did you mean 'drop_rate'?"),
    "space": (lambda r: r["arms"][2].__setitem__("space", "vit"),
              "arms.early.space 'vit'", "unexpected argument"),
    "split": (lambda r: r["evaluation"].__setitem__("splits", ["test", "ood"]),
              "evaluation.splits: 'ood' is in none", "test"),
    "pack_mode": (lambda r: r.setdefault("factors", {}).update(pack_seeds=2, pack_mode="vmap"),
                  "factors.pack_mode: vmap: arm s1_only cannot be vectorised: model",
                  "updates running statistics in training"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_fails_check_in_one_line(case, tmp_path, capsys):
    change, *expected = BAD[case]
    assert main(["study", _spec_file(tmp_path, change), "--check"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsray: error: "), captured.err
    for text in expected:
        assert text in lines[0], lines[0]


def test_vmap_packing_of_vit_arms_checks(tmp_path):
    """Every arm of the ViT preset is BatchNorm-free: ``pack_mode: vmap`` passes the check."""
    spec = load_spec("vit_bigearthnet", smoke=True)
    spec.factors.pack_seeds, spec.factors.pack_mode = 2, "vmap"
    assert check_study(spec, study_dir=tmp_path / "study").arms


def test_set_train_metric_typo_fails_before_ray(tmp_path, capsys):
    """Not only --check: `rsray study` runs the same checks before Ray starts."""
    rc = main(["study", "demo", "--smoke-test", "--out", str(tmp_path / "s"),
               "--set", "train.metric=val_acc_mirco"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.metric: 'val_acc_mirco'" in err[0]
    assert "did you mean 'val_acc_micro'?" in err[0]
    assert not (tmp_path / "s").exists()


def test_set_and_max_epochs_reach_every_arm():
    spec = load_request_spec(StudyRequest(spec="demo", max_epochs=2, name="demo_short",
                                          overrides=["scaling.use_gpu=yes",
                                                     "data.batch_size=8"]))
    assert spec.name == "demo_short" and spec.search.max_epochs == 2
    for arm in spec.arms:
        cfg = spec.arm_config(arm)
        assert cfg.scaling.use_gpu == "yes" and cfg.data.batch_size == 8
        assert cfg.train.max_epochs == 2
    with pytest.raises(ConfigError, match=r"scaling\.use_gpu"):
        load_request_spec(StudyRequest(spec="demo", overrides=["scaling.use_gpu=maybe"]))


def test_model_arguments_are_checked_without_building(monkeypatch):
    import functools

    import rsray.models.cnn_fusion as family

    built = []
    original = family.EarlyFusionCNN.__init__

    @functools.wraps(original)  # same signature, records any build
    def init(self, *args, **kwargs):
        built.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(family.EarlyFusionCNN, "__init__", init)
    check_model_arguments("test_early_fusion_cnn", {"s2": 10, "s1": 2}, 10, 0,
                          {"drop_rate": 0.1})
    with pytest.raises(ConfigError, match="unexpected argument 'depthh'"):
        check_model_arguments("test_early_fusion_cnn", {"s2": 10}, 10, 0, {"depthh": 3})
    assert built == []
