"""Stage 1 of a study: every unfinished cell's search as trials of one Tune experiment.

One Tuner runs the searches of all cells at once, as many trials at a time as the cluster
holds, so a study pays Tune's start-up once instead of once per cell and a cell's trials fill
slots another cell leaves idle. Each cell keeps its own search: :class:`CellSearcher` routes
each trial to the cell's own Optuna TPE searcher (its arm's named or conditional space, the
cell's budget), and :class:`CellScheduler` to the cell's own ASHA (a weak arm's trials are
compared with that arm's trials only). A trial's config carries its cell's id under
:data:`CELL_KEY`; the trial driver builds that cell's config (arm, modalities, shard set,
training fraction) with the trial's parameters.

:class:`CellRecorder` writes ``cells/<cell>/search.json`` the moment a cell's last trial
ends (atomic), so a study killed during stage 1 re-runs only the cells without that record,
in a new experiment (``runs/stage1-r<k>``). The best trial of a cell is chosen as
``rsray tune`` chooses it (:func:`rsray.tune.leaderboard.sort_rows` on the last reported
value of the metric).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.sample import Domain

from rsray.config import Config
from rsray.data.shards import Manifest
from rsray.study.store import StudyStore
from rsray.train.run_plan import RunPlan
from rsray.tune.leaderboard import TrialRow, sort_rows

CELL_KEY = "study.cell"
"""The trial config key naming the trial's cell (not a config field; removed before use)."""


@dataclass
class CellSearch:
    """What stage 1 needs of one cell: its config, data and search."""

    id: str
    label: str
    run: RunPlan
    """The cell's resolved run (before the trial's parameters): config, metric, mode."""
    manifest: Manifest
    space: str
    num_samples: int
    max_epochs: int
    record: str
    """The cell's ``search.json``, relative to the study folder."""
    keys: dict[str, Any] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        """The metric the cell's search ranks trials by."""
        return self.run.metric

    @property
    def mode(self) -> str:
        """``max`` or ``min``: which way :attr:`metric` is better."""
        return self.run.mode


def trial_cell(config: dict[str, Any] | None) -> str:
    """The cell id of a trial's config."""
    return str((config or {}).get(CELL_KEY, ""))


def trial_params(config: dict[str, Any] | None) -> dict[str, Any]:
    """A trial's searched parameters (its config without the cell id)."""
    return {k: v for k, v in (config or {}).items() if k != CELL_KEY}


class CellSearcher(Searcher):
    """One Optuna searcher per cell behind Tune's single searcher interface.

    Proposals go round-robin over the cells that have budget left; results go back to the
    searcher of the trial's cell. ``FINISHED`` once every cell has proposed its budget.
    """

    def __init__(self, cells: list[CellSearch]) -> None:
        super().__init__(metric=None, mode=None)
        from rsray.tune.conditional import make_searcher

        self.searchers: dict[str, Searcher] = {}
        self.constants: dict[str, dict[str, Any]] = {}
        self.left: dict[str, int] = {}
        self.owner: dict[str, str] = {}
        for cell in cells:
            searcher, space = make_searcher(cell.run.config, cell.metric, cell.mode)
            if space:
                searcher.set_search_properties(cell.metric, cell.mode, dict(space))
            self.searchers[cell.id] = searcher
            self.constants[cell.id] = {k: v for k, v in (space or {}).items()
                                       if not isinstance(v, Domain)}
            self.left[cell.id] = cell.num_samples
        self._order = [c.id for c in cells]
        self._next = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        """Each cell's searcher has its own metric, mode and space already."""
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next cell with budget left proposes; its id rides in the config."""
        open_cells = [c for c in self._order if self.left[c] > 0]
        if not open_cells:
            return Searcher.FINISHED
        for step in range(len(self._order)):
            cell = self._order[(self._next + step) % len(self._order)]
            if self.left[cell] <= 0:
                continue
            config = self.searchers[cell].suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                continue
            self._next = (self._order.index(cell) + 1) % len(self._order)
            self.left[cell] -= 1
            self.owner[trial_id] = cell
            return {**self.constants[cell], **config, CELL_KEY: cell}
        return None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """To the trial's cell's searcher."""
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """To the trial's cell's searcher."""
        cell = self.owner.pop(trial_id, None)
        if cell is not None:
            self.searchers[cell].on_trial_complete(trial_id, result=result, error=error)


class CellScheduler(FIFOScheduler):
    """One ASHA per cell: a trial is stopped early only against trials of its own cell."""

    def __init__(self, cells: list[CellSearch], grace_period: int,
                 reduction_factor: float) -> None:
        super().__init__()
        self.ashas: dict[str, TrialScheduler] = {
            c.id: ASHAScheduler(time_attr="epoch", metric=c.metric, mode=c.mode,
                                max_t=c.max_epochs, grace_period=grace_period,
                                reduction_factor=reduction_factor)
            for c in cells}

    def _of(self, trial: Any) -> TrialScheduler | None:
        return self.ashas.get(trial_cell(trial.config))

    def set_search_properties(self, metric: str | None, mode: str | None,
                              **spec: Any) -> bool:
        """Each cell's ASHA has its own metric and mode."""
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        """To the trial's cell's ASHA."""
        if (s := self._of(trial)) is not None:
            s.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        """The decision of the trial's cell's ASHA."""
        s = self._of(trial)
        return s.on_trial_result(tune_controller, trial, result) if s is not None \
            else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        """To the trial's cell's ASHA."""
        if (s := self._of(trial)) is not None:
            s.on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """To the trial's cell's ASHA."""
        if (s := self._of(trial)) is not None:
            s.on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        """To the trial's cell's ASHA."""
        if (s := self._of(trial)) is not None:
            s.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        """One line per cell."""
        return "\n".join(f"{c}: {s.debug_string()}" for c, s in self.ashas.items())


class CellRecorder(tune.Callback):
    """Writes a cell's ``search.json`` when its last trial ends (driver side)."""

    def __init__(self, cells: list[CellSearch], columns: Callable[[CellSearch], list[str]],
                 write: Callable[[CellSearch, dict[str, Any]], None]) -> None:
        self.cells = {c.id: c for c in cells}
        self.columns, self.write = columns, write
        self.rows: dict[str, dict[str, TrialRow]] = {c.id: {} for c in cells}
        self.best_seen: dict[str, float] = {}
        self.done: dict[str, dict[str, Any]] = {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """Keep the best value of the cell's metric the trial reported so far."""
        cell = self.cells.get(trial_cell(trial.config))
        if cell is None or cell.metric not in result:
            return
        value = float(result[cell.metric])
        old = self.best_seen.get(trial.trial_id)
        if old is None or (value > old if cell.mode == "max" else value < old):
            self.best_seen[trial.trial_id] = value

    def _end(self, trial: Any, error: bool) -> None:
        from rsray.tune.run import trial_status

        cell = self.cells.get(trial_cell(trial.config))
        if cell is None or cell.id in self.done:
            return
        m = dict(trial.last_result or {})
        keys = list(dict.fromkeys([*self.columns(cell), cell.metric]))  # the selection metric
        # is recorded even where the task's table columns do not list it (e.g. val_aa)
        metrics = {k: float(m[k]) if m.get(k) is not None else math.nan for k in keys}
        metrics[f"best_{cell.metric}"] = self.best_seen.get(trial.trial_id, math.nan)
        self.rows[cell.id][trial.trial_id] = TrialRow(
            trial=trial.trial_id, status=trial_status(error, m, cell.max_epochs),
            params=trial_params(trial.config), metrics=metrics,
            epochs=int(m.get("epoch", 0) or 0), checkpoint=str(m.get("checkpoint_path", "")))
        if len(self.rows[cell.id]) >= cell.num_samples:
            self.done[cell.id] = self.finish(cell)

    def finish(self, cell: CellSearch) -> dict[str, Any]:
        """The cell's search document (written when a trial succeeded)."""
        rows = sort_rows(list(self.rows[cell.id].values()), cell.metric, cell.mode)
        best = next((r for r in rows if not math.isnan(r.metrics.get(cell.metric, math.nan))),
                    None)
        trials = [{"trial": r.trial, "status": r.status, "params": r.params,
                   "value": r.metrics.get(f"best_{cell.metric}", r.metrics.get(cell.metric)),
                   "epochs": r.epochs} for r in sorted(rows, key=lambda r: r.trial)]
        doc = {"cell": cell.id, **cell.keys, "params": best.params if best else None,
               "metric": cell.metric, "mode": cell.mode,
               "value": best.metrics.get(cell.metric) if best else None, "trials": trials}
        if best is not None:
            self.write(cell, doc)
        return doc

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial ended (or ASHA stopped it)."""
        self._end(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial failed."""
        self._end(trial, error=True)


def make_cell_trainable(cells: list[CellSearch], trials_storage: str,
                        experiment: str) -> Any:
    """The trial driver: the trial's cell's config with the trial's parameters, trained."""
    by_id = {c.id: (c.run.config.to_dict(), c.manifest) for c in cells}

    def stage1_trial(params: dict[str, Any]) -> None:
        from rsray.data.datasets import training_datasets
        from rsray.runtime import quiet_data_context
        from rsray.train.trial import run_in_trial, wait_for_trial_resources
        from rsray.tune.run import DATA_CPUS_PER_TRIAL

        quiet_data_context()
        base, manifest = by_id[trial_cell(params)]
        cfg = Config.from_dict(base).with_overrides(trial_params(params))
        trial_id = tune.get_context().get_trial_id()
        name = f"trial_{trial_id}"
        run = RunPlan.build(cfg, manifest, experiment=experiment, trial=name)
        wait_for_trial_resources(cfg, f"trial {trial_id}", DATA_CPUS_PER_TRIAL)
        data = training_datasets(run.data, manifest)  # in memory for all epochs when it fits
        run_in_trial(run, manifest, data=data, name=name, storage_path=trials_storage)

    return tune.with_resources(stage1_trial, cell_resources(cells))


def _cell_config(cells: list[CellSearch], params: dict[str, Any]) -> Config:
    """The trial's configuration: its cell's config with the trial's parameters."""
    base = next(c.run.config for c in cells if c.id == trial_cell(params))
    return Config.from_dict(base.to_dict()).with_overrides(trial_params(params))


def cell_resources(cells: list[CellSearch]) -> Any:
    """What a stage-1 trial reserves (:func:`rsray.train.local.trial_resources`), per trial."""
    from rsray.train.driver import resolve_use_gpu
    from rsray.train.local import trial_resources

    use_gpu = {c.id: resolve_use_gpu(c.run.config) for c in cells}

    def resources(params: dict[str, Any]) -> dict[str, float]:
        return trial_resources(_cell_config(cells, params), use_gpu[trial_cell(params)])

    return resources



def run_stage1(cells: list[CellSearch], *, store: StudyStore, grace_period: int,
               reduction_factor: float, concurrency: int,
               columns: Callable[[CellSearch], list[str]],
               write: Callable[[CellSearch, dict[str, Any]], None]) -> dict[str, dict[str, Any]]:
    """Search every cell of ``cells`` in one Tune experiment; the documents of those that ended.

    ``write(cell, doc)`` is called (driver side) as soon as a cell's last trial ended and one
    of its trials reported the metric. Tune's experiment and the trials' Ray Train runs live
    under the study folder's ``runs/`` (a local path or a URI every node reaches).
    """
    from rsray.console import TuneProgress

    attempt = len([d for d in store.subdirs("runs") if d.startswith("stage1-r")])
    name = f"stage1-r{attempt}"
    storage_path, storage_fs = store.ray_storage("runs")
    recorder = CellRecorder(cells, columns, write)
    metric0, epochs0 = cells[0].metric, max(c.max_epochs for c in cells)
    from rsray.train.local import tune_trial_settings

    _, reuse = tune_trial_settings([c.run.config for c in cells])
    tuner = tune.Tuner(
        make_cell_trainable(cells, store.join("runs", name, "trials"), name),
        tune_config=tune.TuneConfig(
            search_alg=CellSearcher(cells),
            scheduler=CellScheduler(cells, grace_period, reduction_factor),
            num_samples=sum(c.num_samples for c in cells),
            max_concurrent_trials=concurrency, reuse_actors=reuse,
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage_path,
                                  storage_filesystem=storage_fs, verbose=0,
                                  # a trial whose node is lost starts again elsewhere; its
                                  # Ray Train run resumes from its last checkpoint
                                  failure_config=tune.FailureConfig(max_failures=max(
                                      c.run.config.train.max_failures for c in cells)),
                                  callbacks=[TuneProgress(metric0, epochs0), recorder]),
    )
    tuner.fit()  # a cell whose trials did not all end gets no record: the next run redoes it
    return recorder.done


__all__ = ["CELL_KEY", "CellRecorder", "CellScheduler", "CellSearch", "CellSearcher",
           "make_cell_trainable", "run_stage1", "trial_cell", "trial_params"]
