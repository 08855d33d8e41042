"""The rsray command: data, training, tuning, studies, evaluation and cluster jobs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsray.cliargs import HelpFormatter, Parser, add_command, add_run_args, positive_int
from rsray.config import Config, load_config, parse_overrides
from rsray.errors import ConfigError, RsrayError

DEMO_ROOT = "rsray_data/demo"
DEMO_PATCHES = 320
SMOKE_PATCHES = 64


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file, or a preset's name (`rsray presets`); "
                                    "defaults are used for missing fields")


def add_tune_args(p: argparse.ArgumentParser) -> None:
    """The flags shared by `rsray tune` and `jobs/tune_*.py`."""
    _add_config_args(p)
    add_run_args(p, out="where experiments go: a local folder or s3://bucket/prefix "
                        "(train.storage_path; default rsray_results)",
                 name="experiment name (tune.name); the same name resumes with --resume",
                 resume="continue the interrupted experiment of the same --name",
                 max_epochs="epochs per trial (train.max_epochs; ASHA may stop a trial earlier)")
    p.add_argument("--storage-path", dest="out", help=argparse.SUPPRESS)  # the old --out
    p.add_argument("--num-samples", type=positive_int, help="number of trials (tune.num_samples)")
    p.add_argument("--num-workers", type=int,
                   help="Ray Train workers per trial (scaling.num_workers)")
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny model, 3 trials, 2 epochs; makes tiny synthetic data if --data "
                        "is not given")


def run_flags(args: argparse.Namespace, name_field: str) -> dict[str, Any]:
    """Config overrides of the run flags every run command shares (``--set`` comes after)."""
    flags: dict[str, Any] = {}
    for flag, key in [("data", "data.uri"), ("out", "train.storage_path"),
                      ("name", name_field), ("max_epochs", "train.max_epochs"),
                      ("num_samples", "tune.num_samples"),
                      ("num_workers", "scaling.num_workers")]:
        value = getattr(args, flag, None)
        if value is not None:
            flags[key] = value
    return flags


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
    flags.update(run_flags(args, "tune.name"))
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
    parser = Parser(prog=prog, description=doc, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Ray's own output (worker logs, Tune tables, warnings)")
    add_tune_args(parser)
    args = parser.parse_args(argv)
    from rsray.console import setup
    from rsray.tune.run import tune_fusion

    setup(verbose=args.verbose)
    try:
        cfg = tune_config_from_args(args, default_config, smoke=smoke,
                                    smoke_dataset=smoke_dataset, smoke_samples=smoke_samples)
        check_metrics(cfg)
        start_ray()
        tune_fusion(cfg, resume=args.resume)
    except RsrayError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def ensure_synthetic_shards(root: str, n: int, seed: int = 0,
                            dataset: str = "bigearthnet") -> str:
    """Synthetic raw data + shards of ``dataset`` under ``root`` (reused when present)."""
    from rsray.data.prepare import synthetic_shards

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

    entry = get_dataset(args.dataset)  # unknown: one line listing the datasets
    require_twin(entry)[0](args.out, args.n, args.seed)
    print(f"wrote {args.n} SYNTHETIC {args.dataset} samples to {args.out}")
    text = entry.describe_synthetic()
    if text:
        print(text)


def cmd_prepare(args: argparse.Namespace) -> None:
    """``rsray prepare <dataset>``."""
    from rsray.data.prepare import prepare_from_args

    prepare_from_args(args)


def check_fresh_run(cfg: Config, resume: bool) -> None:
    """``rsray train`` without ``--resume`` refuses a run name that already has a run folder.

    With ``--resume`` the run continues from its latest checkpoint (Ray Train restores a run
    from ``<train.storage_path>/<train.name>``).
    """
    from rsray.storage import exists, join

    run = join(cfg.train.storage_path, cfg.train.name)
    try:
        found = exists(run)
    except Exception:  # an unreachable store is reported by the data check that follows
        return
    if found and not resume:
        raise ConfigError(f"{run}: a run named {cfg.train.name!r} is already there; pass "
                          "--resume to continue it, or --name another run")
    if resume and not found:
        print(f"[rsray] nothing to resume at {run}; starting a new run", flush=True)


def cmd_train(args: argparse.Namespace) -> None:
    """``rsray train``: one configuration, no search."""
    from rsray.data.shards import read_manifest
    from rsray.storage import check_reachable
    from rsray.train.driver import fit

    cfg = load_config(args.config)
    cfg = cfg.with_overrides({**run_flags(args, "train.name"), **parse_overrides(args.overrides)})
    check_reachable(cfg.data.uri)
    manifest = read_manifest(cfg.data.uri)  # a bad --data is named before the run folder
    check_metrics(cfg, manifest)
    check_fresh_run(cfg, args.resume)
    result = fit(cfg)  # checks the shard set, then starts Ray (quiet unless -v)
    # per-class values (``val_ap_class/<name>``, ``val_iou/<name>``...) stay in the run's files
    metrics = {k: v for k, v in (result.metrics or {}).items() if "/" not in k}
    print(json.dumps(metrics, indent=2, default=str))
    if result.checkpoint:
        print(f"last checkpoint: {result.checkpoint.path}")


def check_metrics(cfg: Config, manifest: Any = None) -> None:
    """A misspelled ``train.metric`` ends here, in one line, not after an epoch in Ray."""
    from rsray.train.metric_names import check_config_metrics

    if manifest is None:
        from rsray.data.shards import read_manifest
        from rsray.storage import check_reachable

        check_reachable(cfg.data.uri)
        manifest = read_manifest(cfg.data.uri)
    check_config_metrics(cfg, manifest.task, manifest.classes)


def cmd_tune(args: argparse.Namespace) -> None:
    """``rsray tune``."""
    from rsray.tune.run import tune_fusion

    cfg = tune_config_from_args(args)
    check_metrics(cfg)
    tune_fusion(cfg, resume=args.resume)  # checks the shard set, then starts Ray


DEMO_SPEC = "demo"
"""The study preset ``rsray demo`` runs (``studies/demo.yaml``)."""


def cmd_demo(args: argparse.Namespace) -> None:
    """``rsray demo``: the demo study on a synthetic twin: search, seeds, table, report."""
    from rsray.study.cli import StudyRequest, run_study_request

    t0 = time.perf_counter()
    print("rsray demo: local Ray, the SYNTHETIC SEN12MS twin (S2 + S1), study "
          f"`{DEMO_SPEC}`: one single-modality arm and two fusion arms, a short Optuna + ASHA "
          "search per arm, then seeded retraining, confidence intervals and a report",
          flush=True)
    # an earlier demo in the same folder is continued (its finished runs are kept)
    folder = Path(args.root) / (f"{DEMO_SPEC}-smoke" if args.smoke_test else DEMO_SPEC)
    request = StudyRequest(spec=DEMO_SPEC, smoke=args.smoke_test, out=str(folder),
                           resume=True, overrides=list(args.overrides))
    run_study_request(request)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s", flush=True)


def cmd_models(args: argparse.Namespace) -> None:
    """``rsray models``: list registered models."""
    from rsray.models import list_models

    for name in list_models(args.pattern):
        print(name)


def cmd_presets(args: argparse.Namespace) -> None:
    """``rsray presets``: the configs and study specs installed with rsray."""
    import yaml

    from rsray.presets import list_presets, preset_path

    for kind, flag in (("config", "--config NAME"), ("study", "rsray study NAME")):
        if args.kind not in (None, kind):
            continue
        print(f"{kind} presets ({flag}):")
        for name in list_presets(kind):
            path = preset_path(kind, name)
            about = ""
            if kind == "study":
                with open(path) as fh:
                    about = str((yaml.safe_load(fh) or {}).get("description") or "")
            else:
                first = path.read_text().splitlines()[:1]
                about = first[0].lstrip("# ") if first and first[0].startswith("#") else ""
            about = " ".join(about.split())
            print(f"  {name:28s} {about[:90] + ('...' if len(about) > 90 else '')}")


def cmd_report(args: argparse.Namespace) -> None:
    """``rsray report EXPERIMENT``: print a finished experiment's leaderboard and best config."""
    from rsray.storage import get_fs, join
    from rsray.tune.leaderboard import BEST_JSON, LEADERBOARD_CSV

    fs, root = get_fs(args.experiment)
    for name in (LEADERBOARD_CSV, BEST_JSON):
        path = join(root, name)
        if not fs.exists(path):
            raise RsrayError(f"{join(args.experiment, name)}: not found; is this an experiment "
                             "folder written by `rsray tune`?")
        print(fs.cat_file(path).decode())


def _add_prepare(sub: Any, full: bool) -> None:
    """``rsray prepare DATASET``; its per-dataset flags only when ``full`` (imports readers)."""
    p = add_command(sub, "prepare", help="raw dataset -> Parquet shards + manifest",
                    examples=["rsray prepare sen12ms --help",
                              "rsray prepare bigearthnet --s2-root BigEarthNet-S2 --s1-root "
                              "BigEarthNet-S1 --out s3://bucket/ben/shards"])
    if not full:
        p.add_argument("dataset", metavar="DATASET", help="`rsray prepare --help` lists them")
        return
    from rsray.data.registry import add_common_prepare_args, get_dataset, list_datasets

    per_dataset = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name in list_datasets():
        entry = get_dataset(name)
        q = per_dataset.add_parser(name, help=entry.summary, description=entry.summary,
                                   formatter_class=HelpFormatter)
        entry.add_prepare_args(q)
        add_common_prepare_args(q)
        q.add_argument("--codec", choices=("auto", "none", "lz4", "zstd"), default="auto",
                       help="Parquet compression of the shard set, recorded in its manifest "
                            "(auto: none on local disk, zstd on s3://)")
        q.set_defaults(fn=cmd_prepare)


def add_core_commands(sub: Any, full: bool = True) -> None:
    """synth, prepare, train, tune, demo, models, presets, report."""
    p = add_command(sub, "synth", help="write a synthetic dataset in the real on-disk format",
                    examples=["rsray synth sen12ms --n 300 --out rsray_data/sen12ms_raw",
                              "rsray synth covariates --like rsray_data/ben_raw --out layers"])
    p.add_argument("dataset", help="a dataset name (`rsray prepare --help` lists them), or "
                                   "covariates")
    p.add_argument("--n", type=positive_int, default=300, help="number of samples")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--like", help="covariates only: raw dataset folder whose patches the "
                                  "synthetic DEM/climate/land-cover layers must cover")
    p.set_defaults(fn=cmd_synth)

    _add_prepare(sub, full)

    p = add_command(sub, "train", help="train one configuration with Ray Train",
                    examples=["rsray train --config sen12ms_resnet --data rsray_data/s12/shards "
                              "--max-epochs 5 --name first",
                              "rsray train --config sen12ms_resnet --data rsray_data/s12/shards "
                              "--name first --resume",
                              "rsray train --config globe_progressive --data s3://b/globe "
                              "--set scaling.use_gpu=yes --set scaling.num_workers=4"])
    _add_config_args(p)
    add_run_args(p, out="where the run goes: a local folder or s3://bucket/prefix "
                        "(train.storage_path; default rsray_results)",
                 name="run name (train.name; default rsray-train)",
                 resume="continue the run of the same --name from its latest checkpoint "
                        "(without it, an existing run of that name is an error)",
                 max_epochs="epochs to train (train.max_epochs)")
    p.set_defaults(fn=cmd_train)

    p = add_command(sub, "tune", help="hyper-parameter search with Ray Tune + Optuna + ASHA",
                    examples=["rsray tune --smoke-test",
                              "rsray tune --config bigearthnet_progressive --data s3://b/ben "
                              "--num-samples 32 --max-epochs 10 --name ben-pf",
                              "rsray tune --config bigearthnet_progressive --data s3://b/ben "
                              "--name ben-pf --resume"])
    add_tune_args(p)
    p.set_defaults(fn=cmd_tune)

    p = add_command(sub, "demo", help="the product in a few minutes: a small study on a "
                                      "synthetic twin (search, seeds, confidence intervals, "
                                      "HTML report)",
                    examples=["rsray demo", "rsray demo --smoke-test",
                              "rsray study demo --check     # its plan, before running it"])
    p.add_argument("--root", default=DEMO_ROOT,
                   help="where the demo's study folders go (demo/, demo-smoke/: data, runs, "
                        "table, report)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of every arm (repeatable)")
    p.add_argument("--smoke-test", action="store_true",
                   help="the demo study's smoke variant: 1 trial and 1 epoch per arm, 2 seeds")
    p.set_defaults(fn=cmd_demo)

    p = add_command(sub, "models", help="list registered models",
                    examples=["rsray models", "rsray models 'vit_*'"])
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. '*fusion*'")
    p.set_defaults(fn=cmd_models)

    p = add_command(sub, "presets", help="list the configs and study specs installed with rsray",
                    examples=["rsray presets", "rsray presets study",
                              "rsray study sen12ms_resnet --check"])
    p.add_argument("kind", nargs="?", choices=("config", "study"), help="only this kind")
    p.set_defaults(fn=cmd_presets)

    p = add_command(sub, "report", help="print an experiment's leaderboard and best config",
                    examples=["rsray report rsray_results/tune-progressive",
                              "rsray report rsray_results/studies/sen12ms_resnet"])
    p.add_argument("experiment", help="experiment folder (local or s3://)")
    p.set_defaults(fn=cmd_report)


def add_study_commands(sub: Any, full: bool = True) -> None:
    """``rsray study`` (and the study mode of ``rsray report``)."""
    from rsray.study.cli import add_commands

    add_commands(sub)


def _evaluate_command(name: str) -> Callable[[argparse.Namespace], None]:
    """``rsray.evaluate.cli.<name>``, imported when the command runs (it imports torch)."""

    def run(args: argparse.Namespace) -> None:
        import importlib

        getattr(importlib.import_module("rsray.evaluate.cli"), name)(args)

    return run


def add_evaluate_commands(sub: Any, full: bool = True) -> None:
    """``rsray evaluate`` and ``rsray predict``.

    Their flags are defined here: importing the package ``rsray.evaluate`` imports torch.
    """
    p = add_command(
        sub, "evaluate",
        help="a checkpoint's metrics on named splits (and with modalities dropped)",
        description="Stream the named splits through the training pipeline and write the "
                    "task's metrics (per class too; confusion matrix for segmentation) as JSON.",
        examples=["rsray evaluate rsray_results/rsray-train --splits test,ood",
                  "rsray evaluate s3://b/runs/first/checkpoint_000009 --data s3://b/s12/shards "
                  "--drop-modality s1 --out s3://b/eval/first"])
    p.add_argument("checkpoint", help="checkpoint directory (local or s3://), or a run folder "
                                      "(its latest epoch_* checkpoint)")
    p.add_argument("--data", help="shard set URI (default: the one the checkpoint trained on)")
    p.add_argument("--splits", default="test", help="comma-separated splits, e.g. test,ood")
    p.add_argument("--drop-modality", action="append", default=[], metavar="M",
                   help="also evaluate with modality M zeroed after normalisation, as "
                        "training-time modality dropping does (repeatable; a+b drops both)")
    p.add_argument("--out", help="folder for metrics.json (local or s3://)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.set_defaults(fn=_evaluate_command("cmd_evaluate"))

    p = add_command(
        sub, "predict",
        help="per-sample predictions of a checkpoint on one split, as Parquet",
        description="Score a split with the model in Ray Data actors (one per GPU) and write "
                    "patch id, target and probabilities (class maps for segmentation).",
        examples=["rsray predict rsray_results/rsray-train --split test --out preds/test",
                  "rsray predict s3://b/runs/first --data s3://b/s12/shards --out s3://b/pred"])
    p.add_argument("checkpoint", help="checkpoint directory (local or s3://), or a run folder")
    p.add_argument("--data", help="shard set URI (default: the one the checkpoint trained on)")
    p.add_argument("--split", default="test", help="split to score")
    p.add_argument("--out", required=True, help="output folder (local or s3://)")
    p.add_argument("--drop-modality", action="append", default=[], metavar="M",
                   help="zero modality M for every sample (repeatable)")
    p.add_argument("--concurrency", type=int, help="model actors (default: one per GPU, else "
                                                   "up to 4 CPU actors; 0: in this process)")
    p.add_argument("--batch-size", type=int, help="rows per model call")
    p.set_defaults(fn=_evaluate_command("cmd_predict"))


def add_submit_command(sub: Any, full: bool = True) -> None:
    """``rsray submit``."""
    from rsray.ops.submit import add_submit_args, cmd_submit

    p = add_command(sub, "submit", help="submit a job to a Ray cluster, follow its logs",
                    examples=["rsray submit --address http://127.0.0.1:8265 -- python "
                              "jobs/study.py sen12ms_resnet --data s3://b/s12 --out s3://b/st"])
    add_submit_args(p)
    p.set_defaults(fn=cmd_submit)


COMMANDS: list[Callable[..., None]] = [
    add_core_commands, add_study_commands, add_evaluate_commands, add_submit_command,
]
"""Each adds its subcommands to the `rsray` parser; a new command group appends one here.

Called as ``add(subparsers, full)``; ``full=False`` (``main`` for any command but ``prepare``)
lets a group skip parsers whose construction imports heavy modules."""


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The argument parser of the `rsray` command.

    ``full=False`` leaves out the per-dataset ``prepare`` parsers (they import every dataset
    reader), so ``rsray --help`` and other commands start fast.
    """
    parser = Parser(
        prog="rsray", description=__doc__, formatter_class=HelpFormatter,
        epilog="examples:\n  rsray demo\n  rsray presets\n  rsray study sen12ms_resnet --check"
               "\n  rsray <command> --help")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Ray's own output (worker logs, Tune tables, warnings)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMANDS:
        add_commands(sub, full)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Entry point; rsray's own errors print one clear line instead of a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(full=_command_of(argv) == "prepare").parse_args(argv)
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
