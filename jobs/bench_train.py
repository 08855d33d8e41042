"""Training benchmark: model ceiling vs rsray's training rate, and what a Tune trial costs.

    python jobs/bench_train.py --trials 8 --epochs 2    # demo model, synthetic BigEarthNet-MM
    python jobs/bench_train.py --shards URI --model progressive_fusion_base --trials 4
    python jobs/bench_train.py --compare --trials 0     # GPU path / async upload side by side
    python jobs/bench_train.py --trials 0 --trainer-trials 0 --pack-seeds 3   # seeds per hour

Targets: pipeline tax >= 0.9; second-and-later epochs reach their first batch in <= 0.5 s;
median fixed cost per one-worker trial <= 3 s and Tune wall <= 1.3x the trials' training
loops, measured for one-worker trials in the trial's process (``local``) and through a
``TorchTrainer`` (``trainer``) side by side in one run (rsray.bench.trials). ``--pack-seeds K``
trains K seeds of one ``--pack-model`` configuration as one trial each, packed into one trial
one after another, and packed as one vectorised step (``factors.pack_seeds``,
``factors.pack_mode``), and prints seeds per hour for the three.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rsray.bench.training import COMPARE_VARIANTS, format_train_benchmark, run_train_benchmark
from rsray.bench.trials import format_tune_benchmark, run_tune_benchmark
from rsray.cli import ensure_synthetic_shards
from rsray.cliargs import HelpFormatter, Parser, positive_int, run_main
from rsray.config import load_config
from rsray.data.datasets import load_shard_set
from rsray.study.packing import format_packing, time_packing


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="bench_train", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--config", default="demo", help="base config: a YAML file or a preset name")
    p.add_argument("--model", default="progressive_fusion_small")
    p.add_argument("--n", type=positive_int, default=300,
                   help="synthetic patch pairs (without --shards)")
    p.add_argument("--shards", help="a prepared shard set instead of synthetic data")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--trials", type=int, default=8, help="trials of the local path (0: none)")
    p.add_argument("--trainer-trials", type=int, default=4,
                   help="trials of the TorchTrainer path (0: not run)")
    p.add_argument("--steps", type=int, default=8, help="timed steps of the ceiling")
    p.add_argument("--smoke-test", action="store_true", help="2 trials of 1 epoch")
    p.add_argument("--compare", action="store_true",
                   help="also train the variants of rsray.bench.training.COMPARE_VARIANTS "
                        "(checkpoint upload sync/async, host/device augmentation, "
                        "data.cache=device, streamed) and time augment + finalize on the "
                        "host against on the device")
    p.add_argument("--pack-seeds", type=int, default=0, metavar="K",
                   help="also time K seeds as one trial each against packed into one trial "
                        "(one after another, and as one vectorised step)")
    p.add_argument("--pack-model", default="vit_early_fusion_small",
                   help="the model of --pack-seeds (BatchNorm-free, so it can be vectorised)")
    p.add_argument("--set", nargs="*", default=[], help="section.field=value overrides")
    args = p.parse_args(argv)
    return run_main("bench_train", lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    """The benchmark itself, on the parsed flags."""
    if args.smoke_test:
        args.epochs, args.trials, args.trainer_trials, args.steps = 1, 2, 2, 2
    shards = args.shards or ensure_synthetic_shards("rsray_data/bench_train", args.n)
    cfg = load_config(args.config, [f"data.uri={shards}", f"model.name={args.model}", *args.set])
    r = run_train_benchmark(cfg, load_shard_set(cfg.data), epochs=args.epochs,
                            trials=args.trials, steps=args.steps, skip_tune=True,
                            variants=COMPARE_VARIANTS if args.compare else None)
    print("\n" + format_train_benchmark(r, args.epochs))
    paths = {m: n for m, n in (("local", args.trials), ("trainer", args.trainer_trials)) if n}
    if paths:
        tuned = run_tune_benchmark(cfg, trials=args.trials, epochs=args.epochs, paths=paths)
        print(f"\ntune benchmark: {args.epochs} epoch(s) per trial, one trial at a time")
        print(format_tune_benchmark(tuned, args.epochs))
    if args.pack_seeds > 1:
        pack_cfg = cfg.with_overrides({"train.max_epochs": args.epochs,
                                       "model.name": args.pack_model, "model.params": {}})
        with tempfile.TemporaryDirectory(prefix="rsray-bench-pack-") as tmp:
            p = time_packing(pack_cfg, Path(tmp), args.pack_seeds)
        print("\n" + format_packing(p, pack_cfg, args.pack_seeds))


if __name__ == "__main__":
    sys.exit(main())
