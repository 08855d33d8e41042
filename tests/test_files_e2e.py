"""Own data end to end: YAML -> ``rsray prepare files`` -> ``rsray study init`` -> study smoke ->
report, and missing modalities through the shards and the pipeline (Ray integration tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from rsray.cli import main
from rsray.data.sources.files import write_files_dataset


def test_missing_modality_reaches_the_model_as_zeros_and_a_bit(tmp_path: Path, ray_session):
    from rsray.config import DataConfig
    from rsray.data.datasets import build_datasets
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import prepare
    from rsray.data.sources.files import FilesSource

    y = write_files_dataset(tmp_path / "raw", 20, 0, corrupt={"missing_modality": [0, 1]},
                            allow_missing=True, progress=False)
    result = prepare(FilesSource(y), str(tmp_path / "shards"))
    m = result.manifest
    assert m.modalities["s1"]["optional"] and m.info["missing_modalities"] == {"s1": 2}
    n_train_s1 = sum(1 for r in _rows(tmp_path / "shards", "train") if r["present_s1"])
    assert m.band_stats["s1"]["VV"]["pixels"] == n_train_s1 * 16 * 16  # zeros left out
    cfg = DataConfig(uri=str(tmp_path / "shards"), batch_size=64, image_size=32)
    manifest, datasets = build_datasets(cfg, splits=("train",))
    plan = make_plan(manifest, cfg)
    raw = datasets["train"].take_batch(batch_size=64, batch_format="numpy")
    batch = finalize_batch(raw, plan)
    present = batch["s1_present"].numpy()
    assert set(present.tolist()) == {0.0, 1.0} and batch["s2_present"].numpy().all()
    assert not batch["s1"].numpy()[present == 0].any()  # zeros, and the bit says why
    # a model that acts on the bit trains on these samples end to end (Ray Train, 1 worker)
    from rsray.config import load_config
    from rsray.train.driver import fit

    result = fit(load_config(None, [
        f"data.uri={tmp_path / 'shards'}", "data.batch_size=8", "data.image_size=32",
        "model.name=test_vit_modality_token_fusion", "scaling.cpus_per_worker=0.5",
        "train.max_epochs=1", f"train.storage_path={tmp_path / 'runs'}", "train.name=missing",
    ]))
    assert result.error is None and np.isfinite(result.metrics["val_loss"])


def _rows(shards: Path, split: str) -> list[dict]:
    import pyarrow.parquet as pq

    out: list[dict] = []
    for f in sorted((shards / split).glob("*.parquet")):
        out += pq.read_table(f, columns=["patch_id", "present_s1"]).to_pylist()
    return out


def test_prepare_files_from_s3_roots_to_s3_shards(tmp_path: Path, s3_bucket: str, ray_session):
    """Modality roots, label table, table modality and split files on S3; shards to S3."""
    import pyarrow.parquet as pq
    import s3fs

    raw = tmp_path / "raw"
    y = write_files_dataset(raw, 16, 0, layout="flat", corrupt={"missing_modality": [3]},
                            progress=False)
    fs = s3fs.S3FileSystem()  # endpoint and dummy credentials from the environment (conftest)
    fs.put(str(raw), s3_bucket[5:] + "/", recursive=True)
    doc = yaml.safe_load(y.read_text())
    remote = f"{s3_bucket}/raw"
    for m in doc["modalities"].values():
        key = "file" if m.get("kind") == "table" else "root"
        m[key] = f"{remote}/{m[key]}"
    doc["labels"]["file"] = f"{remote}/labels.csv"
    doc["splits"]["files"] = {k: f"{remote}/{v}" for k, v in doc["splits"]["files"].items()}
    local_yaml = tmp_path / "s3.yaml"  # the description stays local, every file is on S3
    local_yaml.write_text(yaml.safe_dump(doc))
    out = f"{s3_bucket}/shards"
    assert main(["prepare", "files", str(local_yaml), "--out", out]) == 0
    manifest = json.loads(fs.cat_file(f"{out[5:]}/manifest.json"))
    assert manifest["rows"] == 15 and sum(manifest["splits"].values()) == 15
    (reject,) = manifest["rejects"]
    assert reject["path"].startswith(f"{remote}/") and "s1" in reject["reason"]
    assert set(manifest["modalities"]) == {"s2", "s1", "dem", "weather"}
    files = fs.glob(f"{out[5:]}/train/*.parquet")
    table = pq.read_table(files[0], filesystem=fs)
    assert {"s2", "s1", "dem", "meta_lat"} <= set(table.column_names) and table.num_rows > 0


def test_description_on_s3_resolves_relative_paths_there(tmp_path: Path, s3_bucket: str):
    import s3fs

    from rsray.data.sources.files import load_files_config

    y = write_files_dataset(tmp_path / "raw", 4, 0, layout="flat", progress=False)
    s3fs.S3FileSystem().put(str(y), f"{s3_bucket[5:]}/data/dataset.yaml")
    cfg = load_files_config(f"{s3_bucket}/data/dataset.yaml")
    assert cfg.source == f"{s3_bucket}/data/dataset.yaml"
    assert cfg.labels.file == f"{s3_bucket}/data/labels.csv"
    assert [r.path for r in cfg.modalities[0].roots] == [f"{s3_bucket}/data/s2"]


def test_yaml_to_prepare_to_study_init_to_report(tmp_path: Path, ray_session, capsys):
    y = write_files_dataset(tmp_path / "raw", 40, 0, corrupt={"wrong_crs": 5},
                            progress=False)
    shards = str(tmp_path / "shards")
    assert main(["prepare", "files", str(y), "--out", shards]) == 0
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert any("CRS" in r["reason"] for r in manifest["rejects"])
    from rsray.data.groups import group_rule, shard_columns

    train = sorted(str(p) for p in (tmp_path / "shards" / "train").glob("*.parquet"))
    rule = group_rule("files", shard_columns(train))  # the grouped bootstrap's unit
    assert rule is not None and rule.columns == ("meta_group",)
    capsys.readouterr()
    assert main(["study", "init", "--data", shards]) == 0
    text = capsys.readouterr().out
    spec = yaml.safe_load(text)
    names = [a["name"] for a in spec["arms"]]
    assert names[:7] == ["s2_only", "s1_only", "early", "middle", "late", "gated",
                         "attention"] and "vit_sct" in names
    assert {a["space"] for a in spec["arms"]} == {"shared"}  # one search space for all
    assert spec["metrics"] == ["oa", "aa", "kappa"] and spec["baseline"] == "s2_only"
    full = tmp_path / "study.yaml"
    full.write_text(text)
    assert main(["study", str(full), "--check", "--data", shards]) == 0
    # the smoke run keeps two arms with fixed hyper-parameters (no stage-1 search) so the test
    # stays short; the spec is otherwise as written
    keep = ("s2_only", "gated")
    spec["arms"] = [a for a in spec["arms"] if a["name"] in keep]
    spec["single_modality"] = ["s2_only"]
    spec["smoke"]["arms"] = {k: {**v, "space": None} for k, v in spec["smoke"]["arms"].items()
                             if k in keep}
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "study"
    assert main(["study", str(small), "--smoke-test", "--data", shards, "--out",
                 str(out)]) == 0
    import pandas as pd

    df = pd.read_parquet(out / "results.parquet")
    assert set(df["arm"]) == set(keep)
    oa = df[(df["metric"] == "oa") & (df["split"] == "test")]  # tidy: one row per value
    assert oa.groupby("arm")["seed"].nunique().to_dict() == dict.fromkeys(keep, 2)
    assert np.isfinite(oa["value"].astype(float)).all()
    report = (out / "report.md").read_text()
    assert "gated" in report and "s2_only" in report


def test_segmentation_masks_to_a_generated_study_that_passes_the_check(tmp_path: Path,
                                                                        ray_session, capsys):
    y = write_files_dataset(tmp_path / "raw", 24, 0, layout="segmentation", progress=False)
    shards = str(tmp_path / "shards")
    assert main(["prepare", "files", str(y), "--out", shards]) == 0
    capsys.readouterr()
    assert main(["study", "init", "--data", shards]) == 0
    text = capsys.readouterr().out
    spec = yaml.safe_load(text)
    assert [a["name"] for a in spec["arms"]] == ["s2_only", "s1_only", "early"]
    assert spec["metrics"] == ["miou", "oa"] and "no segmentation head" in text
    path = tmp_path / "study.yaml"
    path.write_text(text)
    assert main(["study", str(path), "--check", "--data", shards]) == 0
    assert main(["study", str(path), "--check", "--smoke-test", "--data", shards]) == 0
    assert "[check] plan: 3 cell(s)" in capsys.readouterr().out
