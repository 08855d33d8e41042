"""Search spaces per fusion family, as flat ``section.field`` -> Tune domain dicts.

Keys are dotted config paths; a trial's sampled values are applied with
:meth:`rsray.config.Config.with_overrides`, so anything in the config tree can be searched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray import tune


def progressive_space() -> dict[str, Any]:
    """Progressive fusion (progressive-fusion-globe-lulc.txt): LR, depth, dropout, SE ratio.

    The LR range holds the study's 1e-5 (baselines) and 1e-4 (tuned progressive fusion).
    """
    return {
        "optim.lr": tune.loguniform(1e-5, 3e-3),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
        "model.params.depth": tune.choice([2, 3, 4]),
        "model.params.dropout": tune.uniform(0.0, 0.7),
        "model.params.reduction": tune.choice([4, 8, 16, 32]),
        "model.params.refine_steps": tune.choice([0, 1, 2]),
    }


def progressive_globe_space() -> dict[str, Any]:
    """The GLOBE study's own tuning (section 4.2) around the progressive space.

    Dropout 0.5-0.7, the two schedules it tried (x0.1 every 5 epochs; cyclic, one cycle per
    5 epochs), the L2 on the metadata layers, LR 1e-5 … 1e-3 (holds its 1e-5 and 1e-4).
    """
    space = progressive_space()
    space["optim.lr"] = tune.loguniform(1e-5, 1e-3)
    space["model.params.dropout"] = tune.uniform(0.5, 0.7)
    space["optim.scheduler"] = tune.choice(["step", "cyclic"])
    space["optim.metadata_weight_decay"] = tune.loguniform(1e-5, 1e-2)
    return space


def progressive_smoke_space() -> dict[str, Any]:
    """The progressive space on a tiny model (``--smoke-test``): same keys, small ranges."""
    space = progressive_space()
    space["model.params.depth"] = tune.choice([2, 3])
    space["model.params.refine_steps"] = tune.choice([0, 1])
    return space


def cnn_space() -> dict[str, Any]:
    """CNN families on timm backbones (single, early, late, middle): LR, ResNet depth, dropout.

    The depth is searched through the backbone name (ResNet 18 / 50 / 101, the SEN12MS
    study's range); every one of these families takes ``backbone`` and ``drop_rate``. The LR
    range holds the seeds' own values: 4e-3 (SEN12MS middle fusion, its Figure 3) and 1e-5
    (the GLOBE study's early/late baselines).
    """
    return {
        "optim.lr": tune.loguniform(1e-5, 1e-2),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
        "model.params.backbone": tune.choice(["resnet18", "resnet50", "resnet101"]),
        "model.params.drop_rate": tune.uniform(0.0, 0.5),
    }


def middle_space() -> dict[str, Any]:
    """Middle fusion CNN (deep-fusion-sen12ms-resnet.txt): the CNN space + fusion stage, merge."""
    space = cnn_space()
    space["model.params.fusion_stage"] = tune.choice([0, 1, 2, 3, 4])
    space["model.params.merge"] = tune.choice(["mean", "concat"])
    return space


VIT_PATCH_SIZES: tuple[int, ...] = (10, 12, 15, 20, 24, 30, 40, 60)
"""Patch sizes that divide BigEarthNet's 120 px (the thesis tried 10, 15 and 20)."""


def vit_space() -> dict[str, Any]:
    """ViT fusion (vit-fusion-bigearthnet-mm-thesis.txt): patch size, depth, width, regularisation.

    For 120 x 120 inputs; every embedding width is a multiple of 8 heads. Middle fusion keeps
    its ``fusion_depth`` (2), so its modality encoders get ``depth - 2`` layers: every depth
    here is above 2 (depth <= fusion_depth is a config error). The LR range holds the
    thesis' 1e-3.
    """
    return {
        "optim.lr": tune.loguniform(1e-4, 3e-3),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
        "model.params.patch_size": tune.choice(list(VIT_PATCH_SIZES)),
        "model.params.depth": tune.choice([4, 6, 8, 12]),
        "model.params.embed_dim": tune.choice([128, 192, 256, 384, 512]),
        "model.params.drop_rate": tune.uniform(0.0, 0.3),
        "model.params.drop_path_rate": tune.uniform(0.0, 0.5),
    }


def vit_smoke_space() -> dict[str, Any]:
    """The ViT space on a tiny model (``--smoke-test``): same keys, small values."""
    space = vit_space()
    space["model.params.patch_size"] = tune.choice([20, 30, 40])
    space["model.params.depth"] = tune.choice([2, 3])  # test_vit_middle_fusion: fusion_depth 1
    space["model.params.embed_dim"] = tune.choice([16, 32])
    return space


def learned_fusion_space() -> dict[str, Any]:
    """Gated and attention fusion (geo-covariates-data-efficiency-ood.txt): LR, dropout, width."""
    return {
        "optim.lr": tune.loguniform(1e-4, 3e-3),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
        "model.params.dropout": tune.uniform(0.0, 0.5),
        "model.params.width": tune.choice([64, 128, 256, 512]),
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
    "progressive_globe": progressive_globe_space,
    "progressive_smoke": progressive_smoke_space,
    "cnn": cnn_space,
    "middle": middle_space,
    "vit": vit_space,
    "vit_smoke": vit_smoke_space,
    "learned_fusion": learned_fusion_space,
    "segmentation": segmentation_space,
    "segmentation_smoke": segmentation_smoke_space,
}


def list_spaces() -> list[str]:
    """Names accepted by ``tune.space``."""
    return sorted(SPACES)


def get_space(name: str) -> dict[str, Any]:
    """The search space called ``name``."""
    return SPACES[name]()


def check_space(name: str) -> None:
    """One-line ConfigError unless ``name`` is a ``tune.space`` (a space or ``conditional``)."""
    from rsray.config import check_choice

    check_choice("tune", "space", name, [*list_spaces(), "conditional"])
