"""Tune progressive fusion on BigEarthNet-MM shards with Ray Tune (Optuna TPE + ASHA).

Submit to a cluster:
    ray job submit --working-dir . -- python jobs/tune_progressive.py \
        --data s3://BUCKET/bigearthnet-mm/shards --storage-path s3://BUCKET/rsray-results
Smoke test (tiny model, 3 trials, 2 epochs, tiny synthetic data when --data is absent):
    python jobs/tune_progressive.py --smoke-test
Resume an interrupted experiment: the same command with --resume.
"""

from __future__ import annotations

import argparse
import sys

from rsray.cli import add_tune_args, tune_config_from_args
from rsray.errors import RsrayError
from rsray.tune.run import tune_fusion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tune_args(parser)
    args = parser.parse_args(argv)
    try:
        cfg = tune_config_from_args(args)
        tune_fusion(cfg, resume=args.resume)
    except RsrayError as exc:
        print(f"tune_progressive: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
