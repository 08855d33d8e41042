"""A study folder's ``report.md`` and self-contained ``report.html`` (figures inlined).

``write_report(study_dir)`` reads ``study.json``, ``results.parquet`` (rebuilt from the seed
records when absent), the stage-1 searches and the saved test predictions, and writes a report
that stands on its own:

- the question (the spec's ``description``), every arm's definition (model, modalities, fixed
  and searched parameters, parameter count, seeds, compute time), the budget and the
  selection metric (:mod:`rsray.report.definition`);
- the data: shard set per hold-out, SYNTHETIC in large letters when it is, samples per split;
- the comparison table (arm x metric, mean ± 95 % CI over seeds, clipped to the metric's
  range, none below 3 seeds; best per column in bold; † where the seed-level paired t-test
  against the baseline, Holm-corrected, gives p < 0.05) and the paper's published values
  beside this run's when the spec has them;
- the two tests side by side, which one is primary and why, and every disagreement flagged:
  the seed-level paired t-test and the paired bootstrap over test *groups* (scene, tile,
  zone: :mod:`rsray.report.significance`); per-class intervals;
- figures (PNG inlined in the HTML, SVG beside): headline metric per arm with every seed,
  data efficiency, in- vs out-of-distribution, per-class metric and gain, missing-modality
  robustness, stage-1 search progress and hyper-parameter importance; the chosen
  hyper-parameters per cell;
- provenance: versions, commit, shard sets' manifest hashes, dates.

Every table is also written as CSV and LaTeX (booktabs) under ``tables/``.
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
from rsray.report.definition import arms_section, provenance_section
from rsray.report.significance import (
    N_BOOT,
    bootstrap_rows,
    paired_cell,
    per_class_intervals,
)
from rsray.report.tables import arm_label, metric_label, paper_value, write_table
from rsray.study.resampled import metric_for
from rsray.study.results import (
    FEW_SEEDS_MARK,
    Comparison,
    StudyMeta,
    collect,
    comparison,
    comparison_rows,
    default_setting,
    per_seed,
    read_meta,
)
from rsray.study.stats import MIN_SEEDS, metric_range, prob_improvement, summarize, verdict

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
TABLES = "tables"


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


def _comparison_lines(cmp: Comparison, meta: StudyMeta, tables: Path, name: str,
                      caption: str) -> list[str]:
    header = ["arm", *[metric_label(m) if name == "comparison" else metric_label(m, "ood")
                       for m in cmp.metrics]]
    rows = comparison_rows(cmp, meta)
    for r in rows:
        r[0] = r[0].replace(r[0].split(" ")[0], arm_label(r[0].split(" ")[0]), 1)
    return write_table(tables, name, header, rows, caption)


def _task_and_classes(root: Path) -> tuple[str, list[str], str]:
    """The task, class names and group description of the study's test predictions."""
    for res in sorted(root.glob("cells/*/seed_*/result.json")):
        doc = json.loads(res.read_text())
        what = "group"
        pred = (doc.get("predictions") or {}).get("test")
        if pred and (Path(pred) / "_predictions.json").is_file():
            what = json.loads((Path(pred) / "_predictions.json").read_text()).get("group") \
                or what
        return str(doc.get("task", "")), list(doc.get("classes") or []), what
    return "", [], "group"


def paper_lines(df: pd.DataFrame, meta: StudyMeta, tables: Path) -> list[str]:
    """The paper's published value beside this run's, per arm and metric."""
    if not meta.paper_results:
        return []
    rows = []
    for arm in meta.arms:
        for metric, value in (meta.paper_results.get(arm) or {}).items():
            shown, note = paper_value(metric, value)
            v = per_seed(df, arm, metric).to_numpy()
            s = summarize(v, bounds=metric_range(metric)) if len(v) else None
            ours = "not measured" if s is None else (
                f"{s.mean:.4f} [{s.ci_low:.4f}, {s.ci_high:.4f}]" if s.has_interval
                else f"{s.mean:.4f} ({s.n} seed{'s' if s.n != 1 else ''}, no interval)")
            diff = f"{s.mean - shown:+.4f}" if s is not None else "-"
            rows.append([arm_label(arm), metric_label(metric), f"{shown:.4f}{note}", ours,
                         diff])
    if not rows:
        return []
    src = f" Source: {meta.paper_source}." if meta.paper_source else ""
    lines = ["## The paper's values beside this run's", "",
             "The paper's numbers were obtained on the paper's data, splits and hardware; this "
             "run's on the data named under *Data* (a synthetic twin says nothing about the "
             f"real dataset). Mean over seeds with its 95 % t-interval.{src}", ""]
    return lines + write_table(tables, "paper", ["arm", "metric",
                                                 "paper (their data and hardware)",
                                                 "this run (this data)",
                                                 "this run minus paper"], rows,
                               "Published values and this run") + [""]


def tests_lines(root: Path, meta: StudyMeta, df: pd.DataFrame, cmp: Comparison,
                tables: Path, task: str, what: str) -> list[str]:
    """Both tests per metric and arm, which is primary, and where they disagree."""
    seeds = int(df.groupby("arm")["seed"].nunique().min())
    lines = ["## Statistical tests against the baseline", "",
             f"Two tests, two sources of uncertainty. **Primary: the seed-level paired t-test** "
             f"(arm minus `{meta.baseline}` over the same seeds, Holm-corrected over arms). It "
             "measures *training variance*: would the arm still beat the baseline if both were "
             "trained again? That is the question a fusion strategy's claim rests on, and what "
             "† in the tables means. **Secondary: the paired bootstrap over the test set**, "
             f"resampling whole {what}s (neighbouring patches are correlated, so single "
             "patches would give too narrow an interval), on the arms' seed-averaged "
             "predictions. It measures *test-set sampling*: would the difference hold on "
             "another test set from the same kind of regions? Neither covers the other's "
             "source of uncertainty: a difference is established only when both agree; the "
             "last column flags every disagreement.", ""]
    if seeds < MIN_SEEDS:
        lines += [f"**The primary test is not available:** {seeds} seed(s) per arm, fewer than "
                  f"{MIN_SEEDS}; a t-test or t-interval from so few seeds means nothing (with 2 "
                  "seeds the 95 % t-quantile is 12.7). Only the bootstrap remains, and it "
                  "ignores training variance: run more seeds before drawing conclusions.", ""]
    header = ["metric", "arm", "seeds: diff", "seeds: 95 % CI", "seeds: p (Holm)",
              "bootstrap: diff", "bootstrap: 95 % CI", "bootstrap: p (Holm)", "verdict"]
    rows, whys = [], {}
    for metric in cmp.metrics:
        boot, why = bootstrap_rows(root, meta, df, metric, N_BOOT, what) \
            if metric_for(metric, task) else ([], "")
        whys[metric] = why
        by_arm = {b["arm"]: b for b in boot}
        for arm in meta.arms:
            if arm == meta.baseline:
                continue
            t = cmp.tests.get((arm, metric))
            b = by_arm.get(arm)
            lower = metric.endswith(("loss", "rmse_mean", "mae_mean"))
            tcells = ([*paired_cell(t), _p(cmp.holm_p.get((arm, metric), math.nan))]
                      if t is not None else ["-", "no test", "-"])
            bcells = ([*paired_cell(b["res"]), _p(b["holm_p"])] if b is not None
                      else ["-", "not available", "-"])
            v = verdict(_holm(t, cmp.holm_p.get((arm, metric))),
                        _holm(b["res"], b["holm_p"]) if b else None)
            if lower:
                v = v.replace("better", "HIGHER").replace("worse", "better").replace(
                    "HIGHER", "worse")
            rows.append([metric_label(metric), arm_label(arm), *tcells, *bcells,
                         f"**{v}**" if v.startswith("DISAGREE") else v])
    lines += write_table(tables, "tests", header, rows, "Seed-level and test-set tests")
    lines += improvement_lines(df, meta, cmp, tables)
    notes = sorted({w for w in whys.values() if w})
    lines += ["", *[f"Bootstrap ({N_BOOT} resamples): {w}." for w in notes], ""]
    if any(r[-1].startswith("**DISAGREE") for r in rows):
        lines += ["**The tests disagree on at least one comparison** (bold): report such a "
                  "difference as unresolved, or add seeds (training variance) or test "
                  f"{what}s (test-set sampling), whichever side is uncertain.", ""]
    return lines


def improvement_lines(df: pd.DataFrame, meta: StudyMeta, cmp: Comparison,
                      tables: Path) -> list[str]:
    """P(a seed of the arm beats a seed of the baseline) on the headline metric."""
    if not cmp.metrics:
        return []
    metric = cmp.metrics[0]
    sign = -1.0 if metric.endswith(("loss", "rmse_mean", "mae_mean")) else 1.0
    base = per_seed(df, meta.baseline, metric).to_numpy()
    rows = []
    for arm in meta.arms:
        v = per_seed(df, arm, metric).to_numpy()
        if arm == meta.baseline or not len(v) or not len(base):
            continue
        r = prob_improvement(sign * v, sign * base)
        ci = f"[{r.ci_low:.2f}, {r.ci_high:.2f}]" if math.isfinite(r.ci_low) else (
            f"none (fewer than {MIN_SEEDS} seeds)")
        rows.append([arm_label(arm), f"{r.p:.2f}", ci, f"{r.n_a} vs {r.n_b}"])
    if not rows:
        return []
    return ["", f"Probability of improvement on {metric_label(metric)}: the chance that a "
            f"training run of the arm scores better than a run of `{meta.baseline}` (over "
            "every pair of seeds; 0.5: no better than a coin flip), with a bootstrap "
            "interval over seeds.", "",
            *write_table(tables, "improvement", ["arm", "P(arm better than baseline)",
                                                 "95 % CI", "seeds"], rows,
                         "Probability of improvement over the baseline")]


def _p(p: float) -> str:
    return f"{p:.3g}" if math.isfinite(p) else "-"


def _holm(res: Any, p: float | None) -> Any:
    """``res`` with its p-value replaced by the Holm-adjusted one (for :func:`verdict`)."""
    if res is None or p is None:
        return res
    from dataclasses import replace

    return replace(res, p_value=p)


def per_class_lines(root: Path, meta: StudyMeta, df: pd.DataFrame, tables: Path,
                    classes: list[str], what: str) -> list[str]:
    """Per-class metric of every arm with its bootstrap interval (wide table; long CSV)."""
    if not classes:
        return []
    pc, note = per_class_intervals(root, meta, df, classes, N_BOOT, group_what=what)
    lines = ["## Per-class intervals", ""]
    if pc is None or pc.empty:
        return [*lines, f"_not available: {note}_", ""]
    tables.mkdir(parents=True, exist_ok=True)
    pc.to_csv(tables / "per_class_long.csv", index=False)
    arms = list(dict.fromkeys(pc["arm"]))
    rows = []
    for cls in classes:
        row = [cls]
        for arm in arms:
            r = pc[(pc.arm == arm) & (pc["class"] == cls)]
            if r.empty or not np.isfinite(r["value"].iloc[0]):
                row.append("-")
                continue
            r0 = r.iloc[0]
            row.append(f"{r0.value:.3f} [{r0.low:.3f}, {r0.high:.3f}]")
        rows.append(row)
    lines += [f"Seed-averaged predictions; {note}. The differences to the baseline per class, "
              "with their paired intervals, are in `tables/per_class_long.csv`.", ""]
    return lines + write_table(tables, "per_class", ["class", *[arm_label(a) for a in arms]],
                               rows, "Per-class metric with 95 % bootstrap intervals") + [""]


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
    figdir, tables = root / "figures", root / TABLES
    lines = [f"# Study report: {meta.name}", ""]
    if synthetic:
        lines += ["> **⚠ SYNTHETIC DATA.** Every number below comes from a synthetic twin "
                  "(generated inputs with a known cross-modal signal), not from the real "
                  "dataset.", ""]
    lines += ["## Question", "", meta.description or "_The spec gives no description._", ""]
    task, classes, what = _task_and_classes(root)
    arm_lines, _ = arms_section(root, meta, tables, task)
    lines += [*arm_lines, "## Data", "", *data_lines, ""]
    figs: dict[str, Path] = {}
    if not len(df):
        lines += ["No finished runs yet.", ""]
        return "\n".join(lines + provenance_section(meta, tables)) + "\n", figs
    fraction, holdout = default_setting(df)
    cmp = comparison(df, meta)
    headline = cmp.metrics[0] if cmp.metrics else None
    seeds = df.groupby("arm")["seed"].nunique()
    lines += ["## Comparison (test split)", "",
              f"Fraction {fraction:g}, hold-out `{holdout}`; mean ± 95 % CI half-width "
              f"(t-interval) over seeds ({', '.join(f'{a}: {n}' for a, n in seeds.items())}), "
              "shown as [low, high] where clipped to the metric's range; "
              f"{FEW_SEEDS_MARK}: fewer than {MIN_SEEDS} seeds, no interval; "
              f"**bold**: best per column; †: differs from the baseline `{meta.baseline}` "
              "(paired t-test over seeds, Holm-corrected over arms, p < 0.05).", ""]
    lines += _comparison_lines(cmp, meta, tables, "comparison", "Comparison on the test split")
    if "ood" in set(df.split):
        cmp_ood = comparison(df, meta, split="ood")
        lines += ["", "### Out-of-distribution split (`ood`)", ""]
        lines += _comparison_lines(cmp_ood, meta, tables, "comparison_ood",
                                   "Comparison on the out-of-distribution split")
    lines += ["", *paper_lines(df, meta, tables)]
    lines += tests_lines(root, meta, df, cmp, tables, task, what)
    lines += per_class_lines(root, meta, df, tables, classes, what)
    if headline:
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
        lines += ["## Figures", "", "Each figure is also in `figures/` as SVG (vector).", ""]
        for key, title, draw in plan:
            path = draw(figdir / f"{key}.png")
            if path is None:
                lines += [f"### {title}", "", "_not applicable to this study's factors._", ""]
                continue
            figs[key] = path
            lines += [f"### {title}", "", f"![{title}](figures/{key}.png)", "",
                      f"_Vector: [`figures/{key}.svg`](figures/{key}.svg)._", ""]
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
    lines += write_table(tables, "hparams", ["cell", "trials", "best val", "parameters"],
                         hp_rows, "Chosen hyper-parameters per cell")
    lines += ["", f"Tidy results: `results.parquet` / `results.csv` ({len(df)} rows); "
              "hyper-parameters: `hparams.json` / `hparams.csv`.", ""]
    lines += provenance_section(meta, tables)
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
        text = re.sub(r"\[(.+?)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)
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
