"""S2 only vs S2 + covariates on the ``covariates_regression`` twin.

docs/datasets/covariates.md, "Regression with covariates"::

    python jobs/compare_regression_covariates.py --root data/reg_twin --n 400 --epochs 20 \
        --seeds 0,1,2

Writes (or reuses) the twin and its shards under ``--root``, then trains ``test_early_fusion_cnn``
per seed on ``[s2]`` and on ``[s2, temperature, dem]`` with rsray's own pieces (the resolved
run's ``build_model`` / ``build_task``: MSE on standardised targets, ``RegressionMetrics``;
``decode_raw`` / ``finalize_batch``, ``build_optimizer``) in one process, without Ray Train (the
comparison was measured on a 2-core machine where starting the Ray Train workers timed out
under load), and prints the test split's per-target R2 / RMSE per run and their mean +- 95 % CI
(Student t over seeds).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from rsray.cliargs import HelpFormatter, Parser, positive_int, run_main
from rsray.config import Config
from rsray.data.decode import decode_raw
from rsray.data.finalize import finalize_batch
from rsray.data.plan import DecodePlan
from rsray.data.prepare import synthetic_shards
from rsray.data.shards import Manifest, read_manifest
from rsray.study.stats import summarize
from rsray.train.optim import build_optimizer
from rsray.train.run_plan import RunPlan
from rsray.train.step import model_inputs

ARMS = {"s2": ["s2"], "s2cov": ["s2", "temperature", "dem"]}


def _split(m: Manifest, plan: DecodePlan, split: str) -> dict:
    table = pa.concat_tables([pq.read_table(p, columns=plan.columns)
                              for p in m.shard_paths(split)])
    return finalize_batch(decode_raw(table, plan), plan)


def run(m: Manifest, uri: str, arm: str, seed: int, epochs: int) -> dict[str, float]:
    """Train one arm with one seed; the test split's regression metrics."""
    cfg = Config().with_overrides({
        "data.uri": uri, "data.batch_size": 16, "data.modalities": ARMS[arm],
        "data.image_size": 32, "model.name": "test_early_fusion_cnn", "model.params": {},
        "optim.lr": 3e-3, "optim.scheduler": "none", "optim.weight_decay": 0.0,
        "train.seed": seed})
    plan = RunPlan.build(cfg, m)
    torch.manual_seed(seed)
    train, test = _split(m, plan.train_plan, "train"), _split(m, plan.eval_plan, "test")
    model = plan.build_model()
    mods = tuple(plan.channels)
    opt = build_optimizer(model, cfg.optim)
    task = plan.build_task()
    n = len(train["label"])
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(n, generator=g).split(cfg.data.batch_size):
            b = {k: v[idx] for k, v in train.items() if isinstance(v, torch.Tensor)}
            loss = task.loss(model(model_inputs(b, mods)), task.target(b))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    task.metrics.reset()
    with torch.no_grad():
        task.metrics.update(model(model_inputs(test, mods)), task.target(test))
    return {**task.metrics.compute(), "n_train": n, "n_test": len(test["label"])}


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run every arm and seed, print the runs and the summary."""
    p = Parser(prog="compare_regression_covariates", description=__doc__,
               formatter_class=HelpFormatter)
    p.add_argument("--root", required=True)
    p.add_argument("--n", type=positive_int, default=400, help="synthetic samples")
    p.add_argument("--epochs", type=positive_int, default=20, help="epochs per run")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = p.parse_args(argv)
    return run_main("compare_regression_covariates", lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    """Every arm and seed on the synthetic regression data, then the summary."""
    torch.set_num_threads(1)
    uri = synthetic_shards("covariates_regression", args.root, args.n, seed=0)
    m = read_manifest(uri)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {arm: [run(m, uri, arm, s, args.epochs) for s in seeds] for arm in ARMS}
    for arm, rows in results.items():
        for s, r in zip(seeds, rows, strict=True):
            print(json.dumps({"arm": arm, "seed": s, **r}))
    for key in ("r2/lst", "rmse/lst", "r2/greenness", "r2_mean"):
        for arm, rows in results.items():
            v = np.array([r[key] for r in rows])
            s = summarize(v)  # the studies' own t-interval
            half = (s.ci_high - s.ci_low) / 2
            print(f"{key:14s} {arm:6s} {s.mean:.3f} +- {half:.3f}  {np.round(v, 3).tolist()}")


if __name__ == "__main__":
    sys.exit(main())
