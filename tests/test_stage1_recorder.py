"""Stage 1's cell record: written from the trials' last results, ranked by the cell's own
selection metric even where the task's table columns do not list it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from rsray.study.stage1 import CELL_KEY, CellRecorder


def _trial(trial_id: str, value: float, lr: float) -> Any:
    return SimpleNamespace(trial_id=trial_id, config={CELL_KEY: "early__f1__all", "optim.lr": lr},
                           last_result={"epoch": 2, "val_aa": value, "val_ap_macro": 0.5})


def test_selection_metric_outside_the_table_columns_is_recorded():
    cell = SimpleNamespace(id="early__f1__all", metric="val_aa", mode="max", num_samples=2,
                           max_epochs=2, keys={"arm": "early"})
    written: list[dict[str, Any]] = []
    recorder = CellRecorder([cell], columns=lambda c: ["val_ap_macro"],  # no val_aa
                            write=lambda c, doc: written.append(doc))
    for trial in (_trial("a", 0.61, 1e-3), _trial("b", 0.72, 3e-4)):
        recorder.on_trial_result(0, [], trial, trial.last_result)
        recorder.on_trial_complete(0, [], trial)
    assert len(written) == 1, "the cell's search.json was not written"
    doc = written[0]
    assert doc["metric"] == "val_aa" and doc["value"] == 0.72
    assert doc["params"] == {"optim.lr": 3e-4}
    assert sorted(t["value"] for t in doc["trials"]) == [0.61, 0.72]


def test_a_cell_whose_trials_never_reported_is_not_written():
    cell = SimpleNamespace(id="early__f1__all", metric="val_aa", mode="max", num_samples=1,
                           max_epochs=2, keys={})
    written: list[dict[str, Any]] = []
    recorder = CellRecorder([cell], columns=lambda c: ["val_aa"],
                            write=lambda c, doc: written.append(doc))
    trial = SimpleNamespace(trial_id="a", config={CELL_KEY: "early__f1__all"}, last_result={})
    recorder.on_trial_error(0, [], trial)
    assert written == [] and recorder.done["early__f1__all"]["params"] is None
