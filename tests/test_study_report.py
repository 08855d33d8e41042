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


N_TILES, PER_TILE = 12, 5


def _predictions(root: Path, arm: str, seed: int, quality: float) -> str:
    """Test predictions of one seed in the predictions format (folder of parts + meta)."""
    rng = np.random.default_rng(seed)
    n = N_TILES * PER_TILE
    target = (np.random.default_rng(99).random((n, len(CLASSES))) < 0.4).astype(np.float32)
    logits = 4 * (quality - 0.45) * (2 * target - 1) + rng.normal(0, 1, target.shape)
    probs = 1 / (1 + np.exp(-logits))
    folder = root / f"pred_{arm}_{seed}.parquet"
    folder.mkdir()
    pd.DataFrame({"patch_id": [f"p{i:03d}" for i in range(n)], "target": list(target),
                  "probs": list(probs.astype(np.float32)),
                  "group": [f"T{i // PER_TILE:02d}" for i in range(n)]}).to_parquet(
        folder / "part-00000.parquet")
    (folder / "_predictions.json").write_text(json.dumps({"task": "multilabel",
                                                          "group": "MGRS tile"}))
    return str(folder)


CHANNELS = {"s2": 4, "s1": 2}


def _checkpoint(out: Path, modalities: list[str]) -> str:
    """A checkpoint folder as training writes it (meta.json; the weights are not read)."""
    from rsray.config import Config

    ckpt = out / "checkpoint"
    ckpt.mkdir()
    (ckpt / "state.pt").write_bytes(b"")
    cfg = Config().with_overrides({"model.name": "test_early_fusion_cnn", "train.max_epochs": 7,
                                   "data.modalities": modalities})
    (ckpt / "meta.json").write_text(json.dumps({
        "config": cfg.to_dict(), "channels": {m: CHANNELS[m] for m in modalities},
        "classes": CLASSES, "task": "multilabel", "epoch": 0}))
    return str(ckpt)


def _study(tmp_path: Path, fractions=(0.25, 1.0), seeds=3, paper=None,
           checkpoints=False) -> Path:
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
            "description": "Which fusion of S2 and S1 classifies tiles best?",
            "single_modality": [], "base": {"train.max_epochs": 7},
            "search": {"num_samples": 6, "max_epochs": 3, "grace_period": 1,
                       "reduction_factor": 2},
            "factors": {"fractions": list(fractions), "holdouts": ["tile=X"], "seeds": seeds},
            "arms": [{"name": a, "model": "test_early_fusion_cnn", "modalities": m,
                      "space": "cnn" if a == "early" else None,
                      "params": {"model.params.width": 8}} for a, m in ARMS.items()]}
    if paper:
        spec["paper_results"] = paper
        spec["paper_source"] = "Table 3 of the paper"
    (tmp_path / "study.json").write_text(json.dumps({"spec": spec, "data": {},
                                                     "started": 1.7e9}))
    for arm, mean in MEANS.items():
        for seed in range(seeds):
            out = tmp_path / "cells" / f"{arm}__f1__tile-X" / f"seed_{seed}"
            out.mkdir(parents=True)
            keys = {"study": "t", "arm": arm, "model": "m", "fraction": 1.0,
                    "holdout": "tile-X", "seed": seed}
            ckpt = _checkpoint(out, ARMS[arm]) if seed == 0 and checkpoints else \
                str(out / "missing_checkpoint")
            (out / "result.json").write_text(json.dumps({
                "keys": keys, "checkpoint": ckpt, "rows": [],
                "predictions": {"test": _predictions(out, arm, seed, mean)},
                "task": "multilabel", "classes": CLASSES, "seconds": 90.0}))
    cell = tmp_path / "cells" / "early__f1__tile-X"
    cell.mkdir(parents=True, exist_ok=True)
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


FIGURES = ("comparison", "fractions", "id_ood", "class_metric", "class_gain",
           "missing_modality", "search", "importance")


def test_report_renders_every_arm(tmp_path: Path) -> None:
    from rsray.report.study_report import write_report
    from rsray.report.tables import arm_label

    root = _study(tmp_path)
    md_path, html_path = write_report(root)
    md = Path(md_path).read_text()
    table = md.split("## Comparison (test split)")[1].split("###")[0]
    for arm in ARMS:
        assert re.search(rf"^\| {arm_label(arm)}( \(baseline\))? \|", table, re.M), arm
    assert "**0.75" in table and "†" in table  # best early fusion, significant vs s2_only
    for fig in FIGURES:
        assert (root / "figures" / f"{fig}.png").stat().st_size > 5000, fig
        svg = root / "figures" / f"{fig}.svg"
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text(), fig
        assert f"figures/{fig}.png" in md
    html = Path(html_path).read_text()
    assert html.count("data:image/png;base64,") == 8
    assert "<table>" in html and 'src="figures/' not in html


def test_report_stands_on_its_own(tmp_path: Path) -> None:
    """Question, arms, budget, selection metric, provenance, paper column, grouped bootstrap,
    per-class intervals, CSV + LaTeX tables."""
    from rsray.report.study_report import write_report

    paper = {"early": {"ap_macro": 82.53}, "s2_only": {"ap_macro": 0.61}}
    root = _study(tmp_path, fractions=(1.0,), paper=paper, checkpoints=True)
    md = Path(write_report(root)[0]).read_text()
    assert "Which fusion of S2 and S1 classifies tiles best?" in md
    arms = md.split("## Arms")[1].split("## ")[0]
    assert "| early fusion" not in arms and "| early (`early`)" in arms
    assert "`test_early_fusion_cnn`" in arms and "width=8" in arms and "| cnn |" in arms
    assert "3 |" in arms and "4.5 min" in arms  # seeds run and 3 x 90 s of compute
    from rsray.models import create_model
    from rsray.report.definition import _count

    for arm, mods in ARMS.items():  # the parameter count of the model each arm trained
        model = create_model("test_early_fusion_cnn", modalities={m: CHANNELS[m] for m in mods},
                             num_classes=len(CLASSES))
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert re.search(rf"^\| [^|]*`{arm}`[^\n]*\| {re.escape(_count(n))} \|", arms, re.M), (
            arm, _count(n), arms)
    budget = md.split("## Budget and selection")[1].split("## ")[0]
    assert "6 trials per cell" in budget and "3 seed(s)" in budget and "7 epochs" in budget
    assert "selection metric" in budget and "val_" in budget
    prov = md.split("## Provenance")[1]
    for item in ("rsray", "git commit", "python", "torch", "ray", "timm", "study started",
                 "report written", "2023-11-14"):
        assert item in prov, item
    paper_tab = md.split("## The paper's values beside this run's")[1].split("## ")[0]
    assert "paper (their data and hardware)" in paper_tab and "this run (this data)" in paper_tab
    assert "0.8253 (published as 82.53 %)" in paper_tab and "Table 3 of the paper" in paper_tab
    tests = md.split("## Statistical tests against the baseline")[1].split("## Per-class")[0]
    assert "Primary: the seed-level paired t-test" in tests
    assert "resamples the 12 MGRS tiles of the test split (60 samples)" in tests
    assert re.search(r"\| test AP macro \| early \|.*\| agree: better \|", tests), tests
    per_class = md.split("## Per-class intervals")[1].split("## ")[0]
    assert all(c in per_class for c in CLASSES) and "[" in per_class
    assert re.search(r"^\| early \| 1\.00 \| \[1\.00, 1\.00\] \| 3 vs 3 \|$", tests, re.M), tests
    for name in ("arms", "comparison", "paper", "tests", "improvement", "per_class",
                 "provenance"):
        tex = (root / "tables" / f"{name}.tex").read_text()
        assert "\\toprule" in tex and "\\bottomrule" in tex, name
        assert pd.read_csv(root / "tables" / f"{name}.csv").shape[0] >= 1, name
    long = pd.read_csv(root / "tables" / "per_class_long.csv")
    ok = long.dropna()
    assert ((ok["low"] >= 0) & (ok["high"] <= 1) & (ok["low"] <= ok["value"] + 1e-9)).all()


def test_two_seeds_give_no_interval(tmp_path: Path) -> None:
    """2 seeds: the report says no interval is meaningful and draws no error bars."""
    from rsray.report.study_report import build_report

    root = _study(tmp_path, fractions=(1.0,), seeds=2)
    md, _ = build_report(root)
    table = md.split("## Comparison (test split)")[1].split("## ")[0]
    assert "±" not in table.split("\n\n", 2)[2] and "‡" in table
    assert "The primary test is not available" in md
    assert "| no interval |" in md.split("## Statistical tests")[1]


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


def test_resampling_is_chunked_grouped_and_repeatable(monkeypatch) -> None:
    """Chunks of resamples (bounded memory on a real test split) with the same draws for
    every arm; a group's samples always move together; too few groups fall back."""
    from rsray.report import significance

    monkeypatch.setattr(significance, "CHUNK_ELEMENTS", 1000)
    groups = np.array([f"t{i // 5}" for i in range(60)])
    rs = significance.resampling(groups, 300, seed=0, what="tile")
    chunks = list(rs.chunks())
    assert rs.grouped and rs.units == 12 and len(chunks) > 1
    counts = np.vstack(chunks)
    assert counts.shape == (300, 60) and (counts.sum(axis=1) % 5 == 0).all()
    assert (counts.reshape(300, 12, 5).std(axis=2) == 0).all()
    assert (np.vstack(list(rs.chunks())) == counts).all()
    assert "12 tiles" in rs.why
    few = significance.resampling(groups[:20], 10, what="tile")
    assert not few.grouped and "only 4 tiles," in few.why and few.units == 20
    none = significance.resampling(np.array([""] * 20), 10)
    assert not none.grouped and "records no spatial group" in none.why
