"""``rsray study SPEC`` and the study mode of ``rsray report STUDY_DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_study_args(p: argparse.ArgumentParser) -> None:
    """Flags of ``rsray study`` and ``jobs/study.py``."""
    p.add_argument("spec", help="study spec YAML (studies/*.yaml), or `init` to write a spec "
                                "for the shard set given with --data")
    p.add_argument("--variant", metavar="NAME",
                   help="the spec's protocol: paper (the paper's recipe) or tuned (one search "
                        "shared by every arm); default the spec's default_variant")
    p.add_argument("--smoke-test", action="store_true",
                   help="the spec's smoke variant: tiny models, 1 trial, 2 seeds, its "
                        "synthetic twin unless --data is given")
    p.add_argument("--proof", action="store_true",
                   help="the spec's proof variant: the scale at which the study was run on "
                        "its synthetic twin (a known answer) for the README")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed study; finished cells and seeds are not re-run")
    p.add_argument("--data", help="shard set URI (local or s3://) instead of the spec's data")
    p.add_argument("--out", help="study folder (default rsray_results/studies/<name>)")
    p.add_argument("--no-report", action="store_true", help="skip report.md / report.html")
    p.add_argument("--check", action="store_true",
                   help="validate the spec (and --data's modalities) and stop")


def cmd_study(args: argparse.Namespace) -> None:
    """Run a study, print its comparison table, write its report."""
    from rsray.study.runner import run_study
    from rsray.study.spec import check_runnable, load_spec

    if args.spec == "init" and not Path("init").is_file():
        from rsray.study.init import cmd_init

        cmd_init(args)
        return
    spec = load_spec(args.spec, smoke=args.smoke_test, proof=args.proof,
                     variant=getattr(args, "variant", None))
    if getattr(args, "check", False):
        from rsray.study.init import check_against

        print(check_against(spec, args.data), flush=True)
        return
    check_runnable(spec)
    outcome = run_study(spec, study_dir=args.out, resume=args.resume, data=args.data,
                        smoke=args.smoke_test)
    print(f"[study] results: {outcome.results_path} ({outcome.n_rows} rows) in "
          f"{outcome.seconds:.0f} s", flush=True)
    if not args.no_report:
        from rsray.report.study_report import write_report

        md, html = write_report(outcome.study_dir)
        print(f"[study] report: {md}\n                {html}", flush=True)
    if outcome.missing:  # a job runner (ray job submit, CI) must see an incomplete study
        from rsray.errors import RsrayError

        raise RsrayError(f"study incomplete: {len(outcome.missing)} run(s) did not finish "
                         f"(the table and report hold the rest); rerun with --resume")


def _report_dispatch(previous: Any) -> Any:
    """``rsray report DIR``: the study report for a study folder, else the old behaviour."""

    def cmd(args: argparse.Namespace) -> None:
        folder = Path(str(args.experiment))
        if (folder / "study.json").is_file():
            from rsray.report.study_report import write_report

            md, html = write_report(folder)
            print(f"report: {md}\n        {html}")
            return
        previous(args)

    return cmd


def add_commands(subparsers: Any) -> None:
    """Register ``rsray study``; give ``rsray report`` its study mode (call after report)."""
    p = subparsers.add_parser("study", help="arms x factors x seeds: search, retrain, "
                              "evaluate, compare, report")
    add_study_args(p)
    p.set_defaults(fn=cmd_study)
    report = subparsers.choices.get("report")
    if report is not None:
        report.set_defaults(fn=_report_dispatch(report.get_default("fn")))
        report.description = ("print an experiment's leaderboard, or write a study "
                              "folder's report.md + report.html")


__all__ = ["add_commands", "add_study_args", "cmd_study"]
