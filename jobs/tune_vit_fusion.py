"""Tune ViT fusion on BigEarthNet-MM shards with Ray Tune (Optuna TPE + ASHA).

Submit to a cluster (configs/bigearthnet_vit.yaml is the default config):
    ray job submit --working-dir . -- python jobs/tune_vit_fusion.py \
        --data s3://BUCKET/bigearthnet-mm/shards --out s3://BUCKET/rsray-results
Another fusion method: --set model.name=vit_early_fusion (see `rsray models 'vit_*'`).
Smoke test (tiny SCT model, 3 trials, 2 epochs, tiny synthetic data when --data is absent):
    python jobs/tune_vit_fusion.py --smoke-test
Resume an interrupted experiment: the same command with --resume.
"""

from __future__ import annotations

import sys

from rsray.cli import SMOKE_OVERRIDES, tune_job_main

PRESET = "bigearthnet_vit"  # a preset installed with rsray (configs/bigearthnet_vit.yaml)
SMOKE = {**SMOKE_OVERRIDES, "model.name": "test_vit_sct_fusion", "tune.space": "vit_smoke",
         "tune.name": "tune-vit-fusion-smoke", "scaling.cpus_per_worker": 1.0,
         "tune.grace_period": 1, "data.modality_dropout": 0.1}


def main(argv: list[str] | None = None) -> int:
    """Run the job (see the module docstring)."""
    return tune_job_main(__doc__, argv, prog="tune_vit_fusion", default_config=PRESET,
                         smoke=SMOKE)


if __name__ == "__main__":
    sys.exit(main())
