"""The metric names each task reports, and checks of user-given names with a suggestion.

Names are read from the metric objects themselves (:func:`rsray.train.tasks.build_task` on a
tiny fake batch), so this list cannot drift from what training and evaluation report::

    scalar_metrics("multilabel")      # ['aa', 'acc_micro', 'ap_macro', ..., 'loss', 'oa']
    check_metric("acc_mirco", "spec.yaml: metrics")
    # ConfigError: spec.yaml: metrics: 'acc_mirco' is not a metric rsray reports
    #              (did you mean 'acc_micro'?); ...

A training run reports ``<split>_<name>`` for every evaluation split (``val_ap_macro``) plus
``train_loss``; :func:`check_run_metric` checks ``train.metric`` and
``train.early_stopping_metric`` against that before anything starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from functools import cache

from rsray.config import Config
from rsray.errors import ConfigError

TASKS = ("multilabel", "multiclass", "binary", "segmentation", "regression")


@cache
def _reported(task: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(scalar names, per-class families) the task's evaluation reports, ``loss`` included."""
    import torch

    from rsray.train.tasks import build_task

    k, n, side = 2, 4, 4
    t = build_task(Config(), task, [f"c{i}" for i in range(k)])
    gen = torch.Generator().manual_seed(0)
    if task == "segmentation":
        logits = torch.randn(n, k, side, side, generator=gen)
        target = torch.randint(0, k, (n, side, side), generator=gen)
    else:
        logits = torch.randn(n, k, generator=gen)
        target = {"multilabel": torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]]),
                  "multiclass": torch.tensor([0, 1, 1, 0]),
                  "binary": torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]]),
                  "regression": torch.randn(n, k, generator=gen)}[task]
    t.metrics.update(logits, target)
    keys = list(t.metrics.compute())
    scalars = sorted({key for key in keys if "/" not in key} | {"loss"})
    families = sorted({key.split("/")[0] for key in keys if "/" in key})
    return tuple(scalars), tuple(families)


def scalar_metrics(task: str) -> list[str]:
    """Metric names (no split prefix) the task reports as one number, ``loss`` included."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; rsray knows " + ", ".join(TASKS))
    return list(_reported(task)[0])


def per_class_families(task: str) -> list[str]:
    """Per-class metric families of the task (``ap_class`` -> ``ap_class/<class>``)."""
    return list(_reported(task)[1])


def all_scalar_metrics() -> list[str]:
    """Every scalar metric name of every task."""
    return sorted({m for task in TASKS for m in scalar_metrics(task)})


def suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_metric(name: str, where: str, task: str | None = None) -> None:
    """``name`` (no split prefix) must be a scalar metric of ``task`` (of any task if None).

    Raises:
        ConfigError: ``<where>: '<name>' is not a metric ... (did you mean ...?)``.
    """
    known = scalar_metrics(task) if task else all_scalar_metrics()
    if name in known:
        return
    if "/" in name:  # a per-class metric: ``<family>/<class>`` (``iou/building``)
        family = name.split("/", 1)[0]
        families = (per_class_families(task) if task else
                    sorted({f for t in TASKS for f in per_class_families(t)}))
        if family in families:
            return
        of = f"the {task} task reports" if task else "rsray reports"
        raise ConfigError(f"{where}: {name!r}: {family!r} is not a per-class metric {of}"
                          f"{suggest(family, families)}; per-class metrics are "
                          + ", ".join(f"{f}/<class>" for f in families))
    of = f"the {task} task reports" if task else "rsray reports"
    raise ConfigError(f"{where}: {name!r} is not a metric {of}{suggest(name, known)}; "
                      f"{'they are' if task else 'metrics are'} " + ", ".join(known))


def run_metric_names(task: str, eval_splits: Sequence[str],
                     classes: Sequence[str] = ()) -> list[str]:
    """What a training run of ``task`` reports: ``<split>_<metric>`` and ``train_loss``.

    Per-class names (``val_ap_class/<class>``) are included when ``classes`` are given.
    """
    out = ["train_loss"]
    for split in eval_splits:
        out += [f"{split}_{m}" for m in scalar_metrics(task)]
        out += [f"{split}_{f}/{c}" for f in per_class_families(task) for c in classes]
    return out


def check_run_metric(name: str, where: str, task: str, eval_splits: Sequence[str],
                     classes: Sequence[str] = ()) -> None:
    """``train.metric``-style ``name`` must be something the run reports.

    Raises:
        ConfigError: naming ``where``, the closest name, and the split prefixes.
    """
    known = run_metric_names(task, eval_splits, classes)
    if name in known:
        return
    scalars = [k for k in known if "/" not in k]
    raise ConfigError(
        f"{where}: {name!r} is not a metric a {task} run reports{suggest(name, scalars)}; "
        f"it reports {', '.join(scalars)} (and per class, e.g. "
        f"{eval_splits[0] if eval_splits else 'val'}_<metric>/<class>)")


def check_config_metrics(cfg: Config, task: str, classes: Sequence[str] = (),
                         where: str = "") -> None:
    """Check ``train.metric`` and ``train.early_stopping_metric`` before anything starts.

    Each (unless empty or ``auto``) must be a metric a run of ``task`` reports on the
    config's ``data.eval_splits``.

    Raises:
        ConfigError: naming the field, the closest name and what the run reports.
    """
    prefix = f"{where}: " if where else ""
    for key in ("metric", "early_stopping_metric"):
        value = getattr(cfg.train, key)
        if value and value != "auto":
            check_run_metric(value, f"{prefix}train.{key}", task, cfg.data.eval_splits, classes)


__all__ = ["TASKS", "all_scalar_metrics", "check_config_metrics", "check_metric",
           "check_run_metric",
           "per_class_families", "run_metric_names", "scalar_metrics", "suggest"]
