"""Fusion strategy as a hyper-parameter: a conditional (define-by-run) Optuna search space.

``model.name`` is drawn from a list of *families* (registered model names), and only then
that family's own parameters are drawn, from its space in :mod:`rsray.tune.spaces` (ViT patch
size and width for the ViT fusions, SE reduction ratio for progressive fusion, fusion stage
for middle fusion, ...). A trial therefore never receives a parameter its model does not
take: invalid combinations cannot be proposed, rather than being caught when a trial starts.

Families are given as ``model_name`` or ``model_name:space``. Without ``:space`` the space is
chosen by the model's family module (``vit_fusion`` -> ``vit``, ``middle_fusion`` ->
``middle``, ...), and for the tiny ``test_*`` models by its ``*_smoke`` variant when there is
one. Each space's parameters are registered with Optuna under ``<space>::<config key>``
(a ViT's ``depth`` choices differ from progressive fusion's, and Optuna requires one
distribution per name); :class:`ConditionalOptunaSearch` strips that prefix, so a trial's
config holds plain config keys (``model.name``, ``model.params.patch_size``, ``optim.lr``).

Used by ``rsray tune`` with ``tune.space=conditional tune.families=[a, b:space, ...]``::

    searcher = ConditionalOptunaSearch(space=ConditionalSpace(families), metric=m, mode="max")
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized

from rsray.config import Config
from rsray.errors import ConfigError
from rsray.tune.spaces import get_space, list_spaces

CONDITIONAL = "conditional"
"""The ``tune.space`` value that selects this space."""
SEP = "::"
"""Between a space's name and a config key in Optuna's parameter names."""

MODULE_SPACES: dict[str, str] = {
    "progressive": "progressive",
    "cnn_fusion": "cnn",
    "middle_fusion": "middle",
    "vit_fusion": "vit",
    "gated_fusion": "learned_fusion",
    "lf_dlm": "segmentation",
}
"""Model family module -> the space of :mod:`rsray.tune.spaces` that fits its models."""


@dataclass(frozen=True)
class Family:
    """One choice of ``model.name`` with the search space of its own parameters."""

    model: str
    space: str


def default_space(model: str) -> str:
    """The space for ``model``: by its family module, ``*_smoke`` for ``test_*`` models."""
    from rsray.models.registry import model_module

    module = model_module(model)
    if module not in MODULE_SPACES:
        raise ConfigError(f"tune.families: no default search space for {model!r} (family "
                          f"{module!r}); name one as {model}:SPACE, spaces: "
                          f"{', '.join(list_spaces())}")
    space = MODULE_SPACES[module]
    if model.startswith("test_") and f"{space}_smoke" in list_spaces():
        space = f"{space}_smoke"
    return space


def parse_families(entries: Sequence[str]) -> list[Family]:
    """``["vit_early_fusion", "middle_fusion_resnet18:middle"]`` -> checked :class:`Family` s."""
    from rsray.models.registry import is_model

    if len(entries) < 1:
        raise ConfigError("tune.families: name at least one model for tune.space=conditional, "
                          "e.g. tune.families=[vit_early_fusion_small,middle_fusion_resnet18]")
    out: list[Family] = []
    for entry in entries:
        model, _, space = str(entry).strip().partition(":")
        if not is_model(model):
            raise ConfigError(f"tune.families: {model!r} is not a registered model "
                              "(`rsray models` lists them)")
        space = space.strip() or default_space(model)
        if space not in list_spaces():
            raise ConfigError(f"tune.families: {entry!r}: unknown space {space!r}; spaces: "
                              f"{', '.join(list_spaces())}")
        if any(f.model == model for f in out):
            raise ConfigError(f"tune.families: {model!r} is listed twice")
        out.append(Family(model, space))
    return out


def _suggest(trial: optuna.Trial, name: str, domain: Domain) -> Any:
    """One Tune domain as the matching Optuna ``suggest_*`` call."""
    sampler = domain.get_sampler()
    step = None
    if isinstance(sampler, Quantized):
        step, sampler = sampler.q, sampler.sampler
    if isinstance(domain, Categorical):
        return trial.suggest_categorical(name, list(domain.categories))
    log = isinstance(sampler, LogUniform)
    if isinstance(domain, Float):
        return trial.suggest_float(name, domain.lower, domain.upper, log=log,
                                   step=None if log else step)
    if isinstance(domain, Integer):  # Tune's upper bound is exclusive, Optuna's inclusive
        return trial.suggest_int(name, domain.lower, domain.upper - 1, log=log,
                                 step=int(step or 1))
    raise ConfigError(f"{name}: search domain {type(domain).__name__} has no Optuna equivalent")


class ConditionalSpace:
    """The define-by-run function: draw ``model.name``, then only that family's parameters.

    A picklable callable (Tune checkpoints the searcher with it).
    """

    def __init__(self, families: Sequence[Family]) -> None:
        if not families:
            raise ConfigError("tune.families: empty")
        self.families = list(families)
        self.spaces = {f.space: get_space(f.space) for f in self.families}
        bad = [k for s in self.spaces.values() for k in s if k == "model.name"]
        if bad:
            raise ConfigError("a family's space may not search model.name itself")

    def keys(self, model: str) -> set[str]:
        """The config keys a trial of ``model`` gets (besides ``model.name``)."""
        family = next(f for f in self.families if f.model == model)
        return set(self.spaces[family.space])

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        """Suggest a family and its parameters; return the space's constant values."""
        model = trial.suggest_categorical("model.name", [f.model for f in self.families])
        family = next(f for f in self.families if f.model == model)
        constants: dict[str, Any] = {}
        for key, value in self.spaces[family.space].items():
            if isinstance(value, Domain):
                _suggest(trial, f"{family.space}{SEP}{key}", value)
            else:
                constants[key] = value
        return constants or None


def to_config_keys(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's ``<space>::<key>`` names -> plain config keys (one family per trial)."""
    return {k.split(SEP, 1)[1] if SEP in k else k: v for k, v in params.items()}


class ConditionalOptunaSearch(OptunaSearch):
    """``OptunaSearch`` over a :class:`ConditionalSpace`, handing Tune plain config keys."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Optuna's proposal with each parameter under its config key."""
        config = super().suggest(trial_id)
        return to_config_keys(config) if isinstance(config, dict) else config


def conditional_searcher(cfg: Config, metric: str, mode: str) -> ConditionalOptunaSearch:
    """The searcher for ``tune.space=conditional``: TPE over ``tune.families``.

    TPE runs with ``multivariate=True, group=True``, Optuna's mode for conditional spaces
    (each family's parameters are modelled together, only over trials of that family).
    """
    families = parse_families(cfg.tune.families)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=cfg.tune.seed, multivariate=True, group=True)
    return ConditionalOptunaSearch(space=ConditionalSpace(families), metric=metric, mode=mode,
                                   sampler=sampler)


def make_searcher(cfg: Config, metric: str, mode: str) -> tuple[OptunaSearch, dict[str, Any]]:
    """``(searcher, Tuner param_space)`` for ``cfg.tune.space``.

    A named space of :mod:`rsray.tune.spaces` goes to the Tuner's ``param_space`` (TPE seeded
    with ``tune.seed``); ``conditional`` is a define-by-run space inside the searcher, and the
    ``param_space`` is then empty.
    """
    if cfg.tune.space == CONDITIONAL:
        return conditional_searcher(cfg, metric, mode), {}
    searcher = OptunaSearch(metric=metric, mode=mode,
                            sampler=optuna.samplers.TPESampler(seed=cfg.tune.seed))
    return searcher, get_space(cfg.tune.space)


__all__ = ["CONDITIONAL", "ConditionalOptunaSearch", "ConditionalSpace", "Family",
           "conditional_searcher", "default_space", "make_searcher", "parse_families",
           "to_config_keys"]
