"""Matplotlib figures of a study report, each written as PNG and SVG; the PNG path returned.

Every function takes the tidy results table (:mod:`rsray.study.results`) and returns ``None``
when the study has nothing to draw for it (one training fraction, no ``ood`` split, ...).
Conventions: metric names are written out with their split ("test AP macro"), arms by their
readable label; bars of a bounded metric start at 0 and end at 1; a zoomed axis says so;
error bars are 95 % t-intervals over seeds, clipped to the metric's range, and absent with
fewer than :data:`~rsray.study.stats.MIN_SEEDS` seeds (the figure says so); every colour
scale has a labelled colourbar and every colour coding a legend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines
import matplotlib.patches
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from rsray.report.tables import arm_label, metric_label, paper_value
from rsray.study.results import LOWER_IS_BETTER, StudyMeta, per_seed
from rsray.study.stats import MIN_SEEDS, metric_range, summarize

CLASS_PREFIXES = ("ap_class/", "acc_class/", "auc/", "iou/", "acc/")
"""Per-class metric prefixes, in order of preference."""


SINGLE_COLOUR, FUSION_COLOUR, PAPER_COLOUR = "tab:gray", "tab:blue", "tab:red"
_WORD = arm_label


def _save(fig: Any, path: Path) -> Path:
    """Write ``path`` (PNG) and the same figure as ``path.with_suffix('.svg')``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)
    return path


def _ci(values: np.ndarray, metric: str = "") -> tuple[float, float, float]:
    """Mean and 95 % t-interval (clipped to the metric's range; the mean without one)."""
    s = summarize(values, bounds=metric_range(metric))
    lo = s.ci_low if math.isfinite(s.ci_low) else s.mean
    hi = s.ci_high if math.isfinite(s.ci_high) else s.mean
    return s.mean, lo, hi


def _title(ax: Any, text: str) -> None:
    """A small title wrapped to the axes' width."""
    import textwrap

    width = max(40, int(ax.figure.get_figwidth() * 13))
    ax.set_title(textwrap.fill(text, width), fontsize=8)


def _has_ci(df: pd.DataFrame) -> bool:
    return bool(len(df)) and int(df.groupby("arm")["seed"].nunique().min()) >= MIN_SEEDS


def _seeds_note(df: pd.DataFrame) -> str:
    """What the error bars are, given the fewest seeds of any arm."""
    fewest = int(df.groupby("arm")["seed"].nunique().min()) if len(df) else 0
    if fewest < MIN_SEEDS:
        return (f"no error bars: {fewest} seed(s), fewer than {MIN_SEEDS}, support no "
                "interval")
    return "error bars: 95 % t-interval over seeds"


def _bounded_axis(ax: Any, metric: str, bars: bool) -> str:
    """Full 0-1 axis for a bounded metric's bars; else leave matplotlib's zoom and say so."""
    lo, hi = metric_range(metric)
    if bars and (lo, hi) == (0.0, 1.0):
        ax.set_ylim(0.0, 1.0)
        return ""
    if bars and lo == 0.0:
        ax.set_ylim(bottom=0.0)
        return ""
    return " (axis zoomed)"


def _title_suffix(meta: StudyMeta) -> str:
    return " (SYNTHETIC data)" if meta.synthetic else ""


def comparison_bars(df: pd.DataFrame, meta: StudyMeta, metric: str, path: Path) -> Path | None:
    """Headline metric per arm on test: mean over seeds, its 95 % t-interval, every seed.

    Single-modality arms grey, fusion arms blue; the paper's published value of an arm (when
    the spec has one) as a red diamond.
    """
    stats = []
    for arm in meta.arms:
        v = per_seed(df, arm, metric).to_numpy()
        if len(v):
            stats.append((arm, *_ci(v, metric), v))
    if not stats:
        return None
    fig, ax = plt.subplots(figsize=(max(5.5, 0.85 * len(stats) + 2.5), 4.0))
    x = np.arange(len(stats))
    means = np.array([s[1] for s in stats])
    err = np.array([[s[1] - s[2] for s in stats], [s[3] - s[1] for s in stats]])
    colors = [SINGLE_COLOUR if a in meta.single_modality else FUSION_COLOUR for a, *_ in stats]
    ax.bar(x, means, yerr=err if _has_ci(df) else None, capsize=4, color=colors, alpha=0.8)
    for i, st_ in enumerate(stats):
        vals = st_[4]
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(1)
        ax.scatter(i + jitter, vals, s=12, color="black", zorder=3)
    paper = [(i, meta.paper_results.get(a, {}).get(metric)) for i, (a, *_) in enumerate(stats)]
    paper = [(i, paper_value(metric, v)[0]) for i, v in paper if v is not None]
    if paper:
        ax.scatter([i for i, _ in paper], [v for _, v in paper], marker="D", s=40,
                   color=PAPER_COLOUR, zorder=4)
    ax.set_xticks(x, [arm_label(s[0]) for s in stats], rotation=30, ha="right")
    zoom = _bounded_axis(ax, metric, bars=True)
    ax.set_ylabel(metric_label(metric) + zoom)
    handles = [matplotlib.patches.Patch(color=SINGLE_COLOUR, label="single modality"),
               matplotlib.patches.Patch(color=FUSION_COLOUR, label="fusion"),
               matplotlib.lines.Line2D([], [], color="black", marker="o", ls="", ms=4,
                                       label="one seed")]
    if paper:
        handles.append(matplotlib.lines.Line2D([], [], color=PAPER_COLOUR, marker="D", ls="",
                                               label="paper (their data and hardware)"))
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    _title(ax, f"{meta.name}: {metric_label(metric)}, mean over seeds; {_seeds_note(df)}"
           f"{_title_suffix(meta)}")
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
                pts.append((f, *_ci(v, metric)))
        if not pts:
            continue
        f, m, lo, hi = (np.array(c) for c in zip(*pts, strict=True))
        (line,) = ax.plot(f * 100, m, marker="o", label=arm_label(arm),
                          ls="--" if arm in meta.single_modality else "-")
        ax.fill_between(f * 100, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g} %" for f in fractions])
    ax.set_xlabel("training fraction (log scale)")
    ax.set_ylabel(metric_label(metric) + _bounded_axis(ax, metric, bars=False))
    _title(ax, f"Data efficiency: {metric_label(metric)} vs training fraction; dashed: "
           f"single modality; bands: 95 % CI over seeds{_title_suffix(meta)}")
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
            m, lo, hi = _ci(v, metric) if len(v) else (np.nan, np.nan, np.nan)
            ms.append(m)
            errs[0].append(m - lo)
            errs[1].append(hi - m)
        ax.bar(x + (j - 0.5) * width, ms, width, yerr=errs if _has_ci(df) else None, capsize=3,
               label="in-distribution (test)" if split == "test" else
               f"out-of-distribution (ood: {holdouts[0]})")
    ax.set_xticks(x, [arm_label(a) for a in meta.arms], rotation=30, ha="right")
    ax.set_ylabel(metric_label(metric, "") + _bounded_axis(ax, metric, bars=True))
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    _title(ax, f"In- vs out-of-distribution {metric_label(metric, '')}; {_seeds_note(df)}"
           f"{_title_suffix(meta)}")
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
                   vmax: float, fmt: str, dark_below: float | None, cbar_label: str) -> Path:
    """One arms x classes heatmap with the values written in (small tables only).

    ``dark_below``: values under it get white text (for dark colours), ``None``: all black.
    """
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * table.shape[1] + 2.5),
                                    max(2.5, 0.45 * table.shape[0] + 1.8)))
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [c[:28] for c in table.columns], rotation=60,
                  ha="right", fontsize=7)
    ax.set_yticks(range(table.shape[0]), [arm_label(a) for a in table.index], fontsize=8)
    if table.size <= 200:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = dark_below is not None and v <= dark_below
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
    fig.colorbar(im, ax=ax, shrink=0.8).set_label(cbar_label, fontsize=8)
    _title(ax, title)
    return _save(fig, path)


def class_metric_heatmap(df: pd.DataFrame, meta: StudyMeta, path: Path) -> Path | None:
    """Heatmap of :func:`class_metric_matrix` (0 to 1)."""
    res = class_metric_matrix(df, meta)
    if res is None or res[0].empty:
        return None
    table, label = res
    name = metric_label(label.split(" ")[0] + "/x").removesuffix(" (x)")
    return _class_heatmap(table, f"Per-class {name} of every arm (mean over seeds)"
                          f"{_title_suffix(meta)}", path, cmap="viridis", vmin=0.0, vmax=1.0,
                          fmt=".2f", dark_below=0.6, cbar_label=name)


def class_gain_heatmap(df: pd.DataFrame, meta: StudyMeta, path: Path) -> Path | None:
    """Heatmap of :func:`class_gain_matrix` (blue: fusion better; red: worse)."""
    res = class_gain_matrix(df, meta)
    if res is None:
        return None
    gain, label = res
    values = gain.to_numpy(dtype=float)
    vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    name = metric_label(label.split(" ")[0] + "/x").removesuffix(" (x)")
    ref = label.split(" over ", 1)[-1]
    ref = arm_label(ref) if ref in meta.arms else ref
    return _class_heatmap(gain, f"Per-class gain in {name} of each fusion arm over {ref} "
                          f"(blue: fusion better){_title_suffix(meta)}", path, cmap="RdBu",
                          vmin=-(vmax or 1.0), vmax=vmax or 1.0, fmt="+.2f", dark_below=None,
                          cbar_label=f"{name}: fusion arm minus {ref}")


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
            m, lo, hi = _ci(v, metric) if len(v) else (np.nan, np.nan, np.nan)
            ms.append(m)
            errs[0].append(m - lo)
            errs[1].append(hi - m)
        ax.bar(x + (j - (len(settings) - 1) / 2) * width, ms, width,
               yerr=errs if _has_ci(df) else None, capsize=2,
               label="all modalities" if not d else f"{_WORD(d)} dropped")
    ax.set_xticks(x, [arm_label(a) for a in arms], rotation=30, ha="right")
    ax.set_ylabel(metric_label(metric) + _bounded_axis(ax, metric, bars=True))
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    _title(ax, f"Missing-modality robustness (modality zeroed at test time); "
           f"{_seeds_note(df)}{_title_suffix(meta)}")
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
        ax.plot(np.arange(1, len(best) + 1), best, marker="o", ms=3,
                label=arm_label(str(s.get("arm") or s["cell"]))[:40])
    ax.set_xlabel("trial")
    ax.set_ylabel(f"best so far: {metric_label(str(metric).removeprefix('val_'), 'val')}")
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
