"""Multi-run training recipes that follow a seed paper's procedure step by step.

:data:`RECIPES` names each recipe; a study arm runs one with ``recipe: <name>`` (each seed of
the arm is one run of the recipe, whose final model the study evaluates like any other).
"""

from __future__ import annotations

import importlib
from types import ModuleType

RECIPES: dict[str, str] = {
    "lf_dlm": "rsray.recipes.lf_dlm",
}
"""Recipe name -> its module. A recipe module has ``check_recipe_config(cfg)`` (one-line
errors), ``runs(cfg)`` (the config of every training run it makes) and ``run_recipe(cfg, *,
out_dir, test_splits, fit, manifest)`` returning a result with ``fused_checkpoint`` and
``summary()``."""


def get_recipe(name: str, where: str = "recipe") -> ModuleType:
    """The module of recipe ``name``.

    Raises:
        ConfigError: ``name`` is not a recipe (one line naming ``where`` and the choices).
    """
    from rsray.errors import ConfigError

    if name not in RECIPES:
        raise ConfigError(f"{where}: {name!r} is not a recipe; choose one of "
                          + ", ".join(RECIPES))
    return importlib.import_module(RECIPES[name])


__all__ = ["RECIPES", "get_recipe"]
