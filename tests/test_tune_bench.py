"""The trial benchmark's arithmetic: fixed cost per trial from the driver's clock."""

from __future__ import annotations

import pytest

from rsray.bench.trials import PathBench, TrialClock, format_tune_benchmark


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_fixed_cost_is_each_trials_share_of_the_wall_minus_its_reported_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = iter([100.0, 110.0, 125.0])  # a starts, a ends, b ends
    monkeypatch.setattr("rsray.bench.trials.time.monotonic", lambda: next(now))
    clock, a, b = TrialClock(), _Trial("a"), _Trial("b")
    clock.on_trial_start(0, [], a)
    clock.on_trial_result(0, [], a, {"train_seconds": 4.0, "eval_seconds": 1.0})
    clock.on_trial_result(0, [], a, {"train_seconds": 3.0, "report_seconds": 0.5})
    clock.on_trial_complete(0, [], a)
    clock.on_trial_result(0, [], b, {"train_seconds": 9.0})
    clock.on_trial_error(0, [], b)  # b's actor started while a ran: its gap counts from a's end
    assert clock.fixed_costs() == pytest.approx([10.0 - 8.5, 15.0 - 9.0])


def test_format_names_each_path_and_whether_targets_are_met() -> None:
    text = format_tune_benchmark({
        "local": PathBench("local", 3, 30.0, 25.0, [1.0, 2.0, 9.0]),
        "trainer": PathBench("trainer", 2, 80.0, 20.0, [25.0, 30.0])}, epochs=2)
    assert "trainer/local = 13.8x" in text
    assert "<= 3 s (local): 2.0 s, met" in text
    assert "<= 1.3x (local, 2 epoch(s) per trial): 1.20, met" in text
