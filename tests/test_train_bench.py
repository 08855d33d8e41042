"""The training benchmark's wall-time split (pure arithmetic on trial reports)."""

from __future__ import annotations

import pytest

from rsray.bench.training import wall_split


def test_wall_split_sums_the_trials_parts_and_names_the_rest() -> None:
    timing = [{"startup_seconds": 10.0, "setup_seconds": 1.0, "train_seconds": 5.0,
               "eval_seconds": 2.0, "report_seconds": 0.5},
              {"startup_seconds": 12.0, "train_seconds": 6.0}]  # a part it did not report: 0
    split = wall_split(timing, wall=50.0)
    assert split["split_startup_seconds"] == pytest.approx(22.0)
    assert split["split_train_seconds"] == pytest.approx(11.0)
    assert split["split_setup_seconds"] == pytest.approx(1.0)
    assert split["split_rest"] == pytest.approx(50.0 - 22.0 - 1.0 - 11.0 - 2.0 - 0.5)
    assert sum(split.values()) == pytest.approx(50.0)
