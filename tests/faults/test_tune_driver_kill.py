"""The ``rsray tune`` driver SIGKILLed after its first finished trial, then ``--resume``.

Promised (issue 12): the finished trial is kept (its checkpoints untouched, never started
again), the unfinished ones run, the searcher's and the scheduler's state survive (the
experiment ends with exactly ``tune.num_samples`` trials, no configuration proposed twice),
and the leaderboard lists every trial; resuming the complete experiment once more starts no
trial and keeps the same leaderboard and best trial. The driver runs as a subprocess joined to the
session's Ray, as a killed ``ray job submit`` driver would leave its cluster running.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsray.tune.run import finished_result

REPO = Path(__file__).resolve().parents[2]
FINISHED = re.compile(r"\[rsray\] ([0-9a-f]{8}) finished")


def _settings(shards: str, storage: Path, mode: str) -> list[str]:
    sets = [f"scaling.trial_mode={mode}",
        "data.batch_size=16", "data.augment=false", "model.name=test_progressive_fusion",
        "tune.space=progressive_smoke", "tune.max_concurrent_trials=1", "tune.grace_period=1",
        "scaling.num_workers=1", "scaling.cpus_per_worker=0.5", "train.log_every_n_steps=1000",
        "train.resource_wait_s=180", f"train.storage_path={storage}",
    ]
    return ["--data", shards, "--name", "driver-kill", "--num-samples", "3",
            "--max-epochs", "1", *[a for s in sets for a in ("--set", s)]]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["local", "trainer"])
def test_tune_driver_killed_then_resumed(tmp_path: Path, ray_session,
                                         synthetic_shards: str, mode: str) -> None:
    """SIGKILL after the first ``finished`` line; ``--resume`` completes the 3 trials.

    Both trial paths: one-worker trials in the trial's process, and through a TorchTrainer.
    """
    storage = tmp_path / "results"
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "rsray.cli", "tune", *_settings(synthetic_shards, storage, mode)]
    log_path = tmp_path / "first.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=tmp_path)
    done_first: str | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and done_first is None:
        time.sleep(0.2)
        if m := FINISHED.search(log_path.read_text()):
            done_first = m.group(1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = log_path.read_text()
    assert done_first is not None, first[-3000:]
    exp = storage / "driver-kill"
    assert not (exp / "leaderboard.csv").exists(), "the experiment ended before the kill"
    kept = exp / "trials" / f"trial_{done_first}"
    stamps = {p: p.stat().st_mtime_ns for p in kept.rglob("*") if p.is_file()}
    assert any(p.name == "meta.json" for p in stamps), sorted(stamps)

    again = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                           timeout=600, cwd=tmp_path)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "resuming experiment" in out, out[-3000:]
    # Tune's saved state may still list the finished trial as running (the kill came between
    # its last report and the next state save): it is relaunched, reads its final result
    # from its last checkpoint and reports that, training nothing and writing nothing.
    assert {p: p.stat().st_mtime_ns for p in kept.rglob("*") if p.is_file()} == stamps, \
        "the finished trial trained again"

    with (exp / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3, rows  # the searcher's count survived: no 4th trial
    final = re.search(rf"\[rsray\] {done_first} epoch 1/1 val_ap_macro ([0-9.]+)", first)
    assert final is not None, first[-3000:]
    row = next(r for r in rows if r["trial"] == done_first)
    assert abs(float(row["val_ap_macro"]) - float(final.group(1))) < 1e-4, row
    assert all(r["status"] in {"DONE", "PRUNED"} and r["epochs"] == "1" for r in rows), rows
    params = [c for c in rows[0] if c.startswith(("optim.", "model.", "data."))]
    assert params, rows[0]
    configs = {tuple(r[c] for c in params) for r in rows}
    assert len(configs) == 3, (params, rows)  # no configuration proposed twice
    best = json.loads((exp / "best.json").read_text())
    assert best["trial"] in {r["trial"] for r in rows}
    for r in rows:  # every run's last checkpoint ends it: what a later resume reads
        kept_result = finished_result(str(exp / "trials"), f"trial_{r['trial']}", 1)
        assert kept_result is not None and kept_result["epoch"] == 1, r

    # Resuming the complete experiment repeats nothing and loses nothing.
    last = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    out = last.stdout + last.stderr
    assert last.returncode == 0, out[-3000:]
    assert not re.findall(r"\[rsray\] [0-9a-f]{8} started", out), out[-3000:]
    with (exp / "leaderboard.csv").open() as f:
        again = list(csv.DictReader(f))
    assert sorted((r["trial"], r["status"], r["epochs"]) for r in again) == \
        sorted((r["trial"], r["status"], r["epochs"]) for r in rows)
    assert json.loads((exp / "best.json").read_text())["trial"] == best["trial"]
