"""Training benchmark: model ceiling vs rsray's training rate, and Tune wall time vs training.

    python jobs/bench_train.py                          # demo model, synthetic BigEarthNet-MM
    python jobs/bench_train.py --shards URI --model progressive_fusion_base --trials 4

Targets (issue 11): pipeline tax >= 0.9; Tune wall <= 1.3x the trials' training time;
second-and-later epochs reach their first batch in <= 0.5 s.
"""

from __future__ import annotations

import argparse

from rsray.cli import ensure_synthetic_shards
from rsray.config import load_config
from rsray.data.pipeline import load_shard_set
from rsray.train.bench import run_train_benchmark


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="rsray/configs/demo.yaml", help="base config (the demo's)")
    p.add_argument("--model", default="progressive_fusion_small")
    p.add_argument("--n", type=int, default=300, help="synthetic patch pairs (without --shards)")
    p.add_argument("--shards", help="a prepared shard set instead of synthetic data")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--steps", type=int, default=8, help="timed steps of the ceiling")
    p.add_argument("--smoke-test", action="store_true", help="2 trials of 1 epoch")
    p.add_argument("--set", nargs="*", default=[], help="section.field=value overrides")
    args = p.parse_args()
    if args.smoke_test:
        args.epochs, args.trials, args.steps = 1, 2, 2
    shards = args.shards or ensure_synthetic_shards("rsray_data/bench_train", args.n)
    cfg = load_config(args.config, [f"data.uri={shards}", f"model.name={args.model}", *args.set])
    r = run_train_benchmark(cfg, load_shard_set(cfg.data), epochs=args.epochs,
                            trials=args.trials, steps=args.steps)
    f, t = r.fit, r.tune
    print(f"\ntraining benchmark: {r.model}, batch {r.batch_size}, {r.threads} torch thread(s)")
    print(f"  model ceiling (in-memory batches)  {r.ceiling:8.1f} samples/s")
    print(f"  rsray training (last epoch)        {r.rsray:8.1f} samples/s  "
          f"data wait {f.get('data_wait_share', float('nan')):.0%}")
    print(f"  pipeline tax = {r.tax:.2f}   (target >= 0.9)")
    print(f"  first batch of epoch {args.epochs}: {f.get('train_first_batch_seconds', 0):.2f} s"
          "   (target <= 0.5)")
    print(f"  run start-up {f.get('startup_seconds', 0):.1f} s, worker set-up "
          f"{f.get('setup_seconds', 0):.1f} s, eval {f.get('eval_seconds', 0):.1f} s/epoch")
    if t:
        print(f"  tune: {t['trials']:.0f} trials x {args.epochs} epochs in "
              f"{t['wall_seconds']:.0f} s; training {t['train_seconds']:.0f} s, "
              f"model compute {t['compute_seconds']:.0f} s")
        print(f"  tune wall / training = {t['wall_over_train']:.2f}   (target <= 1.3); "
              f"wall / compute = {t['wall_over_compute']:.2f}")
        print(f"  per trial: start-up {t['startup_seconds']:.1f} s, later epochs' first batch "
              f"{t['first_batch_later_epochs']:.2f} s")


if __name__ == "__main__":
    main()
