"""The rsray command: data, training, tuning, studies, evaluation and cluster jobs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsray.config import Config, load_config, parse_overrides
from rsray.errors import RsrayError

DEMO_ROOT = "rsray_data/demo"
DEMO_PATCHES = 320
SMOKE_PATCHES = 64


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (defaults are used for missing fields)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)")


def add_tune_args(p: argparse.ArgumentParser) -> None:
    """The flags shared by `rsray tune` and `jobs/tune_*.py`."""
    _add_config_args(p)
    p.add_argument("--data", help="shard set URI (local path or s3://bucket/prefix)")
    p.add_argument("--storage-path", help="where experiments go (local path or s3://...)")
    p.add_argument("--name", help="experiment name (the same name resumes)")
    p.add_argument("--num-samples", type=int, help="number of trials")
    p.add_argument("--max-epochs", type=int, help="epochs per trial (ASHA may stop earlier)")
    p.add_argument("--num-workers", type=int, help="Ray Train workers per trial")
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny model, 3 trials, 2 epochs; makes tiny synthetic data if --data "
                        "is not given")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted experiment of the same name")


SMOKE_OVERRIDES: dict[str, Any] = {
    "model.name": "test_progressive_fusion", "tune.space": "progressive_smoke",
    "tune.num_samples": 3, "train.max_epochs": 2, "data.batch_size": 16,
    "tune.name": "tune-progressive-smoke", "scaling.num_workers": 1,
    "train.log_every_n_steps": 1000,
}
"""What ``--smoke-test`` sets unless a job passes its own ``smoke`` overrides."""


def tune_config_from_args(args: argparse.Namespace, default_config: str | None = None, *,
                          smoke: dict[str, Any] | None = None,
                          smoke_dataset: str = "bigearthnet",
                          smoke_samples: int = SMOKE_PATCHES) -> Config:
    """Config for a tuning run: file, then flags, then ``--set`` overrides.

    With ``--smoke-test``, ``smoke`` (default :data:`SMOKE_OVERRIDES`) is applied and, when
    ``--data`` is absent, ``smoke_samples`` synthetic ``smoke_dataset`` samples are prepared.
    """
    cfg = load_config(args.config or default_config)
    flags: dict[str, Any] = {}
    if args.smoke_test:
        flags.update(SMOKE_OVERRIDES if smoke is None else smoke)
    for flag, key in [("data", "data.uri"), ("storage_path", "train.storage_path"),
                      ("name", "tune.name"), ("num_samples", "tune.num_samples"),
                      ("max_epochs", "train.max_epochs"), ("num_workers", "scaling.num_workers")]:
        value = getattr(args, flag, None)
        if value is not None:
            flags[key] = value
    cfg = cfg.with_overrides(flags)
    if args.smoke_test and args.data is None:
        storage = cfg.train.storage_path
        local = "rsray_data" if storage.startswith("s3://") else storage  # raw files stay local
        folder = "smoke-data" if smoke_dataset == "bigearthnet" else f"smoke-{smoke_dataset}"
        cfg = cfg.with_overrides({"data.uri": ensure_synthetic_shards(
            str(Path(local) / folder), smoke_samples, seed=0, dataset=smoke_dataset)})
    overrides = {**flags, **parse_overrides(args.overrides)}
    return cfg.with_overrides(overrides)


def tune_job_main(doc: str, argv: list[str] | None = None, *, prog: str,
                  default_config: str | None = None, smoke: dict[str, Any] | None = None,
                  smoke_dataset: str = "bigearthnet", smoke_samples: int = SMOKE_PATCHES) -> int:
    """The whole `main()` of a `jobs/tune_*.py` entry point: parse, configure, start, tune.

    Args:
        doc: the job's docstring (its --help text).
        argv: command-line arguments (default: sys.argv).
        prog: name used in one-line errors.
        default_config: the job's preset YAML.
        smoke: the job's --smoke-test overrides (default SMOKE_OVERRIDES).
        smoke_dataset: the synthetic dataset --smoke-test prepares without --data.
        smoke_samples: how many synthetic samples it prepares.
    """
    from rsray.console import setup
    from rsray.tune.run import tune_fusion

    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Ray's own output (worker logs, Tune tables, warnings)")
    add_tune_args(parser)
    args = parser.parse_args(argv)
    setup(verbose=args.verbose)
    try:
        cfg = tune_config_from_args(args, default_config, smoke=smoke,
                                    smoke_dataset=smoke_dataset, smoke_samples=smoke_samples)
        start_ray()
        tune_fusion(cfg, resume=args.resume)
    except RsrayError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def ensure_synthetic_shards(root: str, n: int, seed: int = 0,
                            dataset: str = "bigearthnet") -> str:
    """Synthetic raw data + shards of ``dataset`` under ``root`` (reused when present)."""
    from rsray.data.registry import synthetic_shards

    return synthetic_shards(dataset, root, n, seed=seed)


def start_ray() -> None:
    """Start or join Ray; workers' output reaches the terminal only with -v/--verbose."""
    from rsray.console import ray_init_kwargs
    from rsray.runtime import ensure_ray

    ensure_ray(**ray_init_kwargs())


def cmd_synth(args: argparse.Namespace) -> None:
    """``rsray synth <dataset>``, or ``rsray synth covariates --like RAW`` (covariate layers)."""
    from rsray.data.registry import get_dataset

    if args.dataset == "covariates" or args.like:
        from rsray.data.sources.covariates import synth_covariates_from_args

        synth_covariates_from_args(args)
        return
    from rsray.data.registry import require_twin

    entry = get_dataset(args.dataset)
    require_twin(entry)[0](args.out, args.n, args.seed)
    print(f"wrote {args.n} SYNTHETIC {args.dataset} samples to {args.out}")
    text = entry.describe_synthetic()
    if text:
        print(text)


def cmd_prepare(args: argparse.Namespace) -> None:
    """``rsray prepare <dataset>``."""
    from rsray.data.registry import prepare_from_args

    prepare_from_args(args)


def cmd_train(args: argparse.Namespace) -> None:
    """``rsray train``: one configuration, no search."""
    from rsray.train.driver import fit

    cfg = load_config(args.config, args.overrides)
    if args.data:
        cfg = cfg.with_overrides({"data.uri": args.data})
    result = fit(cfg)  # checks the shard set, then starts Ray (quiet unless -v)
    # per-class values (``val_ap_class/<name>``, ``val_iou/<name>``...) stay in the run's files
    metrics = {k: v for k, v in (result.metrics or {}).items() if "/" not in k}
    print(json.dumps(metrics, indent=2, default=str))
    if result.checkpoint:
        print(f"last checkpoint: {result.checkpoint.path}")


def cmd_tune(args: argparse.Namespace) -> None:
    """``rsray tune``."""
    from rsray.tune.run import tune_fusion

    cfg = tune_config_from_args(args)
    tune_fusion(cfg, resume=args.resume)  # checks the shard set, then starts Ray


def cmd_demo(args: argparse.Namespace) -> None:
    """``rsray demo``: synthetic data -> shards -> a short tuning run -> leaderboard."""
    from importlib.resources import files

    from rsray.tune.run import tune_fusion

    t0 = time.perf_counter()
    print("rsray demo: local Ray, SYNTHETIC BigEarthNet-MM (S2 + S1), shards on local disk, "
          "Optuna + ASHA over progressive fusion", flush=True)
    start_ray()
    n = SMOKE_PATCHES if args.smoke_test and args.n == DEMO_PATCHES else args.n
    uri = ensure_synthetic_shards(args.root, n, seed=0)
    overrides = [*(DEMO_SMOKE if args.smoke_test else []), *args.overrides]
    cfg = load_config(str(files("rsray") / "configs" / "demo.yaml"), overrides)
    cfg = cfg.with_overrides({"data.uri": uri,
                              "train.storage_path": str(Path(args.root) / "results")})
    tune_fusion(cfg, resume=False)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s", flush=True)


DEMO_SMOKE = ["model.name=test_progressive_fusion", "tune.num_samples=2", "train.max_epochs=2",
              "tune.name=demo-smoke"]
"""What `rsray demo --smoke-test` sets: a tiny model, 2 trials of 2 epochs (about a minute)."""


def cmd_models(args: argparse.Namespace) -> None:
    """``rsray models``: list registered models."""
    from rsray.models import list_models

    for name in list_models(args.pattern):
        print(name)


def cmd_report(args: argparse.Namespace) -> None:
    """``rsray report EXPERIMENT``: print a finished experiment's leaderboard and best config."""
    from rsray.report.leaderboard import BEST_JSON, LEADERBOARD_CSV
    from rsray.storage import get_fs, join

    fs, root = get_fs(args.experiment)
    for name in (LEADERBOARD_CSV, BEST_JSON):
        path = join(root, name)
        if not fs.exists(path):
            raise RsrayError(f"{join(args.experiment, name)}: not found; is this an experiment "
                             "folder written by `rsray tune`?")
        print(fs.cat_file(path).decode())


def add_core_commands(sub: Any) -> None:
    """synth, prepare, train, tune, demo, models, report."""
    from rsray.data.registry import add_common_prepare_args, get_dataset, list_datasets

    p = sub.add_parser("synth", help="write a synthetic dataset in the real on-disk format")
    p.add_argument("dataset", choices=[*list_datasets(), "covariates"])
    p.add_argument("--n", type=int, default=300, help="number of samples")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--like", help="covariates only: raw dataset folder whose patches the "
                                  "synthetic DEM/climate/land-cover layers must cover")
    p.set_defaults(fn=cmd_synth)

    p = sub.add_parser("prepare", help="raw dataset -> Parquet shards + manifest")
    per_dataset = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name in list_datasets():
        entry = get_dataset(name)
        q = per_dataset.add_parser(name, help=entry.summary, description=entry.summary)
        entry.add_prepare_args(q)
        add_common_prepare_args(q)
        q.add_argument("--codec", choices=("auto", "none", "lz4", "zstd"), default="auto",
                       help="Parquet compression of the shard set, recorded in its manifest "
                            "(auto: none on local disk, zstd on s3://; see the README's "
                            "ingest performance section)")
        q.set_defaults(fn=cmd_prepare)

    p = sub.add_parser("train", help="train one configuration with Ray Train")
    _add_config_args(p)
    p.add_argument("--data", help="shard set URI")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("tune", help="hyper-parameter search with Ray Tune + Optuna + ASHA")
    add_tune_args(p)
    p.set_defaults(fn=cmd_tune)

    p = sub.add_parser("demo", help="the embedded default: synthetic data, short tune run")
    p.add_argument("--root", default=DEMO_ROOT, help="where demo data and results go")
    p.add_argument("--n", type=int, default=DEMO_PATCHES, help="synthetic patch pairs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny model, 64 patches, 2 trials of 2 epochs")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. '*fusion*'")
    p.set_defaults(fn=cmd_models)

    p = sub.add_parser("report", help="print an experiment's leaderboard and best config")
    p.add_argument("experiment", help="experiment folder (local or s3://)")
    p.set_defaults(fn=cmd_report)


def add_study_commands(sub: Any) -> None:
    """``rsray study`` (and the study mode of ``rsray report``)."""
    from rsray.study.cli import add_commands

    add_commands(sub)


def add_evaluate_commands(sub: Any) -> None:
    """``rsray evaluate`` and ``rsray predict``."""
    from rsray.evaluate.cli import add_commands

    add_commands(sub)


def add_submit_command(sub: Any) -> None:
    """Submit."""
    from rsray.ops.submit import add_submit_args, cmd_submit

    p = sub.add_parser("submit", help="submit a job to a Ray cluster, follow its logs",
                       description="rsray submit --address URL -- python jobs/X.py ...")
    add_submit_args(p)
    p.set_defaults(fn=cmd_submit)


COMMANDS: list[Callable[[Any], None]] = [
    add_core_commands, add_study_commands, add_evaluate_commands, add_submit_command,
]
"""Each adds its subcommands to the `rsray` parser; a new command group appends one here."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `rsray` command."""
    parser = argparse.ArgumentParser(prog="rsray", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Ray's own output (worker logs, Tune tables, warnings)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_commands in COMMANDS:
        add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; rsray's own errors print one clear line instead of a traceback."""
    args = build_parser().parse_args(argv)
    from rsray.console import setup

    setup(verbose=args.verbose)
    try:
        args.fn(args)
    except RsrayError as exc:
        print(f"rsray: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
