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
from typing import Any

from rsray.bench.training import run_train_benchmark
from rsray.bench.trials import format_tune_benchmark, run_tune_benchmark
from rsray.cli import ensure_synthetic_shards
from rsray.cliargs import HelpFormatter, Parser, positive_int, run_main
from rsray.config import load_config
from rsray.data.datasets import load_shard_set

VARIANTS: dict[str, dict[str, object]] = {
    # every epoch checkpointed, so the upload mode shows in the report time and epoch wall
    "upload sync, ckpt every epoch": {"train.checkpoint_upload": "sync",
                                      "train.checkpoint_every": 1},
    "upload async, ckpt every epoch": {"train.checkpoint_upload": "async",
                                       "train.checkpoint_every": 1},
    "augment_on=host (cached)": {"data.cache": "memory", "data.augment_on": "host"},
    "augment_on=device (cached)": {"data.cache": "memory", "data.augment_on": "device"},
    "cache=device": {"data.cache": "device"},
    "streamed (data.cache=off)": {"data.cache": "off"},
}
"""What ``--compare`` trains, each beside the others on the same shards."""


def _print_compare(r: Any) -> None:
    """The variants side by side, with the ratios docs/performance-trials.md quotes."""
    for dev, a in r.augment.items():
        print(f"  augment + finalize_batch on {dev}: host {a['host']:.0f} samples/s, "
              f"device {a['device']:.0f} samples/s, device/host = "
              f"{a['device'] / a['host']:.2f}")
    print(f"  {'variant':32s} {'samples/s':>9s} {'wait':>5s} {'epoch s':>8s} {'report s':>8s} "
          f"{'1st batch s':>11s}")
    for name, f in r.variants.items():
        print(f"  {name:32s} {f.get('train_samples_per_second', float('nan')):9.1f} "
              f"{f.get('data_wait_share', float('nan')):5.0%} "
              f"{f.get('epoch_seconds', float('nan')):8.1f} "
              f"{f.get('report_seconds', float('nan')):8.2f} "
              f"{f.get('train_first_batch_seconds', float('nan')):11.2f}")
    v = r.variants

    def ratio(a: str, b: str, key: str) -> float:
        return v[a].get(key, float("nan")) / max(v[b].get(key, float("nan")), 1e-9)

    sync, asyn = "upload sync, ckpt every epoch", "upload async, ckpt every epoch"
    print(f"  async/sync: report {ratio(asyn, sync, 'report_seconds'):.2f}, samples/s "
          f"{ratio(asyn, sync, 'train_samples_per_second'):.2f}, epoch "
          f"{ratio(asyn, sync, 'epoch_seconds'):.2f}")
    host, dev = "augment_on=host (cached)", "augment_on=device (cached)"
    rate = "train_samples_per_second"
    print(f"  device/host augmentation: samples/s {ratio(dev, host, rate):.2f}; "
          f"cache=device/host: {ratio('cache=device', host, rate):.2f}")


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
                   help="also train the variants of VARIANTS (checkpoint upload sync/async, "
                        "host/device augmentation, data.cache=device) and time augment + "
                        "finalize on the host against on the device")
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
                            variants=VARIANTS if args.compare else None)
    f = r.fit
    print(f"\ntraining benchmark: {r.model}, batch {r.batch_size}, {r.threads} torch thread(s)")
    print(f"  model ceiling (in-memory batches)  {r.ceiling:8.1f} samples/s")
    print(f"  rsray training (last epoch)        {r.rsray:8.1f} samples/s  "
          f"data wait {f.get('data_wait_share', float('nan')):.0%}")
    first = f.get("train_first_batch_seconds", float("nan"))
    print(f"  pipeline tax = {r.tax:.2f}   (target >= 0.9: {'met' if r.tax >= 0.9 else 'NOT met'})")
    print(f"  first batch of epoch {args.epochs}: {first:.2f} s   (target <= 0.5: "
          f"{'met' if first <= 0.5 else 'NOT met'})")
    print(f"  run start-up {f.get('startup_seconds', 0):.1f} s, worker set-up "
          f"{f.get('setup_seconds', 0):.1f} s, eval {f.get('eval_seconds', 0):.1f} s/epoch")
    if r.variants:
        _print_compare(r)
    paths = {m: n for m, n in (("local", args.trials), ("trainer", args.trainer_trials)) if n}
    if paths:
        tuned = run_tune_benchmark(cfg, trials=args.trials, epochs=args.epochs, paths=paths)
        print(f"\ntune benchmark: {args.epochs} epoch(s) per trial, one trial at a time")
        print(format_tune_benchmark(tuned, args.epochs))
    if args.pack_seeds > 1:
        _pack(cfg.with_overrides({"train.max_epochs": args.epochs,
                                  "model.name": args.pack_model, "model.params": {}}),
              args.pack_seeds)


def _pack(cfg: Any, seeds: int) -> None:
    """``seeds`` seeds one trial each, packed one after another, packed vectorised."""
    import tempfile
    from pathlib import Path

    from rsray.study.packing import time_packing

    with tempfile.TemporaryDirectory(prefix="rsray-bench-pack-") as tmp:
        p = time_packing(cfg, Path(tmp), seeds)
    base = p["separate_seeds_per_hour"]
    print(f"\npacked seeds: {seeds} seeds of {cfg.model.name}, {cfg.train.max_epochs} epoch(s) "
          "each, one trial at a time")
    names = {"separate": "one trial per seed", "sequential": "packed, one after another",
             "vmap": "packed, one vectorised step"}
    for mode, name in names.items():
        if f"{mode}_seconds" in p:
            rate = p[f"{mode}_seeds_per_hour"]
            print(f"  {name:28s} {p[f'{mode}_seconds']:7.1f} s  {rate:7.1f} seeds/h  "
                  f"{rate / base:5.2f}x  ({p[f'{mode}_vectorised']:.0f} seed(s) vectorised)")


if __name__ == "__main__":
    sys.exit(main())
