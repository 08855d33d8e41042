"""The terminal of `rsray tune --smoke-test`: rsray's own lines, each once, and the leaderboard.

The same run logs its trials to MLflow through the default tracking URI (a SQLite store next to
the results, which MLflow 3.13+ accepts where it refuses folder stores): the trials, their
parameters and per-epoch metrics must arrive there, and tracking must add nothing to the
terminal.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rsray.cli import build_parser
from rsray.console import format_epoch

REPO = Path(__file__).resolve().parents[1]
LINE_BUDGET = 60
"""Lines a smoke tune run (64 patches, 2 trials of 2 epochs) may print, Ray included."""

def test_format_epoch_has_metric_rate_and_data_wait():
    line = format_epoch({"epoch": 2, "val_ap_macro": 0.51234, "train_loss": 0.4,
                         "train_samples_per_second": 37.25, "data_wait_share": 0.123,
                         "epoch_seconds": 5.1}, "val_ap_macro", 4)
    assert line == ("epoch 2/4 val_ap_macro 0.5123 train_loss 0.4000 37.2 samples/s "
                    "data-wait 12% (5.1 s)")


def _help_texts(parser):
    yield parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _help_texts(child)


def test_help_is_plain_text():
    for text in _help_texts(build_parser()):
        assert "``" not in text and not re.search(r":(class|func|data|mod):", text), text


@pytest.mark.slow
def test_smoke_tune_terminal_is_rsrays_own(tmp_path):
    """Smoke tune with MLflow on its default store: quiet terminal, every trial in MLflow."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow not installed (pip install "
                                 "'rsray[mlflow]')")
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="r_term", dir="/tmp")}
    env.pop("RAY_ADDRESS", None)
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "rsray.cli", "tune", "--smoke-test",
                           "--out", str(results), "--name", "tune-smoke",
                           "--num-samples", "2", "--set", "tracking.mlflow=true"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    lines = out.splitlines()
    assert "Leaderboard" in out and "best trial" in out, out
    assert not any("TrainingReport(" in line for line in lines), out
    for noise in ("PreemptionWatcher", "RayDeprecationWarning", "(TrainController pid=",
                  "(RayTrainWorker pid=", "Configuration for experiment", "mlflow"):
        assert noise not in out, noise
    epoch_lines = [line for line in lines if re.search(r"\] \w+ epoch \d+/2 ", line)]
    assert len(epoch_lines) == len(set(epoch_lines)) >= 2, out  # per trial and epoch, once
    assert len(lines) <= LINE_BUDGET, f"{len(lines)} lines:\n{out}"

    store = results / "mlflow.db"  # the default: no tracking URI was given
    assert store.is_file(), sorted(p.name for p in results.iterdir())
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("tune-smoke")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    trial_ids = set(re.findall(r"\[rsray\] ([0-9a-f]{8}) started", out))
    assert len(runs) == len(trial_ids) == 2, (runs, out)
    for run in runs:
        trial = next(t for t in trial_ids if t in run.info.run_name)
        assert "optim.lr" in run.data.params  # the sampled config, as parameters
        history = client.get_metric_history(run.info.run_id, "val_ap_macro")
        epochs = len(re.findall(rf"\] {trial} epoch \d+/2 ", out))
        assert len(history) == epochs >= 1  # one value per epoch the trial ran
        assert [m.step for m in history] == sorted(m.step for m in history)


def test_progress_shows_count_rate_and_eta(capsys):
    from rsray.console import Progress

    with Progress(total=3, desc="writing shards", unit="patch") as bar:
        for _ in range(3):
            bar.update(1)
    err = capsys.readouterr().err
    assert "writing shards" in err and "3/3" in err and "patch/s" in err


def test_quiet_terminal_shows_only_the_train_controllers_rsray_lines(capsys, monkeypatch):
    """``rsray train``'s epoch lines come from Ray Train's controller actor; nothing else does."""
    import ray._private.worker as ray_worker

    from rsray import console

    forwarded: list[dict] = []
    monkeypatch.setattr(ray_worker, "print_to_stdstream",
                        lambda data, ignore_prefix: forwarded.append(data))
    console._filter_worker_output()
    show = ray_worker.print_to_stdstream
    monkeypatch.setattr(console, "_VERBOSE", False)
    show({"actor_name": "TrainController", "pid": 11, "is_err": False,
          "lines": ["[rsray] epoch 1/2 val_ap_macro 0.5123", "a line of Ray's"]}, False)
    show({"actor_name": "RayTrainWorker", "pid": 12, "is_err": False,
          "lines": ["[rsray] epoch 1 step 10 loss 0.3"]}, False)
    show({"pid": "raylet", "is_err": True, "lines": ["2 PYTHON worker processes started"]},
         False)
    assert capsys.readouterr().out == "[rsray] epoch 1/2 val_ap_macro 0.5123\n"
    assert forwarded == []
    monkeypatch.setattr(console, "_VERBOSE", True)  # -v: Ray prints everything itself
    show({"actor_name": "RayTrainWorker", "pid": 12, "is_err": False, "lines": ["x"]}, False)
    assert len(forwarded) == 1 and capsys.readouterr().out == ""


def test_a_failed_trials_traceback_stays_off_a_quiet_terminal(capsys, monkeypatch):
    """Tune logs a failed trial's traceback at ERROR; rsray says it in one line instead."""
    import logging
    from types import SimpleNamespace

    from rsray import console

    console._quiet_trial_failures()
    console._quiet_trial_failures()  # once only
    log = logging.getLogger(console.TUNE_CONTROLLER_LOGGER)
    assert sum(isinstance(f, console._TrialFailureFilter) for f in log.filters) == 1
    failed = log.makeRecord(log.name, logging.ERROR, __file__, 1,
                            "Trial task failed for trial stage2_trial_00001", None, None)
    other = log.makeRecord(log.name, logging.ERROR, __file__, 1, "something else", None, None)
    monkeypatch.setattr(console, "_VERBOSE", False)
    assert not log.filter(failed) and log.filter(other)
    monkeypatch.setattr(console, "_VERBOSE", True)
    assert log.filter(failed)
    trial = SimpleNamespace(trial_id="ab12", num_failures=1, max_failures=2,
                            local_path="/r/trial_ab12")
    console.TuneProgress("val_loss", 3).on_trial_recover(0, [], trial)
    assert capsys.readouterr().out == ("[rsray] warning: ab12 failed, retrying (1 of at most 2) "
                                       "from its last checkpoint; its error is in /r/trial_ab12\n")
