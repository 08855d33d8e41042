"""BigEarthNet v2 (reBEN) source: metadata, real samples, synthetic twin, bad inputs, hold-out.

Also the hold-out keys the v1 reader now records (tile, lat/lon).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio

from rsray.data.sources.bigearthnet import BIGEARTHNET_19_CLASSES, BigEarthNetMM
from rsray.data.sources.bigearthnet_v2 import (
    SYNTHETIC_METADATA_KEY,
    BigEarthNetV2,
    MetadataRow,
    bigearthnet_v2_spec,
    check_reference_map,
    metadata_items,
    read_metadata,
    s1_product,
    s2_product,
    tile_of,
    write_synthetic_bigearthnet_v2,
)
from rsray.data.splits import apply_holdout, parse_holdout
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError

PATCH_RE = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{6}_N9999_R\d{3}_T(\d{2}[C-X][A-Z]{2})_(\d{2})_"
                      r"(\d{2})$")


def _real_v2(real_data_dir: Path) -> Path:
    root = real_data_dir / "bigearthnet-v2"
    if not root.is_dir():
        pytest.skip(f"real BigEarthNet v2 samples not available: {root} does not exist (the "
                    "synthetic twin tests cover the same code)")
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ben2_synth")
    info = write_synthetic_bigearthnet_v2(root, 30, seed=0, progress=False)
    return root, info


# ------------------------------------------------------------------------------ names, spec


def test_names_and_spec():
    pid = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57"
    assert s2_product(pid) == "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
    assert s1_product("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_89_36") == (
        "S1A_IW_GRDH_1SDV_20170613T165043")
    assert tile_of(pid) == "33UUP"
    spec = bigearthnet_v2_spec()
    assert spec.name == "bigearthnet_v2" and spec.task == "multilabel"
    assert spec.classes == BIGEARTHNET_19_CLASSES
    assert [m.name for m in spec.modalities] == ["s2", "s1"]
    assert [m.name for m in bigearthnet_v2_spec(["s1"]).modalities] == ["s1"]
    assert set(spec.meta_keys) == {"s1_patch", "country", "tile"}
    with pytest.raises(ConfigError, match="modalities"):
        bigearthnet_v2_spec(["s3"])
    with pytest.raises(ConfigError, match="s1_dtype"):
        BigEarthNetV2("x", s1_dtype="int8")  # type: ignore[arg-type]


def test_metadata_items_rejects_bad_rows():
    rows = [
        MetadataRow("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_01_02",
                    ("Pastures", "Arable land"), "validation", "Austria", "s1a"),
        MetadataRow("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_01_03",
                    ("Moon craters",), "train", "Austria", "s1b"),
        MetadataRow("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_01_04", (), "test", "X", "c"),
        MetadataRow("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_01_05", ("Pastures",),
                    "holdout", "Austria", "s1d"),
    ]
    items, rejects = metadata_items(rows, "meta.parquet")
    assert items == [{"patch_id": rows[0].patch_id, "split": "val", "labels": [2, 4],
                      "s1_name": "s1a", "groups": {"country": "Austria", "tile": "33UUP"}}]
    reasons = [r["reason"] for r in rejects]
    assert all(r["path"] == "meta.parquet" for r in rejects)
    assert "unknown class name(s) ['Moon craters']" in reasons[0] and rows[1].patch_id in reasons[0]
    assert reasons[1].endswith("no labels")
    assert "split 'holdout' is not one of train, validation, test" in reasons[2]


def test_metadata_file_errors(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError, match="metadata parquet not found"):
        read_metadata(str(tmp_path / "metadata.parquet"))
    (tmp_path / "metadata.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(RsrayError, match="not a readable parquet file"):
        read_metadata(str(tmp_path / "metadata.parquet"))
    import pyarrow as pa

    pq.write_table(pa.table({"patch_id": ["a"], "labels": [["Pastures"]]}),
                   tmp_path / "metadata.parquet")
    with pytest.raises(RsrayError, match=r"lacks column\(s\) \['split', 'country', 's1_name'\]"):
        read_metadata(str(tmp_path / "metadata.parquet"))


# ------------------------------------------------------------------------------ real samples


def test_real_images_and_sample_metadata_do_not_describe_each_other(real_data_dir: Path):
    root = _real_v2(real_data_dir)
    with pytest.raises(RsrayError) as exc:
        BigEarthNetV2(root).discover()
    text = str(exc.value)
    assert "do not describe each other" in text
    assert "on disk: 2 S2 and 3 S1 patch folder(s)" in text
    assert "S2 patch not in metadata.parquet" in text
    assert "S1 patch not named by any row of metadata.parquet" in text
    # with the official metadata the rows exist, but the S1 and S2 patches here do not overlap
    with pytest.raises(RsrayError, match="S1 patch whose S2 partner") as exc:
        BigEarthNetV2(root, metadata=str(root / "official-metadata" / "metadata.parquet")
                      ).discover()
    assert "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_75_43 named by metadata.parquet is " \
           "missing" in str(exc.value)


def test_real_s2_and_s1_with_the_official_metadata(real_data_dir: Path):
    root = _real_v2(real_data_dir)
    official = root / "official-metadata" / "metadata.parquet"
    rows = {r.patch_id: r for r in read_metadata(
        str(official), patch_ids=["S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43",
                                  "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_89_18"])[0]}
    assert len(rows) == 2
    src = BigEarthNetV2(root, metadata=str(official), modalities=["s2"], include_60m=True)
    disc = src.discover()
    assert [it["patch_id"] for it in disc.items] == sorted(rows) and not disc.rejects
    assert src.spec.synthetic is False
    for item in disc.items:
        g = item["groups"]
        assert g["country"] == "Austria" and g["tile"] == "33UUP"
        assert 46.3 < g["lat"] < 49.1 and 9.5 < g["lon"] < 17.2  # inside Austria
        s = src.read(item)
        assert s["arrays"]["s2_10m"].shape == (4, 120, 120)
        assert s["arrays"]["s2_60m"].shape == (2, 20, 20) and "s1" not in s["arrays"]
        assert [BIGEARTHNET_19_CLASSES[i] for i in np.flatnonzero(s["label"])] == sorted(
            rows[item["patch_id"]].labels, key=BIGEARTHNET_19_CLASSES.index)
        assert item["split"] == {"train": "train", "validation": "val"}[
            rows[item["patch_id"]].split]
        with rasterio.open(Path(item["s2_dir"]) / f"{item['patch_id']}_B02.tif") as b02:
            assert s["geo"]["transform"] == list(b02.transform)[:6]
    s1_src = BigEarthNetV2(root, metadata=str(official), modalities=["s1"])
    s1_disc = s1_src.discover()
    assert len(s1_disc.items) == 3
    for item in s1_disc.items:
        s = s1_src.read(item)
        assert s["arrays"]["s1"].dtype == np.float32 and -50 < s["arrays"]["s1"].mean() < 10
        assert s["meta"]["s1_patch"] == item["s1_name"] and s["label"].any()


def test_real_s2_patch_with_tiff_band_files(real_data_dir: Path, tmp_path: Path):
    """Issue 12: a real reBEN S2 patch whose band files end in ``.tiff`` is read, not rejected
    as "missing band file"; one folder may also mix ``.tif`` and ``.tiff``."""
    import shutil

    root = tmp_path / "v2"
    shutil.copytree(_real_v2(real_data_dir), root, ignore=shutil.ignore_patterns("official-*"))
    official = _real_v2(real_data_dir) / "official-metadata" / "metadata.parquet"
    patches = sorted(root.glob("BigEarthNet-S2/*/*"))
    for tif in sorted(patches[0].glob("*.tif")):  # every band of patch 0
        tif.rename(tif.with_suffix(".tiff"))
    for tif in sorted(patches[1].glob("*_B0[2-5].tif")):  # some bands of patch 1
        tif.rename(tif.with_suffix(".tiff"))
    src = BigEarthNetV2(root, metadata=str(official), modalities=["s2"], include_60m=True)
    disc = src.discover()
    assert len(disc.items) == 2 and not disc.rejects
    for item in disc.items:
        s = src.read(item)
        assert s["arrays"]["s2_10m"].shape == (4, 120, 120)
        assert s["arrays"]["s2_60m"].shape == (2, 20, 20)
    # a band that is absent under both names is still reported, naming the .tif it expected
    next(patches[1].glob("*_B08.tif")).unlink()
    item = next(it for it in disc.items if it["patch_id"] == patches[1].name)
    with pytest.raises(PatchError, match=r"_B08\.tif: missing band file \(no \.tif or "
                                         r"\.tiff\)"):
        src.read(item)


def test_real_reference_map(real_data_dir: Path):
    root = _real_v2(real_data_dir)
    url = next(root.glob("Reference_Maps/*/*/*_reference_map.tif"))
    from rsray.data.sources._raster import read_bands

    band = read_bands([str(url)])[0]
    check_reference_map(str(url), band, None)
    assert set(np.unique(band.array).tolist()) == {211, 231, 311, 313}


def test_country_holdout_on_the_official_metadata_alone(real_data_dir: Path):
    root = _real_v2(real_data_dir)
    rows, synthetic = read_metadata(str(root / "official-metadata" / "metadata.parquet"))
    assert not synthetic and len(rows) == 480_038
    items, rejects = metadata_items(rows)
    assert not rejects
    assert Counter(it["split"] for it in items) == {"train": 237_871, "val": 122_342,
                                                    "test": 119_825}
    countries = Counter(it["groups"]["country"] for it in items)
    assert len(countries) == 10 and countries["Serbia"] == 73_385
    info = apply_holdout(items, parse_holdout(["country=Serbia,Kosovo"]), dataset="v2")
    assert info["moved"] == 73_385 + 1_616
    assert Counter(it["split"] for it in items)["ood"] == info["moved"]
    tiles = {it["groups"]["tile"] for it in items if it["split"] == "ood"}
    assert tiles and all(re.fullmatch(r"\d{2}[C-X][A-Z]{2}", t) for t in tiles)


# ------------------------------------------------------------------------------ synthetic twin


def test_synthetic_exact_v2_layout(synth):
    root, info = synth
    patches = sorted((root / "BigEarthNet-S2").glob("*/*"))
    assert len(patches) == 30
    for d in patches:
        assert PATCH_RE.match(d.name), d.name
        assert d.parent.name == s2_product(d.name)
        bands = sorted(p.name[len(d.name) + 1:-4] for p in d.glob("*.tif"))
        assert bands == sorted(["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                "B09", "B11", "B12"])
        ref = root / "Reference_Maps" / d.parent.name / d.name / f"{d.name}_reference_map.tif"
        assert ref.is_file()
    with rasterio.open(next(patches[0].glob("*_B02.tif"))) as b02:
        assert b02.nodata == 0 and b02.dtypes[0] == "uint16" and b02.shape == (120, 120)
    with rasterio.open(ref) as m:
        assert m.dtypes[0] == "uint16" and m.compression.value == "DEFLATE"
    table = pq.read_table(root / "metadata.parquet")
    assert table.schema.names == ["patch_id", "labels", "split", "country", "s1_name",
                                  "s2v1_name", "contains_seasonal_snow",
                                  "contains_cloud_or_shadow"]
    assert table.schema.metadata[SYNTHETIC_METADATA_KEY] == b"true"
    snow = pq.read_table(root / "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    assert table.num_rows + snow.num_rows == 30 and all(snow["contains_seasonal_snow"].to_pylist())
    for row in table.to_pylist():
        assert row["labels"] == sorted(row["labels"])
        assert set(row["labels"]) <= set(BIGEARTHNET_19_CLASSES)
        s1 = root / "BigEarthNet-S1" / s1_product(row["s1_name"]) / row["s1_name"]
        assert (s1 / f"{row['s1_name']}_VV.tif").is_file()
    assert "v1 twin" in info.rules


def test_synthetic_round_trip_snow_exclusion_and_lat_lon(synth):
    root, _ = synth
    src = BigEarthNetV2(root)
    disc = src.discover()
    table = {r["patch_id"]: r for r in pq.read_table(root / "metadata.parquet").to_pylist()}
    snow = pq.read_table(root / "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    assert len(disc.items) == len(table) and not disc.rejects
    assert disc.info["excluded_snow_cloud"] == {"s2": snow.num_rows, "s1": snow.num_rows}
    assert src.spec.synthetic and disc.info["reference_maps"] == len(table)
    for item in disc.items:
        row = table[item["patch_id"]]
        s = src.read(item)
        assert [BIGEARTHNET_19_CLASSES[i] for i in np.flatnonzero(s["label"])] == sorted(
            row["labels"], key=BIGEARTHNET_19_CLASSES.index)
        assert s["meta"]["country"] == row["country"] == item["groups"]["country"]
        assert s["arrays"]["s1"].shape == (2, 120, 120)
        # lat/lon from the tile origin agree with the patch's own B02 corner
        with rasterio.open(Path(item["s2_dir"]) / f"{item['patch_id']}_B02.tif") as b02:
            from rasterio.warp import transform

            lon, lat = transform(b02.crs, "EPSG:4326", [b02.bounds.left + 600],
                                 [b02.bounds.top - 600])
        assert item["groups"]["lat"] == pytest.approx(lat[0], abs=1e-4)
        assert item["groups"]["lon"] == pytest.approx(lon[0], abs=1e-4)
    with_snow = BigEarthNetV2(root, include_snow_cloud=True).discover()
    assert len(with_snow.items) == 30


# ------------------------------------------------------------------------------ bad inputs

READ_ERRORS = {
    "missing_band": ("_B05.tif", "missing band file"),
    "truncated": ("_B02.tif", "truncated"),
    "wrong_shape": ("_B05.tif", "shape (120, 120), expected (60, 60)"),
    "nan_s1": ("_VV.tif", "100 NaN/inf pixels"),
    "crs_mismatch": ("_VV.tif", "differs from the S2 B02 CRS"),
    "bounds_mismatch": ("_VV.tif", "by 20.0 m (> 1 m)"),
    "ref_map_shape": ("_reference_map.tif", "reference map shape (60, 60), expected (120, 120)"),
    "ref_map_code": ("_reference_map.tif", "unknown CLC code(s) [777]"),
}
PAIRING = ("s1_missing", "s2_missing", "not_in_metadata", "unknown_label", "bad_split")


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ben2_bad")
    kinds = [*READ_ERRORS, *PAIRING]
    info = write_synthetic_bigearthnet_v2(root, len(kinds) + 4, seed=3, progress=False,
                                          corrupt={k: i for i, k in enumerate(kinds)})
    return root, info


def test_every_bad_patch_fails_read_naming_file_and_problem(corrupted):
    root, info = corrupted
    src = BigEarthNetV2(root, include_snow_cloud=True)
    disc = src.discover()
    bad = {info.corrupted[k][0]: k for k in READ_ERRORS}
    good = 0
    for item in disc.items:
        kind = bad.get(item["patch_id"])
        if kind is None:
            src.read(item)
            good += 1
            continue
        suffix, words = READ_ERRORS[kind]
        with pytest.raises(PatchError) as exc:
            src.read(item)
        assert exc.value.path.endswith(suffix), (kind, exc.value.path)
        assert words in exc.value.reason, (kind, exc.value.reason)
    assert good == 4
    assert set(bad) <= {it["patch_id"] for it in disc.items}
    # without the check, a broken reference map does not matter
    src = BigEarthNetV2(root, include_snow_cloud=True, check_reference_maps=False)
    item = next(it for it in src.discover().items
                if it["patch_id"] == info.corrupted["ref_map_code"][0])
    assert "ref_map" not in item and src.read(item)["label"].any()


def test_every_bad_pairing_is_rejected_with_path_and_reason(corrupted):
    root, info = corrupted
    disc = BigEarthNetV2(root, include_snow_cloud=True).discover()
    got = [(r["path"], r["reason"]) for r in disc.rejects]
    pid = {k: info.corrupted[k][0] for k in PAIRING}

    def has(path_part: str, words: str) -> bool:
        return any(path_part in p and words in r for p, r in got)

    assert has(f"BigEarthNet-S2/{s2_product(pid['s1_missing'])}/{pid['s1_missing']}",
               "named by metadata.parquet is missing")
    assert has("BigEarthNet-S1/", f"S1 patch whose S2 partner {pid['s2_missing']}")
    assert has(pid["not_in_metadata"], "S2 patch not in metadata.parquet")
    assert has("metadata", f"row {pid['unknown_label']}: unknown class name(s) ['Moon craters']")
    assert has("metadata", f"row {pid['bad_split']}: split 'holdout'")
    assert not set(pid.values()) & {it["patch_id"] for it in disc.items}
    assert len(disc.items) == len(READ_ERRORS) + 4


def test_missing_archive_folder(tmp_path: Path, synth):
    root, _ = synth
    shutil.copy(root / "metadata.parquet", tmp_path / "metadata.parquet")
    with pytest.raises(DatasetNotFoundError, match="BigEarthNet-S2 folder not found"):
        BigEarthNetV2(tmp_path).discover()


def test_remote_filesystem_root(tmp_path: Path):
    """memory:// root: metadata through fsspec/pyarrow, listings, band reads and lat/lon."""
    import fsspec

    write_synthetic_bigearthnet_v2(tmp_path, 4, seed=8, progress=False)
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path) + "/", "/ben2-test/", recursive=True)
    try:
        remote, local = BigEarthNetV2("memory://ben2-test", num_threads=2), BigEarthNetV2(tmp_path)
        rd, ld = remote.discover(), local.discover()
        assert [it["groups"] for it in rd.items] == [it["groups"] for it in ld.items]
        assert rd.items[0]["s2_dir"].startswith("memory://ben2-test/BigEarthNet-S2/")
        assert remote.spec.synthetic
        for r_item, l_item in zip(rd.items, ld.items, strict=True):
            r, l_ = remote.read(r_item), local.read(l_item)
            np.testing.assert_array_equal(r["label"], l_["label"])
            for g in r["arrays"]:
                np.testing.assert_array_equal(r["arrays"][g], l_["arrays"][g])
    finally:
        fs.rm("/ben2-test", recursive=True)


# ------------------------------------------------------------------------------ v1 hold-out keys


def test_v1_items_carry_tile_and_lat_lon(tmp_path: Path):
    from rsray.data.sources.bigearthnet import write_synthetic_bigearthnet

    write_synthetic_bigearthnet(tmp_path, 6, seed=9, progress=False)
    disc = BigEarthNetMM(str(tmp_path / "BigEarthNet-S2"),
                         str(tmp_path / "BigEarthNet-S1")).discover()
    for item in disc.items:
        g = item["groups"]
        assert g["tile"] == item["s1_name"].split("_")[-3]
        with rasterio.open(Path(item["s2_dir"]) / f"{item['patch_id']}_B02.tif") as b02:
            from rasterio.warp import transform

            lon, lat = transform(b02.crs, "EPSG:4326", [(b02.bounds.left + b02.bounds.right) / 2],
                                 [(b02.bounds.top + b02.bounds.bottom) / 2])
        assert g["lat"] == pytest.approx(lat[0], abs=1e-4)
        assert g["lon"] == pytest.approx(lon[0], abs=1e-4)


# ------------------------------------------------------------------------------ Ray


def test_prepare_country_holdout_and_stream_val_and_ood(tmp_path: Path, ray_session):
    """The Portugal hold-out reaches its own split (generic prepare -> stream -> model is in
    test_dataset_contract.py)."""
    from rsray.config import load_config
    from rsray.data.datasets import build_datasets
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import prepare
    from rsray.data.shards import read_manifest

    raw = tmp_path / "raw"
    write_synthetic_bigearthnet_v2(raw, 24, seed=0, progress=False)
    out = str(tmp_path / "shards")
    prepare(BigEarthNetV2(raw), out, target_shard_mb=1, holdout=["country=Portugal"])
    m = read_manifest(out)
    meta = pq.read_table(raw / "metadata.parquet").to_pylist()
    portugal = sum(r["country"] == "Portugal" for r in meta)
    assert m.dataset == "bigearthnet_v2" and m.task == "multilabel" and m.synthetic
    assert portugal > 0 and m.splits["ood"] == portugal == m.info["holdout"]["moved"]
    assert sum(m.splits.values()) == len(meta) and not m.rejects
    cfg = load_config(None, [f"data.uri={out}", "data.batch_size=4",
                             "data.eval_splits=[val,ood]"])
    manifest, datasets = build_datasets(cfg.data)
    assert set(datasets) == {"train", "val", "ood"}
    plan = make_plan(manifest, cfg.data)
    for split in ("val", "ood"):
        rows = datasets[split].take_all()
        assert len(rows) == m.splits[split]
        batch = finalize_batch(datasets[split].take_batch(batch_size=2, batch_format="numpy"),
                               plan)
        assert batch["s2"].shape == (2, 10, 120, 120) and batch["label"].shape == (2, 19)
