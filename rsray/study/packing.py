"""Seeds per hour: a cell's seeds as one trial each against packed into one trial.

:func:`time_packing` runs the same stage-2 jobs twice through :func:`rsray.study.runner.
run_jobs`, once with ``pack=1`` and once with all seeds in one pack (``factors.pack_seeds``),
and returns each one's wall time and seeds per hour (``jobs/bench_gpu.py`` hands it to
:func:`rsray.bench.gpu.run_gpu_benchmark`).
"""

from __future__ import annotations

import time
from pathlib import Path

from rsray.config import Config


def time_packing(cfg: Config, root: Path, seeds: int) -> dict[str, float]:
    """``seeds`` seeds as one trial each, then packed into one trial: wall and seeds/hour."""
    from rsray.study.runner import run_jobs, seed_dir, seed_job
    from rsray.study.spec import Evaluation
    from rsray.study.store import STUDY_JSON, StudyStore

    out: dict[str, float] = {}
    for pack in (1, seeds):
        store = StudyStore(root / f"pack{pack}")
        store.write_json(STUDY_JSON, {})
        jobs = [seed_job(cfg.with_overrides({"train.seed": s}), store=store, cell="cell",
                         seed=s, experiment="bench-pack", splits=["test"],
                         evaluation=Evaluation(splits=["test"], drop_modalities=False,
                                               predictions=False),
                         headline="ap_macro", keys={"seed": s}, label=f"seed {s + 1}/{seeds}")
                for s in range(seeds)]
        t0 = time.perf_counter()
        run_jobs(jobs, store, concurrency=1, pack=pack)
        wall = time.perf_counter() - t0
        done = sum(store.exists(f"{seed_dir('cell', s)}/result.json") for s in range(seeds))
        out[f"pack{pack}_seconds"] = wall
        out[f"pack{pack}_seeds_per_hour"] = done * 3600.0 / wall
    return out
