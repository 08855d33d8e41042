"""The report's test-set statistics: the grouped paired bootstrap and per-class intervals.

Both read the saved test predictions of every seed of an arm (at the headline setting),
average the probabilities over seeds (the arm's seed ensemble) and resample the test set with
one shared set of resample counts, so every comparison with the baseline stays paired:

* resampling **groups** (scene, tile, zone, site: the predictions' ``group`` column,
  :mod:`rsray.data.groups`) when the test split has at least :data:`MIN_GROUPS` of them;
* resampling single samples otherwise, and saying why (no group recorded, or too few groups
  for a cluster bootstrap to estimate the spread between groups).

Intervals are bootstrap percentiles of the metric itself, so they never leave its range.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rsray.study.resampled import WeightedMetric, metric_for, per_class_metric
from rsray.study.results import StudyMeta, default_setting
from rsray.study.stats import PairedResult, bootstrap_difference, holm

MIN_GROUPS = 10
"""Fewest groups for a group bootstrap; with fewer its interval is not trustworthy."""
N_BOOT = 2000
"""Bootstrap resamples of the report."""


CHUNK_ELEMENTS = 1 << 24
"""Resample counts held at once (``resamples x samples``): a real test split of 120,000
patches is scored 140 resamples at a time (64 MB of counts) instead of 2,000 (1 GB)."""


@dataclass
class Resampling:
    """How a test split is resampled: by groups or by samples, in chunks of resamples.

    The draws depend only on ``seed`` and the chunk, so every arm scored with the same
    :class:`Resampling` sees the same resamples (the comparison stays paired).
    """

    n_boot: int
    units: int
    """Resampled units: groups, or samples."""
    inverse: np.ndarray
    """Unit of each sample (``arange(n)`` when samples are resampled)."""
    grouped: bool
    why: str
    """One sentence: what is resampled and why."""
    seed: int = 0

    def chunks(self) -> Iterator[np.ndarray]:
        """``(b, n)`` int32 count matrices, ``n_boot`` rows in all."""
        n = self.inverse.size
        step = max(1, CHUNK_ELEMENTS // max(n, self.units))
        for k, b0 in enumerate(range(0, self.n_boot, step)):
            b = min(step, self.n_boot - b0)
            draws = np.random.default_rng([self.seed, k]).integers(0, self.units, (b, self.units))
            flat = (draws + np.arange(b)[:, None] * self.units).ravel()
            per_unit = np.bincount(flat, minlength=b * self.units).reshape(b, self.units)
            yield per_unit.astype(np.int32)[:, self.inverse]

    def score(self, fn: WeightedMetric, probs: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``fn`` on every resample: ``(n_boot,)`` (or ``(n_boot, C)`` per class)."""
        return np.concatenate([fn(probs, target, c) for c in self.chunks()], axis=0)


def load_predictions(study_dir: Path, arm: str, fraction: float,
                     holdout: str) -> tuple[pd.DataFrame | None, str]:
    """Seed-averaged test predictions of one arm (rows sorted by ``patch_id``) and the task.

    Columns: ``patch_id``, ``target``, ``probs`` and ``group`` (``""`` when not recorded).
    """
    frames, task = [], ""
    for res in sorted(study_dir.glob("cells/*/seed_*/result.json")):
        doc = json.loads(res.read_text())
        k = doc["keys"]
        if k["arm"] != arm or float(k["fraction"]) != fraction or k["holdout"] != holdout:
            continue
        task = doc.get("task", "")
        path = (doc.get("predictions") or {}).get("test")
        if path and Path(path).exists():
            f = pd.read_parquet(path)
            if "probs" in f.columns:
                frames.append(f.sort_values("patch_id").reset_index(drop=True))
    if not frames:
        return None, task
    base = frames[0]
    probs = np.mean([np.stack(f["probs"].to_numpy()) for f in frames], axis=0)
    group = base["group"].astype(str) if "group" in base.columns else pd.Series([""] * len(base))
    return pd.DataFrame({"patch_id": base["patch_id"], "target": base["target"],
                         "probs": list(probs), "group": group.to_numpy()}), task


def resampling(groups: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
               what: str = "group") -> Resampling:
    """Resample groups when every sample has one and there are enough, else samples."""
    n = len(groups)
    named = [g for g in groups if g]
    distinct = len(set(named))
    if len(named) == n and distinct >= MIN_GROUPS:
        _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        return Resampling(n_boot, distinct, inverse, True,
                          f"resamples the {distinct} {what}s of the test split ({n} samples): "
                          "neighbouring samples are correlated", seed)
    if not named:
        why = ("resamples single samples: the shard set records no spatial group, so the "
               "interval ignores spatial correlation and is likely too narrow")
    elif len(named) < n:
        why = (f"resamples single samples: {n - len(named)} test samples have no group, so "
               "the interval ignores spatial correlation and is likely too narrow")
    else:
        why = (f"resamples single samples: the test split has only {distinct} "
               f"{what}{'' if distinct == 1 else 's'}, "
               f"too few (< {MIN_GROUPS}) for a group bootstrap; the interval ignores "
               "spatial correlation and is likely too narrow")
    return Resampling(n_boot, n, np.arange(n), False, why, seed)


def bootstrap_rows(study_dir: Path, meta: StudyMeta, df: pd.DataFrame, metric: str,
                   n_boot: int = N_BOOT, group_what: str = "group"
                   ) -> tuple[list[dict[str, Any]], str]:
    """Paired bootstrap of ``metric`` (seed-averaged predictions) of every arm vs baseline.

    Returns rows ``{"arm", "res": PairedResult, "holm_p"}`` and one sentence: what was
    resampled (or why nothing was).
    """
    fraction, holdout = default_setting(df)
    base, task = load_predictions(study_dir, meta.baseline, fraction, holdout)
    if base is None:
        return [], "no saved test predictions (evaluation.predictions off, or segmentation)"
    fn = metric_for(metric, task)
    if fn is None:
        return [], f"no bootstrap form of {metric!r} on a {task} task"
    target = np.stack(base["target"].to_numpy())
    rs = resampling(base["group"].to_numpy(), n_boot, 0, group_what)
    n = len(target)
    ones = np.ones((1, n), dtype=np.int32)
    base_probs = np.stack(base["probs"].to_numpy())
    base_full, base_dist = fn(base_probs, target, ones)[0], rs.score(fn, base_probs, target)
    out = []
    for arm in meta.arms:
        if arm == meta.baseline:
            continue
        other, _ = load_predictions(study_dir, arm, fraction, holdout)
        if other is None or list(other["patch_id"]) != list(base["patch_id"]):
            continue
        probs = np.stack(other["probs"].to_numpy())
        res = bootstrap_difference(fn(probs, target, ones)[0] - base_full,
                                   rs.score(fn, probs, target) - base_dist, rs.units)
        out.append({"arm": arm, "res": res})
    for row, p in zip(out, holm([r["res"].p_value for r in out]), strict=True):
        row["holm_p"] = p
    if not out:
        return [], "no other arm with test predictions of the same samples"
    return out, rs.why


def per_class_intervals(study_dir: Path, meta: StudyMeta, df: pd.DataFrame,
                        classes: list[str], n_boot: int = N_BOOT, confidence: float = 0.95,
                        group_what: str = "group") -> tuple[pd.DataFrame | None, str]:
    """Per-class metric of every arm (seed ensemble) with its bootstrap interval.

    Also the difference to the baseline per class with its paired interval. Columns: ``arm``,
    ``class``, ``value``, ``low``, ``high``, ``diff``, ``diff_low``, ``diff_high``.
    """
    fraction, holdout = default_setting(df)
    base, task = load_predictions(study_dir, meta.baseline, fraction, holdout)
    pc = per_class_metric(task)
    if base is None or pc is None:
        return None, ("no saved test predictions" if base is None
                      else f"no per-class bootstrap metric for a {task} task")
    prefix, fn = pc
    target = np.stack(base["target"].to_numpy())
    rs = resampling(base["group"].to_numpy(), n_boot, 1, group_what)
    ones = np.ones((1, len(target)), dtype=np.int32)
    a = (1 - confidence) / 2 * 100
    scored = {}
    for arm in meta.arms:
        pred = base if arm == meta.baseline else load_predictions(study_dir, arm, fraction,
                                                                  holdout)[0]
        if pred is None or list(pred["patch_id"]) != list(base["patch_id"]):
            continue
        probs = np.stack(pred["probs"].to_numpy())
        scored[arm] = (fn(probs, target, ones)[0], rs.score(fn, probs, target))
    rows = []
    b_full, b_dist = scored[meta.baseline]
    for arm, (full, dist) in scored.items():
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class never present: NaN
            lo, hi = np.nanpercentile(dist, [a, 100 - a], axis=0)
            d = dist - b_dist
            dlo, dhi = np.nanpercentile(d, [a, 100 - a], axis=0)
        for c, name in enumerate(classes[:full.shape[0]]):
            rows.append({"arm": arm, "class": name, "value": full[c], "low": lo[c],
                         "high": hi[c], "diff": full[c] - b_full[c], "diff_low": dlo[c],
                         "diff_high": dhi[c]})
    name = {"ap_class/": "AP", "acc_class/": "class-wise accuracy"}.get(prefix, prefix)
    note = f"{name} per class; the interval {rs.why}"
    return pd.DataFrame(rows), note


def paired_cell(res: PairedResult) -> list[str]:
    """``[diff, [low, high]]`` of a paired result as table cells."""
    if not np.isfinite(res.ci_low):
        return [f"{res.mean_diff:+.4f}", "no interval"]
    return [f"{res.mean_diff:+.4f}", f"[{res.ci_low:+.4f}, {res.ci_high:+.4f}]"]


__all__ = ["CHUNK_ELEMENTS", "MIN_GROUPS", "N_BOOT", "Resampling", "bootstrap_rows",
           "load_predictions", "paired_cell", "per_class_intervals", "resampling"]
