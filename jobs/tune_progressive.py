"""Tune progressive fusion on BigEarthNet-MM shards with Ray Tune (Optuna TPE + ASHA).

Submit to a cluster:
    ray job submit --working-dir . -- python jobs/tune_progressive.py \
        --data s3://BUCKET/bigearthnet-mm/shards --out s3://BUCKET/rsray-results
Smoke test (tiny model, 3 trials, 2 epochs, tiny synthetic data when --data is absent):
    python jobs/tune_progressive.py --smoke-test
Resume an interrupted experiment: the same command with --resume.
"""

from __future__ import annotations

import sys

from rsray.cli import tune_job_main


def main(argv: list[str] | None = None) -> int:
    """Run the job (see the module docstring)."""
    return tune_job_main(__doc__, argv, prog="tune_progressive")


if __name__ == "__main__":
    sys.exit(main())
