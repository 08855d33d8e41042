"""``rsray study SPEC --check``: everything a study can get wrong, found before Ray starts.

:func:`check_study` reads the shard set's manifest (or derives the synthetic twin's, see
:mod:`rsray.study.twin`) and checks every arm against it — modalities and bands, the model's
constructor arguments (``model.params`` and every ``model.params.*`` key of its search space,
checked against the constructor's signature without building the model), the config fields
of the search space, ``train.metric`` / ``train.early_stopping_metric`` (after ``--set``), the
spec's ``metrics`` and evaluation splits — then returns the plan: cells, search trials, seeded
runs, evaluations, and an estimated cost. ``rsray study`` runs the same checks first, so a
typo costs seconds, not a Ray start and an epoch. Every problem is one
:class:`~rsray.errors.ConfigError` line naming the spec, the arm and the field.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsray.config import Config
from rsray.data.shards import Manifest
from rsray.errors import ConfigError
from rsray.study.spec import Arm, StudySpec
from rsray.study.store import StudyStore
from rsray.study.twin import TWIN_TRAIN_SHARE, twin_manifest
from rsray.train.metric_names import check_config_metrics, check_metric, suggest

RUN_STARTUP_SECONDS = 25.0
"""Start-up of one training run when the study has no finished run to measure from: a Tune
trial actor, Ray Train's controller and worker, Ray Data streams (20-30 s per run in the
presets' smoke studies on a 2-core machine, almost all of it start-up)."""

SAMPLE_EPOCH_SECONDS = 0.008
"""Training seconds per sample per epoch assumed without a measurement: the tiny ``test_*``
models on 2 CPU cores (sen12ms twin, 40 epochs of 360 samples in ~100 s a run). Full-size
models, on CPU, are one to two orders of magnitude slower; a GPU is faster."""


@dataclass
class ArmCheck:
    """What the check found for one arm (in one hold-out's data)."""

    arm: str
    model: str
    modalities: list[str]
    channels: dict[str, int]
    space: str | None
    metric: str
    mode: str


@dataclass
class StudyPlan:
    """The work a study will do, and what it is estimated to cost."""

    cells: int
    search_trials: int
    search_epochs: int
    seeded_runs: int
    run_epochs: int
    evaluations: int
    finished_runs: int
    train_samples: int
    run_seconds: float
    """Estimated seconds of one stage-2 run."""
    trial_seconds: float
    """Estimated seconds of one stage-1 trial (at most ``search_epochs``)."""
    measured: str
    """Where the per-run time comes from: the records it was measured on, or ``""``."""
    recipe_runs: int = 0
    """Training runs the seeds of recipe arms make beyond one each (their extra branches)."""

    @property
    def total_seconds(self) -> float:
        """Run time of all remaining work, one run after another."""
        todo = self.seeded_runs - self.finished_runs + self.recipe_runs
        return self.search_trials * self.trial_seconds + todo * self.run_seconds


@dataclass
class CheckReport:
    """The outcome of :func:`check_study`."""

    spec: StudySpec
    data: dict[str, str]
    """Hold-out rule -> what the cell trains on (a URI, or the twin's description)."""
    task: str
    classes: list[str]
    arms: list[ArmCheck]
    plan: StudyPlan
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as terminal lines (``[check] ...``)."""
        p, s = self.plan, self.spec
        out = [f"[check] {s.source}: study {s.name}, task {self.task}, {len(self.classes)} "
               f"classes; data: " + "; ".join(f"{rule or 'all'}: {d}"
                                              for rule, d in self.data.items())]
        for a in self.arms:
            inputs = ", ".join(f"{m} ({c} ch)" for m, c in a.channels.items())
            out.append(f"[check]   arm {a.arm}: {a.model} on {inputs or 'metadata only'}; "
                       f"search {a.space or 'none (fixed parameters)'}; selects on "
                       f"{a.metric} ({a.mode})")
        out.append(
            f"[check] plan: {p.cells} cell(s) = {len(s.arms)} arm(s) x "
            f"{len(s.factors.fractions)} fraction(s) x {len(s.factors.holdouts)} hold-out(s); "
            f"stage 1: {p.search_trials} search trial(s) of <= {p.search_epochs} epoch(s); "
            f"stage 2: {p.seeded_runs} seeded run(s) of {p.run_epochs} epoch(s)"
            + (f" ({p.finished_runs} finished)" if p.finished_runs else "")
            + (f" + {p.recipe_runs} branch run(s) of recipe arms" if p.recipe_runs else "")
            + f", {p.evaluations} evaluation(s)")
        how = (f"measured: {p.measured}" if p.measured else
               f"assumed, no finished run to measure: {RUN_STARTUP_SECONDS:.0f} s start-up + "
               f"{1000 * SAMPLE_EPOCH_SECONDS:g} ms per training sample and epoch (tiny test_* "
               "models on 2 CPU cores; full-size models on CPU are far slower)")
        at_once = Config().with_overrides(s.base).tune.max_concurrent_trials
        wall = (f"about {_duration(p.total_seconds / at_once)} at {at_once} at a time "
                "(tune.max_concurrent_trials)" if at_once else
                "divided by the runs the cluster holds at once")
        out.append(f"[check] estimated cost: ~{p.run_seconds:.0f} s a run, "
                   f"~{p.trial_seconds:.0f} s a search trial; {_duration(p.total_seconds)} "
                   f"of run time in all, {wall} (an estimate; {how})")
        out += [f"[check] warning: {w}" for w in self.warnings]
        return out


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------------- data


def _data_of(spec: StudySpec, data: str | None, study_dir: StudyStore | None
             ) -> dict[str, tuple[Manifest, list[str], str]]:
    """Hold-out rule -> (manifest, splits, description), read without verifying shards."""
    from rsray.data.shards import MANIFEST_NAME, read_manifest
    from rsray.storage import check_reachable
    from rsray.study.runner import holdout_slug

    out: dict[str, tuple[Manifest, list[str], str]] = {}
    uri = data or spec.data.uri
    if uri and len(spec.factors.holdouts) > 1 and not data and not spec.factors.holdout_uris:
        raise ConfigError(f"{spec.source}: factors.holdouts: {len(spec.factors.holdouts)} "
                          "hold-out rules need one shard set each (factors.holdout_uris)")
    for rule in spec.factors.holdouts:
        target = spec.factors.holdout_uris.get(rule) if not data else None
        target = target or uri
        if target:
            check_reachable(target)
            m = read_manifest(target)
            out[rule] = (m, sorted(m.splits), f"{target} ({sum(m.splits.values())} samples"
                         + (", SYNTHETIC" if m.synthetic else "") + ")")
            continue
        prepared = (Path(study_dir.path) / "data" / holdout_slug(rule) / "shards"
                    / MANIFEST_NAME if study_dir and not study_dir.is_remote else None)
        if prepared is not None and prepared.is_file():
            m = read_manifest(str(prepared.parent))
            out[rule] = (m, sorted(m.splits), f"the study's twin {prepared.parent} "
                         f"({sum(m.splits.values())} samples)")
            continue
        m, splits = twin_manifest(spec, rule)
        out[rule] = (m, splits, f"SYNTHETIC {spec.data.dataset} twin, "
                     f"{spec.data.synthetic_n} samples"
                     + (" + covariate layers" if spec.data.covariates else "")
                     + ", generated when the study starts")
    return out


# ------------------------------------------------------------------------------- models


class _ArgumentsCheckedError(Exception):
    """Raised in place of building a model once its arguments were checked."""


@contextmanager
def _without_building(module_name: str) -> Iterator[None]:
    """In ``module_name``, ``build_model_with_cfg`` checks the arguments and builds nothing."""
    from rsray.models import registry

    module = sys.modules[module_name]
    original = getattr(module, "build_model_with_cfg", None)

    def check_only(model_cls: type, variant: str, defaults: dict[str, Any],
                   kwargs: dict[str, Any]) -> Any:
        registry._check_arguments(variant, inspect.signature(model_cls.__init__),
                                  {**defaults, **kwargs}, skip_self=True)
        raise _ArgumentsCheckedError

    if original is not None:
        module.build_model_with_cfg = check_only  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if original is not None:
            module.build_model_with_cfg = original  # type: ignore[attr-defined]


def check_model_arguments(name: str, channels: dict[str, int], num_classes: int,
                          metadata_dim: int, params: dict[str, Any]) -> None:
    """The model accepts these constructor arguments (checked without building it).

    Raises:
        ConfigError: ``model '<name>': unexpected argument 'x' (did you mean 'y'?); ...``.
    """
    from rsray.models.registry import create_model, model_entrypoint

    kwargs = {**params, **({"metadata_dim": metadata_dim} if metadata_dim else {})}
    fn = model_entrypoint(name)
    with _without_building(fn.__module__), suppress(_ArgumentsCheckedError):
        create_model(name, modalities=channels, num_classes=num_classes, **kwargs)


def _space_sample(space: str) -> dict[str, Any]:
    """One value of every key of search space ``space``."""
    from rsray.tune.spaces import get_space

    out: dict[str, Any] = {}
    for key, domain in get_space(space).items():
        out[key] = domain.sample() if hasattr(domain, "sample") else domain
    return out


def _check_arm(spec: StudySpec, arm: Arm, manifest: Manifest, splits: list[str],
               where: str) -> ArmCheck:
    from rsray.train.run_plan import RunPlan

    w = f"{spec.source}: arms.{arm.name}"
    for m in arm.modalities:
        if m not in manifest.modalities:
            raise ConfigError(f"{w}.modalities: {m!r} is not in {where}"
                              f"{suggest(m, manifest.modalities)}; it has "
                              + ", ".join(manifest.modalities))
    cfg = spec.arm_config(arm, {"data.eval_splits": ["val"]})
    try:
        run = RunPlan.build(cfg, manifest)
        cfg, plan = run.config, run.train_plan
    except ConfigError as exc:
        raise ConfigError(f"{w} (with base and --set): {exc}") from None
    check_config_metrics(cfg, manifest.task, manifest.classes, w)
    if arm.recipe:  # each training run of the recipe (its branches) fits the data too
        from rsray.study.recipe_arm import recipe_runs

        for branch in recipe_runs(arm.recipe, cfg):
            try:
                RunPlan.build(branch, manifest)
            except ConfigError as exc:
                raise ConfigError(f"{w} (recipe {arm.recipe!r}, run {branch.train.name}): "
                                  f"{exc}") from None
    params = dict(cfg.model.params)
    try:
        check_model_arguments(cfg.model.name, plan.channels, len(manifest.classes),
                              plan.metadata_dim, params)
    except ConfigError as exc:
        raise ConfigError(f"{w}: model.params: {exc}") from None
    if arm.space:
        sample = _space_sample(arm.space)
        try:
            sampled = cfg.with_overrides(sample)
        except ConfigError as exc:
            raise ConfigError(f"{w}.space {arm.space!r}: {exc}") from None
        try:
            check_model_arguments(sampled.model.name, plan.channels, len(manifest.classes),
                                  plan.metadata_dim, dict(sampled.model.params))
        except ConfigError as exc:
            raise ConfigError(f"{w}.space {arm.space!r} (its model.params.* keys): "
                              f"{exc}") from None
    if spec.factors.pack_mode == "vmap" and spec.factors.pack_seeds > 1:
        from rsray.study.packing import why_not_vectorised

        reason = why_not_vectorised([cfg], manifest, arm.recipe)
        if reason:
            raise ConfigError(f"{spec.source}: factors.pack_mode: vmap: arm {arm.name} cannot "
                              f"be vectorised: {reason}; use pack_mode: auto (sequential "
                              "for it) or sequential")
    return ArmCheck(arm.name, cfg.model.name, list(cfg.data.modalities or manifest.modalities),
                    dict(plan.channels), arm.space, cfg.train.metric, cfg.train.mode)


# --------------------------------------------------------------------------------- cost


def _measured_run_seconds(spec: StudySpec, study_dir: StudyStore | None
                          ) -> tuple[float, str, int]:
    """Mean seconds of this study's finished stage-2 runs, where they came from, how many.

    A recipe seed's time is shared among its training runs (its branches).
    """
    if study_dir is None:
        return 0.0, "", 0
    seconds = []
    for record in study_dir.glob("cells/*/seed_*/result.json"):
        try:
            doc = study_dir.read_json(record)
            runs = len((doc.get("recipe") or {}).get("branches") or []) or 1
            seconds += [float(doc["seconds"]) / runs] * runs
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    if not seconds:
        return 0.0, "", 0
    mean = sum(seconds) / len(seconds)
    return (mean, f"{len(seconds)} finished run(s) in {study_dir.uri}, {mean:.0f} s each",
            len(seconds))


def _plan(spec: StudySpec, data: dict[str, tuple[Manifest, list[str], str]],
          study_dir: StudyStore | None) -> StudyPlan:
    from rsray.study.runner import cells_of, seed_dir

    cells = cells_of(spec)
    records = set(study_dir.glob("cells/*/*.json") + study_dir.glob("cells/*/seed_*/result.json")
                  ) if study_dir else set()
    searched = [c for c in cells if c.arm.space is not None
                and f"cells/{c.id}/search.json" not in records]
    finished = sum(1 for c in cells for s in range(spec.factors.seeds)
                   if f"{seed_dir(c.id, s)}/result.json" in records)
    evaluations = extra = 0
    for c in cells:
        if c.arm.recipe:
            from rsray.study.recipe_arm import recipe_runs

            todo = sum(1 for s in range(spec.factors.seeds)
                       if f"{seed_dir(c.id, s)}/result.json" not in records)
            extra += todo * (len(recipe_runs(c.arm.recipe, spec.arm_config(c.arm))) - 1)
        _, splits, _ = data[c.holdout]
        scored = [s for s in dict.fromkeys([*spec.evaluation.splits, "ood"]) if s in splits]
        drops = len(c.arm.modalities) if (spec.evaluation.drop_modalities
                                          and len(c.arm.modalities) > 1) else 0
        evaluations += spec.factors.seeds * len(scored) * (1 + drops)
    base = Config().with_overrides(spec.base)
    manifest, _, _ = next(iter(data.values()))
    train_rows = manifest.splits.get("train") or int(spec.data.synthetic_n * TWIN_TRAIN_SHARE)
    train_rows = int(train_rows * max(spec.factors.fractions))
    epochs = base.train.max_epochs
    measured_run, measured, _ = _measured_run_seconds(spec, study_dir)
    epoch_s = train_rows * SAMPLE_EPOCH_SECONDS
    if measured:
        epoch_s = max(0.0, measured_run - RUN_STARTUP_SECONDS) / max(epochs, 1)
    run_s = measured_run if measured else RUN_STARTUP_SECONDS + epochs * epoch_s
    trial_s = RUN_STARTUP_SECONDS + spec.search.max_epochs * epoch_s
    return StudyPlan(
        cells=len(cells), search_trials=len(searched) * spec.search.num_samples,
        search_epochs=spec.search.max_epochs, seeded_runs=len(cells) * spec.factors.seeds,
        run_epochs=epochs, evaluations=evaluations, finished_runs=finished,
        train_samples=train_rows, run_seconds=run_s, trial_seconds=trial_s, measured=measured,
        recipe_runs=extra)


# -------------------------------------------------------------------------------- check


def check_study(spec: StudySpec, *, data: str | None = None,
                study_dir: str | Path | None = None) -> CheckReport:
    """Check ``spec`` against its data (or its twin) and plan it; never starts Ray.

    Args:
        spec: the loaded spec (``--set`` / ``--max-epochs`` already applied).
        data: ``--data``, if given (else the spec's ``data.uri`` or its synthetic twin).
        study_dir: the study folder, when known: a twin prepared there is read, and its
            finished runs give the measured per-run time and the work already done.

    Raises:
        ConfigError: the first problem found, in one line naming the spec, arm and field.
    """
    folder = StudyStore(str(study_dir)) if study_dir is not None else None
    if folder is not None and folder.is_remote:
        from rsray.storage import check_reachable

        check_reachable(folder.uri)  # an unreachable study folder is found before Ray starts
    views = _data_of(spec, data, folder)
    tasks = {m.task for m, _, _ in views.values()}
    if len(tasks) > 1:
        raise ConfigError(f"{spec.source}: the hold-out shard sets disagree on the task "
                          f"({', '.join(sorted(tasks))})")
    manifest, _, _ = next(iter(views.values()))
    task = manifest.task
    for i, metric in enumerate(spec.metrics):
        check_metric(metric, f"{spec.source}: metrics[{i}]", task)
    have = {s for _, splits, _ in views.values() for s in splits}
    for split in spec.evaluation.splits:
        if split not in have:
            raise ConfigError(f"{spec.source}: evaluation.splits: {split!r} is in none of the "
                              f"study's shard sets (they have {', '.join(sorted(have))})")
    arms: list[ArmCheck] = []
    for arm in spec.arms:
        for rule in spec.factors.holdouts:
            m, splits, where = views[rule]
            found = _check_arm(spec, arm, m, splits, where)
            if rule == spec.factors.holdouts[0]:
                arms.append(found)
    warnings = []
    if spec.factors.seeds < 3:
        warnings.append(f"factors.seeds: {spec.factors.seeds} seed(s) per cell; a confidence "
                        "interval over fewer than 3 seeds says little")
    return CheckReport(spec, {r: v[2] for r, v in views.items()}, task,
                       list(manifest.classes), arms, _plan(spec, views, folder), warnings)


__all__ = ["RUN_STARTUP_SECONDS", "SAMPLE_EPOCH_SECONDS", "ArmCheck", "CheckReport",
           "StudyPlan", "check_model_arguments", "check_study"]
