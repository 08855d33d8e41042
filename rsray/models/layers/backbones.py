"""timm classification backbones, the tiny test ResNet, and the head-argument checks.

Every CNN family builds its backbones through :func:`create_timm_backbone` (timm's
``create_model`` with rsray's one-line errors) and checks its common arguments with
:func:`check_head_args`; the ``test_*`` variants all use :data:`TINY_RESNET`.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping
from typing import Any

import timm
from torch import nn

from rsray.errors import ConfigError
from rsray.models.layers.fusion import check_int

__all__ = ["TINY_RESNET", "branch_file", "check_head_args", "check_timm_name",
           "create_timm_backbone", "one_file"]

TINY_RESNET: dict[str, Any] = {
    "layers": (1, 1, 1, 1),
    "channels": (8, 8, 16, 16),
    "stem_width": 4,
    "stem_type": "deep",
}
"""``backbone_kwargs`` for timm's ``resnet18``: one BasicBlock per stage, 8-16 channels and a
3x(3x3) stem, ~12k parameters for 12 input channels. Used by the ``test_*`` variants."""


def check_timm_name(name: str) -> str:
    """Return ``name`` if timm knows it.

    Raises:
        ConfigError: naming the closest timm models.
    """
    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=5, cutoff=0.7)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"backbone: {name!r} is not a timm model{hint}")
    return name


def check_head_args(num_classes: Any, drop_rate: Any, drop_name: str = "drop_rate") -> None:
    """Check ``num_classes >= 1`` and a dropout rate in [0, 1).

    Args:
        num_classes: number of outputs.
        drop_rate: the dropout rate.
        drop_name: the argument's name in error messages (``drop_rate`` or ``dropout``).

    Raises:
        ConfigError: naming the bad argument.
    """
    check_int("num_classes", num_classes, 1)
    bad = isinstance(drop_rate, bool) or not isinstance(drop_rate, numbers.Real)
    if bad or not 0.0 <= drop_rate < 1.0:
        raise ConfigError(f"{drop_name}: must be in [0, 1), got {drop_rate!r}")


def create_timm_backbone(
    name: str,
    *,
    in_chans: int,
    num_classes: int,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    drop_rate: float = 0.0,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """``timm.create_model`` with rsray's error messages.

    Args:
        name: a timm model name (``resnet18``, ``resnet50``, ``mobilenetv2_100``, ...).
        in_chans: input channels (timm adapts a pretrained stem to them).
        num_classes: classifier outputs; 0 returns pooled features (``model.num_features``).
        pretrained: load timm's pretrained weights (timm's cache or the Hugging Face hub).
        pretrained_file: a local checkpoint of the same timm model (implies ``pretrained``;
            timm's ``pretrained_cfg_overlay={"file": ...}``).
        drop_rate: dropout before timm's classifier.
        backbone_kwargs: further keyword arguments for the timm model (e.g. ``layers``).

    Raises:
        ConfigError: unknown timm name, arguments timm rejects, or weights that cannot load.
    """
    check_timm_name(name)
    kwargs = dict(backbone_kwargs or {})
    if pretrained_file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
        pretrained = True
    try:
        return timm.create_model(
            name,
            pretrained=pretrained,
            in_chans=in_chans,
            num_classes=num_classes,
            drop_rate=drop_rate,
            **kwargs,
        )
    except TypeError as e:
        raise ConfigError(f"backbone_kwargs: timm model {name!r} rejected them: {e}") from e
    except (OSError, RuntimeError) as e:
        if not pretrained:
            raise
        where = f"file {pretrained_file!r}" if pretrained_file else "timm's cache or the hub"
        raise ConfigError(
            f"pretrained: could not load timm weights for {name!r} from {where} ({e}); use "
            "pretrained=False, or pretrained_file=<a local checkpoint of the timm model>"
        ) from e


def branch_file(pretrained_file: str | Mapping[str, str] | None, modality: str) -> str | None:
    """The checkpoint of ``modality``'s branch: the one file, or its entry of a mapping.

    Raises:
        ConfigError: a mapping without an entry for ``modality``.
    """
    if pretrained_file is None or isinstance(pretrained_file, str):
        return pretrained_file
    if not isinstance(pretrained_file, Mapping) or modality not in pretrained_file:
        raise ConfigError(f"pretrained_file: no checkpoint given for modality {modality!r} "
                          f"in {pretrained_file!r}")
    return str(pretrained_file[modality])


def one_file(pretrained_file: str | Mapping[str, str] | None) -> str | None:
    """The checkpoint of a single-backbone model (a mapping is an error there).

    Raises:
        ConfigError: ``pretrained_file`` is a mapping.
    """
    if pretrained_file is not None and not isinstance(pretrained_file, str):
        raise ConfigError(f"pretrained_file: one backbone takes one checkpoint path, got "
                          f"{pretrained_file!r}")
    return pretrained_file
