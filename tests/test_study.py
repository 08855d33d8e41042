"""Study specs (validation, presets) and a study end to end: killed, resumed, complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rsray.errors import ConfigError
from rsray.study.runner import cells_of
from rsray.study.spec import load_spec, spec_from_dict
from rsray.study.stage1 import CELL_KEY, CellScheduler, CellSearch, CellSearcher

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "studies").glob("*.yaml"))

TINY = {
    "name": "tiny",
    "data": {"dataset": "bigearthnet", "synthetic_n": 64},  # 46 train: no batch of 1
    "base": {"data.image_size": 32, "data.batch_size": 16, "train.max_epochs": 1,
             "train.log_every_n_steps": 1000, "scaling.cpus_per_worker": 0.5},
    "arms": [
        {"name": "s2_only", "model": "test_early_fusion_cnn", "modalities": ["s2"],
         "space": "cnn"},
        {"name": "early", "model": "test_early_fusion_cnn", "modalities": ["s2", "s1"]},
    ],
    "baseline": "s2_only",
    "metrics": ["ap_macro", "ap_micro"],
    "search": {"num_samples": 1, "max_epochs": 1},
    "factors": {"seeds": 2},
}


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_presets_parse_with_smoke_variant(path: Path) -> None:
    spec, smoke = load_spec(path), load_spec(path, smoke=True)
    assert [a.name for a in spec.arms] == [a.name for a in smoke.arms]
    assert smoke.search.num_samples == 1 and smoke.factors.seeds == 2
    assert all(a.model.startswith("test_") for a in smoke.arms), path
    assert smoke.arm_config(smoke.arms[0]).train.max_epochs <= 2
    # the paper studies: >= 5 seeds; the demo (a few minutes on a laptop): 3
    assert spec.factors.seeds >= (3 if path.stem == "demo" else 5)


def _bad(change: dict, match: str) -> None:
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    for dotted, value in change.items():
        node, *path = dotted.split(".")
        target = raw
        keys = [node, *path]
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    with pytest.raises(ConfigError, match=match) as info:
        spec_from_dict(raw, "x.yaml")
    assert "\n" not in str(info.value)


def test_spec_errors_name_the_field() -> None:
    _bad({"baseline": "nope"}, r"x.yaml: baseline: 'nope' is not an arm")
    _bad({"arms.1.model": "resnet9000"}, r"arms.early.model: 'resnet9000' is not a registered")
    _bad({"arms.0.space": "nospace"}, r"arms.s2_only.space: 'nospace' is not a search space")
    _bad({"arms.1.name": "s2_only"}, r"arms\[1\].name: 's2_only' names two arms")
    _bad({"arms.1.colour": "red"}, r"arms\[1\].colour: unknown field")
    _bad({"factors.fractions": [0.5, 1.5]}, r"factors.fractions: .* must be numbers in \(0, 1\]")
    _bad({"factors.seeds": 0}, r"factors.seeds: 0 must be >= 1")
    _bad({"factors.holdouts": ["tile"]}, r"factors.holdouts: 'tile' is not KEY=VALUES")
    _bad({"search.grace_period": 3}, r"search.grace_period: 3 exceeds search.max_epochs")
    _bad({"evaluation": {"splits": ["val"]}}, r"evaluation.splits: .* not train/val")
    _bad({"base": {"optim.lr": -1}}, r"arms.s2_only \(with base\): optim.lr: -1")
    _bad({"arms.1.params": {"data.batch_size": 0}}, r"arms.early \(with base\): data.batch_size")
    _bad({"colour": 1}, r"x.yaml: colour: unknown field")


def test_smoke_overrides_unknown_arm(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TINY, "smoke": {"arms": {"late": {"model": "x"}}}}))
    with pytest.raises(ConfigError, match=r"smoke.arms.late: no arm of that name"):
        load_spec(path, smoke=True)
    with pytest.raises(ConfigError, match="no smoke variant"):
        path.write_text(yaml.safe_dump(TINY))
        load_spec(path, smoke=True)


def test_proof_variant_is_its_own_study(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TINY, "proof": {"factors": {"seeds": 3},
                                                      "arms": {"early": {"model": "x"}}}}))
    with pytest.raises(ConfigError, match=r"arms.early.model: 'x' is not a registered"):
        load_spec(path, proof=True)
    path.write_text(yaml.safe_dump({**TINY, "proof": {"factors": {"seeds": 3}}}))
    proof = load_spec(path, proof=True)
    assert proof.name == "tiny-proof" and proof.factors.seeds == 3
    assert load_spec(path).factors.seeds == 2
    with pytest.raises(ConfigError, match="one of --smoke-test and --proof"):
        load_spec(path, proof=True, smoke=True)


def test_cells_cross_arms_fractions_holdouts() -> None:
    raw = {**TINY, "factors": {"seeds": 2, "fractions": [0.5, 1.0],
                               "holdouts": ["", "tile=29SND"]}}
    cells = cells_of(spec_from_dict(raw))
    assert len(cells) == 8 and len({c.id for c in cells}) == 8
    assert cells[0].id == "s2_only__f0.5__all" and cells[-1].id == "early__f1__tile-29SND"


def _cell_search(cell_id: str, config: dict, samples: int) -> CellSearch:
    from rsray.config import Config
    from rsray.train.run_plan import RunPlan

    cfg = Config.from_dict(config).with_overrides({"train.metric": "val_ap_macro",
                                                   "train.mode": "max"})
    # the searcher reads the run's config, metric and mode only (no shard set needed)
    run = RunPlan(config=cfg, data=None, task="multilabel", classes=(),  # type: ignore[arg-type]
                  loss="bce")
    return CellSearch(id=cell_id, label=cell_id, run=run, manifest=None,  # type: ignore[arg-type]
                      space=config["tune"]["space"], num_samples=samples, max_epochs=2,
                      record=Path("x"))


def test_one_experiment_routes_each_cell_to_its_own_searcher_and_asha() -> None:
    """Stage 1's single Tuner: proposals round-robin over cells, each from its own space."""
    spec = spec_from_dict({**TINY, "arms": [
        {**TINY["arms"][0]},
        {"name": "middle", "model": "test_middle_fusion_cnn", "modalities": ["s2", "s1"],
         "space": "middle"}]})
    a = spec.arm_config(spec.arms[0], {"tune.space": "cnn"}).to_dict()
    b = spec.arm_config(spec.arms[1], {"tune.space": "middle"}).to_dict()
    cells = [_cell_search("a", a, 3), _cell_search("b", b, 1)]
    searcher = CellSearcher(cells)
    got = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [g[CELL_KEY] for g in got] == ["a", "b", "a", "a"]
    assert searcher.suggest("t4") == CellSearcher.FINISHED
    from rsray.tune.spaces import get_space

    for g in got:
        space = get_space("cnn" if g[CELL_KEY] == "a" else "middle")
        assert set(g) - {CELL_KEY} == set(space), g  # never a key of the other cell's space
    searcher.on_trial_complete("t0", {"val_ap_macro": 0.5, "epoch": 2})
    assert "t0" not in searcher.owner and "t1" in searcher.owner
    sched = CellScheduler(cells, grace_period=1, reduction_factor=2)
    assert set(sched.ashas) == {"a", "b"} and sched.ashas["a"] is not sched.ashas["b"]


def _finished_cell(study: Path) -> Path | None:
    for cell in sorted((study / "cells").glob("*")):
        if len(list(cell.glob("seed_*/result.json"))) == 2:
            return cell
    return None


KILL_TEST = {**TINY, "base": {**TINY["base"], "tune.max_concurrent_trials": 2},
             "evaluation": {"splits": ["test"], "drop_modalities": True,
                            "predictions": False}}
"""The smallest study that proves resume: 2 arms x 2 seeds, 32 px, 1 epoch, two trials at a
time, no predictions; run on the session's synthetic shard set (``--data``), so it prepares
no data of its own."""


@pytest.mark.slow
def test_study_killed_after_first_cell_then_resumed(tmp_path: Path, ray_session,
                                                    synthetic_shards: str) -> None:
    """2 arms x 2 seeds: SIGKILL after the first finished cell, --resume, table complete.

    The study runs as a subprocess joined to the session's Ray (no Ray start-up of its own);
    a SIGKILL of that driver ends its job, and Ray frees what the job held.
    """
    spec_path, study = tmp_path / "tiny.yaml", tmp_path / "study"
    spec_path.write_text(yaml.safe_dump(KILL_TEST))
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    cmd = [sys.executable, "-m", "rsray.cli", "study", str(spec_path), "--out", str(study),
           "--data", synthetic_shards, "--no-report"]
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=tmp_path)
    deadline = time.monotonic() + 900
    cell = None
    while time.monotonic() < deadline and proc.poll() is None:
        cell = _finished_cell(study)
        if cell is not None:
            break
        time.sleep(0.1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = (tmp_path / "first.log").read_text()
    assert cell is not None, first[-3000:]
    assert not (study / "results.parquet").exists(), "the study finished before the kill"
    stamps = {p: p.stat().st_mtime_ns for p in cell.rglob("*") if p.is_file()}
    searches = {p: p.stat().st_mtime_ns for p in study.glob("cells/*/search.json")}

    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "2 finished before" in out or "3 finished before" in out, out[-3000:]
    assert {p: p.stat().st_mtime_ns for p in cell.rglob("*") if p.is_file()
            and p in stamps} == stamps, "the finished cell was re-run"
    assert all(p.stat().st_mtime_ns == t for p, t in searches.items())
    df = pd.read_parquet(study / "results.parquet")
    test = df[(df.split == "test") & (df.dropped == "") & (df.metric == "ap_macro")]
    assert sorted(map(tuple, test[["arm", "seed"]].to_numpy())) == [
        ("early", 0), ("early", 1), ("s2_only", 0), ("s2_only", 1)]
    assert set(df[df.arm == "early"].dropped) == {"", "s1", "s2"}
    assert (study / "hparams.csv").is_file() and (study / "results.csv").is_file()
    assert "ap_macro" in out and "s2_only (baseline)" in out


def test_stage2_progress_prints_each_run_with_its_test_metric(tmp_path, capsys) -> None:
    import json
    from types import SimpleNamespace

    from rsray.study.progress import Stage2Progress

    run = tmp_path / "seed_0"
    run.mkdir()
    rows = [{"split": "test", "dropped": "", "metric": "ap_macro", "value": 0.61234},
            {"split": "test", "dropped": "s1", "metric": "ap_macro", "value": 0.4}]
    (run / "result.json").write_text(json.dumps({"rows": rows}))
    jobs = {"a": {"dir": str(run), "label": "cell 1/2 early fraction 1 seed 1/2",
                  "headline": "ap_macro"},
            "b": {"dir": str(tmp_path / "none"), "label": "cell 2/2 late fraction 1 seed 1/2",
                  "headline": "ap_macro"}}
    cb = Stage2Progress(jobs)
    ta = SimpleNamespace(trial_id="t1", config={"job": "a"}, local_path="x")
    tb = SimpleNamespace(trial_id="t2", config={"job": "b"}, local_path="y")
    cb.on_trial_start(0, [], ta)
    cb.on_trial_complete(0, [], ta)
    cb.on_trial_start(0, [], tb)
    tb.num_failures, tb.max_failures = 1, 2
    cb.on_trial_recover(0, [], tb)  # retried: not finished
    cb.on_trial_start(0, [], tb)
    cb.on_trial_error(0, [], tb)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[study] run started: cell 1/2 early fraction 1 seed 1/2"
    assert out[1].startswith("[study] run 1/2 done: cell 1/2 early fraction 1 seed 1/2, "
                             "test ap_macro 0.6123 (")
    assert out[2] == "[study] run started: cell 2/2 late fraction 1 seed 1/2"
    assert out[3] == ("[study] run failed, retrying (1 of at most 2): cell 2/2 late fraction 1 "
                      "seed 1/2; it resumes from its last checkpoint")
    assert out[4] == out[2]
    assert len(out) == 5 and cb.finished == 2  # a failure is printed once, by run_jobs


def test_error_line_is_the_raised_exception_not_rays_wrapper() -> None:
    from rsray.study.runner import error_line

    wrapped = RuntimeError(
        "Training failed due to worker errors:\n[Rank 0 Error Snippet]:\n"
        "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1, ip=127.0.0.1, repr=stage2_trial)\n"
        '  File "loop.py", line 394, in train_fn_per_worker\n    stats = f(x)\n            ^^^^\n'
        "... (Output truncated. See individual worker logs for full details) ...\n"
        "rsray.errors.ConfigError: model test_utae: predicts 16 x 16 maps\n\n")
    assert error_line(wrapped) == "rsray.errors.ConfigError: model test_utae: predicts 16 x 16 maps"
    assert error_line(ValueError("")) == "ValueError('')"
