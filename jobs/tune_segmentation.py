"""Tune FLAIR #2 segmentation (LF-DLM: UNetFormer + U-TAE) with Ray Tune (Optuna TPE + ASHA).

Submit to a cluster:
    ray job submit --working-dir . -- python jobs/tune_segmentation.py \
        --data s3://BUCKET/flair2/shards --out s3://BUCKET/rsray-results
Smoke test (tiny LF-DLM, 3 trials, 2 epochs, 48 synthetic FLAIR #2 patches of 64 px when
--data is absent):
    python jobs/tune_segmentation.py --smoke-test
Resume an interrupted experiment: the same command with --resume.
"""

from __future__ import annotations

import sys

from rsray.cli import tune_job_main

DEFAULT_CONFIG = "flair2_lfdlm"  # a preset installed with rsray (configs/flair2_lfdlm.yaml)
SMOKE = {
    "model.name": "test_lf_dlm", "tune.space": "segmentation_smoke", "tune.num_samples": 3,
    "train.max_epochs": 2, "tune.grace_period": 1, "data.batch_size": 8, "data.image_size": 64,
    # synthetic tiles are 64 px but cover 102.4 m (10 S2 px) like the real 512 px ones
    "model.params.crop_size": 10, "tune.name": "tune-segmentation-smoke",
    "scaling.num_workers": 1, "scaling.cpus_per_worker": 1, "train.log_every_n_steps": 1000,
}


def main(argv: list[str] | None = None) -> int:
    """Run the job (see the module docstring)."""
    return tune_job_main(__doc__, argv, prog="tune_segmentation", default_config=DEFAULT_CONFIG,
                         smoke=SMOKE, smoke_dataset="flair2", smoke_samples=48)


if __name__ == "__main__":
    sys.exit(main())
