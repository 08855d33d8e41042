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


def test_train_report_says_whether_its_targets_are_met() -> None:
    from rsray.bench.training import COMPARE_VARIANTS, TrainBench, format_train_benchmark

    r = TrainBench("m", 16, 1, ceiling=20.0, rsray=19.0,
                   fit={"train_first_batch_seconds": 0.8, "data_wait_share": 0.02})
    text = format_train_benchmark(r, 2)
    assert "pipeline tax = 0.95   (target >= 0.9: met)" in text
    assert "first batch of epoch 2: 0.80 s   (target <= 0.5: NOT met)" in text
    assert "variant" not in text  # no --compare: no variants table
    r.variants = {name: {"train_samples_per_second": 10.0, "report_seconds": 1.0,
                         "epoch_seconds": 5.0} for name in COMPARE_VARIANTS}
    r.augment = {"cpu": {"host": 100.0, "device": 50.0}}
    text = format_train_benchmark(r, 2)
    assert "device/host = 0.50" in text and "async/sync: report 1.00" in text
    assert all(name in text for name in COMPARE_VARIANTS)
