"""timm feature encoders (``features_only=True``) for any number of input channels.

Segmentation decoders (UNetFormer, U-Net) read the multi-scale feature maps of a timm model::

    encoder = create_timm_encoder("maxvit_tiny_tf_512", in_chans=5, out_indices=(1, 2, 3, 4))
    features = encoder(x)                 # list of (B, C_i, H / r_i, W / r_i)
    encoder.feature_info.channels()       # C_i;  encoder.feature_info.reduction(): r_i

Pretrained weights and extra channels. ImageNet weights have 3 input channels; FLAIR-2's
aerial patches have 5 (R, G, B, NIR, elevation). Two ways to fill the first convolution:

* ``extra_channel_init="random"`` (LF-DLM: "we add two channels to the initial layers ...
  with the weights of these added channels initialised randomly"): channels 0-2 take the
  pretrained RGB filters, channels 3+ keep the model's own random initialisation.
* ``extra_channel_init="repeat"``: timm's own adaptation (``adapt_input_conv``), which
  repeats the RGB filters cyclically over all channels and scales them by ``3 / in_chans``;
  segmentation_models_pytorch (the FLAIR-2 baseline) does the same.

Weights come from the Hugging Face hub, or from a local checkpoint of the full timm model
(``pretrained_file``; timm's ``pretrained_cfg_overlay={"file": ...}``), which is how a machine
without internet uses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import timm
import torch
from torch import nn

from rsray.errors import ConfigError
from rsray.models.layers.backbones import check_timm_name

__all__ = ["create_timm_encoder"]

ExtraChannelInit = Literal["random", "repeat"]


def _create(name: str, in_chans: int, pretrained: bool, kwargs: Mapping[str, Any]) -> nn.Module:
    try:
        return timm.create_model(
            name, pretrained=pretrained, features_only=True, in_chans=in_chans, **kwargs
        )
    except TypeError as e:
        raise ConfigError(f"backbone_kwargs: timm model {name!r} rejected them: {e}") from e
    except (OSError, RuntimeError) as e:
        if not pretrained:
            raise
        raise ConfigError(
            f"pretrained: could not load timm weights for {name!r} ({e}); use "
            "pretrained=False, or pretrained_file=<a local checkpoint of the timm model>, "
            "where the Hugging Face hub cannot be reached"
        ) from e


def _copy_rgb_weights(model: nn.Module, reference: nn.Module, in_chans: int) -> int:
    """Copy ``reference``'s (3-channel) weights into ``model``; extra input channels stay.

    Returns:
        The number of tensors whose input channels were only partly copied (the stem).
    """
    own = model.state_dict()
    ref = reference.state_dict()
    if own.keys() != ref.keys():
        raise ConfigError("pretrained: the 3-channel reference encoder has different layers")
    partial = 0
    for key, value in ref.items():
        target = own[key]
        if target.shape == value.shape:
            target.copy_(value)
        elif (
            target.dim() == 4
            and value.shape[1] == 3
            and target.shape[1] == in_chans
            and target.shape[0] == value.shape[0]
            and target.shape[2:] == value.shape[2:]
        ):
            target[:, :3].copy_(value)
            partial += 1
        else:
            raise ConfigError(
                f"pretrained: cannot map {key} of shape {tuple(value.shape)} onto "
                f"{tuple(target.shape)}"
            )
    model.load_state_dict(own)
    return partial


def create_timm_encoder(
    name: str,
    *,
    in_chans: int,
    out_indices: Sequence[int] | None = None,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    extra_channel_init: ExtraChannelInit = "random",
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A timm ``features_only`` encoder with rsray's error messages.

    Args:
        name: a timm model name (``maxvit_tiny_tf_512``, ``resnet34``, ...).
        in_chans: input channels.
        out_indices: which feature levels to return (timm's numbering); ``None``: all.
        pretrained: load pretrained weights (Hugging Face hub, or ``pretrained_file``).
        pretrained_file: a local checkpoint of the full timm model (implies ``pretrained``).
        extra_channel_init: how input channels beyond RGB get their pretrained-time weights:
            ``"random"`` or ``"repeat"`` (see the module docstring). Ignored without weights.
        backbone_kwargs: further keyword arguments for ``timm.create_model`` (e.g.
            ``img_size``, or MaxViT's ``embed_dim`` / ``depths`` for a smaller model).

    Raises:
        ConfigError: unknown timm name, arguments timm rejects, weights that cannot load, or
            a bad ``extra_channel_init``.
    """
    check_timm_name(name)
    if extra_channel_init not in ("random", "repeat"):
        raise ConfigError(
            f"extra_channel_init: must be 'random' or 'repeat', got {extra_channel_init!r}"
        )
    kwargs: dict[str, Any] = dict(backbone_kwargs or {})
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    if pretrained_file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
        pretrained = True
    if not pretrained or extra_channel_init == "repeat" or in_chans <= 3:
        return _create(name, in_chans, pretrained, kwargs)
    model = _create(name, in_chans, False, kwargs)
    reference = _create(name, 3, True, kwargs)
    with torch.no_grad():
        _copy_rgb_weights(model, reference, in_chans)
    model.pretrained_cfg = getattr(reference, "pretrained_cfg", None)
    return model
