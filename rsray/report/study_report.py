"""A study folder's ``report.md`` and self-contained ``report.html`` (figures inlined).

``write_report(study_dir)`` reads ``study.json``, ``results.parquet`` (rebuilt from the seed
records when absent), the stage-1 searches and the saved test predictions, and writes:

- the data: shard set per hold-out, SYNTHETIC in large letters when it is, samples per split;
- the comparison table (arm x metric, mean ± 95 % CI half-width over seeds, best per column
  in bold, † where the paired t-test against the baseline, Holm-corrected, gives p < 0.05),
  the paired tests themselves and a paired bootstrap over test samples;
- figures: headline metric per arm, data efficiency, in- vs out-of-distribution, per-class
  gain of each fusion arm, missing-modality robustness, stage-1 search progress and
  hyper-parameter importance; the chosen hyper-parameters per cell.
"""

from __future__ import annotations

import base64
import html
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rsray.report import figures
from rsray.study.resampled import metric_for, resample_counts
from rsray.study.results import (
    Comparison,
    StudyMeta,
    collect,
    comparison,
    comparison_rows,
    default_setting,
    read_meta,
)
from rsray.study.stats import bootstrap_difference, holm

REPORT_MD = "report.md"
REPORT_HTML = "report.html"


# ----------------------------------------------------------------------------- bootstrap


def _load_preds(study_dir: Path, meta: StudyMeta, arm: str, fraction: float,
                holdout: str) -> tuple[pd.DataFrame | None, str]:
    """Seed-averaged test probabilities of one arm (rows: patch_id, sorted) and the task."""
    frames, task = [], ""
    for res in sorted(study_dir.glob("cells/*/seed_*/result.json")):
        doc = json.loads(res.read_text())
        k = doc["keys"]
        if k["arm"] != arm or float(k["fraction"]) != fraction or k["holdout"] != holdout:
            continue
        task = doc.get("task", "")
        path = (doc.get("predictions") or {}).get("test")
        if path and Path(path).exists():
            frames.append(pd.read_parquet(path, columns=["patch_id", "target", "probs"]))
    if not frames:
        return None, task
    base = frames[0].sort_values("patch_id").reset_index(drop=True)
    probs = np.mean([np.stack(f.sort_values("patch_id")["probs"].to_numpy()) for f in frames],
                    axis=0)
    return pd.DataFrame({"patch_id": base["patch_id"], "target": base["target"],
                         "probs": list(probs)}), task


def bootstrap_rows(study_dir: Path, meta: StudyMeta, df: pd.DataFrame, metric: str,
                   n_boot: int = 2000) -> tuple[list[dict[str, Any]], str]:
    """Paired bootstrap of ``metric`` (seed-averaged predictions) of every arm vs baseline."""
    fraction, holdout = default_setting(df)
    base, task = _load_preds(study_dir, meta, meta.baseline, fraction, holdout)
    if base is None:
        return [], "no saved test predictions (evaluation.predictions off, or segmentation)"
    fn = metric_for(metric, task)
    if fn is None:
        return [], f"no bootstrap metric for {metric!r} on a {task} task"
    target = np.stack(base["target"].to_numpy())
    n = len(target)
    # one set of resample counts for every arm: each arm is scored once per resample and
    # every comparison with the baseline stays paired
    counts = resample_counts(n, n_boot, seed=0)
    ones = np.ones((1, n), dtype=np.int32)
    base_probs = np.stack(base["probs"].to_numpy())
    base_full, base_dist = fn(base_probs, target, ones)[0], fn(base_probs, target, counts)
    out = []
    for arm in meta.arms:
        if arm == meta.baseline:
            continue
        other, _ = _load_preds(study_dir, meta, arm, fraction, holdout)
        if other is None or list(other["patch_id"]) != list(base["patch_id"]):
            continue
        probs = np.stack(other["probs"].to_numpy())
        res = bootstrap_difference(fn(probs, target, ones)[0] - base_full,
                                   fn(probs, target, counts) - base_dist, n)
        out.append({"arm": arm, "res": res})
    for row, p in zip(out, holm([r["res"].p_value for r in out]), strict=True):
        row["holm_p"] = p
    return out, "" if out else "no other arm with test predictions of the same samples"


# ----------------------------------------------------------------------------- importance


def importance(search: dict[str, Any]) -> dict[str, float] | None:
    """FANOVA importance of the stage-1 parameters of one cell (None: too few trials)."""
    import optuna

    trials = [t for t in search.get("trials", []) if t.get("value") is not None
              and math.isfinite(float(t["value"]))]
    if len(trials) < 3:
        return None
    names = sorted({k for t in trials for k in t["params"]})
    dists: dict[str, Any] = {}
    for n in names:
        vals = [t["params"].get(n) for t in trials]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            lo, hi = float(min(vals)), float(max(vals))
            if lo == hi:
                continue
            dists[n] = optuna.distributions.FloatDistribution(lo, hi)
        else:
            dists[n] = optuna.distributions.CategoricalDistribution(sorted({str(v)
                                                                            for v in vals}))
    if not dists:
        return None
    study = optuna.create_study(direction="minimize" if search.get("mode") == "min"
                                else "maximize")
    for t in trials:
        params = {n: (float(t["params"][n]) if isinstance(d, optuna.distributions
                                                          .FloatDistribution)
                      else str(t["params"][n])) for n, d in dists.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=float(t["value"])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    return {k: float(v) for k, v in imp.items()}


# ---------------------------------------------------------------------------------- data


def data_section(study_dir: Path, meta: StudyMeta, df: pd.DataFrame) -> tuple[bool, list[str]]:
    """(synthetic?, markdown lines) about the shard sets."""
    from rsray.data.shards import read_manifest

    lines, synthetic = [], False
    for holdout, uri in meta.data.items():
        try:
            m = read_manifest(uri)
        except Exception as exc:  # a moved shard set must not stop the report
            lines.append(f"- hold-out `{holdout or 'none'}`: `{uri}` (manifest unreadable: "
                         f"{type(exc).__name__})")
            continue
        synthetic |= bool(m.synthetic)
        counts = ", ".join(f"{s} {n}" for s, n in sorted(m.splits.items()))
        lines.append(f"- hold-out `{holdout or 'none'}`: `{uri}` — "
                     f"{'**SYNTHETIC** ' if m.synthetic else ''}{m.task}, "
                     f"{len(m.classes)} classes; samples per split: {counts}")
    n = df[(df.metric == "n_samples") & (df.dropped == "")].groupby("split")["value"].max()
    if len(n):
        lines.append("- samples scored in stage 2: " + ", ".join(f"{s} {int(v)}"
                                                                  for s, v in n.items()))
    return synthetic, lines


# -------------------------------------------------------------------------------- report


def _table_md(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(r) + " |" for r in rows]]


def _tests_rows(cmp: Comparison, meta: StudyMeta, metric: str) -> list[list[str]]:
    rows = []
    for arm in meta.arms:
        t = cmp.tests.get((arm, metric))
        if t is None:
            continue
        rows.append([arm, f"{t.mean_diff:+.4f}", f"[{t.ci_low:+.4f}, {t.ci_high:+.4f}]",
                     f"{t.p_value:.3g}", f"{cmp.holm_p.get((arm, metric), math.nan):.3g}",
                     str(t.n)])
    return rows


def build_report(study_dir: str | Path) -> tuple[str, dict[str, Path]]:
    """The report as Markdown (figures referenced by relative path) and the figure files."""
    root = Path(study_dir)
    meta = read_meta(root)
    results = root / "results.parquet"
    df = pd.read_parquet(results) if results.is_file() else collect(root).rows
    if (root / "cells").is_dir() and not results.is_file():
        df = collect(root).rows
    df = df.astype({"fraction": float, "dropped": str, "holdout": str})
    synthetic, data_lines = data_section(root, meta, df)
    meta.synthetic = synthetic
    figdir = root / "figures"
    lines = [f"# Study report: {meta.name}", ""]
    if synthetic:
        lines += ["> **⚠ SYNTHETIC DATA.** Every number below comes from a synthetic twin "
                  "(generated inputs with a known cross-modal signal), not from the real "
                  "dataset.", ""]
    lines += ["## Data", "", *data_lines, ""]
    if not len(df):
        lines += ["No finished runs yet."]
        return "\n".join(lines) + "\n", {}
    fraction, holdout = default_setting(df)
    cmp = comparison(df, meta)
    headline = cmp.metrics[0] if cmp.metrics else None
    seeds = df.groupby("arm")["seed"].nunique()
    lines += ["## Comparison (test split)", "",
              f"Fraction {fraction:g}, hold-out `{holdout}`; mean ± 95 % CI half-width "
              f"(t-interval) over seeds ({', '.join(f'{a}: {n}' for a, n in seeds.items())}); "
              f"**bold**: best per column; †: differs from the baseline `{meta.baseline}` "
              "(paired t-test over seeds, Holm-corrected over arms, p < 0.05).", ""]
    lines += _table_md(["arm", *cmp.metrics], comparison_rows(cmp, meta))
    if "ood" in set(df.split):
        cmp_ood = comparison(df, meta, split="ood")
        lines += ["", "### Out-of-distribution split (`ood`)", ""]
        lines += _table_md(["arm", *cmp_ood.metrics], comparison_rows(cmp_ood, meta))
    figs: dict[str, Path] = {}
    if headline:
        lines += ["", f"### Paired tests against `{meta.baseline}` ({headline})", "",
                  "Paired t-test over seeds (difference arm - baseline):", ""]
        lines += _table_md(["arm", "mean diff", "95 % CI", "p", "p (Holm)", "seeds"],
                           _tests_rows(cmp, meta, headline))
        boot, why = bootstrap_rows(root, meta, df, headline)
        lines += ["", "Paired bootstrap over test samples (2000 resamples, predictions "
                  "averaged over seeds):", ""]
        if boot:
            lines += _table_md(
                ["arm", "diff", "95 % CI", "p", "p (Holm)", "samples"],
                [[b["arm"], f"{b['res'].mean_diff:+.4f}",
                  f"[{b['res'].ci_low:+.4f}, {b['res'].ci_high:+.4f}]",
                  f"{b['res'].p_value:.3g}", f"{b['holm_p']:.3g}", str(b["res"].n)]
                 for b in boot])
        else:
            lines.append(f"_not available: {why}_")
        plan = [
            ("comparison", "Headline metric per arm",
             lambda p: figures.comparison_bars(df, meta, headline, p)),
            ("fractions", "Data efficiency",
             lambda p: figures.fraction_curves(df, meta, headline, p)),
            ("id_ood", "In- vs out-of-distribution",
             lambda p: figures.id_vs_ood(df, meta, headline, p)),
            ("class_metric", "Per-class metric of every arm",
             lambda p: figures.class_metric_heatmap(df, meta, p)),
            ("class_gain", "Per-class gain of each fusion arm",
             lambda p: figures.class_gain_heatmap(df, meta, p)),
            ("missing_modality", "Missing-modality robustness",
             lambda p: figures.missing_modality(df, meta, headline, p)),
        ]
        lines += ["", "## Figures", ""]
        for key, title, draw in plan:
            path = draw(figdir / f"{key}.png")
            if path is None:
                lines += [f"### {title}", "", "_not applicable to this study's factors._", ""]
                continue
            figs[key] = path
            lines += [f"### {title}", "", f"![{title}](figures/{key}.png)", ""]
    searches = [json.loads(p.read_text()) for p in sorted(root.glob("cells/*/search.json"))]
    lines += ["## Stage 1: hyper-parameter search", ""]
    prog = figures.search_progress(searches, figdir / "search.png")
    if prog is not None:
        figs["search"] = prog
        lines += ["![best-so-far](figures/search.png)", ""]
    imps = {s["cell"]: imp for s in searches if (imp := importance(s))}
    imp_fig = figures.importance_bars(imps, figdir / "importance.png")
    if imp_fig is not None:
        figs["importance"] = imp_fig
        lines += ["![importance](figures/importance.png)", ""]
    else:
        lines += ["_Hyper-parameter importance needs at least 3 finished trials per cell._", ""]
    lines += ["Chosen hyper-parameters per cell (stage-1 best, validation split):", ""]
    hp_rows = [[s["cell"], str(len(s.get("trials", []))),
                f"{s['value']:.4f}" if isinstance(s.get("value"), float) else "-",
                ", ".join(f"{k.removeprefix('model.params.')}={_short(v)}"
                          for k, v in (s.get("params") or {}).items()) or "(fixed)"]
               for s in searches]
    lines += _table_md(["cell", "trials", "best val", "parameters"], hp_rows)
    lines += ["", f"Tidy results: `results.parquet` / `results.csv` ({len(df)} rows); "
              "hyper-parameters: `hparams.json` / `hparams.csv`."]
    return "\n".join(lines) + "\n", figs


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _md_to_html(md: str, root: Path) -> str:
    """The report Markdown as HTML with each figure inlined as base64 PNG."""
    import re

    out, in_table, rows = [], False, []

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        return re.sub(r"(?<![\w*])_(.+?)_(?!\w)", r"<i>\1</i>", text)

    def flush() -> None:
        nonlocal rows
        if rows:
            head, *body = rows
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head)
                       + "</tr>" + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r)
                                           + "</tr>" for r in body) + "</table>")
        rows = []

    for line in md.splitlines():
        if line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([c.strip() for c in line.strip("|").split(" | ")])
            in_table = True
            continue
        if in_table:
            flush()
            in_table = False
        if m := re.match(r"!\[(.*)\]\((.+)\)", line):
            data = base64.b64encode((root / m.group(2)).read_bytes()).decode()
            out.append(f'<p><img alt="{html.escape(m.group(1))}" '
                       f'src="data:image/png;base64,{data}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line.lstrip('# '))}</h{level}>")
        elif line.startswith("> "):
            out.append(f'<div class="synthetic">{inline(line[2:])}</div>')
        elif line.startswith("- "):
            out.append(f"<ul><li>{inline(line[2:])}</li></ul>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
             "table{border-collapse:collapse;margin:0.5em 0;}td,th{border:1px solid #bbb;"
             "padding:3px 8px;font-size:0.9em;}img{max-width:100%;}"
             ".synthetic{background:#c00;color:#fff;font-size:1.4em;padding:0.6em;"
             "font-weight:bold;}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rsray study report"
            f"</title><style>{style}</style></head><body>{''.join(out)}</body></html>\n")


def write_report(study_dir: str | Path) -> tuple[str, str]:
    """Write ``report.md`` and the self-contained ``report.html``; return their paths."""
    root = Path(study_dir)
    md, _ = build_report(root)
    (root / REPORT_MD).write_text(md)
    (root / REPORT_HTML).write_text(_md_to_html(md, root))
    return str(root / REPORT_MD), str(root / REPORT_HTML)


__all__ = ["REPORT_HTML", "REPORT_MD", "bootstrap_rows", "build_report", "importance",
           "write_report"]
