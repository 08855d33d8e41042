"""A study arm trained with its paper's multi-run recipe: flair2_lfdlm's `paper` variant.

The LF-DLM paper trains the aerial UNetFormer(s) and the Sentinel-2 U-TAE separately and picks
the fusion weight on validation; the study runs that recipe once per seed of its LF-DLM arms,
records the fused model's rows like any run's, and resumes a seed branch by branch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rsray.errors import ConfigError
from rsray.study.spec import load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "studies" / "flair2_lfdlm.yaml"
BRANCHES = {"lf_dlm": ["aerial0", "series"], "lf_dlm_ensemble": ["aerial0", "aerial1", "series"]}


def test_recipe_arms_are_checked_when_the_spec_is_read() -> None:
    raw = {"name": "r", "data": {"dataset": "flair2", "synthetic_n": 48},
           "arms": [{"name": "lf", "model": "test_lf_dlm", "modalities": ["aerial", "s2"],
                     "recipe": "lf_dlm"}],
           "baseline": "lf"}
    assert spec_from_dict(raw, "x.yaml").arm("lf").recipe == "lf_dlm"
    for change, match in (
            ({"recipe": "nope"}, r"x.yaml: arms.lf.recipe: 'nope' is not a recipe; choose one "
                                 r"of lf_dlm"),
            ({"space": "segmentation_fair"}, r"arms.lf: a recipe arm has fixed parameters"),
            ({"model": "test_unet_utae"}, r"arms.lf \(recipe 'lf_dlm'\): model.name: the "
                                          r"LF-DLM recipe needs an lf_dlm model")):
        bad = {**raw, "arms": [{**raw["arms"][0], **change}]}
        with pytest.raises(ConfigError, match=match) as info:
            spec_from_dict(bad, "x.yaml")
        assert "\n" not in str(info.value)


def test_paper_is_the_default_and_runs_the_recipe() -> None:
    from rsray.study.faithfulness import resolve
    from rsray.study.spec import check_runnable

    paper = load_spec(PRESET)
    assert paper.variant == "paper" and paper.name == "flair2_lfdlm-paper"
    assert {a.name: a.recipe for a in paper.arms if a.recipe} == {
        "lf_dlm": "lf_dlm", "lf_dlm_ensemble": "lf_dlm"}
    for arm, branches in BRANCHES.items():
        runs = resolve(paper, paper.arm(arm), "recipe.runs.train.name")
        assert [r.rsplit("-", 1)[1] for r in runs] == branches
    tuned = load_spec(PRESET, variant="tuned")
    assert not any(a.recipe for a in tuned.arms)  # tuned: LF-DLM trained end to end
    check_runnable(load_spec(PRESET, smoke=True))  # the recipe arms are no longer refused


def test_check_plans_the_recipe_runs() -> None:
    from rsray.study.check import check_study

    report = check_study(load_spec(PRESET, smoke=True))  # the twin's manifest; no Ray
    # 2 seeds x (LF-DLM: 2 runs, the ensemble: 3 runs), one of each counted as the seed's run
    assert report.plan.seeded_runs == 10 and report.plan.recipe_runs == 2 * (1 + 2)
    assert "+ 6 branch run(s) of recipe arms" in "\n".join(report.lines())


def test_check_shares_a_recipe_seeds_time_among_its_runs(tmp_path: Path) -> None:
    from rsray.study.check import check_study

    spec = load_spec(PRESET, smoke=True)
    seed = tmp_path / "cells" / "lf_dlm_ensemble__f1__all" / "seed_0"
    seed.mkdir(parents=True)
    (seed / "result.json").write_text(json.dumps(
        {"rows": [], "seconds": 90.0, "recipe": {"branches": ["a0", "a1", "s"]}}))
    plan = check_study(spec, study_dir=tmp_path).plan
    assert plan.run_seconds == pytest.approx(30.0)  # 3 runs in 90 s
    assert "3 finished run(s)" in plan.measured
    # still to run: 2 lf_dlm seeds x 1 extra branch run, 1 ensemble seed x 2
    assert plan.finished_runs == 1 and plan.recipe_runs == 2 * 1 + 1 * 2


def _study_spec() -> Any:
    """The paper variant's smoke study, one seed (the recipe arms train 2 and 3 runs each)."""
    spec = load_spec(PRESET, smoke=True)
    spec.factors.seeds = 1
    return spec


@pytest.mark.slow
def test_paper_smoke_study_trains_the_lfdlm_branches_apart(tmp_path: Path,
                                                           ray_session: Any) -> None:
    from rsray.evaluate.checkpoint import read_checkpoint_meta
    from rsray.study.cli import write_study_report
    from rsray.study.runner import run_study

    spec = _study_spec()
    out = tmp_path / "study"
    outcome = run_study(spec, study_dir=out)
    assert not outcome.missing
    df = pd.read_parquet(out / "results.parquet")
    test = df[(df.split == "test") & (df.dropped == "") & (df.metric == "miou")]
    assert sorted(test.arm) == sorted(a.name for a in spec.arms)
    assert test.value.between(0, 1).all()
    chosen = {}
    for arm, branches in BRANCHES.items():
        seed = out / "cells" / f"{arm}__f1__all" / "seed_0"
        doc = json.loads((seed / "result.json").read_text())
        recipe = doc["recipe"]
        assert recipe["recipe"] == "lf_dlm"
        assert [r["aerial_weight"] for r in recipe["grid"]] == [i / 10 for i in range(11)]
        best = max(recipe["grid"], key=lambda r: (r["val_miou"], -abs(r["aerial_weight"] - .7)))
        assert recipe["best_weight"] == best["aerial_weight"]
        chosen[arm] = recipe["best_weight"]
        # the study evaluated the recipe's fused model, with the chosen weight
        assert doc["checkpoint"] == str(seed / "recipe" / "fused_checkpoint")
        fused = read_checkpoint_meta(doc["checkpoint"])[0]["config"]["model"]["params"]
        assert fused["aerial_weight"] == recipe["best_weight"]
        assert (fused["branch"], fused["n_aerial"]) == ("both", len(branches) - 1)
        # each branch was its own run, on its own modality only
        for name, ckpt in zip(branches, recipe["branches"], strict=True):
            record = json.loads((seed / "recipe" / f"branch_{name}.json").read_text())
            assert record["checkpoint"] == ckpt
            assert record["run"] == f"{arm}__f1__all__seed0-{name}"
            branch = read_checkpoint_meta(ckpt)[0]["config"]
            assert branch["model"]["params"]["branch"] == name.rstrip("01")
            assert branch["data"]["modalities"] == (["s2"] if name == "series" else ["aerial"])
        assert set(df[df.arm == arm].dropped) == {"", "aerial", "s2"}
        assert (seed / "recipe" / "weights.png").stat().st_size > 0
    md, _ = write_study_report(str(out))
    report = Path(md).read_text()
    for arm, weight in chosen.items():  # the report's arm table shows what the recipe chose
        row = next(ln for ln in report.splitlines() if ln.startswith("| ") and f"(`{arm}`)" in ln)
        assert f"recipe `lf_dlm`; fusion weight per seed: {weight:g}" in row

    # resume: a recipe seed whose result was lost redoes the fusion, not its branches
    seed = out / "cells" / "lf_dlm__f1__all" / "seed_0"
    branch_runs = list((out / "runs" / "stage2").glob("lf_dlm__f1__all__seed0-*"))
    assert len(branch_runs) == 2
    kept = [*seed.glob("recipe/branch_*.json"),
            *(p for run in branch_runs for p in run.rglob("*") if p.is_file())]
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    (seed / "result.json").unlink()
    again = run_study(spec, study_dir=out, resume=True)
    assert not again.missing and (seed / "result.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no branch trained again
    assert {p for run in branch_runs for p in run.rglob("*") if p.is_file()} <= set(stamps)



@pytest.mark.slow
def test_recipe_seed_in_an_object_store(s3_bucket: str, ray_session: Any) -> None:
    """A study folder on S3: the branches, the recipe's files and the fused model go there."""
    import s3fs

    from rsray.study.runner import run_study

    spec = _study_spec()
    spec.arms = [spec.arm("lf_dlm")]
    spec.baseline, spec.single_modality = "lf_dlm", []
    spec.paper_results = {"lf_dlm": spec.paper_results["lf_dlm"]}
    spec.evaluation.drop_modalities = False  # the dropped-modality rows are tested above
    out = f"{s3_bucket}/lfdlm"
    outcome = run_study(spec, study_dir=out)
    assert not outcome.missing and outcome.n_rows > 0
    fs = s3fs.S3FileSystem()
    seed = f"{out.removeprefix('s3://')}/cells/lf_dlm__f1__all/seed_0"
    doc = json.loads(fs.cat(f"{seed}/result.json"))
    assert doc["checkpoint"] == f"s3://{seed}/recipe/fused_checkpoint"
    assert all(c.startswith(f"{out}/runs/stage2/") for c in doc["recipe"]["branches"])
    assert {p.rsplit("/", 1)[1] for p in fs.ls(f"{seed}/recipe")} >= {
        "branch_aerial0.json", "branch_series.json", "recipe.json", "weights.png",
        "fused_checkpoint"}
