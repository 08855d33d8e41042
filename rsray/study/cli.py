"""``rsray study SPEC`` (with ``--check``) and the study mode of ``rsray report STUDY_DIR``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsray.cliargs import add_command, add_run_args

STUDY_EXAMPLES = [
    "rsray study sen12ms_resnet --check                 # plan + cost, nothing runs",
    "rsray study sen12ms_resnet --smoke-test            # tiny models on the synthetic twin",
    "rsray study sen12ms_resnet --data s3://b/s12/shards --out s3://b/studies/s12 "
    "--set scaling.use_gpu=yes",
    "rsray study sen12ms_resnet --data s3://b/s12/shards --out s3://b/studies/s12 --resume",
    "rsray study my_study.yaml --max-epochs 5 --name my_study_short",
]

USE_GPU_HELP = (
    "GPUs: scaling.use_gpu is auto by default: each training worker takes one GPU when the "
    "cluster has GPUs when the study starts, else it trains on CPU. On an autoscaling "
    "cluster whose GPU nodes start at zero, pass --set scaling.use_gpu=yes so the trials ask "
    "for GPUs and the autoscaler adds GPU nodes (no: CPU only).")


def add_study_args(p: argparse.ArgumentParser) -> None:
    """Flags of ``rsray study`` and ``jobs/study.py``."""
    p.add_argument("spec", help="study spec: a YAML file, or a preset's name "
                                "(`rsray presets study`); `init` writes a spec for the shard "
                                "set given with --data")
    p.add_argument("--variant", metavar="NAME",
                   help="the spec's protocol: paper (the paper's recipe) or tuned (one search "
                        "shared by every arm); default the spec's default_variant")
    p.add_argument("--check", action="store_true",
                   help="check the spec against its data (or its synthetic twin) and print "
                        "the plan and an estimated cost; start nothing")
    add_run_args(p, out="study folder: a local path or a URI such as s3://bucket/studies/x "
                 "(default rsray_results/studies/<name>); on a cluster whose nodes share no "
                 "disk use an object-store URI: every record (searches, seeds, predictions, "
                 "checkpoints, tables, report) lands there and --resume needs only that URI",
                 name="study name (default: the spec's name; the default folder follows it)",
                 resume="continue a killed study in the same folder; finished cells and "
                        "seeds are not re-run",
                 max_epochs="epochs of every stage-2 run (train.max_epochs of the base); "
                            "search trials are capped to it",
                 set_target="every arm's config (the spec's base; an arm's own params win)")
    p.add_argument("--smoke-test", action="store_true",
                   help="the spec's smoke variant: tiny models, 1 trial, 2 seeds, its "
                        "synthetic twin unless --data is given")
    p.add_argument("--proof", action="store_true",
                   help="the spec's proof variant: the scale at which the study was run on "
                        "its synthetic twin (a known answer)")
    p.add_argument("--no-report", action="store_true", help="skip report.md / report.html")


@dataclass
class StudyRequest:
    """What a study command asks for (``rsray study``, ``rsray demo``, ``jobs/study.py``)."""

    spec: str
    smoke: bool = False
    proof: bool = False
    out: str | None = None
    resume: bool = False
    data: str | None = None
    overrides: list[str] = field(default_factory=list)
    max_epochs: int | None = None
    name: str | None = None
    check_only: bool = False
    report: bool = True
    variant: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StudyRequest:
        """From the parsed flags of :func:`add_study_args`."""
        return cls(spec=args.spec, smoke=args.smoke_test, proof=args.proof, out=args.out,
                   resume=args.resume, data=args.data, overrides=list(args.overrides),
                   max_epochs=args.max_epochs, name=args.name, check_only=args.check,
                   report=not args.no_report, variant=args.variant)


def load_request_spec(request: StudyRequest) -> Any:
    """The spec with the command line applied: ``--set``, ``--max-epochs``, ``--name``.

    ``--set`` goes into the spec's base; the result is validated again as a whole (one line
    naming the field if anything is off).
    """
    from rsray.config import parse_overrides
    from rsray.errors import ConfigError
    from rsray.study.spec import load_spec, spec_from_dict

    spec = load_spec(request.spec, smoke=request.smoke, proof=request.proof,
                     variant=request.variant)
    if not (request.overrides or request.max_epochs is not None or request.name):
        return spec
    raw = spec.to_dict()
    source = raw.pop("source")
    variant = raw.pop("variant")
    base = dict(raw.get("base") or {})
    if request.max_epochs is not None:
        if request.max_epochs < 1:
            raise ConfigError(f"--max-epochs {request.max_epochs}: must be >= 1")
        base["train.max_epochs"] = request.max_epochs
        search = raw["search"]
        search["max_epochs"] = min(search["max_epochs"], request.max_epochs)
        search["grace_period"] = min(search["grace_period"], search["max_epochs"])
    base.update(parse_overrides(request.overrides))
    raw["base"] = base
    if request.name:
        raw["name"] = request.name
    return spec_from_dict(raw, source, root=Path(source).parent, variant=variant)


def run_study_request(request: StudyRequest) -> Any:
    """Load, check (before Ray), then run: print the table, write the report.

    Returns the :class:`~rsray.study.check.CheckReport` with ``check_only``, else the
    :class:`~rsray.study.runner.StudyOutcome`.
    """
    from rsray.study.check import check_study
    from rsray.study.runner import default_study_dir
    from rsray.study.spec import check_runnable

    spec = load_request_spec(request)
    check_runnable(spec)
    folder = request.out or str(default_study_dir(spec))
    report = check_study(spec, data=request.data, study_dir=folder)
    for line in report.lines():
        print(line, flush=True)
    if request.check_only:
        return report
    from rsray.study.runner import run_study

    outcome = run_study(spec, study_dir=request.out, resume=request.resume, data=request.data,
                        smoke=request.smoke)
    print(f"[study] results: {outcome.results_path} ({outcome.n_rows} rows) in "
          f"{outcome.seconds:.0f} s", flush=True)
    if request.report:
        md, html = write_study_report(outcome.study_dir)
        print(f"[study] report: {html}\n                {md}", flush=True)
    if outcome.missing:  # a job runner (ray job submit, CI) must see an incomplete study
        from rsray.errors import RsrayError

        raise RsrayError(f"study incomplete: {len(outcome.missing)} run(s) did not finish "
                         f"(the table and report hold the rest); rerun with --resume")
    return outcome


def cmd_study(args: argparse.Namespace) -> None:
    """``rsray study``: check, run, print the comparison table, write the report."""
    if args.spec == "init" and not Path("init").is_file():
        from rsray.study.init import cmd_init

        cmd_init(args)
        return
    run_study_request(StudyRequest.from_args(args))


def write_study_report(study_dir: str) -> tuple[str, str]:
    """Write a study folder's ``report.md`` / ``report.html`` (+ figures); their URIs.

    A local folder gets them in place. A study in an object store is rendered in a local
    temporary folder (its records and test predictions copied there) and the report with its
    figures and tables is uploaded next to the records.
    """
    from rsray.report.study_report import REPORT_HTML, REPORT_MD, write_report
    from rsray.study.store import StudyStore

    store = StudyStore(study_dir)
    if not store.is_remote:
        return write_report(store.path)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rsray_report_") as tmp:
        local = store.mirror(tmp)
        inputs = {p for p in local.rglob("*") if p.is_file()}
        write_report(local)
        # what the report wrote (figures, tables, ...), the pages last
        made = sorted(p for p in local.rglob("*") if p.is_file() and p not in inputs
                      and p.name not in (REPORT_MD, REPORT_HTML))
        for path in made:
            store.upload(path, path.relative_to(local).as_posix())
        return store.upload(local / REPORT_MD, REPORT_MD), \
            store.upload(local / REPORT_HTML, REPORT_HTML)


def _report_dispatch(previous: Any) -> Any:
    """``rsray report DIR``: the study report for a study folder, else the old behaviour."""

    def cmd(args: argparse.Namespace) -> None:
        from rsray.study.store import STUDY_JSON, StudyStore

        folder = str(args.experiment)
        if StudyStore(folder).exists(STUDY_JSON):
            md, html = write_study_report(folder)
            print(f"report: {md}\n        {html}")
            return
        previous(args)

    return cmd


def add_commands(subparsers: Any) -> None:
    """Register ``rsray study``; give ``rsray report`` its study mode (call after report)."""
    p = add_command(subparsers, "study", help="arms x factors x seeds: search, retrain, "
                    "evaluate, compare, report", examples=STUDY_EXAMPLES,
                    description="Run a study: per cell (arm x training fraction x hold-out) "
                    "an Optuna + ASHA search on the validation split, then the best "
                    "configuration retrained with several seeds and evaluated on the test "
                    "split; a comparison table with confidence intervals and an HTML report. "
                    "The spec is checked against its data before Ray starts (--check stops "
                    "there).\n\n" + USE_GPU_HELP)
    add_study_args(p)
    p.set_defaults(fn=cmd_study)
    report = subparsers.choices.get("report")
    if report is not None:
        report.set_defaults(fn=_report_dispatch(report.get_default("fn")))
        report.description = ("print an experiment's leaderboard, or write a study "
                              "folder's report.md + report.html")


__all__ = ["StudyRequest", "add_commands", "add_study_args", "cmd_study", "load_request_spec",
           "run_study_request", "write_study_report"]
