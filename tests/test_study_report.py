"""The study report on a synthetic results table (fast, no Ray)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from rsray.study.results import COLUMNS, comparison, read_meta

ARMS = {"s2_only": ["s2"], "s1_only": ["s1"], "early": ["s2", "s1"], "late": ["s2", "s1"]}
MEANS = {"s2_only": 0.60, "s1_only": 0.50, "early": 0.75, "late": 0.61}
CLASSES = ["forest", "water", "urban"]


def _study(tmp_path: Path, fractions=(0.25, 1.0), seeds=3) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for f in fractions:
        for arm, mean in MEANS.items():
            for seed in range(seeds):
                base = mean - 0.1 * (1 - f) + rng.normal(0, 0.01)
                for split, shift in (("test", 0.0), ("ood", -0.08)):
                    drops = [""] + (ARMS[arm] if len(ARMS[arm]) > 1 else [])
                    for drop in drops:
                        v = base + shift - (0.15 if drop else 0.0)
                        keys = {"study": "t", "arm": arm, "model": "m", "fraction": f,
                                "holdout": "tile-X", "seed": seed, "split": split,
                                "dropped": drop}
                        rows.append({**keys, "metric": "ap_macro", "value": v})
                        rows.append({**keys, "metric": "hamming_loss", "value": 1 - v})
                        rows.append({**keys, "metric": "n_samples", "value": 40.0})
                        for i, c in enumerate(CLASSES):
                            rows.append({**keys, "metric": f"ap_class/{c}",
                                         "value": v + 0.05 * i})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.to_parquet(tmp_path / "results.parquet")
    spec = {"name": "t", "baseline": "s2_only", "metrics": ["ap_macro", "hamming_loss"],
            "single_modality": [],
            "arms": [{"name": a, "modalities": m} for a, m in ARMS.items()]}
    (tmp_path / "study.json").write_text(json.dumps({"spec": spec, "data": {}}))
    cell = tmp_path / "cells" / "early__f1__tile-X"
    cell.mkdir(parents=True)
    trials = [{"trial": f"t{i}", "params": {"optim.lr": 10 ** -(2 + i / 3),
                                              "model.params.depth": [2, 4][i % 2]},
               "value": 0.5 + 0.05 * i} for i in range(6)]
    (cell / "search.json").write_text(json.dumps({
        "cell": cell.name, "params": trials[-1]["params"], "metric": "val_ap_macro",
        "mode": "max", "value": 0.75, "trials": trials}))
    return tmp_path


def test_comparison_marks_best_and_significance(tmp_path: Path) -> None:
    root = _study(tmp_path)
    df = pd.read_parquet(root / "results.parquet")
    cmp = comparison(df, read_meta(root))
    assert cmp.best == {"ap_macro": "early", "hamming_loss": "early"}
    assert cmp.holm_p[("early", "ap_macro")] < 0.05
    assert cmp.holm_p[("late", "ap_macro")] > cmp.holm_p[("early", "ap_macro")]
    assert abs(cmp.summaries[("s1_only", "ap_macro")].mean - 0.50) < 0.02


def test_report_renders_every_arm(tmp_path: Path) -> None:
    from rsray.report.study_report import write_report

    root = _study(tmp_path)
    md_path, html_path = write_report(root)
    md = Path(md_path).read_text()
    table = md.split("## Comparison (test split)")[1].split("###")[0]
    for arm in ARMS:
        assert re.search(rf"^\| {arm}( \(baseline\))? \|", table, re.M), arm
    assert "**0.75" in table and "†" in table  # best early fusion, significant vs s2_only
    for fig in ("comparison", "fractions", "id_ood", "class_metric", "class_gain",
                "missing_modality", "search", "importance"):
        assert (root / "figures" / f"{fig}.png").stat().st_size > 5000, fig
    html = Path(html_path).read_text()
    assert html.count("data:image/png;base64,") == 8
    assert "<table>" in html and "figures/" not in html.split("<body>")[1].replace(
        "results.parquet", "")


def test_class_gain_is_against_best_single_arm(tmp_path: Path) -> None:
    from rsray.report.figures import class_gain_matrix, class_metric_matrix

    root = _study(tmp_path, fractions=(1.0,))
    df = pd.read_parquet(root / "results.parquet")
    gain, label = class_gain_matrix(df, read_meta(root))
    assert list(gain.index) == ["early", "late"] and list(gain.columns) == CLASSES
    assert "s2_only" in label
    assert np.allclose(gain.loc["early"].to_numpy(), 0.15, atol=0.02)
    per_arm, _ = class_metric_matrix(df, read_meta(root))
    assert list(per_arm.index) == list(ARMS) and list(per_arm.columns) == CLASSES
    assert np.allclose(per_arm.loc["early"] - per_arm.loc["s2_only"], gain.loc["early"])
