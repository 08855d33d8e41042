"""What a trial costs beside its own work: Tune wall time and per-trial fixed cost, per path.

``run_tune_benchmark`` runs the same experiment (``trials`` trials of ``epochs`` epochs, one at
a time, ASHA's grace period = ``epochs`` so none is pruned) once per trial path
(``scaling.trial_mode``: ``local``, Train V2's local mode in the trial's process; ``trainer``,
a ``TorchTrainer`` per trial), side by side in one run, and measures on the driver
(:class:`TrialClock`):

- **fixed cost per trial**: the time a trial adds to the experiment (from the previous
  trial's end, or the first trial's start, to its own end) minus what it reports as its
  work (the epochs' training loops, evaluation, and report + checkpoint). Its median is the
  figure to compare with the target (:data:`TARGETS`);
- **Tune wall / training**: the experiment's wall time over the sum of the trials' training
  loops.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from rsray.config import Config

TARGETS = {"fixed_seconds": 3.0, "wall_over_train": 1.3}
"""Per-trial fixed cost (median, seconds) and Tune wall / training loops, at most."""

WORK = ("train_seconds", "eval_seconds", "report_seconds")
"""What a trial reports as its own work per epoch (``report_seconds`` is the previous epoch's
report + checkpoint, so the last epoch's report counts as fixed cost)."""


class TrialClock(tune.Callback):
    """Driver-side clock of each trial: its start, its end and the work it reported."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.work: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The trial's actor runs."""
        self.start.setdefault(trial.trial_id, time.monotonic())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """Fold in one epoch's reported work."""
        done = sum(float(result.get(k, 0.0) or 0.0) for k in WORK)
        self.work[trial.trial_id] = self.work.get(trial.trial_id, 0.0) + done

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The trial ended."""
        self.end[trial.trial_id] = time.monotonic()

    on_trial_error = on_trial_complete

    def fixed_costs(self) -> list[float]:
        """Per ended trial, in order of ending: its share of the wall time minus its work."""
        out, last = [], None
        for tid, end in sorted(self.end.items(), key=lambda kv: kv[1]):
            begin = self.start.get(tid, end) if last is None else last
            out.append(end - begin - self.work.get(tid, 0.0))
            last = end
        return out


@dataclass
class PathBench:
    """One trial path's experiment."""

    mode: str
    trials: int
    wall_seconds: float
    train_seconds: float
    fixed: list[float] = field(default_factory=list)

    @property
    def fixed_median(self) -> float:
        """Median fixed cost per trial (seconds)."""
        return statistics.median(self.fixed) if self.fixed else math.nan

    @property
    def wall_over_train(self) -> float:
        """Tune wall time over the trials' training loops."""
        return self.wall_seconds / self.train_seconds if self.train_seconds else math.nan


def bench_path(cfg: Config, mode: str, *, trials: int, epochs: int, name: str,
               storage: str = "rsray_results/bench") -> PathBench:
    """Run ``trials`` trials of ``epochs`` epochs with ``scaling.trial_mode=mode``."""
    from rsray.tune.run import tune_fusion

    run_cfg = cfg.with_overrides({
        "scaling.trial_mode": mode, "train.max_epochs": epochs, "tune.name": name,
        "tune.num_samples": trials, "tune.grace_period": epochs,
        "tune.max_concurrent_trials": 1, "train.storage_path": storage})
    clock = TrialClock()
    outcome = tune_fusion(run_cfg, callbacks=[clock])
    train = sum(t.get("train_seconds", 0.0) for t in outcome.trial_timing)
    return PathBench(mode, len(outcome.trial_timing), outcome.seconds, train,
                     clock.fixed_costs())


def run_tune_benchmark(cfg: Config, *, trials: int, epochs: int, paths: dict[str, int],
                       storage: str = "rsray_results/bench") -> dict[str, PathBench]:
    """Each of ``paths`` (trial mode -> trials; ``trials`` when 0) side by side, one run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return {mode: bench_path(cfg, mode, trials=n or trials, epochs=epochs,
                             name=f"bench-tune-{mode}-{stamp}", storage=storage)
            for mode, n in paths.items()}


def _met(value: float, target: float) -> str:
    if math.isnan(value):
        return "not measured"
    return "met" if value <= target else "NOT met"


def format_tune_benchmark(results: dict[str, PathBench], epochs: int) -> str:
    """The paths side by side, their ratio, and which targets are met."""
    lines = [f"  {'trial path':10s} {'trials':>6s} {'wall s':>7s} {'train s':>7s} "
             f"{'wall/train':>10s} {'fixed/trial s (median, min-max)':>32s}"]
    for r in results.values():
        spread = f"{min(r.fixed):.1f}-{max(r.fixed):.1f}" if r.fixed else "-"
        lines.append(f"  {r.mode:10s} {r.trials:6d} {r.wall_seconds:7.0f} "
                     f"{r.train_seconds:7.0f} {r.wall_over_train:10.2f} "
                     f"{r.fixed_median:14.1f} ({spread})")
    local, trainer = results.get("local"), results.get("trainer")
    if local and trainer and local.fixed_median > 0:
        lines.append(f"  fixed cost per trial trainer/local = "
                     f"{trainer.fixed_median / local.fixed_median:.1f}x")
    main = local or next(iter(results.values()))
    fixed_t, wall_t = TARGETS["fixed_seconds"], TARGETS["wall_over_train"]
    lines.append(f"  target: median fixed cost per one-worker trial <= {fixed_t:g} s "
                 f"({main.mode}): {main.fixed_median:.1f} s, "
                 f"{_met(main.fixed_median, fixed_t)}")
    lines.append(f"  target: tune wall / training <= {wall_t:g}x ({main.mode}, {epochs} "
                 f"epoch(s) per trial): {main.wall_over_train:.2f}, "
                 f"{_met(main.wall_over_train, wall_t)}")
    return "\n".join(lines)
