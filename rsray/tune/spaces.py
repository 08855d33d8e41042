"""Search spaces per fusion family, as flat ``section.field`` -> Tune domain dicts.

Keys are dotted config paths; a trial's sampled values are applied with
:meth:`rsray.config.Config.with_overrides`, so anything in the config tree can be searched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray import tune


def progressive_space() -> dict[str, Any]:
    """Progressive fusion (progressive-fusion-globe-lulc.txt): LR, depth, dropout, SE ratio."""
    return {
        "optim.lr": tune.loguniform(1e-4, 3e-3),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
        "model.params.depth": tune.choice([2, 3, 4]),
        "model.params.dropout": tune.uniform(0.0, 0.7),
        "model.params.reduction": tune.choice([4, 8, 16, 32]),
        "model.params.refine_steps": tune.choice([0, 1, 2]),
    }


def progressive_smoke_space() -> dict[str, Any]:
    """The progressive space on a tiny model (``--smoke-test``): same keys, small ranges."""
    space = progressive_space()
    space["model.params.depth"] = tune.choice([2, 3])
    space["model.params.refine_steps"] = tune.choice([0, 1])
    return space


def cnn_space() -> dict[str, Any]:
    """Early/late fusion CNNs: optimiser only (their depth is the backbone's)."""
    return {
        "optim.lr": tune.loguniform(1e-4, 3e-3),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
    }


def segmentation_space() -> dict[str, Any]:
    """LF-DLM (lf-dlm-flair2-late-fusion.txt): LR, weight decay, the fusion weights.

    ``aerial_weight`` is the aerial branch's weight in the geometric mean of probabilities;
    the series branch gets ``1 - aerial_weight`` (the paper's best: 0.7 / 0.3). The paper
    trains with AdamW at 1e-4.
    """
    return {
        "optim.lr": tune.loguniform(1e-5, 1e-3),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
        "model.params.aerial_weight": tune.uniform(0.5, 0.9),
    }


def segmentation_smoke_space() -> dict[str, Any]:
    """The segmentation space on a tiny model (``--smoke-test``): same keys, larger LRs."""
    space = segmentation_space()
    space["optim.lr"] = tune.loguniform(1e-4, 3e-3)
    return space


SPACES: dict[str, Callable[[], dict[str, Any]]] = {
    "progressive": progressive_space,
    "progressive_smoke": progressive_smoke_space,
    "cnn": cnn_space,
    "segmentation": segmentation_space,
    "segmentation_smoke": segmentation_smoke_space,
}


def list_spaces() -> list[str]:
    """Names accepted by ``tune.space``."""
    return sorted(SPACES)


def get_space(name: str) -> dict[str, Any]:
    """The search space called ``name``."""
    return SPACES[name]()
