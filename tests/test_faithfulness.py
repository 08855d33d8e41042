"""Every study preset resolves to its paper's recipe (studies/faithfulness/*.yaml), and
docs/presets.md shows exactly those tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rsray.study.faithfulness import check_table, load_table, render_doc

ROOT = Path(__file__).resolve().parents[1]
TABLES = sorted((ROOT / "studies" / "faithfulness").glob("*.yaml"))
SEEDS = {"deep-fusion-sen12ms-resnet.txt", "geo-covariates-data-efficiency-ood.txt",
         "lf-dlm-flair2-late-fusion.txt", "progressive-fusion-globe-lulc.txt",
         "vit-fusion-bigearthnet-mm-thesis.txt"}
PAPER_PRESETS = ["covariates_efficiency_ood", "flair2_lfdlm", "globe_progressive",
                 "sen12ms_resnet", "vit_bigearthnet"]


def test_every_paper_preset_has_a_table() -> None:
    assert [t.stem for t in TABLES] == PAPER_PRESETS
    for path in TABLES:
        table = load_table(path)
        assert table.spec == (ROOT / "studies" / f"{path.stem}.yaml").resolve()
        assert table.paper in SEEDS
        assert all(row.source.strip() for row in table.checks)


@pytest.mark.parametrize("path", TABLES, ids=[t.stem for t in TABLES])
def test_preset_resolves_to_the_papers_values(path: Path) -> None:
    wrong, n = check_table(load_table(path))
    assert not wrong, "\n".join(wrong)
    assert n >= len(load_table(path).checks)


def test_a_wrong_value_is_reported(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "studies/faithfulness/sen12ms_resnet.yaml").read_text())
    raw["spec"] = str(ROOT / "studies/sen12ms_resnet.yaml")
    raw["checks"] = [
        {"what": "Mini-batch", "key": "batch.global", "value": 32, "source": "s3"},
        {"what": "Backbone", "key": "model.kwargs.backbone", "value": "resnet50",
         "arms": ["late"], "variants": ["tuned"], "source": "s3.2"},
        {"what": "Nope", "key": "optim.nope", "value": 1, "variants": ["paper"],
         "arms": ["early"], "source": "x"},
    ]
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))
    wrong, _ = check_table(load_table(path))
    assert sum("batch.global = 25, the paper's 32" in w for w in wrong) == 10  # 5 arms x 2
    assert any(w.startswith("tuned/late: model.kwargs.backbone = 'resnet101'") for w in wrong)
    assert any("paper/early: optim.nope: cannot resolve" in w for w in wrong)


def test_docs_show_the_tables() -> None:
    doc = (ROOT / "docs" / "presets.md").read_text()
    assert render_doc(TABLES, doc) == doc, (
        "docs/presets.md is out of date: run python -m rsray.study.faithfulness")
