"""rsray's terminal lines for stage 2 (the seeded retraining runs), driver side.

A stage-2 trial is a plain function that trains, evaluates and writes its ``result.json``;
it reports nothing to Tune, so Ray's own trial reporter would print an empty
``Trial ... completed. Last result:`` line per run (it does so even at ``verbose=0``). This
callback takes the reporter's place: being a ``TrialProgressCallback``, Tune adds no other.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray.tune.progress_reporter import TrialProgressCallback

from rsray.console import say
from rsray.storage import join, read_bytes


class Stage2Progress(TrialProgressCallback):
    """One line when a seeded run starts, is retried, and ends (with its test metric)."""

    def __init__(self, jobs: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.jobs = jobs
        self.total = len(jobs)
        self.finished = 0
        self.started: dict[str, float] = {}

    def _job(self, trial: Any) -> dict[str, Any]:
        return self.jobs.get((trial.config or {}).get("job", ""), {})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """``[study] run started: cell 2/8 early fraction 1 seed 1/2``."""
        self.started[trial.trial_id] = time.monotonic()
        say(f"[study] run started: {self._job(trial).get('label', trial.trial_id)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """Stage-2 trials report nothing to Tune."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The run's headline test metric, from the ``result.json`` it wrote."""
        self.finished += 1
        job = self._job(trial)
        seconds = time.monotonic() - self.started.get(trial.trial_id, time.monotonic())
        say(f"[study] run {self.finished}/{self.total} done: "
            f"{job.get('label', trial.trial_id)}{_headline(job)} ({seconds:.0f} s)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """``[study] run failed, retrying (1 of at most 2): ...``.

        Its process or node died (or it raised) and Tune starts it again
        (``train.max_failures``); its training resumes from the run's last checkpoint.
        """
        say(f"[study] run failed, retrying ({trial.num_failures} of at most "
            f"{trial.max_failures}): {self._job(trial).get('label', trial.trial_id)}; it "
            "resumes from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Counted only: ``run_jobs`` prints each failed run with its error once Tune ends."""
        self.finished += 1


def _headline(job: dict[str, Any]) -> str:
    if not job or not job.get("dir"):
        return ""
    try:  # the seed's folder: a local path or a URI
        rows = json.loads(read_bytes(join(job["dir"], "result.json"))).get("rows", [])
    except (OSError, ValueError):
        return ""
    metric = job.get("headline", "")
    for row in rows:
        if row.get("split") == "test" and not row.get("dropped") and row.get("metric") == metric:
            return f", test {metric} {row['value']:.4f}"
    return ""


__all__ = ["Stage2Progress"]
