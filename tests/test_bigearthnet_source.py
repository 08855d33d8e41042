"""BigEarthNet-MM v1 source: class tables, splits, real samples, synthetic twin, bad inputs."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsray.data.sources.bigearthnet import (
    BIGEARTHNET_19_CLASSES,
    CLC43_CLASSES,
    CLC43_TO_19,
    S1_GROUPS,
    S2_GROUPS,
    SYNTHETIC_MARKER,
    BigEarthNetMM,
    bigearthnet_spec,
    describe_synthetic_rules,
    labels_to_multihot,
    write_synthetic_bigearthnet,
)
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError

S2_RE = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{5,6}_(\d{1,2})_(\d{1,2})$")
S1_RE = re.compile(r"^S1[AB]_IW_GRDH_1SDV_\d{8}T\d{6}_(\d{2}[C-X][A-Z]{2})_(\d{1,2})_(\d{1,2})$")
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2_SIZE = {"B01": 20, "B09": 20, "B05": 60, "B06": 60, "B07": 60, "B8A": 60, "B11": 60,
           "B12": 60, "B02": 120, "B03": 120, "B04": 120, "B08": 120}
# MGRS tile upper-left corners, checked on real v1 patches (DATA_FORMATS.md section 1)
TILE_ORIGIN = {"33UUP": (300000, 5400000), "29UPU": (600000, 5900040),
               "29SND": (499980, 4400040), "35VPK": (600000, 7000020)}


def _source(root: Path, **kw) -> BigEarthNetMM:
    return BigEarthNetMM(str(root / "BigEarthNet-S2"), str(root / "BigEarthNet-S1"), **kw)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("ben_synth_src")
    info = write_synthetic_bigearthnet(root, 48, seed=3, progress=False)
    return root, info


# ------------------------------------------------------------------------------ class tables


def test_class_tables_match_bigearthnet_common():
    constants = pytest.importorskip("bigearthnet_common.constants")
    assert tuple(constants.NEW_LABELS_ORIGINAL_ORDER) == BIGEARTHNET_19_CLASSES
    assert tuple(constants.OLD_LABELS_ORIGINAL_ORDER) == CLC43_CLASSES
    assert len(CLC43_TO_19) == 43
    for name, new in constants.OLD2NEW_LABELS_DICT.items():
        idx = CLC43_TO_19[name]
        assert (None if idx is None else BIGEARTHNET_19_CLASSES[idx]) == new, name
    assert sum(v is None for v in CLC43_TO_19.values()) == 11


def test_labels_to_multihot():
    v = labels_to_multihot(["Peatbogs", "Inland marshes", "Airports", "Sea and ocean"])
    assert v.dtype == np.uint8 and v.shape == (19,)
    assert np.flatnonzero(v).tolist() == [15, 18]
    assert not labels_to_multihot(["Bare rock"]).any()
    with pytest.raises(KeyError):
        labels_to_multihot(["Moon craters"])


def test_spec_channel_order_and_options():
    spec = bigearthnet_spec()
    assert spec.name == "bigearthnet" and spec.task == "multilabel"
    assert spec.classes == BIGEARTHNET_19_CLASSES
    assert spec.modality("s2").bands == ("B02", "B03", "B04", "B08", "B05", "B06", "B07",
                                         "B8A", "B11", "B12")
    assert [g.shape for g in spec.modality("s2").groups] == [(4, 120, 120), (6, 60, 60)]
    assert spec.modality("s1").groups[0].shape == (2, 120, 120)
    assert spec.modality("s1").groups[0].dtype == "float32"
    spec60 = bigearthnet_spec(include_60m=True, s1_dtype="float16", synthetic=True)
    assert spec60.modality("s2").bands[-2:] == ("B01", "B09")
    assert spec60.modality("s2").groups[-1].shape == (2, 20, 20)
    assert spec60.modality("s1").groups[0].dtype == "float16" and spec60.synthetic
    assert [g.name for g in S2_GROUPS] == ["s2_10m", "s2_20m", "s2_60m"]
    assert S1_GROUPS[0].bands == ("VV", "VH")
    if hasattr(spec, "meta_keys"):
        assert set(spec.meta_keys) == {"s1_patch", "acquisition_date"}
    with pytest.raises(ConfigError, match="s1_dtype"):
        bigearthnet_spec(s1_dtype="int8")


def test_constructor_checks(tmp_path):
    with pytest.raises(ConfigError, match="splits"):
        BigEarthNetMM(str(tmp_path), str(tmp_path), splits="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="split_fractions"):
        BigEarthNetMM(str(tmp_path), str(tmp_path), split_fractions=(0.5, 0.1, 0.1))
    with pytest.raises(DatasetNotFoundError, match="S2 folder not found"):
        BigEarthNetMM(str(tmp_path / "nope"), str(tmp_path)).discover()


# ------------------------------------------------------------------------------ real samples


def test_real_samples_discover_and_read(real_data_dir: Path):
    root = real_data_dir / "bigearthnet-v1"
    if not root.is_dir():
        pytest.skip(reason=f"real BigEarthNet samples not available: {root} does not exist "
                    "(only ../shared beside the repo has them; the synthetic twin tests cover "
                    "the same code)")
    src = _source(root, apply_exclusions=False)
    disc = src.discover()
    assert len(disc.items) == 6
    json.dumps(disc.items)  # items travel to Ray tasks
    assert disc.info["split_source"].startswith("official bigearthnet-common")
    assert disc.info["s1_folders"] == 9 and disc.info["s2_folders"] == 6
    assert src.spec.synthetic is False
    # the three 33UUP_61_* S1 patches have no S2 patch
    assert len(disc.rejects) == 3
    for rej, row in zip(disc.rejects, (39, 40, 41), strict=True):
        s1 = f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_{row}"
        assert rej["path"] == str(root / "BigEarthNet-S1" / s1)
        assert rej["reason"] == f"S1 patch without S2 patch S2A_MSIL2A_20170613T101031_61_{row}"
    by_id = {it["patch_id"]: it for it in disc.items}
    assert by_id["S2A_MSIL2A_20170613T101031_87_48"]["split"] == "test"  # official lists
    assert by_id["S2B_MSIL2A_20170924T93020_69_24"]["split"] == "train"
    assert disc.info["seeded_fallback"] == 1  # the seasonal-snow patch, kept on request

    src60 = _source(root, include_60m=True, apply_exclusions=False)
    for item in disc.items:
        sample = src60.read(item)
        arr = sample["arrays"]
        assert arr["s2_10m"].shape == (4, 120, 120) and arr["s2_10m"].dtype == np.uint16
        assert arr["s2_20m"].shape == (6, 60, 60) and arr["s2_20m"].dtype == np.uint16
        assert arr["s2_60m"].shape == (2, 20, 20) and arr["s2_60m"].dtype == np.uint16
        assert arr["s1"].shape == (2, 120, 120) and arr["s1"].dtype == np.float32
        assert 0 < arr["s2_10m"].mean() < 10000
        assert arr["s1"].min() > -50 and arr["s1"].max() < 20
        labels = json.loads((Path(item["s2_dir"]) / f"{item['patch_id']}_labels_metadata.json")
                            .read_text())["labels"]
        np.testing.assert_array_equal(sample["label"], labels_to_multihot(labels))
        assert sample["label"].any() and sample["meta"]["s1_patch"] == item["s1_name"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", sample["meta"]["acquisition_date"])
    # one real label list through the 43 -> 19 table, by hand
    s = src.read(by_id["S2B_MSIL2A_20170924T93020_69_24"])
    assert [BIGEARTHNET_19_CLASSES[i] for i in np.flatnonzero(s["label"])] == [
        "Coniferous forest", "Mixed forest", "Transitional woodland, shrub", "Inland wetlands",
        "Inland waters"]
    assert "s2_60m" not in s["arrays"]


def test_real_samples_official_exclusions_and_unassigned(real_data_dir: Path, tmp_path: Path):
    root = real_data_dir / "bigearthnet-v1"
    if not root.is_dir():
        pytest.skip(reason=f"real BigEarthNet samples not available: {root} does not exist "
                    "(only ../shared beside the repo has them; the synthetic twin tests cover "
                    "the same code)")
    disc = _source(root).discover()  # auto -> official, exclusions applied
    assert len(disc.items) == 5
    assert disc.info["excluded"]["seasonal_snow"] == 1
    assert "S2B_MSIL2A_20180204T94161_57_38" not in {it["patch_id"] for it in disc.items}
    assert sum(disc.info["counts"].values()) == 5
    # a copy of a real pair under a name the official lists do not know
    s2_old, s2_new = "S2A_MSIL2A_20170613T101031_87_48", "S2A_MSIL2A_20170613T101031_0_0"
    s1_old = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"
    s1_new = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_0_0"
    for old, new, sub in ((s2_old, s2_new, "BigEarthNet-S2"), (s1_old, s1_new, "BigEarthNet-S1")):
        for o, n in ((old, old), (old, new)):
            d = tmp_path / sub / n
            d.mkdir(parents=True, exist_ok=True)
            for f in (root / sub / o).iterdir():
                shutil.copyfile(f, d / f.name.replace(o, n))
    j = tmp_path / "BigEarthNet-S1" / s1_new / f"{s1_new}_labels_metadata.json"
    j.write_text(j.read_text().replace(s2_old, s2_new))
    disc = _source(tmp_path, splits="official").discover()
    assert [it["patch_id"] for it in disc.items] == [s2_old]
    assert disc.info["unassigned"] == 1
    assert disc.rejects == [{"path": str(tmp_path / "BigEarthNet-S2" / s2_new),
                             "reason": "not in any official split"}]


# ------------------------------------------------------------------------------ synthetic twin


def test_synthetic_is_deterministic(tmp_path: Path):
    infos = [write_synthetic_bigearthnet(tmp_path / name, 3, seed=seed, progress=False)
             for name, seed in (("a", 7), ("b", 7), ("c", 8))]

    def digests(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    a, b, c = (digests(Path(i.out_dir)) for i in infos)
    assert a == b and len(a) == 3 * (13 + 3) + 1
    assert a != c
    va = next(k for k in a if k.endswith("_VV.tif"))
    vc = next(k for k in c if k.endswith("_VV.tif"))
    assert a[va] != c[vc]
    # patch i depends only on (seed, i): more patches keep the first ones
    more = digests(Path(write_synthetic_bigearthnet(tmp_path / "d", 5, seed=7,
                                                    progress=False).out_dir))
    assert {k: v for k, v in more.items() if k in a and k != "README.txt"} == {
        k: v for k, v in a.items() if k != "README.txt"}


def test_synthetic_exact_v1_format(synth):
    root, info = synth
    assert info.n == 48 and "SYNTHETIC" in (root / "README.txt").read_text()
    s2_dirs = sorted((root / "BigEarthNet-S2").iterdir())
    s1_dirs = sorted((root / "BigEarthNet-S1").iterdir())
    assert len(s2_dirs) == len(s1_dirs) == 48
    s1_by_s2 = {}
    for d in s1_dirs[:12]:
        m = S1_RE.match(d.name)
        assert m, d.name
        assert sorted(p.name for p in d.iterdir()) == sorted(
            f"{d.name}_{s}" for s in ("VV.tif", "VH.tif", "labels_metadata.json"))
        meta = json.loads((d / f"{d.name}_labels_metadata.json").read_text())
        assert list(meta) == ["labels", "coordinates", "projection", "corresponding_s2_patch",
                              "scene_source", "acquisition_time", SYNTHETIC_MARKER]
        assert list(meta["coordinates"]) == ["ulx", "uly", "lrx", "lly"]
        assert meta["scene_source"].startswith(d.name.split("_" + m.group(1))[0])
        tile, col, row = m.group(1), int(m.group(2)), int(m.group(3))
        ulx0, uly0 = TILE_ORIGIN[tile]
        assert meta["coordinates"]["ulx"] == ulx0 + 1200 * col
        assert meta["coordinates"]["uly"] == uly0 - 1200 * row
        s2 = meta["corresponding_s2_patch"]
        assert S2_RE.match(s2).groups() == (str(col), str(row))
        s1_by_s2[s2] = (d, meta)
        for band in ("VV", "VH"):
            with rasterio.open(d / f"{d.name}_{band}.tif") as ds:
                assert (ds.count, ds.width, ds.height, ds.dtypes[0]) == (1, 120, 120, "float32")
                assert ds.crs.to_epsg() == int(re.search(r'"EPSG","(326\d\d)"\]\]$',
                                                         meta["projection"]).group(1))
                assert tuple(ds.bounds) == (meta["coordinates"]["ulx"], meta["coordinates"]["lly"],
                                            meta["coordinates"]["lrx"], meta["coordinates"]["uly"])
                assert not ds.profile["tiled"] and ds.compression is None
                a = ds.read(1)
                assert np.isfinite(a).all() and a.min() >= -40 and a.max() <= 10
    for s2, (_s1_dir, s1_meta) in s1_by_s2.items():
        d = root / "BigEarthNet-S2" / s2
        assert sorted(p.name for p in d.iterdir()) == sorted(
            [f"{s2}_{b}.tif" for b in S2_BANDS] + [f"{s2}_labels_metadata.json"])
        meta = json.loads((d / f"{s2}_labels_metadata.json").read_text())
        assert list(meta) == ["labels", "coordinates", "projection", "tile_source",
                              "acquisition_date", SYNTHETIC_MARKER]
        assert list(meta["coordinates"]) == ["ulx", "uly", "lrx", "lry"]
        assert meta["labels"] == s1_meta["labels"] and meta[SYNTHETIC_MARKER] is True
        assert all(name in CLC43_TO_19 for name in meta["labels"])
        assert re.fullmatch(r"S2[AB]_MSIL1C_\d{8}T\d{5,6}_N\d{4}_R\d{3}_T\w{5}_\d{8}T\d{6}\.SAFE",
                            meta["tile_source"])
        assert meta["coordinates"]["ulx"] == s1_meta["coordinates"]["ulx"]
        for b in S2_BANDS:
            with rasterio.open(d / f"{s2}_{b}.tif") as ds:
                size = S2_SIZE[b]
                assert (ds.count, ds.width, ds.height, ds.dtypes[0]) == (1, size, size, "uint16")
                assert ds.res == (1200 / size, 1200 / size)
                assert ds.crs.to_epsg() // 100 == 326
                assert ds.bounds.left == meta["coordinates"]["ulx"]
                assert ds.bounds.top == meta["coordinates"]["uly"]
                assert not ds.profile["tiled"] and ds.compression is None


def test_synthetic_round_trip_and_label_rules(synth):
    root, info = synth
    src = _source(root, include_60m=True)
    assert src.spec.synthetic is False  # unknown until discover
    disc = src.discover()
    assert src.spec.synthetic is True and disc.info["synthetic"] is True
    assert disc.info["split_source"] == "seeded(seed=0, fractions=(0.7, 0.15, 0.15))"
    assert len(disc.items) == 48 and not disc.rejects
    assert sum(disc.info["counts"].values()) == 48
    samples = [src.read(it) for it in disc.items]
    labels = np.stack([s["label"] for s in samples])
    cls = {c: i for i, c in enumerate(BIGEARTHNET_19_CLASSES)}
    kinds = set(info.class_modality.values())
    assert {"s2", "s1", "s2 xor s1", "s2 and s1"} <= kinds
    for c in info.class_modality:  # every rule class occurs and is absent at least once
        assert 0 < labels[:, cls[c]].sum() < 48, c
    others = [i for c, i in cls.items() if c not in info.class_modality]
    assert not labels[:, others].any()
    # the rules are visible in the pixels of the documented modality
    for s, y in zip(samples, labels, strict=True):
        dark = (s["arrays"]["s1"][0] < -20).sum()  # S1: Inland waters = dark block
        assert (dark > 400) == bool(y[cls["Inland waters"]]), dark
        bright = (s["arrays"]["s2_20m"][4] > 4300).sum()  # S2: sands = bright B11
        assert (bright > 50) == bool(y[cls["Beaches, dunes, sands"]]), bright
    assert "xor" in describe_synthetic_rules() and "Inland wetlands" in info.rules
    # override of the marker, float16 S1
    src16 = _source(root, synthetic=False, s1_dtype="float16")
    disc16 = src16.discover()
    assert src16.spec.synthetic is False
    s = src16.read(disc16.items[0])
    assert s["arrays"]["s1"].dtype == np.float16 and "s2_60m" not in s["arrays"]
    np.testing.assert_allclose(s["arrays"]["s1"], samples[0]["arrays"]["s1"], atol=0.02)
    # explicit official splits on synthetic names: nothing is in the lists
    off = _source(root, splits="official").discover()
    assert not off.items and off.info["unassigned"] == 48
    assert {r["reason"] for r in off.rejects} == {"not in any official split"}


def test_synthetic_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write_synthetic_bigearthnet(tmp_path, 20, seed=0, include_60m=False)
    err = capsys.readouterr().err.strip().splitlines()
    # one progress bar (rate, ETA); in a log only its first and last state
    assert len(err) <= 3 and "synthetic BigEarthNet-MM" in err[-1] and "20/20" in err[-1]
    write_synthetic_bigearthnet(tmp_path / "quiet", 2, seed=0, include_60m=False, progress=False)
    assert capsys.readouterr().err == ""
    assert not list(tmp_path.rglob("*_B01.tif"))
    with pytest.raises(ValueError, match="unknown kind"):
        write_synthetic_bigearthnet(tmp_path, 2, corrupt={"gremlins": 0})


# ------------------------------------------------------------------------------ bad inputs

# corruption -> (file the error must name, words the reason must contain)
READ_ERRORS = {
    "missing_band": ("_B05.tif", "missing band file"),
    "truncated": ("_B02.tif", "truncated"),
    "wrong_shape": ("_B05.tif", "shape (120, 120), expected (60, 60)"),
    "wrong_dtype": ("_B03.tif", "dtype float32, expected uint16"),
    "nan_s1": ("_VV.tif", "100 NaN/inf pixels"),
    "crs_mismatch": ("_VV.tif", "CRS EPSG:32"),
    "bounds_mismatch": ("_VV.tif", "by 20.0 m (> 1 m)"),
    "bad_json": ("_labels_metadata.json", "not valid JSON"),
    "missing_json": ("_labels_metadata.json", "S2 labels json missing"),
    "labels_not_list": ("_labels_metadata.json", "'labels' is not a list"),
    "unknown_label": ("_labels_metadata.json", "unknown CLC class name 'Moon craters'"),
    "label_mismatch": ("_labels_metadata.json", "differ from the S2 labels"),
    "no_target": ("_labels_metadata.json", "no 19-class target"),
}
PAIRING_ERRORS = ("s1_bad_json", "s1_no_partner", "s1_only", "s2_only", "duplicate_s1")


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ben_bad")
    kinds = [*READ_ERRORS, *PAIRING_ERRORS]
    info = write_synthetic_bigearthnet(root, len(kinds) + 2, seed=1, progress=False,
                                       corrupt={k: i for i, k in enumerate(kinds)})
    return root, info


def test_every_bad_patch_fails_read_naming_file_and_problem(corrupted):
    root, info = corrupted
    src = _source(root)
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
        assert exc.value.path in str(exc.value)
        side = "BigEarthNet-S1" if suffix in ("_VV.tif",) or kind == "label_mismatch" else (
            "BigEarthNet-S2")
        assert f"/{side}/" in exc.value.path, (kind, exc.value.path)
    assert good == 2
    assert sorted(bad) == sorted(it["patch_id"] for it in disc.items if it["patch_id"] in bad)


def test_every_bad_pairing_is_rejected_with_path_and_reason(corrupted):
    root, info = corrupted
    disc = _source(root).discover()
    by_reason = [(r["path"], r["reason"]) for r in disc.rejects]
    s2 = {k: info.corrupted[k][0] for k in PAIRING_ERRORS}

    def has(path_part: str, words: str) -> bool:
        return any(path_part in p and words in r for p, r in by_reason)

    assert has("BigEarthNet-S1/", "S1 labels json is not valid JSON")
    assert has("BigEarthNet-S2/" + s2["s1_bad_json"], "S2 patch without S1 patch")
    assert has("_labels_metadata.json", "no 'corresponding_s2_patch'")
    assert has("BigEarthNet-S1/", f"S1 patch without S2 patch {s2['s1_only']}")
    assert has("BigEarthNet-S2/" + s2["s2_only"], "S2 patch without S1 patch")
    assert has("BigEarthNet-S2/" + s2["duplicate_s1"], "claimed by 2 S1 patches")
    assert sum("also claimed by" in r for _, r in by_reason) == 2
    assert not set(s2.values()) & {it["patch_id"] for it in disc.items}
    assert all(r["path"].startswith(str(root)) for r in disc.rejects)


def test_s1_json_missing_and_multiband_file(tmp_path: Path):
    info = write_synthetic_bigearthnet(tmp_path, 2, seed=5, progress=False)
    s1_dirs = sorted(Path(info.s1_root).iterdir())
    victim = s1_dirs[0] / f"{s1_dirs[0].name}_labels_metadata.json"
    victim.unlink()
    disc = _source(tmp_path).discover()
    assert {"path": str(victim), "reason": "S1 labels json missing"} in disc.rejects
    assert len(disc.items) == 1
    item = disc.items[0]
    vh = Path(item["s1_dir"]) / f"{item['s1_name']}_VH.tif"
    with rasterio.open(vh) as ds:
        profile, a = ds.profile, ds.read(1)
    profile.update(count=2)
    with rasterio.open(vh, "w", **profile) as ds:
        ds.write(np.stack([a, a]))
    with pytest.raises(PatchError, match=r"_VH\.tif: has 2 bands, expected a single-band"):
        _source(tmp_path).read(item)


# ------------------------------------------------------------------------------ remote paths


def test_remote_filesystem_paths(tmp_path: Path):
    """A non-local fsspec filesystem (memory://) goes through fs.cat + rasterio MemoryFile."""
    import fsspec

    info = write_synthetic_bigearthnet(tmp_path, 3, seed=2, progress=False,
                                       corrupt={"missing_band": 1})
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path) + "/", "/ben-test/", recursive=True)
    try:
        remote = BigEarthNetMM("memory://ben-test/BigEarthNet-S2",
                               "memory://ben-test/BigEarthNet-S1", num_threads=2)
        local = _source(tmp_path)
        rd, ld = remote.discover(), local.discover()
        assert [it["patch_id"] for it in rd.items] == [it["patch_id"] for it in ld.items]
        assert rd.items[0]["s2_dir"].startswith("memory://ben-test/BigEarthNet-S2/")
        assert remote.spec.synthetic
        bad = info.corrupted["missing_band"][0]
        for r_item, l_item in zip(rd.items, ld.items, strict=True):
            if r_item["patch_id"] == bad:
                with pytest.raises(PatchError, match=r"^memory://.*_B05\.tif: missing band file"):
                    remote.read(r_item)
                continue
            r, l_ = remote.read(r_item), local.read(l_item)
            np.testing.assert_array_equal(r["label"], l_["label"])
            for g in r["arrays"]:
                np.testing.assert_array_equal(r["arrays"][g], l_["arrays"][g])
    finally:
        fs.rm("/ben-test", recursive=True)


def test_s3_round_trip(tmp_path: Path, s3_bucket: str):
    """Through a real S3 API (moto server): discover and read s3:// roots."""
    import s3fs

    write_synthetic_bigearthnet(tmp_path, 2, seed=4, progress=False)
    fs = s3fs.S3FileSystem()  # endpoint and dummy credentials from the environment (conftest)
    fs.put(str(tmp_path / "BigEarthNet-S2"), s3_bucket[5:] + "/raw/", recursive=True)
    fs.put(str(tmp_path / "BigEarthNet-S1"), s3_bucket[5:] + "/raw/", recursive=True)
    src = BigEarthNetMM(f"{s3_bucket}/raw/BigEarthNet-S2", f"{s3_bucket}/raw/BigEarthNet-S1")
    disc = src.discover()
    assert len(disc.items) == 2 and not disc.rejects
    sample = src.read(disc.items[0])
    assert sample["arrays"]["s2_10m"].shape == (4, 120, 120)
    assert sample["arrays"]["s1"].dtype == np.float32 and sample["label"].any()
