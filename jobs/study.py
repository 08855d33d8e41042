"""Run a study spec (studies/*.yaml) on a Ray cluster: search, seeded retraining, report.

Submit to a cluster (stage-2 retrainings run as concurrent Tune trials sized to it; every
record lands in the s3:// study folder, whichever node wrote it):
    ray job submit --working-dir . -- python jobs/study.py studies/sen12ms_resnet.yaml \
        --data s3://BUCKET/sen12ms/shards --out s3://BUCKET/studies/sen12ms \
        --set scaling.use_gpu=yes
Smoke test (tiny models, 1 search trial and 2 seeds per arm, the spec's synthetic twin):
    python jobs/study.py studies/vit_bigearthnet.yaml --smoke-test
Check the spec against its data and print the plan and its estimated cost, starting nothing:
    python jobs/study.py sen12ms_resnet --data s3://BUCKET/sen12ms/shards --check
Continue a killed study without re-running finished cells: the same command with --resume
(from any machine: the s3:// folder is the study's whole state).
A spec is a file or a preset's name (`rsray presets study`).
"""

from __future__ import annotations

import sys

from rsray.cliargs import HelpFormatter, Parser
from rsray.errors import RsrayError
from rsray.study.cli import add_study_args, cmd_study


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="study", description=__doc__, formatter_class=HelpFormatter)
    add_study_args(parser)
    args = parser.parse_args(argv)
    try:
        cmd_study(args)
    except RsrayError as exc:
        print(f"study: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
