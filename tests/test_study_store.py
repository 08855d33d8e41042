"""A study folder as a URI (no Ray): records, listings, tables and the report's local mirror."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from rsray import storage
from rsray.study.results import collect, read_meta, read_results
from rsray.study.store import StudyStore

SPEC = {"name": "t", "arms": [{"name": "a", "modalities": ["s2"]},
                              {"name": "b", "modalities": ["s2", "s1"]}],
        "baseline": "a", "metrics": ["ap_macro"]}


def _row(arm: str, seed: int, value: float) -> dict:
    return {"study": "t", "arm": arm, "model": "m", "fraction": 1.0, "holdout": "none",
            "seed": seed, "split": "test", "dropped": "", "metric": "ap_macro", "value": value}


def _fill(store: StudyStore, preds: str | None = None) -> None:
    store.write_json("study.json", {"spec": SPEC, "data": {"": "s3://x/shards"}})
    for arm in ("a", "b"):
        store.write_json(f"cells/{arm}__f1__all/search.json",
                         {"cell": f"{arm}__f1__all", "arm": arm, "params": {"optim.lr": 0.1},
                          "metric": "val_ap_macro", "value": 0.5, "trials": [{}]})
        for seed in (0, 1):
            store.write_json(f"cells/{arm}__f1__all/seed_{seed}/result.json",
                             {"keys": {"arm": arm, "fraction": 1.0, "holdout": "none",
                                       "seed": seed},
                              "rows": [_row(arm, seed, 0.5 + seed / 10)],
                              "predictions": {"test": preds} if preds else {}})


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_records_tables_and_listing_through_the_uri(tmp_path: Path, kind: str) -> None:
    uri = str(tmp_path / "study") if kind == "local" else f"memory://study-{uuid.uuid4().hex}"
    store = StudyStore(uri + "/")
    assert store.uri == uri and store.is_remote == (kind == "memory")
    assert not store.exists("study.json") and store.subdirs("runs") == []
    _fill(store)
    assert store.exists("study.json") and read_meta(uri).arms == ["a", "b"]
    assert store.glob("cells/*/seed_*/result.json") == [
        f"cells/{a}__f1__all/seed_{s}/result.json" for a in "ab" for s in (0, 1)]
    assert store.subdirs("cells") == ["a__f1__all", "b__f1__all"]
    table = collect(uri)
    assert len(table.rows) == 4 and len(table.hparams) == 2
    for name in ("results.parquet", "results.csv", "hparams.json", "hparams.csv"):
        assert store.exists(name), name
    assert read_results(uri).equals(table.rows)
    if kind == "local":  # nothing but the records: no temporary files left behind
        assert not list(Path(uri).rglob(".*tmp*"))
    path, fs = store.ray_storage("runs")
    assert (fs is None) == (kind == "local") and path.endswith("runs")


def test_a_record_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    import os

    store = StudyStore(str(tmp_path))

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.write_json("cells/c/seed_0/result.json", {"rows": []})
    assert store.glob("cells/*/seed_*/result.json") == []
    assert not store.exists("cells/c/seed_0/result.json")


def test_listing_is_not_served_from_a_stale_cache(s3_bucket: str) -> None:
    """A trial on another node writes a record: the driver's next listing sees it (s3fs
    caches listings per filesystem instance; the store asks the object store again)."""
    import s3fs

    uri = f"{s3_bucket}/study"
    store = StudyStore(uri)
    store.write_json("cells/a/seed_0/result.json", {})
    assert store.subdirs("cells") == ["a"]  # the listing s3fs would keep
    assert store.glob("cells/*/seed_*/result.json") == ["cells/a/seed_0/result.json"]
    other = s3fs.S3FileSystem(skip_instance_cache=True,
                              client_kwargs={"endpoint_url": storage.storage_options(uri)[
                                  "client_kwargs"]["endpoint_url"]})
    other.pipe_file(f"{uri.removeprefix('s3://')}/cells/c/seed_0/result.json", b"{}")
    assert store.glob("cells/*/seed_*/result.json") == ["cells/a/seed_0/result.json",
                                                        "cells/c/seed_0/result.json"]
    assert store.exists("cells/c/seed_0/result.json") and store.subdirs("cells") == ["a", "c"]


def test_mirror_points_predictions_at_local_copies(tmp_path: Path) -> None:
    uri = f"memory://mirror-{uuid.uuid4().hex}"
    preds = f"{uri}/cells/a__f1__all/seed_0/pred_test.parquet"
    frame = pd.DataFrame({"patch_id": ["p1", "p2"], "target": [[1, 0], [0, 1]],
                          "probs": [[0.9, 0.1], [0.2, 0.8]]})
    fs, path = storage.get_fs(preds)
    fs.mkdirs(path, exist_ok=True)
    with fs.open(f"{path}/part-0.parquet", "wb") as f:
        frame.to_parquet(f, index=False)
    store = StudyStore(uri)
    _fill(store, preds=preds)
    collect(uri)
    local = store.mirror(tmp_path / "m")
    for name in ("study.json", "results.parquet", "hparams.json"):
        assert (local / name).is_file()
    doc = json.loads((local / "cells/a__f1__all/seed_0/result.json").read_text())
    assert doc["predictions"]["test"] == str(local / "cells/a__f1__all/seed_0/pred_test.parquet")
    assert pd.read_parquet(doc["predictions"]["test"])["patch_id"].tolist() == ["p1", "p2"]
    assert len(list(local.glob("cells/*/search.json"))) == 2


def test_report_of_a_study_in_an_object_store(tmp_path: Path) -> None:
    """Rendered locally from the records at the URI; the pages, figures and tables uploaded
    next to them; the bootstrap reads the test predictions from the URI."""
    from test_study_report import _study

    from rsray.study.cli import write_study_report

    (tmp_path / "local").mkdir()
    local = _study(tmp_path / "local", fractions=(1.0,))
    uri = f"memory://report-{uuid.uuid4().hex}"
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = path.relative_to(local).as_posix()
        data = path.read_bytes()
        if path.name == "result.json":  # the predictions live at the URI too
            doc = json.loads(data)
            doc["predictions"] = {k: f"{uri}/{Path(v).relative_to(local).as_posix()}"
                                  for k, v in doc["predictions"].items()}
            data = json.dumps(doc).encode()
        storage.write_bytes(f"{uri}/{rel}", data)
    md_uri, html_uri = write_study_report(uri)
    assert (md_uri, html_uri) == (f"{uri}/report.md", f"{uri}/report.html")
    store = StudyStore(uri)
    md = store.read_bytes("report.md").decode()
    assert "bootstrap" in md.lower() and "no test predictions" not in md.lower()
    assert store.read_bytes("report.html").count(b"data:image/png;base64,") >= 5
    figures = store.glob("figures/*.png")
    assert len(figures) >= 5 and all(f"]({f})" in md for f in figures)
    assert store.glob("tables/*.csv") and store.glob("tables/*.tex")
