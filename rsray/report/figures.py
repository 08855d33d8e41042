"""Matplotlib figures of a study report, each written as a PNG and returned as its path.

Every function takes the tidy results table (:mod:`rsray.study.results`) and returns ``None``
when the study has nothing to draw for it (one training fraction, no ``ood`` split, ...).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from rsray.study.results import LOWER_IS_BETTER, StudyMeta, per_seed
from rsray.study.stats import summarize

CLASS_PREFIXES = ("ap_class/", "acc_class/", "auc/", "iou/", "acc/")
"""Per-class metric prefixes, in order of preference."""


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ci(values: np.ndarray) -> tuple[float, float, float]:
    s = summarize(values)
    lo = s.ci_low if math.isfinite(s.ci_low) else s.mean
    hi = s.ci_high if math.isfinite(s.ci_high) else s.mean
    return s.mean, lo, hi


def _title_suffix(meta: StudyMeta) -> str:
    return " (SYNTHETIC data)" if meta.synthetic else ""


def comparison_bars(df: pd.DataFrame, meta: StudyMeta, metric: str, path: Path) -> Path | None:
    """Headline metric per arm on test: mean over seeds with its 95 % t-interval."""
    stats = []
    for arm in meta.arms:
        v = per_seed(df, arm, metric).to_numpy()
        if len(v):
            stats.append((arm, *_ci(v)))
    if not stats:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(stats) + 2), 3.6))
    x = np.arange(len(stats))
    means = np.array([s[1] for s in stats])
    err = np.array([[s[1] - s[2] for s in stats], [s[3] - s[1] for s in stats]])
    colors = ["tab:gray" if a in meta.single_modality else "tab:blue" for a, *_ in stats]
    ax.bar(x, means, yerr=err, capsize=4, color=colors)
    ax.set_xticks(x, [s[0] for s in stats], rotation=30, ha="right")
    ax.set_ylabel(f"test {metric}")
    lo = float(np.nanmin([s[2] for s in stats]))
    hi = float(np.nanmax([s[3] for s in stats]))
    pad = max(0.02, 0.15 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
    ax.set_title(f"{meta.name}: test {metric}, mean and 95 % CI over seeds{_title_suffix(meta)}",
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def fraction_curves(df: pd.DataFrame, meta: StudyMeta, metric: str, path: Path) -> Path | None:
    """Metric against training fraction per arm, with 95 % CI bands (data efficiency)."""
    fractions = sorted(df["fraction"].unique())
    if len(fractions) < 2:
        return None
    holdout = sorted(df["holdout"].unique())[0]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for arm in meta.arms:
        pts = []
        for f in fractions:
            v = per_seed(df, arm, metric, fraction=f, holdout=holdout).to_numpy()
            if len(v):
                pts.append((f, *_ci(v)))
        if not pts:
            continue
        f, m, lo, hi = (np.array(c) for c in zip(*pts, strict=True))
        (line,) = ax.plot(f * 100, m, marker="o", label=arm)
        ax.fill_between(f * 100, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g} %" for f in fractions])
    ax.set_xlabel("training fraction")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"Data efficiency: test {metric} vs training fraction{_title_suffix(meta)}",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def id_vs_ood(df: pd.DataFrame, meta: StudyMeta, metric: str, path: Path) -> Path | None:
    """In-distribution (test) against out-of-distribution (ood) per arm."""
    if "ood" not in set(df["split"]):
        return None
    fraction = float(df["fraction"].max())
    holdouts = [h for h in sorted(df["holdout"].unique()) if h != "none"] or ["none"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(meta.arms) + 2), 3.6))
    width = 0.38
    x = np.arange(len(meta.arms))
    for j, split in enumerate(("test", "ood")):
        ms, errs = [], [[], []]
        for arm in meta.arms:
            v = per_seed(df, arm, metric, split, fraction=fraction,
                         holdout=holdouts[0]).to_numpy()
            m, lo, hi = _ci(v) if len(v) else (np.nan, np.nan, np.nan)
            ms.append(m)
            errs[0].append(m - lo)
            errs[1].append(hi - m)
        ax.bar(x + (j - 0.5) * width, ms, width, yerr=errs, capsize=3,
               label="in-distribution (test)" if split == "test" else
               f"out-of-distribution (ood: {holdouts[0]})")
    ax.set_xticks(x, meta.arms, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"In- vs out-of-distribution {metric}{_title_suffix(meta)}", fontsize=9)
    return _save(fig, path)


def class_prefix(df: pd.DataFrame) -> str | None:
    """The per-class metric prefix present in the table (``ap_class/`` ...)."""
    names = set(df["metric"].unique())
    for p in CLASS_PREFIXES:
        if any(n.startswith(p) for n in names):
            return p
    return None


def class_gain_matrix(df: pd.DataFrame, meta: StudyMeta) -> tuple[pd.DataFrame, str] | None:
    """Fusion arm x class: mean per-class metric minus the best single-modality arm's."""
    prefix = class_prefix(df)
    singles = [a for a in meta.single_modality if a in set(df["arm"])]
    fusion = [a for a in meta.arms if a not in meta.single_modality and a in set(df["arm"])]
    if prefix is None or not singles or not fusion:
        return None
    fraction, holdout = float(df["fraction"].max()), sorted(df["holdout"].unique())[0]
    sel = df[(df.split == "test") & (df.dropped == "") & (df.fraction == fraction)
             & (df.holdout == holdout) & df.metric.str.startswith(prefix)]
    means = sel.groupby(["arm", "metric"])["value"].mean().unstack("metric")
    classes = list(dict.fromkeys(sel["metric"]))  # the dataset's class order
    headline = meta.metrics[0] if meta.metrics else None
    if headline is not None and headline in set(df.metric):
        best_single = max(singles, key=lambda a: per_seed(df, a, headline).mean())
        reference = means.loc[best_single]
        label = best_single
    else:
        reference = means.loc[singles].max()
        label = "best single modality per class"
    gain = means.loc[fusion, classes] - reference[classes]
    gain.columns = [c[len(prefix):] for c in classes]
    return gain, f"{prefix.rstrip('/')} gain over {label}"


def class_metric_matrix(df: pd.DataFrame, meta: StudyMeta) -> tuple[pd.DataFrame, str] | None:
    """Arm x class: mean per-class test metric of every arm (single modalities included).

    Where :func:`class_gain_matrix` shows what fusion adds, this shows which classes each
    modality carries on its own: on a twin, a single-modality arm sits at chance on the
    classes drawn into the other modality only. Classes with no value for any arm (absent
    from the test split) are left out.
    """
    prefix = class_prefix(df)
    if prefix is None:
        return None
    fraction, holdout = float(df["fraction"].max()), sorted(df["holdout"].unique())[0]
    sel = df[(df.split == "test") & (df.dropped == "") & (df.fraction == fraction)
             & (df.holdout == holdout) & df.metric.str.startswith(prefix)]
    if sel.empty:
        return None
    means = sel.groupby(["arm", "metric"])["value"].mean().unstack("metric")
    classes = [c for c in dict.fromkeys(sel["metric"]) if means[c].notna().any()]
    arms = [a for a in meta.arms if a in means.index]
    out = means.loc[arms, classes]
    out.columns = [c[len(prefix):] for c in classes]
    return out, f"{prefix.rstrip('/')} per arm"


def _class_heatmap(table: pd.DataFrame, title: str, path: Path, *, cmap: str, vmin: float,
                   vmax: float, fmt: str, dark_below: float | None) -> Path:
    """One arms x classes heatmap with the values written in (small tables only).

    ``dark_below``: values under it get white text (for dark colours), ``None``: all black.
    """
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * table.shape[1] + 2.5),
                                    max(2.5, 0.45 * table.shape[0] + 1.8)))
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [c[:28] for c in table.columns], rotation=60,
                  ha="right", fontsize=7)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)
    if table.size <= 200:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = dark_below is not None and v <= dark_below
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def class_metric_heatmap(df: pd.DataFrame, meta: StudyMeta, path: Path) -> Path | None:
    """Heatmap of :func:`class_metric_matrix` (0 to 1)."""
    res = class_metric_matrix(df, meta)
    if res is None or res[0].empty:
        return None
    table, label = res
    return _class_heatmap(table, f"Per-class test {label}{_title_suffix(meta)}", path,
                          cmap="viridis", vmin=0.0, vmax=1.0, fmt=".2f", dark_below=0.6)


def class_gain_heatmap(df: pd.DataFrame, meta: StudyMeta, path: Path) -> Path | None:
    """Heatmap of :func:`class_gain_matrix` (blue: fusion better; red: worse)."""
    res = class_gain_matrix(df, meta)
    if res is None:
        return None
    gain, label = res
    values = gain.to_numpy(dtype=float)
    vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    return _class_heatmap(gain, f"Per-class test {label}{_title_suffix(meta)}", path,
                          cmap="RdBu", vmin=-(vmax or 1.0), vmax=vmax or 1.0, fmt="+.2f",
                          dark_below=None)


def missing_modality(df: pd.DataFrame, meta: StudyMeta, metric: str, path: Path) -> Path | None:
    """Metric with nothing dropped and with each modality dropped, per multi-modal arm."""
    drops = sorted(d for d in df["dropped"].unique() if d)
    if not drops:
        return None
    arms = [a for a in meta.arms if set(df[(df.arm == a)]["dropped"]) - {""}]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 * len(arms) + 2), 3.6))
    settings = ["", *drops]
    width = 0.8 / len(settings)
    x = np.arange(len(arms))
    for j, d in enumerate(settings):
        ms, errs = [], [[], []]
        for arm in arms:
            v = per_seed(df, arm, metric, dropped=d).to_numpy()
            m, lo, hi = _ci(v) if len(v) else (np.nan, np.nan, np.nan)
            ms.append(m)
            errs[0].append(m - lo)
            errs[1].append(hi - m)
        ax.bar(x + (j - (len(settings) - 1) / 2) * width, ms, width, yerr=errs, capsize=2,
               label="all modalities" if not d else f"{d} dropped")
    ax.set_xticks(x, arms, rotation=30, ha="right")
    ax.set_ylabel(f"test {metric}")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Missing-modality robustness (zeroed at test time){_title_suffix(meta)}",
                 fontsize=9)
    return _save(fig, path)


def search_progress(searches: list[dict[str, Any]], path: Path) -> Path | None:
    """Stage 1: best-so-far validation score against trial number, one line per cell."""
    curves = [s for s in searches if s.get("trials")]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    metric = curves[0].get("metric") or "score"
    for s in curves:
        vals = np.array([t["value"] if t["value"] is not None else np.nan
                         for t in s["trials"]], dtype=float)
        lower = s.get("mode") == "min" or str(metric).endswith(LOWER_IS_BETTER)
        filled = np.where(np.isnan(vals), np.inf if not lower else -np.inf, vals)
        best = np.minimum.accumulate(np.where(np.isnan(vals), np.inf, vals)) if lower \
            else np.maximum.accumulate(np.where(np.isnan(vals), -np.inf, filled))
        ax.plot(np.arange(1, len(best) + 1), best, marker="o", ms=3, label=s["cell"][:40])
    ax.set_xlabel("trial")
    ax.set_ylabel(f"best-so-far {metric}")
    ax.set_title("Stage-1 search: best validation score so far", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return _save(fig, path)


def importance_bars(importances: dict[str, dict[str, float]], path: Path) -> Path | None:
    """Hyper-parameter importance per cell (Optuna's fANOVA evaluator)."""
    if not importances:
        return None
    params = sorted({p for imp in importances.values() for p in imp})
    fig, ax = plt.subplots(figsize=(6.0, max(2.5, 0.35 * len(params) * len(importances) ** 0.5
                                            + 1.5)))
    height = 0.8 / len(importances)
    y = np.arange(len(params))
    for j, (cell, imp) in enumerate(importances.items()):
        ax.barh(y + j * height, [imp.get(p, 0.0) for p in params], height, label=cell[:40])
    ax.set_yticks(y + 0.4 - height / 2, [p.removeprefix("model.params.") for p in params],
                  fontsize=7)
    ax.set_xlabel("importance (fANOVA, share of variance)")
    ax.set_title("Stage-1 hyper-parameter importance", fontsize=9)
    ax.legend(fontsize=6)
    return _save(fig, path)


__all__ = ["class_gain_heatmap", "class_gain_matrix", "comparison_bars", "fraction_curves",
           "id_vs_ood", "importance_bars", "missing_modality", "search_progress"]
