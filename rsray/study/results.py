"""The study's tables: the tidy results table, the chosen hyper-parameters, the comparison.

``collect(study_dir)`` rebuilds ``results.parquet`` / ``results.csv`` (one row per arm,
factor values, seed, split, dropped modality, metric, value) and ``hparams.json`` /
``hparams.csv`` (per cell: the stage-1 best parameters and search score) from the records the
runner wrote. :func:`comparison` summarises one setting over seeds (mean, t-interval) and
compares every arm with the baseline (paired t-test over seeds, Holm-corrected). Intervals
of bounded metrics are clipped to their range; with fewer than
:data:`~rsray.study.stats.MIN_SEEDS` seeds no interval or seed-level test is given.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rsray.study.stats import MIN_SEEDS, Summary, holm, metric_range, paired_ttest, summarize
from rsray.study.store import STUDY_JSON, StudyStore

COLUMNS = ["study", "arm", "model", "fraction", "holdout", "seed", "split", "dropped", "metric",
           "value"]
LOWER_IS_BETTER = ("loss", "hamming_loss", "rmse_mean", "mae_mean")
"""Metrics where lower is better (the best arm per column is the smallest)."""


@dataclass
class StudyMeta:
    """What the tables need to know about a study (from ``study.json``)."""

    name: str
    arms: list[str]
    baseline: str
    metrics: list[str]
    single_modality: list[str]
    modalities: dict[str, list[str]] = field(default_factory=dict)
    synthetic: bool | None = None
    data: dict[str, str] = field(default_factory=dict)
    description: str = ""
    """The research question (the spec's ``description``)."""
    paper_results: dict[str, dict[str, float]] = field(default_factory=dict)
    """Arm -> metric -> the paper's published value (the spec's ``paper_results``)."""
    paper_source: str = ""
    """Where the paper's values come from (``Table 3 of ...``)."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The resolved spec as the runner stored it."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Versions, commit and time recorded when the study started (empty: older studies)."""
    started: float | None = None
    """When the study started (Unix time)."""

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> StudyMeta:
        """From the runner's ``study.json`` document."""
        spec = doc["spec"]
        arms = [a["name"] for a in spec["arms"]]
        mods = {a["name"]: list(a.get("modalities") or []) for a in spec["arms"]}
        single = spec.get("single_modality") or [a for a in arms if len(mods[a]) == 1]
        paper = {str(a): {str(m): float(v) for m, v in (vals or {}).items()}
                 for a, vals in (spec.get("paper_results") or {}).items()}
        return cls(name=spec["name"], arms=arms, baseline=spec["baseline"],
                   metrics=list(spec.get("metrics") or []), single_modality=single,
                   modalities=mods, data=dict(doc.get("data") or {}),
                   description=str(spec.get("description") or ""), paper_results=paper,
                   paper_source=str(spec.get("paper_source") or ""), spec=spec,
                   provenance=dict(doc.get("provenance") or {}), started=doc.get("started"))


@dataclass
class StudyTable:
    """The tidy rows and the per-cell hyper-parameters."""

    rows: pd.DataFrame
    hparams: list[dict[str, Any]]


def read_meta(study_dir: str | Path) -> StudyMeta:
    """The :class:`StudyMeta` of a study folder (local path or URI)."""
    return StudyMeta.from_state(StudyStore(study_dir).read_json(STUDY_JSON))


def collect(study_dir: str | Path, write: bool = True) -> StudyTable:
    """Gather every finished seed's rows and every cell's search; write the tables.

    ``study_dir`` is a local path or a URI (``s3://...``); the tables are written there.
    """
    root = StudyStore(study_dir)
    rows: list[dict[str, Any]] = []
    for rel in root.glob("cells/*/seed_*/result.json"):
        rows.extend(root.read_json(rel)["rows"])
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        df = df.sort_values(["holdout", "fraction", "arm", "seed", "split", "dropped"],
                            kind="stable").reset_index(drop=True)  # metrics in class order
    hparams = []
    for rel in root.glob("cells/*/search.json"):
        doc = root.read_json(rel)
        hparams.append({k: doc.get(k) for k in ("cell", "arm", "fraction", "holdout", "metric",
                                                 "value", "params")}
                       | {"trials": len(doc.get("trials", []))})
    if write:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        root.write_bytes("results.parquet", buf.getvalue())
        root.write_bytes("results.csv", df.to_csv(index=False).encode())
        root.write_bytes("hparams.json",
                         (json.dumps(hparams, indent=2, default=str) + "\n").encode())
        flat = [{k: v for k, v in h.items() if k != "params"}
                | {f"param:{k}": v for k, v in (h["params"] or {}).items()} for h in hparams]
        root.write_bytes("hparams.csv", pd.DataFrame(flat).to_csv(index=False).encode())
    return StudyTable(df, hparams)


def read_results(study_dir: str | Path) -> pd.DataFrame:
    """``results.parquet`` of a study folder (local path or URI)."""
    return pd.read_parquet(io.BytesIO(StudyStore(study_dir).read_bytes("results.parquet")))


def default_setting(df: pd.DataFrame) -> tuple[float, str]:
    """The headline setting: the largest training fraction, the first hold-out."""
    return float(df["fraction"].max()), str(sorted(df["holdout"].unique())[0])


def per_seed(df: pd.DataFrame, arm: str, metric: str, split: str = "test", dropped: str = "",
             fraction: float | None = None, holdout: str | None = None) -> pd.Series:
    """One arm's metric per seed (index: seed) at one setting."""
    if fraction is None or holdout is None:
        f0, h0 = default_setting(df)
        fraction = f0 if fraction is None else fraction
        holdout = h0 if holdout is None else holdout
    sel = df[(df.arm == arm) & (df.metric == metric) & (df.split == split)
             & (df.dropped == dropped) & (df.fraction == fraction) & (df.holdout == holdout)]
    return sel.set_index("seed")["value"].sort_index()


@dataclass
class Comparison:
    """Arm x metric summaries and the paired tests against the baseline."""

    metrics: list[str]
    summaries: dict[tuple[str, str], Summary]
    tests: dict[tuple[str, str], Any]
    """(arm, metric) -> PairedResult of arm - baseline, p-value Holm-corrected over arms."""
    holm_p: dict[tuple[str, str], float]
    best: dict[str, str]


def table_metrics_of(df: pd.DataFrame, meta: StudyMeta) -> list[str]:
    """The metrics of the comparison table: the spec's, or every per-dataset scalar metric."""
    have = set(df["metric"].unique())
    if meta.metrics:
        return [m for m in meta.metrics if m in have]
    return sorted(m for m in have if "/" not in m and m != "n_samples")


def comparison(df: pd.DataFrame, meta: StudyMeta, split: str = "test",
               fraction: float | None = None, holdout: str | None = None) -> Comparison:
    """Mean +- CI per arm and metric; paired t-tests vs the baseline (Holm over arms)."""
    metrics = table_metrics_of(df, meta)
    summaries, tests, holm_p, best = {}, {}, {}, {}
    for metric in metrics:
        base = per_seed(df, meta.baseline, metric, split, fraction=fraction, holdout=holdout)
        others = []
        for arm in meta.arms:
            s = per_seed(df, arm, metric, split, fraction=fraction, holdout=holdout)
            if len(s):
                summaries[(arm, metric)] = summarize(s.to_numpy(), bounds=metric_range(metric))
            if arm != meta.baseline and len(s):
                common = s.index.intersection(base.index)
                if len(common) >= 2:
                    tests[(arm, metric)] = paired_ttest(s.loc[common].to_numpy(),
                                                        base.loc[common].to_numpy())
                    others.append(arm)
        ps = [tests[(a, metric)].p_value for a in others]
        for arm, p in zip(others, holm(ps) if ps else [], strict=True):
            holm_p[(arm, metric)] = p
        means = {a: summaries[(a, metric)].mean for a in meta.arms
                 if (a, metric) in summaries and math.isfinite(summaries[(a, metric)].mean)}
        if means:
            pick = min if metric.endswith(LOWER_IS_BETTER) else max
            best[metric] = pick(means, key=means.__getitem__)
    return Comparison(metrics, summaries, tests, holm_p, best)


FEW_SEEDS_MARK = "‡"
"""Marks a mean over fewer than MIN_SEEDS seeds (no interval)."""


def _fmt(s: Summary) -> str:
    """``mean ± half-width``; ``mean [low, high]`` when clipped; ``mean ‡`` without interval."""
    if not s.has_interval:
        return f"{s.mean:.4f} {FEW_SEEDS_MARK}" if s.n > 1 else f"{s.mean:.4f}"
    if s.clipped:
        return f"{s.mean:.4f} [{s.ci_low:.4f}, {s.ci_high:.4f}]"
    return f"{s.mean:.4f} ± {(s.ci_high - s.ci_low) / 2:.4f}"


def comparison_rows(cmp: Comparison, meta: StudyMeta, alpha: float = 0.05) -> list[list[str]]:
    """Table cells: arm, then ``mean ± CI half-width`` per metric, ``**`` best, ``*`` sig."""
    out = []
    for arm in meta.arms:
        row = [arm + (" (baseline)" if arm == meta.baseline else "")]
        for metric in cmp.metrics:
            s = cmp.summaries.get((arm, metric))
            if s is None:
                row.append("-")
                continue
            cell = _fmt(s)
            p = cmp.holm_p.get((arm, metric))
            if p is not None and p < alpha:
                cell += " †"
            if cmp.best.get(metric) == arm:
                cell = f"**{cell}**"
            row.append(cell)
        out.append(row)
    return out


def comparison_text(table: StudyTable | pd.DataFrame, spec_or_meta: Any) -> str:
    """The comparison table as text (printed at the end of a study)."""
    df = table.rows if isinstance(table, StudyTable) else table
    meta = spec_or_meta if isinstance(spec_or_meta, StudyMeta) else StudyMeta.from_state(
        {"spec": json.loads(json.dumps(spec_or_meta.to_dict(), default=str))})
    if not len(df):
        return "[study] no finished runs yet"
    fraction, holdout = default_setting(df)
    cmp = comparison(df, meta)
    header = ["arm", *cmp.metrics]
    rows = comparison_rows(cmp, meta)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"{meta.name}: test split, fraction {fraction:g}, hold-out {holdout}; mean ± 95 % "
             f"CI half-width over seeds ([low, high] where clipped to the metric's range; "
             f"{FEW_SEEDS_MARK} fewer than {MIN_SEEDS} seeds: no interval); ** best; † differs "
             f"from {meta.baseline} (paired t-test, Holm, p < 0.05)"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


__all__ = ["COLUMNS", "FEW_SEEDS_MARK", "Comparison", "StudyMeta", "StudyTable", "collect",
           "comparison", "comparison_rows", "comparison_text", "default_setting", "per_seed",
           "read_meta", "read_results"]
