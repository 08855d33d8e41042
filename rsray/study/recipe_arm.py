"""Study arms trained with a paper's multi-run recipe (``recipe: lf_dlm``) instead of one run.

Each seed of such an arm is one run of the recipe (:mod:`rsray.recipes`). Its branch runs
train in the stage-2 trial's process the way every seeded run does
(:func:`~rsray.train.trial.run_in_trial`, under the study's ``runs/stage2`` as
``<cell>__seed<k>-aerial0``, ``...-series``); each branch that finished is recorded in the
seed's folder (``recipe/branch_<name>.json``), so a resumed seed trains only the branches it
lacks. The recipe's own files (``recipe.json``, ``weights.png``, the fused checkpoint) go to
``cells/<cell>/seed_<k>/recipe/`` of the study store, and the stage-2 job then evaluates the
fused model and records its rows exactly as it does a one-run arm's best checkpoint.
"""

from __future__ import annotations

from typing import Any

from rsray import storage
from rsray.config import Config
from rsray.data.shards import Manifest
from rsray.errors import ConfigError
from rsray.recipes import get_recipe
from rsray.study.store import StudyStore

RECIPE_DIR = "recipe"
"""Folder of a recipe seed's files inside its seed folder."""


def check_recipe_arm(where: str, recipe: str, space: str | None, cfg: Config) -> None:
    """Refuse, in one line, a recipe arm the runner cannot run.

    ``where`` names the arm (``studies/x.yaml: arms.lf_dlm``); ``cfg`` is its config.

    Raises:
        ConfigError: an unknown recipe, a search space on a recipe arm (stage 1 searches one
            run per trial), or a config the recipe cannot train.
    """
    module = get_recipe(recipe, f"{where}.recipe")
    if space is not None:
        raise ConfigError(f"{where}: a recipe arm has fixed parameters (recipe {recipe!r}); "
                          f"remove its space {space!r} or its recipe")
    try:
        module.check_recipe_config(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{where} (recipe {recipe!r}): {exc}") from None


def recipe_runs(recipe: str, cfg: Config) -> list[Config]:
    """The configs of every training run one seed of a ``recipe`` arm makes (its branches)."""
    return list(get_recipe(recipe).runs(cfg))


def train_recipe(job: dict[str, Any], cfg: Config, manifest: Manifest,
                 seed_dir: str) -> tuple[str, dict[str, Any]]:
    """Run one seed of a recipe arm; the fused checkpoint's URI and what the recipe chose.

    Args:
        job: the stage-2 job (:func:`rsray.study.runner.seed_job`): ``recipe``, ``root``,
            ``run``, ``experiment``, ``storage``.
        cfg: the seed's config (``train.seed``, ``train.name`` = the job's run name).
        manifest: the shard set, read and verified once by the job.
        seed_dir: the seed's folder relative to the study store.
    """
    from rsray.train.driver import best_checkpoint
    from rsray.train.run_plan import RunPlan
    from rsray.train.trial import run_in_trial, warm_training_data

    store = StudyStore(job["root"])
    module = get_recipe(job["recipe"])

    def fit(branch: Config, shards: Manifest) -> str:
        name = branch.train.name
        record = f"{seed_dir}/{RECIPE_DIR}/branch_{name.rsplit('-', 1)[-1]}.json"
        if store.exists(record):  # trained before this seed was interrupted
            return str(store.read_json(record)["checkpoint"])
        run = RunPlan.build(branch, shards, experiment=job["experiment"], trial=name)
        result = run_in_trial(run, shards, data=warm_training_data(run.data, shards),
                              name=name, storage_path=job["storage"], to_tune=False)
        fs, _ = storage.get_fs(job["storage"])
        ckpt = storage.to_uri(fs, best_checkpoint(result, run, name).path)
        store.write_json(record, {"run": name, "checkpoint": ckpt})
        return ckpt

    result = module.run_recipe(cfg, out_dir=store.join(seed_dir, RECIPE_DIR), test_splits=(),
                               fit=fit, manifest=manifest)
    return result.fused_checkpoint, {"recipe": job["recipe"], **result.summary()}


__all__ = ["RECIPE_DIR", "check_recipe_arm", "recipe_runs", "train_recipe"]
