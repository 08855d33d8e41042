"""LF-DLM as the paper trains it: each branch alone, then the fusion weight on validation.

Trains the aerial UNetFormer(s) and the Sentinel-2 U-TAE separately to their best
checkpoints, scores the aerial weights 0.0, 0.1, ..., 1.0 of the weighted geometric mean on
the validation split without retraining, saves the fused model with the best weight as an
rsray checkpoint and evaluates it on test (rsray/recipes/lf_dlm.py has the details).

Submit to a cluster:
    ray job submit --working-dir . -- python jobs/lf_dlm_recipe.py \
        --data s3://BUCKET/flair2/shards --out s3://BUCKET/rsray-results
Smoke test (tiny LF-DLM, 2 epochs per branch, 48 synthetic FLAIR #2 patches when --data is
absent):
    python jobs/lf_dlm_recipe.py --smoke-test
The joint alternative (both branches end to end): jobs/tune_segmentation.py.
"""

from __future__ import annotations

import argparse
import sys

from rsray.cli import add_tune_args, start_ray, tune_config_from_args
from rsray.errors import RsrayError
from rsray.storage import join

DEFAULT_CONFIG = "flair2_lfdlm"  # a preset installed with rsray (configs/flair2_lfdlm.yaml)
SMOKE = {
    "model.name": "test_lf_dlm", "train.max_epochs": 2, "data.batch_size": 8,
    "data.image_size": 64, "model.params.crop_size": 10, "tune.name": "lfdlm-recipe-smoke",
    "scaling.num_workers": 1, "scaling.cpus_per_worker": 1, "train.log_every_n_steps": 1000,
    "train.early_stopping_patience": 0,
}


def main(argv: list[str] | None = None) -> int:
    """Run the recipe (see the module docstring)."""
    from rsray.console import setup
    from rsray.recipes.lf_dlm import WEIGHT_GRID, run_recipe

    parser = argparse.ArgumentParser(prog="lf_dlm_recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Ray's own output (worker logs, warnings)")
    add_tune_args(parser)
    parser.add_argument("--recipe-out", default=None,
                        help="folder (local or s3://) for recipe.json, weights.png and the "
                             "fused checkpoint (default <--out>/<name>-recipe)")
    parser.add_argument("--weights", default=",".join(f"{w:.1f}" for w in WEIGHT_GRID),
                        help="aerial weights to score on validation, comma-separated")
    parser.add_argument("--test-splits", default="test",
                        help="splits the fused model is evaluated on (comma-separated)")
    args = parser.parse_args(argv)
    setup(verbose=args.verbose)
    try:
        try:
            weights = [float(w) for w in args.weights.split(",") if w.strip()]
        except ValueError:
            raise RsrayError(f"--weights: not a comma-separated list of numbers: "
                             f"{args.weights!r}") from None
        cfg = tune_config_from_args(args, DEFAULT_CONFIG, smoke=SMOKE, smoke_dataset="flair2",
                                    smoke_samples=48)
        cfg = cfg.with_overrides({"train.name": cfg.tune.name})
        out = args.recipe_out or join(cfg.train.storage_path, f"{cfg.train.name}-recipe")
        start_ray()
        run_recipe(cfg, out_dir=out, weights=weights,
                   test_splits=[s for s in args.test_splits.split(",") if s])
    except RsrayError as exc:
        print(f"lf_dlm_recipe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
