"""Running a study: stage 1 (search per cell), stage 2 (seeded retraining + evaluation).

A *cell* is one arm at one factor setting (training fraction x hold-out rule). Stage 1
searches every cell on the validation split (Optuna TPE + ASHA, per cell) as trials of one
Tune experiment, as many at once as the cluster holds (:mod:`rsray.study.stage1`); stage 2
retrains each cell's best configuration from scratch with ``factors.seeds`` seeds to the full
epoch budget, as Tune trials with fixed configurations (all cells x seeds in one experiment,
as many at once as the cluster holds), then scores the best checkpoint on the test (and
``ood``) split and once per dropped modality, and saves the test predictions.

Everything lands in the study folder, a local path or any fsspec URI (``s3://bucket/x``),
read and written through :class:`rsray.study.store.StudyStore`; the trials write their
records there themselves, so nodes need not share a disk::

    study.json                    the resolved spec, the data of each hold-out
    cells/<cell>/search.json      stage 1 finished: best parameters and the trials
    cells/<cell>/seed_<k>/result.json   stage 2 finished for that seed: the tidy rows
    cells/<cell>/seed_<k>/recipe/       a recipe arm's seed: its branches, chosen weight, model
    results.parquet|csv, hparams.json|csv   the tables (rebuilt from the files above)
    runs/                         Tune and Ray Train storage (checkpoints of every run)

Each record is written atomically (temporary file + rename, or one PUT) after its work
finished, so a
study killed at any point and restarted with ``--resume`` redoes only unfinished work: the
searches of cells without ``search.json`` (from scratch, in a new experiment), and the seeds
without ``result.json`` (an interrupted seed's training resumes from its last checkpoint,
same run name).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsray import storage
from rsray.config import Config
from rsray.errors import ConfigError
from rsray.study.spec import Arm, Evaluation, StudySpec
from rsray.study.store import STUDY_JSON, StudyStore


@dataclass(frozen=True)
class Cell:
    """One arm at one factor setting."""

    index: int
    arm: Arm
    fraction: float
    holdout: str

    @property
    def id(self) -> str:
        """Folder/run name: ``early__f0.25__tile-29SND`` (``__all`` without hold-out)."""
        return f"{self.arm.name}__f{self.fraction:g}__{holdout_slug(self.holdout)}"


def holdout_slug(rule: str) -> str:
    """A file-name form of a hold-out rule (``tile=29SND`` -> ``tile-29SND``; ``""`` -> all)."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", rule).strip("-") or "all"


def cells_of(spec: StudySpec) -> list[Cell]:
    """Every arm x fraction x hold-out, in a stable order."""
    out: list[Cell] = []
    for holdout in spec.factors.holdouts:
        for fraction in spec.factors.fractions:
            for arm in spec.arms:
                out.append(Cell(len(out), arm, fraction, holdout))
    return out


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str, allow_nan=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON document at ``path``."""
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------- data


def _covariate_twin(spec: StudySpec, root: Path, holdout: str) -> str:
    """BigEarthNet twin + synthetic DEM/climate/land-cover layers and indices, prepared."""
    from rsray.data.prepare import prepare
    from rsray.data.registry import get_dataset, require_twin
    from rsray.data.shards import MANIFEST_NAME
    from rsray.data.sources.covariates import write_synthetic_covariates
    from rsray.study.twin import twin_source

    entry = get_dataset(spec.data.dataset)
    raw, layers, shards = root / "raw", root / "layers", root / "shards"
    stamp = root / "rsray_twin.json"
    want = {"dataset": spec.data.dataset, "n": spec.data.synthetic_n, "holdout": holdout,
            "covariates": True}
    if stamp.is_file() and read_json(stamp) == want and (shards / MANIFEST_NAME).is_file():
        return str(shards.resolve())
    print(f"[study] writing {spec.data.synthetic_n} SYNTHETIC {spec.data.dataset} samples "
          f"+ covariate layers to {root}", flush=True)
    write_synthetic = require_twin(entry)[0]
    write_synthetic(raw, spec.data.synthetic_n, 0)
    write_synthetic_covariates(raw, layers, seed=0, progress=False)
    source = twin_source(spec, raw, layers)  # the same reader `rsray study --check` sizes
    prepare(source, str(shards), overwrite=True, holdout=[holdout] if holdout else None)
    write_json_atomic(stamp, want)
    return str(shards.resolve())


def twin_root(spec: StudySpec, store: StudyStore) -> Path:
    """Local folder of the synthetic twins.

    ``<study>/data`` for a local study; for a study in an object store a temporary folder of
    this machine (a twin is regenerated, identically, on resume).
    """
    if not store.is_remote:
        return Path(store.path) / "data"
    import tempfile

    return Path(tempfile.gettempdir()) / "rsray_twins" / spec.name


def resolve_data(spec: StudySpec, store: StudyStore, data: str | None) -> dict[str, str]:
    """Shard set URI per hold-out rule: ``--data``/``data.uri``, ``holdout_uris``, or a twin."""
    from rsray.data.prepare import synthetic_shards

    out: dict[str, str] = {}
    uri = data or spec.data.uri
    for rule in spec.factors.holdouts:
        if rule in spec.factors.holdout_uris and not data:
            out[rule] = spec.factors.holdout_uris[rule]
        elif uri:
            if len(spec.factors.holdouts) > 1:
                raise ConfigError(f"{spec.source}: factors.holdouts: {len(spec.factors.holdouts)}"
                                  " hold-out rules need one shard set each "
                                  "(factors.holdout_uris), not one --data")
            out[rule] = uri
        else:
            root = twin_root(spec, store) / holdout_slug(rule)
            root.mkdir(parents=True, exist_ok=True)
            check_shared(str(root), "the synthetic twin's folder", "prepare the shard set "
                         "into object storage (rsray prepare ... --out s3://...) and pass "
                         "--data s3://...")
            if spec.data.covariates:
                out[rule] = _covariate_twin(spec, root, rule)
            else:
                out[rule] = synthetic_shards(spec.data.dataset, root, spec.data.synthetic_n,
                                             seed=0, holdout=[rule] if rule else [])
    return out


# ------------------------------------------------------------------------------- stage 1


def concurrency_of(cfg: Config) -> int:
    """Trials at once: ``tune.max_concurrent_trials`` (a spec's ``base``), else what fits."""
    from rsray.tune.run import auto_concurrency

    return cfg.tune.max_concurrent_trials or auto_concurrency(cfg)


def _fixed_cell(cell: Cell, store: StudyStore, record: str, n_cells: int) -> dict[str, Any]:
    """The stage-1 record of a cell without a search space (its fixed parameters)."""
    print(f"[study] stage 1 cell {cell.index + 1}/{n_cells} {cell.arm.name}: no search space, "
          "fixed parameters", flush=True)
    doc: dict[str, Any] = {"cell": cell.id, "params": {}, "metric": None, "value": None,
                           "trials": []}
    store.write_json(record, doc)
    return doc


def search_cells(spec: StudySpec, cells: list[Cell], uris: dict[str, str],
                 store: StudyStore) -> dict[str, dict[str, Any]]:
    """Stage 1 of every cell: finished records are read, the rest searched in one experiment.

    The cells to search run as trials of one Tune experiment
    (:func:`rsray.study.stage1.run_stage1`), each with its own TPE searcher and ASHA; each
    cell's record is written as soon as its last trial ended.
    """
    from rsray.study.stage1 import CellSearch, run_stage1
    from rsray.train.driver import check_data
    from rsray.train.run_plan import RunPlan
    from rsray.train.tasks import table_metrics

    out: dict[str, dict[str, Any]] = {}
    todo: list[CellSearch] = []
    manifests: dict[str, Any] = {}
    for cell in cells:
        record = f"cells/{cell.id}/search.json"
        if store.exists(record):
            out[cell.id] = store.read_json(record)
            continue
        if cell.arm.space is None:
            out[cell.id] = _fixed_cell(cell, store, record, len(cells))
            continue
        cfg = spec.arm_config(cell.arm, {
            "data.uri": uris[cell.holdout], "data.train_fraction": cell.fraction,
            "data.eval_splits": ["val"], "train.max_epochs": spec.search.max_epochs,
            "tune.space": cell.arm.space, "tune.num_samples": spec.search.num_samples,
            "train.storage_path": store.join("runs"),
        })
        if cfg.data.uri not in manifests:
            manifests[cfg.data.uri] = check_data(cfg)
        manifest = manifests[cfg.data.uri]
        todo.append(CellSearch(
            id=cell.id, label=f"cell {cell.index + 1}/{len(cells)} {cell.arm.name} (fraction "
            f"{cell.fraction:g}{', holdout ' + cell.holdout if cell.holdout else ''})",
            run=RunPlan.build(cfg, manifest), manifest=manifest, space=cell.arm.space,
            num_samples=spec.search.num_samples, max_epochs=spec.search.max_epochs,
            record=record,
            keys={"arm": cell.arm.name, "fraction": cell.fraction, "holdout": cell.holdout}))
    if not todo:
        return out
    concurrency = min(concurrency_of(c.run.config) for c in todo)
    print(f"[study] stage 1: {len(todo)} cell(s) to search ({len(cells) - len(todo)} "
          f"finished or fixed), {sum(c.num_samples for c in todo)} trial(s) in one experiment, "
          f"{concurrency} at a time", flush=True)

    def write(cell: CellSearch, doc: dict[str, Any]) -> None:
        store.write_json(cell.record, doc)
        params = ", ".join(f"{k}={v}" for k, v in (doc["params"] or {}).items())
        print(f"[study] stage 1 {cell.label}: best {doc['metric']} = {doc['value']:.4f}"
              f" with {params}", flush=True)

    t0 = time.perf_counter()
    done = run_stage1(
        todo, store=store, grace_period=spec.search.grace_period,
        reduction_factor=spec.search.reduction_factor, concurrency=concurrency,
        columns=lambda c: table_metrics(c.run.task, c.run.data.eval_splits), write=write)
    print(f"[study] stage 1: {len(done)} cell(s) searched in {time.perf_counter() - t0:.0f} s",
          flush=True)
    failed = [c.id for c in todo if not store.exists(c.record)]
    if failed:
        raise ConfigError(f"stage 1 of cell(s) {', '.join(failed)}: every trial failed or "
                          f"none ended; see {store.join('runs')}")
    out.update(done)
    return out


# ------------------------------------------------------------------------------- stage 2


def seed_dir(cell_id: str, seed: int) -> str:
    """Folder of one cell's seed, relative to the study folder."""
    return f"cells/{cell_id}/seed_{seed}"


def checkpoint_uri(ckpt: Any, storage_uri: str) -> str:
    """The URI of a Ray Train checkpoint kept under ``storage_uri`` (``s3://b/...``)."""
    fs, _ = storage.get_fs(storage_uri)
    return storage.to_uri(fs, ckpt.path)


def check_shared(folder: str, what: str, instead: str) -> None:
    """Stop at once when a node of the Ray cluster cannot see the local ``folder``.

    Raises:
        ConfigError: one line naming the folder, the nodes and what to do ``instead``.
    """
    if storage.parse(folder).is_remote:
        return
    from rsray.study.store import unseen_by

    blind = unseen_by(folder)
    if blind:
        raise ConfigError(f"{folder}: {what} is on this machine's disk, which Ray node(s) "
                          f"{', '.join(blind)} cannot see (no shared filesystem): their "
                          f"results would be lost; {instead}")


def seed_job(cfg: Config, *, store: StudyStore, cell: str, seed: int, experiment: str,
             splits: list[str], evaluation: Evaluation, headline: str, keys: dict[str, Any],
             label: str, recipe: str = "") -> dict[str, Any]:
    """One stage-2 job: train ``cfg`` (seed ``seed`` of cell ``cell``), evaluate, record.

    Its run is ``<cell>__seed<seed>`` under the study's ``runs/stage2`` (what
    :func:`pack_jobs` groups by); its rows, tagged with ``keys``, go to
    ``cells/<cell>/seed_<seed>/result.json`` of ``store``. ``recipe``: the arm's multi-run
    recipe (:mod:`rsray.study.recipe_arm`), whose final model is evaluated instead of one run's.
    """
    run = f"{cell}__seed{seed}"
    return {"id": run, "root": store.uri, "dir": store.join(seed_dir(cell, seed)),
            "cell": cell, "seed": seed, "run": run, "experiment": experiment, "recipe": recipe,
            "storage": store.join("runs", "stage2"), "config": cfg.to_dict(),
            "splits": list(dict.fromkeys(splits)), "drop": evaluation.drop_modalities,
            "predictions": evaluation.predictions, "headline": headline, "keys": keys,
            "label": label}


def _split_drop(name: str) -> tuple[str, str]:
    split, _, drop = name.partition("@drop=")
    return split, drop


def job_manifest(job: dict[str, Any]) -> tuple[Config, Any]:
    """The job's config and its shard set's manifest (read and verified once per job).

    Raises:
        ConfigError: this node cannot see the (local) study folder.
    """
    from rsray.data.datasets import load_shard_set

    store = StudyStore(job["root"])
    if not store.is_remote and not os.path.exists(os.path.join(store.path, STUDY_JSON)):
        raise ConfigError(f"{store.uri}: this node cannot see the study folder (no shared "
                          "filesystem); use an object-store folder: --out s3://bucket/prefix")
    cfg = Config.from_dict(job["config"])
    # training, evaluation and predictions all use this manifest
    return cfg, load_shard_set(cfg.data, tuple(dict.fromkeys([
        "train", *cfg.data.eval_splits, *(s for s in job["splits"] if s != "train")])))


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one seed of one cell, evaluate its best checkpoint, save predictions and rows."""
    from rsray.train.driver import best_checkpoint
    from rsray.train.run_plan import RunPlan
    from rsray.train.trial import run_in_trial, warm_training_data

    t0 = time.perf_counter()
    cfg, manifest = job_manifest(job)
    recipe: dict[str, Any] = {}
    if job.get("recipe"):  # the paper's multi-run recipe; its fused model is evaluated
        from rsray.study.recipe_arm import train_recipe

        ckpt, recipe = train_recipe(job, cfg, manifest, seed_dir(job["cell"], job["seed"]))
    else:
        run = RunPlan.build(cfg, manifest, experiment=job["experiment"], trial=job["run"])
        # the splits that fit in memory are decoded once for all epochs, and once for the
        # seeds of a cell that this (reused) trial process trains one after another
        data = warm_training_data(run.data, manifest)
        result = run_in_trial(run, manifest, data=data, name=job["run"],
                              storage_path=job["storage"], to_tune=False)
        ckpt = checkpoint_uri(best_checkpoint(result, run, job["run"]), job["storage"])
    return record_job(job, cfg, manifest, ckpt, recipe=recipe, t0=t0)


def record_job(job: dict[str, Any], cfg: Config, manifest: Any, ckpt: str, *,
               recipe: dict[str, Any] | None = None, t0: float,
               trained: float = 0.0, packed: str = "") -> dict[str, Any]:
    """Evaluate a trained seed's checkpoint ``ckpt``, save predictions, write its rows.

    ``t0``: when the job's own work started; ``trained``: seconds of training done before
    ``t0`` on its behalf (its share of a vectorised pack); ``packed``: ``vmap`` when it
    trained in a vectorised pack (recorded as ``packed``).
    """
    from rsray.evaluate import evaluate_checkpoint, predict

    out = job["dir"]
    store = StudyStore(job["root"])
    splits = [s for s in job["splits"] if s in manifest.splits]
    drops = [m for m in cfg.data.modalities] if job["drop"] and len(cfg.data.modalities) > 1 \
        else []
    evals = evaluate_checkpoint(ckpt, cfg.data.uri, splits, drop_modalities=drops,
                                out_dir=out, manifest=manifest)
    preds = {}
    if job["predictions"] and manifest.task != "segmentation":
        for split in splits:
            # in the trial's own process: an actor's start-up (30-60 s on 2 cores) cost more
            # than scoring a test split
            preds[split] = predict(ckpt, cfg.data.uri, split,
                                   storage.join(out, f"pred_{split}.parquet"), concurrency=0,
                                   manifest=manifest)
    rows = []
    for name, metrics in evals.items():
        split, drop = _split_drop(name)
        for metric, value in metrics.items():
            rows.append({**job["keys"], "split": split, "dropped": drop, "metric": metric,
                         "value": float(value) if value is not None else float("nan")})
    doc = {"keys": job["keys"], "checkpoint": ckpt, "rows": rows, "predictions": preds,
           "task": manifest.task, "classes": list(manifest.classes),
           "seconds": trained + time.perf_counter() - t0, **({"recipe": recipe} if recipe else {}),
           **({"packed": packed} if packed else {})}
    store.write_json(f"{seed_dir(job['cell'], job['seed'])}/result.json", doc)  # last: done
    return doc


def pack_jobs(jobs: list[dict[str, Any]], k: int) -> dict[str, list[dict[str, Any]]]:
    """The jobs in packs of up to ``k`` seeds of one cell, keyed by the pack's first job id.

    A cell's seeds are the jobs whose ids share the part before ``__seed``.
    """
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_cell.setdefault(job["id"].split("__seed")[0], []).append(job)
    return {chunk[0]["id"]: chunk for cell in by_cell.values()
            for chunk in (cell[i:i + k] for i in range(0, len(cell), k))}


def _pack_summary(pack: list[dict[str, Any]]) -> dict[str, Any]:
    """What the progress lines show of a pack: its seeds' labels, the last seed's result."""
    if len(pack) == 1:
        return pack[0]
    seeds = ", ".join(str(j["seed"] + 1) for j in pack)
    return {**pack[-1], "label": f"{pack[0]['label'].rsplit(' seed ', 1)[0]} seeds {seeds} "
                                 f"(packed)"}


def run_pack(pack: list[dict[str, Any]], mode: str = "sequential") -> None:
    """Train the seeds of one pack (a seed already done is skipped).

    ``mode`` (``factors.pack_mode``): ``sequential`` trains them one after another; ``vmap``
    as one vectorised step (:func:`rsray.study.packing.run_pack_vectorised`); ``auto``
    vectorised where the pack qualifies and trains on a GPU, else one after another.
    """
    todo = [job for job in pack if not StudyStore(job["root"]).exists(
        f"{seed_dir(job['cell'], job['seed'])}/result.json")]
    if mode != "sequential" and len(todo) > 1:
        from rsray.study.packing import run_pack_vectorised

        if run_pack_vectorised(todo, mode):
            return
    for job in todo:
        run_job(job)


def run_jobs(jobs: list[dict[str, Any]], store: StudyStore, concurrency: int,
             max_failures: int = 0, pack: int = 1, pack_mode: str = "auto") -> None:
    """Stage-2 jobs as Tune trials with fixed configurations, ``concurrency`` at a time.

    ``pack`` (``factors.pack_seeds``): up to this many seeds of one cell per trial
    (:func:`pack_jobs`), trained in the trial's process as ``pack_mode``
    (``factors.pack_mode``, :func:`run_pack`) says.
    """
    from ray import tune

    from rsray.study.progress import Stage2Progress
    from rsray.train.driver import resolve_use_gpu
    from rsray.train.local import trial_resources, tune_trial_settings

    packs = pack_jobs(jobs, pack)
    by_id = {k: _pack_summary(p) for k, p in packs.items()}
    configs = {k: Config.from_dict(p[0]["config"]) for k, p in packs.items()}
    use_gpu = {k: resolve_use_gpu(c) for k, c in configs.items()}
    _, reuse = tune_trial_settings(list(configs.values()))

    def resources(params: dict[str, Any]) -> dict[str, float]:
        return trial_resources(configs[params["job"]], use_gpu[params["job"]])

    def stage2_trial(params: dict[str, Any]) -> None:
        from rsray.runtime import quiet_data_context

        quiet_data_context()
        run_pack(packs[params["job"]], pack_mode)

    attempt = len([d for d in store.subdirs("runs") if d.startswith("stage2-r")])
    path, fs = store.ray_storage("runs")
    tuner = tune.Tuner(
        tune.with_resources(stage2_trial, resources),
        param_space={"job": tune.grid_search(list(by_id))},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=reuse),
        run_config=tune.RunConfig(name=f"stage2-r{attempt}", storage_path=path,
                                  storage_filesystem=fs, verbose=0,
                                  # a trial whose node is lost starts again on another; its
                                  # training resumes from the run's last checkpoint
                                  failure_config=tune.FailureConfig(max_failures=max_failures),
                                  callbacks=[Stage2Progress(by_id)]),
    )
    results = tuner.fit()
    errors = [r for r in results if r.error]
    for r in errors:
        print(f"[study] warning: run {r.config.get('job')} failed: {error_line(r.error)} "
              f"(its log: {r.path})", flush=True)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_line(error: BaseException) -> str:
    """The line of a (Ray-wrapped) error that says what went wrong: its last exception line.

    Ray's task errors start with ``ray::ImplicitFunc.train() (pid=..., actor_id=...)`` and the
    traceback; the raised exception (``ConfigError: ...``) is the last non-blank line.
    """
    lines = [_ANSI.sub("", ln).strip() for ln in str(error).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("...", "^"))]
    return lines[-1] if lines else repr(error)


# ---------------------------------------------------------------------------------- study


@dataclass
class StudyOutcome:
    """What a study run produced."""

    study_dir: str
    results_path: str
    n_rows: int
    missing: list[str]
    seconds: float


def default_study_dir(spec: StudySpec) -> Path:
    """``rsray_results/studies/<name>``."""
    return Path("rsray_results") / "studies" / spec.name


def _check_state(spec: StudySpec, store: StudyStore, resume: bool, smoke: bool) -> None:
    study_dir = store.uri
    if not store.exists(STUDY_JSON):
        return
    if not resume:
        raise ConfigError(f"{study_dir}: a study is already there; pass --resume to continue "
                          "it, or --out another folder")
    old = store.read_json(STUDY_JSON)["spec"]
    new = json.loads(json.dumps(spec.to_dict(), default=str))
    for key in ("arms", "factors", "search", "base", "data"):
        if old.get(key) != new.get(key):
            raise ConfigError(f"{study_dir}: --resume with a different spec ({key} changed "
                              f"since the study started); use another --out")


def run_study(spec: StudySpec, *, study_dir: str | Path | None = None, resume: bool = False,
              data: str | None = None, smoke: bool = False) -> StudyOutcome:
    """Run (or ``resume``) ``spec``: stage 1 per cell, stage 2 per seed, tables, report."""
    from rsray.runtime import ensure_ray
    from rsray.security import keep_credentials_out_of_runtime_envs
    from rsray.study.results import collect, comparison_text
    t0 = time.perf_counter()
    store = StudyStore(str(study_dir) if study_dir else str(default_study_dir(spec)))
    storage.check_reachable(store.uri)
    _check_state(spec, store, resume, smoke)
    if not store.is_remote:
        os.makedirs(store.path, exist_ok=True)
    ensure_ray()
    keep_credentials_out_of_runtime_envs()
    check_shared(store.uri, "the study folder",
                 "use an object-store folder every node reaches, e.g. --out "
                 f"s3://BUCKET/studies/{spec.name}")
    uris = resolve_data(spec, store, data)
    from rsray.study.provenance import environment

    store.write_json(STUDY_JSON, {"spec": spec.to_dict(), "smoke": smoke, "data": uris,
                                  "started": time.time(), "provenance": environment()})
    cells = cells_of(spec)
    print(f"[study] {spec.name}: {len(spec.arms)} arm(s) x {len(spec.factors.fractions)} "
          f"fraction(s) x {len(spec.factors.holdouts)} hold-out(s) = {len(cells)} cell(s), "
          f"{spec.factors.seeds} seed(s) each; folder {store.uri}", flush=True)
    searches = search_cells(spec, cells, uris, store)
    jobs: list[dict[str, Any]] = []
    headline = spec.metrics[0] if spec.metrics else ""
    for cell in cells:
        for seed in range(spec.factors.seeds):
            out = seed_dir(cell.id, seed)
            if store.exists(f"{out}/result.json"):
                continue
            run = f"{cell.id}__seed{seed}"
            cfg = spec.arm_config(cell.arm, {
                **searches[cell.id]["params"], "data.uri": uris[cell.holdout],
                "data.train_fraction": cell.fraction, "data.eval_splits": ["val"],
                "train.seed": seed, "train.name": run,
                "train.storage_path": store.join("runs", "stage2"),
            })
            jobs.append(seed_job(
                cfg, store=store, cell=cell.id, seed=seed, experiment=spec.name,
                splits=[*spec.evaluation.splits, "ood"], evaluation=spec.evaluation,
                headline=headline,
                keys={"study": spec.name, "arm": cell.arm.name, "model": cfg.model.name,
                      "fraction": cell.fraction, "holdout": cell.holdout or "none",
                      "seed": seed},
                label=f"cell {cell.index + 1}/{len(cells)} {cell.arm.name} fraction "
                      f"{cell.fraction:g} seed {seed + 1}/{spec.factors.seeds}",
                recipe=cell.arm.recipe))
    done = len(cells) * spec.factors.seeds - len(jobs)
    if jobs:
        concurrency = min(concurrency_of(Config.from_dict(j["config"])) for j in jobs)
        print(f"[study] stage 2: {len(jobs)} training run(s) to go ({done} finished before), "
              f"{concurrency} at a time", flush=True)
        run_jobs(jobs, store, concurrency, max_failures=max(
            Config.from_dict(j["config"]).train.max_failures for j in jobs),
            pack=spec.factors.pack_seeds, pack_mode=spec.factors.pack_mode)
    table = collect(store.uri)
    done_now = set(store.glob("cells/*/seed_*/result.json"))
    missing = [f"{c.id} seed {s}" for c in cells for s in range(spec.factors.seeds)
               if f"{seed_dir(c.id, s)}/result.json" not in done_now]
    print(comparison_text(table, spec), flush=True)
    if missing:
        print(f"[study] {len(missing)} run(s) did not finish: {', '.join(missing)}; "
              "run again with --resume", flush=True)
    return StudyOutcome(store.uri, store.join("results.parquet"), len(table.rows), missing,
                        time.perf_counter() - t0)


__all__ = ["Cell", "StudyOutcome", "cells_of", "holdout_slug", "resolve_data", "run_job",
           "run_study", "search_cells"]
