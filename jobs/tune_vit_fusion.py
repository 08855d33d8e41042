"""Tune ViT fusion on BigEarthNet-MM shards with Ray Tune (Optuna TPE + ASHA).

Submit to a cluster (configs/bigearthnet_vit.yaml is the default config):
    ray job submit --working-dir . -- python jobs/tune_vit_fusion.py \
        --data s3://BUCKET/bigearthnet-mm/shards --storage-path s3://BUCKET/rsray-results
Another fusion method: --set model.name=vit_early_fusion (see `rsray models 'vit_*'`).
Smoke test (tiny SCT model, 3 trials, 2 epochs, tiny synthetic data when --data is absent):
    python jobs/tune_vit_fusion.py --smoke-test
Resume an interrupted experiment: the same command with --resume.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsray.cli import SMOKE_OVERRIDES, add_tune_args, tune_config_from_args
from rsray.errors import RsrayError
from rsray.tune.run import tune_fusion

PRESET = Path(__file__).resolve().parents[1] / "configs" / "bigearthnet_vit.yaml"
SMOKE = {**SMOKE_OVERRIDES, "model.name": "test_vit_sct_fusion", "tune.space": "vit_smoke",
         "tune.name": "tune-vit-fusion-smoke", "scaling.cpus_per_worker": 1.0,
         "tune.grace_period": 1, "data.modality_dropout": 0.1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tune_args(parser)
    args = parser.parse_args(argv)
    try:
        cfg = tune_config_from_args(args, str(PRESET), smoke=SMOKE)
        tune_fusion(cfg, resume=args.resume)
    except RsrayError as exc:
        print(f"tune_vit_fusion: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
