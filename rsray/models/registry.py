"""The model registry: ``register_model``, ``create_model``, ``list_models``.

Modelled on timm's ``timm/models/_registry.py``: a family file defines its model class and
ends with small factory functions, each decorated with :func:`register_model`; the factory's
function name is the model name. Importing :mod:`rsray.models` imports every family file, so
the registry is complete as soon as the package is imported.

Every factory follows one constructor contract (see :data:`CONTRACT`)::

    fn(*, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0,
       **family_kwargs) -> nn.Module

and every model it returns takes ``forward(inputs: dict[str, Tensor]) -> Tensor`` (logits of
shape ``(B, num_classes)``) and exposes ``model.modalities`` (a tuple of modality names).

Family files build their models through :func:`build_model_with_cfg`, which merges a
variant's defaults with the caller's overrides and turns unknown arguments and bad values
into a :class:`~rsray.errors.ConfigError` that names the model and the argument.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from rsray.errors import ConfigError

__all__ = [
    "CONTRACT",
    "build_model_with_cfg",
    "create_model",
    "is_model",
    "list_models",
    "model_entrypoint",
    "model_module",
    "model_task",
    "register_model",
]

CONTRACT = (
    "fn(*, modalities: dict[str, int], num_classes: int, metadata_dim: int = 0, "
    "**family_kwargs) -> nn.Module"
)
"""The constructor contract every registered factory follows."""

_F = TypeVar("_F", bound=Callable[..., nn.Module])
_M = TypeVar("_M", bound=nn.Module)

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_model_to_module: dict[str, str] = {}


def register_model(fn: _F) -> _F:
    """Register a model factory under its function name (decorator).

    The factory is also added to its module's ``__all__`` when the module defines one, as
    timm does. Registering a second, different function under a name already taken warns and
    replaces the first (this happens when a module is reloaded).

    Args:
        fn: the factory, following :data:`CONTRACT`.

    Returns:
        ``fn`` unchanged.
    """
    name = fn.__name__
    module_name = fn.__module__
    module = sys.modules.get(module_name)
    if module is not None and hasattr(module, "__all__") and name not in module.__all__:
        module.__all__.append(name)
    previous = _model_entrypoints.get(name)
    if previous is not None and previous is not fn:
        same = (previous.__module__, previous.__qualname__) == (module_name, fn.__qualname__)
        if not same:
            warnings.warn(
                f"model {name!r} from {module_name} replaces the one from {previous.__module__}",
                stacklevel=2,
            )
    _model_entrypoints[name] = fn
    _model_to_module[name] = module_name.split(".")[-1]
    return fn


def _close_matches(name: str, candidates: list[str], n: int = 5) -> list[str]:
    """Candidates that look like ``name``, best first (prefix matches count too)."""
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    prefix = [c for c in candidates if c.startswith(name) and c not in close]
    return (close + prefix)[:n]


def _unknown_model(name: str) -> ConfigError:
    names = list_models()
    close = _close_matches(name, names)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(
        f"unknown model {name!r}{hint} ({len(names)} registered; `rsray models` lists them)"
    )


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, sorted.

    Args:
        pattern: an ``fnmatch`` pattern such as ``"progressive_*"``; ``None`` lists all.

    Returns:
        The matching names in sorted order.
    """
    names = sorted(_model_entrypoints)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in _model_entrypoints


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """Return the factory function registered under ``name``.

    Raises:
        ConfigError: ``name`` is not registered (the message lists close matches).
    """
    try:
        return _model_entrypoints[name]
    except KeyError:
        raise _unknown_model(name) from None


def model_module(name: str) -> str:
    """Return the family module (e.g. ``"progressive"``) that registered ``name``."""
    model_entrypoint(name)
    return _model_to_module[name]


def model_task(name: str) -> str:
    """Return the task kind of model ``name``: its family module's ``TASK`` constant.

    A family file declares what its models output with a module-level ``TASK`` string
    (``"segmentation"`` for per-pixel logits ``(B, num_classes, H, W)``); families without
    one are ``"classification"`` (logits ``(B, num_classes)``). Tests and the training loop
    use it to pick shapes, losses and metrics.

    Raises:
        ConfigError: ``name`` is not registered.
    """
    fn = model_entrypoint(name)
    module = sys.modules.get(fn.__module__)
    task = getattr(module, "TASK", "classification")
    if not isinstance(task, str) or not task:
        raise ConfigError(
            f"model {name!r}: module {fn.__module__} sets TASK = {task!r}; it must be a "
            "non-empty string such as 'classification' or 'segmentation'"
        )
    return task


def _check_arguments(
    model: str, signature: inspect.Signature, kwargs: Mapping[str, Any], skip_self: bool
) -> None:
    """Raise ConfigError for arguments ``signature`` does not accept or required ones missing."""
    params = [
        p
        for i, p in enumerate(signature.parameters.values())
        if not (skip_self and i == 0)
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        accepted = None
    else:
        accepted = [p.name for p in params]
    if accepted is not None:
        for key in kwargs:
            if key not in accepted:
                close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"model {model!r}: unexpected argument {key!r}{hint}; it accepts "
                    + ", ".join(accepted)
                )
    for p in params:
        if p.default is inspect.Parameter.empty and p.name not in kwargs:
            raise ConfigError(f"model {model!r}: missing required argument {p.name!r}")


def build_model_with_cfg(
    model_cls: type[_M],
    variant: str,
    defaults: Mapping[str, Any],
    kwargs: Mapping[str, Any],
) -> _M:
    """Build ``model_cls`` from a variant's defaults overridden by the caller's arguments.

    This is how every registered variant is built (timm's ``build_model_with_cfg`` habit):
    any default of the variant can be overridden, which is how Ray Tune samples depth,
    dropout, reduction or ``refine_steps`` for a named variant.

    Args:
        model_cls: the family's ``nn.Module`` class; its ``__init__`` keyword arguments are
            the arguments the variant accepts.
        variant: the registered name, used in error messages.
        defaults: the variant's own settings.
        kwargs: the caller's arguments; they win over ``defaults``.

    Returns:
        The model, with ``model_name`` and ``model_kwargs`` set so it can be rebuilt.

    Raises:
        ConfigError: an argument is unknown, a required one is missing, or a value is bad;
            the message starts with ``model '<variant>':``.
    """
    merged = {**defaults, **kwargs}
    _check_arguments(variant, inspect.signature(model_cls.__init__), merged, skip_self=True)
    try:
        model = model_cls(**merged)
    except ConfigError as e:
        msg = str(e)
        if not msg.startswith(f"model {variant!r}"):
            raise ConfigError(f"model {variant!r}: {msg}") from e
        raise
    model.model_name = variant
    model.model_kwargs = dict(merged)
    return model


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Create a registered model.

    Args:
        name: a registered name (see :func:`list_models`).
        **kwargs: the constructor arguments: ``modalities``, ``num_classes``,
            ``metadata_dim`` and any family argument, overriding the variant's defaults.

    Returns:
        The model, in training mode.

    Raises:
        ConfigError: the name is unknown (with close matches), or an argument is unknown,
            missing or has a bad value (naming the model and the argument).

    Example:
        >>> model = create_model("test_progressive_fusion", modalities={"s2": 10, "s1": 2},
        ...                      num_classes=19)
    """
    fn = model_entrypoint(name)
    _check_arguments(name, inspect.signature(fn), kwargs, skip_self=False)
    return fn(**kwargs)
