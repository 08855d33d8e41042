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
        "model.params.refine_steps": tune.choice([1, 2]),  # >= 1: progressive backprojects
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
    space["model.params.refine_steps"] = tune.choice([1])
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


def cnn_smoke_space() -> dict[str, Any]:
    """The tiny ``test_*`` CNNs (the demo, smoke tests): LR, weight decay, dropout only."""
    return {
        "optim.lr": tune.loguniform(1e-3, 1e-2),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-3),
        "model.params.drop_rate": tune.uniform(0.0, 0.3),
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


def shared_space() -> dict[str, Any]:
    """The keys every fusion family takes (``rsray study init``: one space for every arm).

    Learning rate and weight decay only, so that single-modality, early, middle, late, gated,
    attention and ViT arms are searched over the same space and differ only in the fusion.
    """
    return {
        "optim.lr": tune.loguniform(1e-4, 1e-2),
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


# ------------------------------------------------------------------- fair (shared) spaces
# A study's ``tuned`` variant gives every arm the same search: the same domains under the key
# each family names its regulariser by (``drop_rate`` for the timm-head CNNs and the ViTs,
# ``dropout`` for the learned-fusion and progressive families), the same budget and a fixed
# capacity (backbone / width), so that arms differ only in how they fuse.

FAIR_DROPOUT_KEYS: dict[str, str] = {
    "cnn_fair": "model.params.drop_rate",
    "learned_fusion_fair": "model.params.dropout",
    "globe_fair": "model.params.drop_rate",
    "progressive_globe_fair": "model.params.dropout",
}
"""Fair spaces that differ only in the name of the dropout key."""


def _cnn_fair(dropout_key: str) -> dict[str, Any]:
    return {
        "optim.lr": tune.loguniform(1e-5, 1e-2),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
        dropout_key: tune.uniform(0.0, 0.5),
    }


def cnn_fair_space() -> dict[str, Any]:
    """Shared CNN search (single, early, late, middle fusion): LR, weight decay, dropout.

    The backbone (depth) is not searched: every arm keeps the study's fixed backbone, so the
    arms have the same capacity. The LR range holds the seeds' 4e-3 (SEN12MS) and 1e-5 (GLOBE).
    """
    return _cnn_fair(FAIR_DROPOUT_KEYS["cnn_fair"])


def learned_fusion_fair_space() -> dict[str, Any]:
    """:func:`cnn_fair_space` for gated / attention fusion (their dropout is ``dropout``)."""
    return _cnn_fair(FAIR_DROPOUT_KEYS["learned_fusion_fair"])


def _globe_fair(dropout_key: str) -> dict[str, Any]:
    return {
        "optim.lr": tune.loguniform(1e-5, 1e-3),
        "optim.name": tune.choice(["adam", "rmsprop"]),
        "optim.scheduler": tune.choice(["step", "cyclic"]),
        dropout_key: tune.uniform(0.0, 0.7),
    }


def globe_fair_space() -> dict[str, Any]:
    """Shared GLOBE search for the early / late baselines: the GLOBE study's own tuning axes.

    LR 1e-5 … 1e-3 (holds its 1e-5 and 1e-4), Adam or RMSprop (the baselines' and the
    progressive model's), the step or cyclic schedule (section 4.2), dropout 0 … 0.7.
    """
    return _globe_fair(FAIR_DROPOUT_KEYS["globe_fair"])


def progressive_globe_fair_space() -> dict[str, Any]:
    """:func:`globe_fair_space` for progressive fusion (its dropout is ``dropout``)."""
    return _globe_fair(FAIR_DROPOUT_KEYS["progressive_globe_fair"])


VIT_FAIR_PATCH_SIZES: tuple[int, ...] = (10, 15, 20)
"""The thesis' patch-size ablation (Table 7.7); each divides 120."""


def vit_fair_space() -> dict[str, Any]:
    """Shared ViT search: LR, patch size, depth, width, dropout, stochastic depth.

    The thesis' ablation ranges: patch 10/15/20 (Table 7.7), depth 4/8/12 (Table 7.8; above
    middle fusion's fusion depth 2), width 128/256/384 (Table A.6, 8 heads each).
    """
    return {
        "optim.lr": tune.loguniform(1e-4, 3e-3),
        "model.params.patch_size": tune.choice(list(VIT_FAIR_PATCH_SIZES)),
        "model.params.depth": tune.choice([4, 8, 12]),
        "model.params.embed_dim": tune.choice([128, 256, 384]),
        "model.params.drop_rate": tune.uniform(0.0, 0.3),
        "model.params.drop_path_rate": tune.uniform(0.0, 0.5),
    }


def vit_fair_smoke_space() -> dict[str, Any]:
    """:func:`vit_fair_space` on the tiny test ViTs: same keys, small sizes."""
    space = vit_fair_space()
    space["model.params.patch_size"] = tune.choice([20, 30, 40])
    space["model.params.depth"] = tune.choice([2, 3])  # test_vit_middle_fusion: fusion_depth 1
    space["model.params.embed_dim"] = tune.choice([16, 32])
    return space


def segmentation_fair_space() -> dict[str, Any]:
    """Shared FLAIR-2 search (UNetFormer, U-TAE, U-Net + U-TAE, LF-DLM): LR, weight decay.

    The fusion weight of LF-DLM is not searched here (only LF-DLM has it; it stays the
    paper's 0.7), so every arm gets the same two dimensions.
    """
    return {
        "optim.lr": tune.loguniform(1e-5, 1e-3),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-2),
    }


SPACES: dict[str, Callable[[], dict[str, Any]]] = {
    "progressive": progressive_space,
    "progressive_globe": progressive_globe_space,
    "progressive_smoke": progressive_smoke_space,
    "cnn": cnn_space,
    "cnn_smoke": cnn_smoke_space,
    "middle": middle_space,
    "vit": vit_space,
    "vit_smoke": vit_smoke_space,
    "learned_fusion": learned_fusion_space,
    "shared": shared_space,
    "segmentation": segmentation_space,
    "segmentation_smoke": segmentation_smoke_space,
    "cnn_fair": cnn_fair_space,
    "learned_fusion_fair": learned_fusion_fair_space,
    "globe_fair": globe_fair_space,
    "progressive_globe_fair": progressive_globe_fair_space,
    "vit_fair": vit_fair_space,
    "vit_fair_smoke": vit_fair_smoke_space,
    "segmentation_fair": segmentation_fair_space,
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
