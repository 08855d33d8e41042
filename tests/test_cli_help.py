"""The rsray command answers at once: help without torch, defaults and examples, same flags,
and bad input in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rsray.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["synth", "prepare", "train", "tune", "demo", "models", "presets", "report", "study",
            "evaluate", "predict", "submit"]
HEAVY = ("torch", "torchmetrics", "timm", "ray", "pandas", "scipy")

_PROBE = """
HEAVY = %r
import contextlib, io, json, sys
from rsray.cli import main
out = {}
for argv in [[], *[[c] for c in sys.argv[1:]]]:
    before = set(sys.modules)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*argv, "--help"])
        except SystemExit:
            pass
    out[" ".join(argv) or "rsray"] = sorted(m for m in set(sys.modules) - before
                                            if m.split(".")[0] in HEAVY)
print(json.dumps(out))
"""


def test_help_imports_no_torch_or_ray():
    """`rsray --help` and every subcommand's --help import none of the heavy libraries."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    probe = _PROBE.replace("%r", repr(HEAVY), 1)
    proc = subprocess.run([sys.executable, "-c", probe, *COMMANDS], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(imported) == {"rsray", *COMMANDS}
    assert imported == {k: [] for k in imported}, imported


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_command_has_an_example_and_shows_defaults():
    subs = _subparsers(build_parser())
    assert set(COMMANDS) <= set(subs)
    for name in COMMANDS:
        text = subs[name].format_help()
        assert "examples:" in text and "rsray " in text.split("examples:")[1], name
    assert "(default: 300)" in subs["synth"].format_help()
    assert "(default: rsray_data/demo)" in subs["demo"].format_help()
    assert "scaling.use_gpu" in subs["study"].format_help()


@pytest.mark.parametrize("flag", ["--set", "--data", "--out", "--name", "--max-epochs",
                                  "--resume"])
def test_run_flags_are_the_same_on_train_tune_study(flag):
    subs = _subparsers(build_parser())
    for name in ("train", "tune", "study"):
        options = {o for a in subs[name]._actions for o in a.option_strings}
        assert flag in options, (name, flag)


def test_run_flags_map_to_the_same_fields():
    from rsray.cli import run_flags

    args = build_parser().parse_args(["train", "--out", "s3://b/runs", "--name", "x",
                                      "--max-epochs", "3", "--data", "d"])
    assert run_flags(args, "train.name") == {"train.storage_path": "s3://b/runs",
                                             "train.name": "x", "train.max_epochs": 3,
                                             "data.uri": "d"}
    args = build_parser().parse_args(["tune", "--out", "o", "--name", "x", "--max-epochs", "3"])
    assert run_flags(args, "tune.name") == {"train.storage_path": "o", "tune.name": "x",
                                            "train.max_epochs": 3}


def _one_error_line(err: str, prefix: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err
    return lines[0]


def test_synth_negative_count_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "sen12ms", "--n", "-3", "--out", str(tmp_path / "raw")])
    assert exc.value.code == 2
    line = _one_error_line(capsys.readouterr().err, "rsray synth: error:")
    assert "--n" in line and "-3 must be >= 1" in line
    assert not (tmp_path / "raw").exists()


def test_synth_unknown_dataset_is_one_line(tmp_path, capsys):
    assert main(["synth", "sen12m", "--out", str(tmp_path / "raw")]) == 2
    line = _one_error_line(capsys.readouterr().err, "rsray: error:")
    assert "unknown dataset 'sen12m'" in line and "sen12ms" in line


def test_unknown_flag_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--max-epoch", "3", "--bogus"])
    line = _one_error_line(capsys.readouterr().err, "rsray: error:")
    assert "--bogus" in line


def test_train_existing_run_needs_resume(tmp_path, capsys, monkeypatch):
    """Without --resume an existing run name is refused (after the data is found valid)."""
    from rsray import cli

    monkeypatch.setattr(cli, "fit", None, raising=False)
    (tmp_path / "runs" / "first").mkdir(parents=True)
    cfg = cli.load_config(None).with_overrides({"train.storage_path": str(tmp_path / "runs"),
                                                "train.name": "first"})
    with pytest.raises(cli.ConfigError, match="pass --resume to continue it"):
        cli.check_fresh_run(cfg, resume=False)
    cli.check_fresh_run(cfg, resume=True)
    cli.check_fresh_run(cfg.with_overrides({"train.name": "second"}), resume=False)


def test_raw_folder_as_data_says_raw_and_shows_prepare(tmp_path, capsys):
    raw = tmp_path / "sen12ms_raw" / "ROIs1158_spring" / "s2_1"
    raw.mkdir(parents=True)
    for i in range(3):
        (raw / f"patch_{i}.tif").write_bytes(b"II*\x00")
    assert main(["train", "--data", str(tmp_path / "sen12ms_raw")]) == 2
    line = _one_error_line(capsys.readouterr().err, "rsray: error:")
    assert "this is raw data (it holds 3 .tif file(s))" in line
    assert "rsray prepare DATASET" in line and "did not finish" not in line


def test_unfinished_prepare_is_still_called_so(tmp_path, capsys):
    (tmp_path / "shards" / "train").mkdir(parents=True)
    (tmp_path / "shards" / "train" / "shard-00000.parquet").write_bytes(b"PAR1")
    assert main(["train", "--data", str(tmp_path / "shards")]) == 2
    assert "did not finish" in _one_error_line(capsys.readouterr().err, "rsray: error:")


@pytest.mark.parametrize(("argv", "expected"), [
    (["--config", "nope"], "config file nope: no such file and no preset"),
    (["--n", "-3"], "argument --n: -3 must be >= 1"),
    ([], "no shard set here"),  # the default config (a preset) was found from another folder
])
def test_bench_job_runs_from_any_folder(tmp_path, argv, expected):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(tmp_path / "ray")}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "bench_train.py"), *argv,
                           "--shards", str(tmp_path / "missing")], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_error_line(proc.stderr, "bench_train: error:")
    assert expected in line
    assert not (tmp_path / "ray").exists()


def test_train_metric_typo_is_one_line_before_ray(tmp_path, capsys):
    """`rsray train/tune --set train.metric=val_acc_mirco` stops before Ray, with a suggestion."""
    import json as _json

    from rsray.data.shards import Manifest, write_manifest

    shards = tmp_path / "shards"
    shards.mkdir()
    write_manifest(str(shards), Manifest(
        dataset="bigearthnet", task="multilabel", classes=["a", "b"],
        modalities={"s2": {"bands": ["B02"], "groups": {}}}, shards=[], band_stats={}))
    assert _json.loads((shards / "manifest.json").read_text())["task"] == "multilabel"
    for command in ("train", "tune"):
        rc = main([command, "--data", str(shards), "--out", str(tmp_path / "runs"),
                   "--set", "train.metric=val_acc_mirco"])
        assert rc == 2
        line = _one_error_line(capsys.readouterr().err, "rsray: error:")
        assert "train.metric: 'val_acc_mirco'" in line and "val_acc_micro" in line
    assert not (tmp_path / "runs").exists()
