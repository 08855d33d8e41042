"""The generic files source: each layout described in YAML, validation, TerraTorch keys, real
samples described in YAML alone (no Ray here; tests/test_files_e2e.py prepares and trains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from rsray.data.sources.files import FilesSource, config_from_dict, write_files_dataset
from rsray.data.sources.files.config import template_to_regex
from rsray.data.sources.files.terratorch import TERRATORCH_KEYS
from rsray.errors import ConfigError, PatchError


def _read_all(src: FilesSource) -> tuple[list[dict], list[tuple[str, str]]]:
    disc = src.discover()
    rejected = [(r["path"], r["reason"]) for r in disc.rejects]
    samples = []
    for item in disc.items:
        try:
            samples.append(src.read(item))
        except PatchError as exc:
            rejected.append((exc.path, exc.reason))
    return samples, rejected


def _edit(path: Path, **changes: object) -> Path:
    doc = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = doc
        *head, last = dotted.split("__")
        for key in head:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # the first modality is the reference
    return path


LAYOUT_GROUPS = {
    "mixed": {"s2_32px": (32, "uint16", "image"), "s2_16px": (16, "uint16", "image"),
              "s1": (16, "float32", "image")},
    "flat": {"s2": (32, "uint16", "image"), "s1": (16, "float32", "image"),
             "dem": (8, "float32", "image"), "weather": (0, "float32", "vector")},
    "series": {"s2": (32, "uint16", "series"), "s1": (16, "float32", "image")},
    "segmentation": {"s2": (32, "uint16", "image"), "s1": (16, "float32", "image")},
    "terratorch": {"s2": (32, "uint16", "image"), "s1": (16, "float32", "image")},
}
LAYOUT_TASKS = {"mixed": "multiclass", "flat": "multilabel", "series": "multilabel",
                "segmentation": "segmentation", "terratorch": "segmentation"}


@pytest.mark.parametrize("layout", list(LAYOUT_GROUPS))
def test_each_layout_is_prepared_from_yaml_alone(layout: str, tmp_path: Path) -> None:
    src = FilesSource(write_files_dataset(tmp_path, 10, 0, layout=layout, progress=False))
    samples, rejected = _read_all(src)
    assert not rejected and len(samples) == 10
    spec = src.spec
    assert spec.synthetic and spec.task == LAYOUT_TASKS[layout]
    assert {g.name: (g.size, g.dtype, g.kind) for g in spec.groups} == LAYOUT_GROUPS[layout]
    for s in samples:
        for g in spec.groups:
            assert g.check_shape(s["arrays"][g.name]) is None
        assert s["geo"]["width"] == 32 and s["meta"]["lat"]  # georeferenced, lat known
    if layout == "series":  # dates from the path, sorted, 2-4 per sample
        lens = {s["arrays"]["s2"].shape[0] for s in samples}
        assert lens == {2, 3, 4} and spec.groups[0].max_len == 4
        assert all(np.all(np.diff(s["arrays"]["s2_dates"]) > 0) for s in samples)
        assert {s["meta"]["region"] for s in samples} == {"north", "south", "east"}
    if layout in ("segmentation", "terratorch"):
        assert spec.label_size == 32 and samples[0]["label"].shape == (32, 32)


def test_labels_carry_the_cross_modal_signal(tmp_path: Path) -> None:
    src = FilesSource(write_files_dataset(tmp_path, 24, 3, progress=False))
    samples, _ = _read_all(src)
    for s in samples:
        cls = int(np.argmax(s["label"]))
        assert (s["arrays"]["s2_32px"].mean() > 1500) == (cls >= 2)  # green: optical only
        assert (s["arrays"]["s1"].mean() < -15) == (cls % 2 == 1)  # wet: radar only


def test_missing_modality_kept_with_presence_when_allowed(tmp_path: Path) -> None:
    y = write_files_dataset(tmp_path, 6, 0, corrupt={"missing_modality": 2},
                            allow_missing=True, progress=False)
    src = FilesSource(y)
    samples, rejected = _read_all(src)
    assert not rejected and len(samples) == 6
    assert src.spec.optional_modalities == ("s2", "s1")
    lost = next(s for s in samples if s["patch_id"] == "chip00002")
    assert lost["present"] == {"s2": True, "s1": False}
    assert lost["arrays"]["s1"].shape == (2, 16, 16) and not lost["arrays"]["s1"].any()
    assert all(s["present"]["s1"] for s in samples if s is not lost)


def test_reprojection_and_nan_nodata_when_asked(tmp_path: Path) -> None:
    y = write_files_dataset(tmp_path, 4, 0, corrupt={"wrong_crs": 1, "nan_band": 2},
                            progress=False)
    _, rejected = _read_all(FilesSource(y))
    assert len(rejected) == 2
    _edit(y, modalities__s1__reproject=True, modalities__s1__nodata="nan")
    samples, rejected = _read_all(FilesSource(y))
    assert not rejected and len(samples) == 4
    nan_sample = next(s for s in samples if s["patch_id"] == "chip00002")
    assert np.isfinite(nan_sample["arrays"]["s1"]).all()  # NaN nodata filled with `fill`
    _edit(y, modalities__s1__max_nodata=0.01)  # 16 NaN of 256 pixels = 6 % > 1 %
    _, rejected = _read_all(FilesSource(y))
    assert any("nodata pixels" in r for _, r in rejected)


def test_one_bad_file_never_stops_the_set(tmp_path: Path) -> None:
    kinds = {"truncated": 1, "wrong_crs": 3, "unknown_label": 5, "label_without_files": 7,
             "files_without_label": 9}
    y = write_files_dataset(tmp_path, 12, 0, corrupt=kinds, progress=False)
    samples, rejected = _read_all(FilesSource(y))
    assert len(samples) == 12 - len(kinds)
    paths = " ".join(p for p, _ in rejected)
    for i in kinds.values():
        assert f"chip{i:05d}" in paths
    assert all(p.startswith(str(tmp_path)) and r for p, r in rejected)


def test_patterns() -> None:
    rx = template_to_regex("{id}/{date}/{band}.tif")
    import re

    m = re.fullmatch(rx, "chip1/20210315/B02.tif")
    assert m and m.groupdict() == {"id": "chip1", "date": "20210315", "band": "B02"}
    rx = template_to_regex("{id}/{id}_{band}.tif")  # a repeated field repeats the same text
    assert re.fullmatch(rx, "S2A_x_1_2/S2A_x_1_2_B8A.tif").group("band") == "B8A"
    assert re.fullmatch(rx, "S2A_x_1_2/other_B8A.tif") is None
    assert re.fullmatch(template_to_regex("**/{id}_S2.tif"), "a/b/c7_S2.tif").group("id") == "c7"


@pytest.mark.parametrize(("doc", "message"), [
    ({"modalities": {"s2": {"root": "x", "pattern": "{band}.tif", "bands": ["a"]}},
      "labels": {"file": "l.csv", "class_column": "c"}}, "no id field"),
    ({"modalities": {"s2_l2a": {"root": "x", "pattern": "{id}.tif"}},
      "labels": {"file": "l.csv", "class_column": "c"}}, "modalities.s2_l2a"),
    ({"modalities": {"s2": {"root": "x", "pattern": "{id}/{band}.tif"}},
      "labels": {"file": "l.csv", "class_column": "c"}}, "modalities.s2.bands"),
    ({"modalities": {"s2": {"root": "x", "pattern": "{id}.tif"}},
      "labels": {"file": "l.csv"}}, "labels: give exactly one"),
    ({"modalities": {"s2": {"root": "x", "pattern": "{id}.tif", "kind": "movie"}},
      "labels": {"file": "l.csv", "class_column": "c"}}, "modalities.s2.kind"),
    ({"modalities": {"s2": {"root": "x", "pattern": "{id}.tif"}},
      "labels": {"mask": "{id}.tif"}}, "labels.classes"),
    ({"modalities": {"s2": {"root": "x", "pattern": "{id}.tif"}},
      "labels": {"file": "l.csv", "class_column": "c"},
      "splits": {"random": {"by": "tile"}}}, "splits.random.by"),
    ({"modalities": {"s2": {"root": "x", "pattern": "{id}.tif"}},
      "labels": {"file": "l.csv", "class_column": "c"}, "bogus": 1}, "bogus: unknown key"),
])
def test_bad_descriptions_name_the_key(doc: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(doc, "my.yaml", tmp_path)
    assert str(info.value).startswith("my.yaml: ")


def test_missing_root_and_column_are_clear(tmp_path: Path) -> None:
    y = write_files_dataset(tmp_path, 4, 0, progress=False)
    _edit(y, labels__class_column="klass")
    with pytest.raises(ConfigError, match="no column 'klass'"):
        FilesSource(y).discover()
    _edit(y, labels__class_column="label", modalities__s1__root="nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere: folder of modality s1 not found"):
        FilesSource(y).discover()


def test_terratorch_keys_are_translated(tmp_path: Path) -> None:
    y = write_files_dataset(tmp_path, 10, 0, layout="terratorch", progress=False)
    raw = yaml.safe_load(y.read_text())
    assert isinstance(raw["modalities"], list)  # TerraTorch's own form
    cfg = FilesSource(y).cfg
    assert [m.name for m in cfg.modalities] == ["s2", "s1"]
    assert cfg.splits.mode == "roots" and cfg.labels.task == "segmentation"
    assert {r.split for r in cfg.modalities[0].roots} == {"train", "val", "test"}
    src = FilesSource(y)
    disc = src.discover()
    assert {it["split"] for it in disc.items} == {"train", "val", "test"}
    for key in ("train_data_root", "image_grep", "label_grep", "train_split", "means",
                "allow_missing_modalities"):
        assert key in TERRATORCH_KEYS
    raw["means"] = {"S2": [1, 2, 3, 4]}
    raw["stds"] = {"S2": [1, 1, 1, 0]}
    with pytest.raises(ConfigError, match="stds"):
        config_from_dict(raw, "tt.yaml", tmp_path)


def test_real_eurosat_described_in_yaml(real_data_dir: Path, tmp_path: Path) -> None:
    root = real_data_dir / "eurosat-ms"
    if not root.is_dir():
        pytest.skip(f"real EuroSAT tiles not available: {root} does not exist")
    y = tmp_path / "eurosat.yaml"
    y.write_text(yaml.safe_dump({
        "name": "eurosat_ms",
        "modalities": {"ms": {"root": str(root), "pattern": "{label}/{id}.tif",
                              "bands": ["B01", "B02", "B03", "B04", "B05", "B06", "B07",
                                        "B08", "B09", "B10", "B11", "B12", "B8A"]}},
        "labels": {"field": "label"}, "splits": {"random": {"seed": 0}}}))
    src = FilesSource(y)
    samples, rejected = _read_all(src)
    assert not rejected and len(samples) == 3
    assert src.spec.classes == ("AnnualCrop", "Pasture", "SeaLake")
    assert [g.size for g in src.spec.groups] == [64]
    assert all(s["arrays"]["ms"].shape == (13, 64, 64) for s in samples)
    assert all(-90 < float(s["meta"]["lat"]) < 90 for s in samples)


def test_real_bigearthnet_v1_described_in_yaml(real_data_dir: Path, tmp_path: Path) -> None:
    root = real_data_dir / "bigearthnet-v1"
    if not root.is_dir():
        pytest.skip(f"real BigEarthNet v1 samples not available: {root} does not exist")
    s2, s1 = root / "BigEarthNet-S2", root / "BigEarthNet-S1"
    y = tmp_path / "ben.yaml"
    y.write_text(yaml.safe_dump({
        "name": "ben_v1",
        "modalities": {
            "s2": {"root": str(s2), "pattern": "{id}/{id}_{band}.tif",
                   "bands": ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11",
                             "B12", "B01", "B09"]},
            "s1": {"root": str(s1), "pattern": "{id}/{id}_{band}.tif", "bands": ["VV", "VH"],
                   "id_json": {"file": "{id}/{id}_labels_metadata.json",
                               "key": "corresponding_s2_patch"}}},
        "labels": {"json": {"root": str(s2), "pattern": "{id}/{id}_labels_metadata.json"},
                   "key": "labels"},
        "splits": {"random": {"seed": 0}}}))
    src = FilesSource(y)
    samples, rejected = _read_all(src)
    assert len(samples) == 6  # the six S1/S2 pairs; three S1 patches have no S2 here
    assert len(rejected) == 3 and all("missing modality s2" in r for _, r in rejected)
    sizes = {g.name: (g.size, g.dtype) for g in src.spec.groups}
    assert sizes == {"s2_120px": (120, "uint16"), "s2_60px": (60, "uint16"),
                     "s2_20px": (20, "uint16"), "s1": (120, "float32")}
    assert src.spec.task == "multilabel" and all(s["label"].sum() >= 1 for s in samples)


def test_covariates_and_latitude_holdouts_work_as_for_builtin_datasets(tmp_path: Path) -> None:
    import argparse

    from rasterio.crs import CRS

    from rsray.data.sources._raster import write_geotiff
    from rsray.data.sources.covariates import wrap_from_args
    from rsray.data.splits import apply_holdout, parse_holdout

    y = write_files_dataset(tmp_path / "raw", 12, 0, progress=False)
    dem = tmp_path / "dem.tif"
    write_geotiff(dem, np.linspace(0, 500, 400 * 400, dtype=np.float32).reshape(400, 400),
                  CRS.from_epsg(32633), 390000, 5410000, 1000.0)
    args = argparse.Namespace(covariate=[f"dem={dem}:bilinear"], covariate_opt=[],
                              indices="ndvi", indices_bands="", covariate_dtype="float32",
                              indices_from="s2")
    src = wrap_from_args(FilesSource(y), args)
    disc = src.discover()
    sample = src.read(disc.items[0])
    assert sample["arrays"]["dem"].shape == (1, 32, 32)  # warped onto the chip's own grid
    assert sample["arrays"]["indices"].shape == (1, 32, 32)  # NDVI from B04/B08
    info = apply_holdout(disc.items, parse_holdout(["lat=:47"]), dataset="files")
    assert info["moved"] == 4  # the "south" chips, 300 km further south


def test_prepare_benchmark_report_states_ratio_target_and_memory() -> None:
    import numpy as np

    from rsray.bench.prepare_files import PeakRSS, format_report

    with PeakRSS(interval=0.01) as mem:
        # 64 MiB, touched: above glibc's largest mmap threshold (32 MiB), so fresh pages even
        # late in a test session whose heap already holds freed, resident memory
        block = np.ones(64 * 2**20 // 8)
        assert block.sum() > 0
    assert mem.rise >= 32 * 2**20
    runs = [{"route": r, "round": 0, "rows": 10, "seconds": s, "rate": 10 / s, "bytes": 2**20,
             "driver_rss_rise": 3 * 2**20} for r, s in (("builtin", 1.0), ("yaml", 2.0))]
    out = {"runs": runs, "best_rate": {"builtin": 10.0, "yaml": 5.0}, "ratio": 0.5,
           "target_ratio": 0.8}
    text = format_report(out)
    assert "RATE RATIO YAML / built-in: 0.50x (target >= 0.80x: NOT met)" in text
    assert "rose at most 3.0 MiB while writing up to 1.0 MiB" in text
    assert "target >= 0.80x: met" in format_report({**out, "ratio": 1.2})
