"""Seeds of one cell packed into one trial: vectorised where they can be, and their cost.

:func:`run_pack_vectorised` trains a pack's seeds as one vectorised step
(:mod:`rsray.train.vmapped`) when the pack qualifies (:func:`why_not_vectorised`): one
configuration apart from the seed, a one-worker (local) trial, a model family without
BatchNorm, no multi-run recipe. Each seed is then evaluated and recorded as its separate run
is (:func:`rsray.study.runner.record_job`).

:func:`time_packing` runs the same stage-2 jobs through :func:`rsray.study.runner.run_jobs`
as one trial per seed, packed one after another, and packed vectorised, and returns each
one's wall time and seeds per hour (``jobs/bench_train.py --pack-seeds``,
``jobs/bench_gpu.py``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rsray.config import Config
from rsray.errors import ConfigError

AUTO_NEEDS_GPU = True
"""``pack_mode: auto`` vectorises only packs whose runs use a GPU. On CPU cores a vectorised
step is not faster than the same steps one after another (measured on 2 cores, three
``vit_early_fusion_small`` steps: 0.43 s vectorised against 0.34 s; a 3-seed pack 17.6 s
either way), while a GPU that one small model leaves mostly idle is where stacking K models
pays. ``pack_mode: vmap`` vectorises on CPU cores too."""

_PER_SEED = ("train.seed", "train.name")
"""Config fields in which the seeds of one cell differ."""


def _without_seed(cfg: Config) -> dict[str, Any]:
    doc = cfg.to_dict()
    for key in _PER_SEED:
        section, name = key.split(".")
        doc.get(section, {}).pop(name, None)
    return doc


def model_reason(cfg: Config, manifest: Any) -> str | None:
    """Why ``cfg``'s model cannot be vectorised (:func:`~rsray.train.vmapped.vectorisable`).

    The model is built on the ``meta`` device (no memory, no initialisation cost) where
    its constructor allows, else on the CPU.
    """
    import torch

    from rsray.train.run_plan import RunPlan
    from rsray.train.vmapped import vectorisable

    run = RunPlan.build(cfg, manifest)
    try:
        with torch.device("meta"):
            model = run.build_model()
    except (RuntimeError, NotImplementedError):  # a constructor reads a tensor's value
        model = run.build_model()
    return vectorisable(model)


def why_not_vectorised(configs: list[Config], manifest: Any,
                       recipe: str = "") -> str | None:
    """``None`` when these seeds' runs can train as one vectorised step, else the reason."""
    from rsray.train.local import trial_mode

    first = configs[0]
    if recipe:
        return f"the arm is a multi-run recipe ({recipe})"
    if trial_mode(first) != "local":
        return (f"scaling.num_workers={first.scaling.num_workers}: a run of more than one "
                "worker trains through its own TorchTrainer")
    base = _without_seed(first)
    if any(_without_seed(c) != base for c in configs[1:]):
        return "the seeds' configurations differ in more than train.seed"
    reason = model_reason(first, manifest)
    return f"model {first.model.name}: {reason}" if reason else None


def run_pack_vectorised(jobs: list[dict[str, Any]], mode: str) -> bool:
    """Train ``jobs`` (seeds of one cell) as one vectorised step, then record each seed.

    ``mode`` ``auto``: returns ``False`` (nothing done) when the pack does not qualify or its
    runs train on CPU cores (:data:`AUTO_NEEDS_GPU`); ``vmap``: a pack that does not qualify
    is a :class:`~rsray.errors.ConfigError`.
    A seed with checkpoints resumes from its newest and joins at the epoch after it.
    """
    from rsray.storage import join
    from rsray.study.runner import checkpoint_uri, job_manifest, record_job
    from rsray.train.driver import best_checkpoint, resolve_use_gpu
    from rsray.train.run_plan import RunPlan, WorkerInput
    from rsray.train.trial import warm_training_data
    from rsray.train.vmapped import PackedRun, run_packed

    if mode == "auto" and AUTO_NEEDS_GPU and not resolve_use_gpu(Config.from_dict(
            jobs[0]["config"])):
        return False
    t0 = time.perf_counter()
    prepared = [job_manifest(job) for job in jobs]
    reason = why_not_vectorised([c for c, _ in prepared], prepared[0][1],
                                jobs[0].get("recipe", ""))
    if reason:
        if mode == "vmap":
            raise ConfigError(f"factors.pack_mode: vmap: cell {jobs[0]['cell']} cannot be "
                              f"vectorised: {reason}; use pack_mode: auto or sequential")
        print(f"[study] {jobs[0]['cell']}: seeds packed one after another ({reason})",
              flush=True)
        return False
    runs, plans = [], []
    for job, (cfg, manifest) in zip(jobs, prepared, strict=True):
        run = RunPlan.build(cfg, manifest, experiment=job["experiment"], trial=job["run"])
        data = warm_training_data(run.data, manifest)  # decoded once for the pack
        plans.append(run)
        runs.append(PackedRun(WorkerInput(run=run, augment=data.augment,
                                          trainer_built=time.time(), streams=data.streams),
                              data.datasets, join(job["storage"], job["run"])))
    print(f"[study] {jobs[0]['cell']}: {len(jobs)} seeds trained as one vectorised step",
          flush=True)
    results = run_packed(runs)
    share = (time.perf_counter() - t0) / len(jobs)
    for job, (cfg, manifest), run, result in zip(jobs, prepared, plans, results, strict=True):
        ckpt = checkpoint_uri(best_checkpoint(result, run, job["run"]), job["storage"])
        record_job(job, cfg, manifest, ckpt, t0=time.perf_counter(), trained=share,
                   packed="vmap")
    return True


def time_packing(cfg: Config, root: Path, seeds: int,
                 modes: tuple[str, ...] = ("separate", "sequential", "vmap")
                 ) -> dict[str, float]:
    """``seeds`` seeds as one trial each and packed into one trial: wall and seeds/hour.

    ``modes``: ``separate`` (one trial per seed), ``sequential`` / ``vmap`` (all seeds in one
    trial, ``factors.pack_mode``). Keys ``<mode>_seconds``, ``<mode>_seeds_per_hour`` and
    ``<mode>_vectorised`` (seeds recorded as trained in a vectorised pack).
    """
    from rsray.study.runner import run_jobs, seed_dir, seed_job
    from rsray.study.spec import Evaluation
    from rsray.study.store import STUDY_JSON, StudyStore

    out: dict[str, float] = {}
    for mode in modes:
        store = StudyStore(root / mode)
        store.write_json(STUDY_JSON, {})
        jobs = [seed_job(cfg.with_overrides({"train.seed": s}), store=store, cell="cell",
                         seed=s, experiment="bench-pack", splits=["test"],
                         evaluation=Evaluation(splits=["test"], drop_modalities=False,
                                               predictions=False),
                         headline="ap_macro", keys={"seed": s}, label=f"seed {s + 1}/{seeds}")
                for s in range(seeds)]
        t0 = time.perf_counter()
        run_jobs(jobs, store, concurrency=1, pack=1 if mode == "separate" else seeds,
                 pack_mode="sequential" if mode == "separate" else mode)
        wall = time.perf_counter() - t0
        docs = [store.read_json(f"{seed_dir('cell', s)}/result.json") for s in range(seeds)
                if store.exists(f"{seed_dir('cell', s)}/result.json")]
        out[f"{mode}_seconds"] = wall
        out[f"{mode}_seeds_per_hour"] = len(docs) * 3600.0 / wall
        out[f"{mode}_vectorised"] = sum(d.get("packed") == "vmap" for d in docs)
    return out


PACK_MODE_NAMES = {"separate": "one trial per seed", "sequential": "packed, one after another",
                   "vmap": "packed, one vectorised step"}
"""How :func:`format_packing` names the modes of :func:`time_packing`."""


def format_packing(p: dict[str, float], cfg: Config, seeds: int) -> str:
    """:func:`time_packing`'s figures side by side: wall, seeds per hour, ratio to separate."""
    base = p["separate_seeds_per_hour"]
    lines = [f"packed seeds: {seeds} seeds of {cfg.model.name}, {cfg.train.max_epochs} "
             "epoch(s) each, one trial at a time"]
    for mode, name in PACK_MODE_NAMES.items():
        if f"{mode}_seconds" in p:
            rate = p[f"{mode}_seeds_per_hour"]
            lines.append(f"  {name:28s} {p[f'{mode}_seconds']:7.1f} s  {rate:7.1f} seeds/h  "
                         f"{rate / base:5.2f}x  ({p[f'{mode}_vectorised']:.0f} seed(s) "
                         "vectorised)")
    return "\n".join(lines)
