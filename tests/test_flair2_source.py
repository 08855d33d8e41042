"""FLAIR #2 source: labels, S2 date handling, real metadata, synthetic twin, bad inputs, Ray."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsray.data.sources.flair2 import (
    AERIAL_BANDS,
    BASELINE_CLOUD_THRESHOLD,
    CENTROIDS_NAME,
    CLOUD_THRESHOLD,
    FLAIR2,
    FLAIR2_CLASSES,
    S2_BANDS,
    SYNTHETIC_STAMP,
    cloud_shares,
    codes_to_classes,
    flair2_spec,
    load_aerial_metadata,
    monthly_average,
    open_npy,
    parse_products,
    select_dates,
    write_synthetic_flair2,
)
from rsray.data.splits import apply_holdout, parse_holdout
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError

SIZE, SAT = 64, 16  # tests write 64 px tiles (the aerial still covers 102.4 m) and 16 px crops
DOMAIN_RE = re.compile(r"^D\d{3}_\d{4}$")
ZONE_RE = re.compile(r"^Z\d+_[A-Z]{2}$")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("flair2_synth")
    info = write_synthetic_flair2(root, 48, seed=1, size=SIZE, sat_patch_size=SAT,
                                  progress=False)
    return root, info


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("flair2_bad")
    corrupt = {"truncated": 0, "wrong_bands": 1, "wrong_size": 2, "bad_codes": 3,
               "mask_crs": 4, "mask_shift": 5, "no_centroid": 6, "near_border": 7,
               "missing_mask": 8, "products_mismatch": 12, "nan": 16}
    info = write_synthetic_flair2(root, 24, seed=2, size=SIZE, sat_patch_size=SAT,
                                  corrupt=corrupt, all_cloudy=(), progress=False)
    source = FLAIR2(root)
    return source, source.discover(), info


def _item(discovery, pid: str) -> dict:
    return next(it for it in discovery.items if it["patch_id"] == pid)


# ------------------------------------------------------------------------- labels and spec


def test_codes_to_classes_merges_rare_codes_into_other():
    codes = np.arange(1, 20, dtype=np.uint8).reshape(1, 19)
    out = codes_to_classes(codes)
    assert out.dtype == np.uint8
    assert out[0].tolist() == [*range(12), *[12] * 7]
    assert FLAIR2_CLASSES[:3] == ("building", "pervious surface", "impervious surface")
    assert FLAIR2_CLASSES[11] == "plowed land" and FLAIR2_CLASSES[12] == "other"
    for bad in (0, 20):
        with pytest.raises(PatchError, match=rf"MSK_1\.tif: label codes outside 1-19: \[{bad}\]"):
            codes_to_classes(np.array([[1, bad]]), "MSK_1.tif")


def test_spec():
    spec = flair2_spec(512, 40, 12)
    assert spec.task == "segmentation" and spec.label_size == 512
    assert len(spec.classes) == 13 and spec.exclude_from_mean == ("other",)
    aerial, s2 = spec.groups
    assert (aerial.name, aerial.bands, aerial.shape, aerial.dtype) == (
        "aerial", AERIAL_BANDS, (5, 512, 512), "uint8")
    assert (s2.kind, s2.bands, s2.shape, s2.dtype) == ("series", S2_BANDS, (12, 10, 40, 40),
                                                       "uint16")
    assert spec.label_info == {"exclude_from_mean": ["other"], "size": 512}


def test_constructor_checks(tmp_path: Path):
    for kw, msg in [({"border": "wrap"}, "border"), ({"cloud_threshold": 101}, "cloud_threshold"),
                    ({"max_cloud_share": 0}, "max_cloud_share"), ({"fallback_dates": 0},
                                                                  "fallback_dates"),
                    ({"sat_patch_size": 15}, "sat_patch_size"), ({"val_fraction": 1.0},
                                                                 "val_fraction"),
                    ({"folders": {"aerial": "x"}}, "folders")]:
        with pytest.raises(ConfigError, match=msg):
            FLAIR2(tmp_path, **kw)
    with pytest.raises(ConfigError, match="local"):
        FLAIR2("s3://bucket/flair2")
    with pytest.raises(DatasetNotFoundError, match="FLAIR #2 folder not found"):
        FLAIR2(tmp_path / "nope").discover()
    with pytest.raises(DatasetNotFoundError, match="no aerial train folder"):
        FLAIR2(tmp_path).discover()


# ------------------------------------------------------------------ Sentinel-2 date handling


def test_parse_products(tmp_path: Path):
    p = tmp_path / "p.txt"
    p.write_text("S2A_MSIL2A_20210415T105021_N0300_R051_T31UDP_20210415T135530\n"
                 "S2B_MSIL2A_20211231T105021_N0300_R051_T31UDP_20211231T135530\n\n")
    assert parse_products(str(p)) == [dt.date(2021, 4, 15), dt.date(2021, 12, 31)]
    p.write_text("S2A_MSIL2A_20210415T105021_N0300\nnot a product\n")
    with pytest.raises(PatchError, match=r"p\.txt: line 2 \('not a product'\) is not a Sentinel-2"):
        parse_products(str(p))
    with pytest.raises(PatchError, match="products file missing"):
        parse_products(str(tmp_path / "none.txt"))


def test_cloud_threshold_is_the_papers_probability_half(tmp_path: Path):
    """Issue 10: the LF-DLM paper's threshold (probability 0.5) is the default; the FLAIR #2
    baseline's 60 is the documented alternative."""
    assert CLOUD_THRESHOLD == 50 and BASELINE_CLOUD_THRESHOLD == 60
    assert FLAIR2(tmp_path).cloud_threshold == 50
    assert FLAIR2(tmp_path, cloud_threshold=BASELINE_CLOUD_THRESHOLD).cloud_threshold == 60
    masks = np.zeros((2, 2, 10, 10), dtype=np.uint8)
    masks[0, 1, :6] = 55            # 60 % of pixels at probability 0.55
    masks[1, 1, :6] = 49            # ... and at 0.49
    np.testing.assert_allclose(cloud_shares(masks), [0.6, 0.0])  # default: 0.5
    np.testing.assert_allclose(cloud_shares(masks, BASELINE_CLOUD_THRESHOLD), [0.0, 0.0])
    import argparse

    from rsray.data.registry import add_common_prepare_args, get_dataset

    p = argparse.ArgumentParser()
    get_dataset("flair2").add_prepare_args(p)
    add_common_prepare_args(p)
    args = p.parse_args(["--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert args.cloud_threshold == 50


def test_cloud_shares_select_dates_and_fallback():
    masks = np.zeros((4, 2, 10, 10), dtype=np.uint8)
    masks[0, 1, :6] = 90            # 60 % cloud -> dropped
    masks[1, 0, :3] = 70            # 30 % snow -> kept
    masks[2, 0, :5], masks[2, 1, :5] = 80, 80   # 50 % snow AND cloud on the same pixels
    masks[3, 1] = 59                # below the probability threshold
    shares = cloud_shares(masks, 60)
    np.testing.assert_allclose(shares, [0.6, 0.3, 0.5, 0.0])  # union, not the sum
    keep, all_cloudy = select_dates(shares, 0.5, 2)
    assert keep.tolist() == [1, 3] and not all_cloudy
    keep, all_cloudy = select_dates(np.array([0.9, 0.7, 0.95, 0.6]), 0.5, 2)
    assert keep.tolist() == [1, 3] and all_cloudy  # the two least cloudy, in date order
    keep, _ = select_dates(np.array([0.9, 0.7]), 0.5, 5)
    assert keep.tolist() == [0, 1]


def test_monthly_average():
    series = np.stack([np.full((2, 3, 3), v, dtype=np.uint16) for v in (10, 20, 40, 7)])
    dates = [dt.date(2021, 1, 3), dt.date(2021, 1, 20), dt.date(2021, 3, 1), dt.date(2021, 3, 9)]
    out, doys = monthly_average(series, dates)
    assert out.shape == (2, 2, 3, 3)
    assert out[:, 0, 0, 0].tolist() == [15.0, 23.5]
    assert doys.tolist() == [15, 74]  # the 15th of January and of March


# ------------------------------------------------------------------------------ real data


def test_real_flair1_toy_metadata(real_data_dir: Path):
    from rsray.data.sources._raster import lat_lon

    path = real_data_dir / "flair-toy-metadata" / "flair-one_TOY_metadata.json"
    entries, problems = load_aerial_metadata(str(path))
    assert len(entries) == 250 and problems == {}
    for key, e in entries.items():
        assert re.match(r"^IMG_\d{6}$", key)
        assert DOMAIN_RE.match(e["domain"]) and ZONE_RE.match(e["zone"])
        assert 2018 <= dt.date.fromisoformat(e["date"]).year <= 2021
        assert e["domain"].endswith(e["date"][:4])  # the domain's year is the flight's
        assert re.match(r"^\d{2}h\d{2}$", e["time"]) and e["camera"]
    points = lat_lon([("EPSG:2154", e["x"], e["y"]) for e in entries.values()])
    lats = [p[0] for p in points if p]
    lons = [p[1] for p in points if p]
    assert len(lats) == 250
    assert min(lats) > 41 and max(lats) < 51.5 and min(lons) > -5.5 and max(lons) < 10


# ------------------------------------------------------------------------ synthetic twin


def test_synthetic_exact_layout(synth):
    root, info = synth
    assert json.loads((root / SYNTHETIC_STAMP).read_text())["size"] == SIZE
    centroids = json.loads((root / CENTROIDS_NAME).read_text())
    meta = json.loads((root / "flair-2_aerial_metadata.json").read_text())
    assert len(centroids) == len(meta) == len(info.patches) == 48
    splits = {p["folder_split"] for p in info.patches.values()}
    assert splits == {"train", "test"}
    for pid, p in list(info.patches.items())[:12]:
        a = "flair_aerial_train" if p["folder_split"] == "train" else "flair_2_aerial_test"
        lab = "flair_labels_train" if p["folder_split"] == "train" else "flair_2_labels_test"
        sen = "flair_sen_train" if p["folder_split"] == "train" else "flair_2_sen_test"
        zone = f"{p['domain']}/{p['zone']}"
        assert DOMAIN_RE.match(p["domain"]) and ZONE_RE.match(p["zone"])
        with rasterio.open(root / a / zone / "img" / f"{pid}.tif") as src:
            assert (src.count, src.dtypes[0], src.width, src.crs.to_epsg()) == (
                5, "uint8", SIZE, 2154)
            assert src.transform.a == pytest.approx(102.4 / SIZE)
        with rasterio.open(root / lab / zone / "msk" / f"MSK_{pid[4:]}.tif") as src:
            codes = src.read(1)
            assert src.count == 1 and codes.min() >= 1 and codes.max() <= 19
        stem = root / sen / zone / "sen" / f"SEN2_sp_{p['domain']}_{p['zone']}"
        data = np.load(f"{stem}_data.npy", mmap_mode="r")
        masks = np.load(f"{stem}_masks.npy", mmap_mode="r")
        lines = Path(f"{stem}_products.txt").read_text().splitlines()
        assert data.dtype == np.uint16 and data.shape[1] == 10
        assert masks.dtype == np.uint8 and masks.shape == (data.shape[0], 2, *data.shape[2:])
        assert len(lines) == data.shape[0] and lines[0][15:19].isdigit()  # baseline's MMDD
        row, col = centroids[f"{pid}.tif"]
        assert SAT // 2 <= row <= data.shape[2] - SAT // 2
        assert SAT // 2 <= col <= data.shape[3] - SAT // 2
        assert meta[pid]["domain"] == p["domain"] and meta[pid]["zone"] == p["zone"]


def test_discover_splits_by_domain(synth):
    root, info = synth
    source = FLAIR2(root)
    d = source.discover()
    assert not d.rejects and len(d.items) == 48 and source.spec.synthetic
    assert [it["patch_id"] for it in d.items] == sorted(it["patch_id"] for it in d.items)
    by_split: dict[str, set[str]] = {}
    for it in d.items:
        by_split.setdefault(it["split"], set()).add(it["domain"])
        assert info.patches[it["patch_id"]]["folder_split"] == (
            "test" if it["split"] == "test" else "train")
        g = it["groups"]
        assert g["domain"] == it["domain"] and g["zone"].startswith(it["domain"] + "/")
        assert 41 < g["lat"] < 51.5 and g["year"] == int(it["domain"][-4:])
    assert set(by_split) == {"train", "val", "test"}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"]
                                                               & by_split["test"])
    assert sorted(by_split["val"]) == d.info["val_domains"]
    assert len(by_split["val"]) == round(0.2 * (len(by_split["train"]) + len(by_split["val"])))
    assert d.info["series_max_len"] <= 12 and source.spec.groups[1].max_len == \
        d.info["series_max_len"]
    assert source.spec.label_size == SIZE and source.spec.groups[0].size == SIZE
    # another seed picks other validation domains; explicit domains are honoured
    other = FLAIR2(root, split_seed=5).discover().info["val_domains"]
    train_domains = sorted(by_split["train"] | by_split["val"])
    explicit = FLAIR2(root, val_domains=train_domains[:2]).discover()
    assert explicit.info["val_domains"] == train_domains[:2]
    assert other != d.info["val_domains"] or len(train_domains) < 3
    with pytest.raises(ConfigError, match="not train domains"):
        FLAIR2(root, val_domains=["D999_2020"]).discover()
    # hold-out keys: a domain, or a latitude band
    items = [dict(it, groups=dict(it["groups"])) for it in d.items]
    moved = apply_holdout(items, parse_holdout([f"domain={d.items[0]['domain']}"]))
    assert moved["moved"] == sum(it["domain"] == d.items[0]["domain"] for it in d.items)
    lat = d.items[0]["groups"]["lat"]
    items = [dict(it) for it in d.items]
    assert apply_holdout(items, parse_holdout([f"lat={lat - 0.01}:{lat + 0.01}"]))["moved"] >= 1


def test_read_synthetic_sample(synth):
    root, _ = synth
    source = FLAIR2(root)
    d = source.discover()
    it = next(i for i in d.items if i["split"] == "train")
    s = source.read(it)
    aerial, s2, dates = s["arrays"]["aerial"], s["arrays"]["s2"], s["arrays"]["s2_dates"]
    assert aerial.shape == (5, SIZE, SIZE) and aerial.dtype == np.uint8
    assert s2.dtype == np.uint16 and s2.shape[1:] == (10, SAT, SAT)
    assert 1 <= s2.shape[0] <= source.spec.groups[1].max_len and dates.shape == (s2.shape[0],)
    assert np.all(np.diff(dates) > 0) and dates.min() >= 1 and dates.max() <= 366
    assert all(d in {dt.date(2021, m, 15).timetuple().tm_yday for m in range(1, 13)}
               | {dt.date(2020, m, 15).timetuple().tm_yday for m in range(1, 13)}
               for d in dates.tolist())  # monthly means dated the 15th
    assert s["label"].shape == (SIZE, SIZE) and s["label"].max() <= 12
    assert s["meta"]["domain"] == it["domain"] and s["meta"]["aerial_date"]
    assert s["geo"]["width"] == SIZE and "Lambert-93" in s["geo"]["crs"]
    assert s["geo"]["transform"][0] == pytest.approx(102.4 / SIZE)
    assert isinstance(open_npy(it["s2_data"], "data"), np.memmap)  # never the whole zone
    for g in source.spec.groups:
        assert g.check_shape(s["arrays"][g.name]) is None
    # every cloudless date instead of monthly means
    all_dates = FLAIR2(root, monthly_average=False)
    d2 = all_dates.discover()
    assert d2.info["series_max_len"] > 12
    s_all = all_dates.read(_item(d2, it["patch_id"]))
    assert s_all["arrays"]["s2"].shape[0] == int(s_all["meta"]["s2_dates_cloudless"])
    assert s_all["arrays"]["s2"].shape[0] >= s2.shape[0]


def test_all_cloudy_patch_is_kept_and_flagged(synth):
    root, info = synth
    (pid,) = info.all_cloudy
    source = FLAIR2(root)
    it = _item(source.discover(), pid)
    masks = np.asarray(open_npy(it["s2_masks"], "masks"))
    r, c = it["centroid"]
    crop = masks[:, :, r - SAT // 2:r + SAT // 2, c - SAT // 2:c + SAT // 2]
    shares = cloud_shares(crop, 60)
    assert (shares >= 0.5).all()  # the reference loader would keep no date here (IndexError)
    s = source.read(it)
    assert s["meta"]["all_cloudy"] == "1" and s["meta"]["s2_dates_cloudless"] == "0"
    assert s["flags"]["all_cloudy"] is True
    assert 1 <= s["arrays"]["s2"].shape[0] <= 2  # two least cloudy dates, monthly-averaged
    raw = FLAIR2(root, monthly_average=False, fallback_dates=3).read(it)
    assert raw["arrays"]["s2"].shape[0] == 3
    least = np.sort(np.argsort(shares, kind="stable")[:3])
    dates = parse_products(it["s2_products"])
    assert raw["arrays"]["s2_dates"].tolist() == [dates[i].timetuple().tm_yday for i in least]
    unfiltered = FLAIR2(root, filter_clouds=False, monthly_average=False).read(it)
    assert unfiltered["arrays"]["s2"].shape[0] == len(dates)
    assert unfiltered["meta"]["all_cloudy"] == "0"
    # other patches are not flagged
    other = FLAIR2(root).read(next(i for i in source.discover().items if i["patch_id"] != pid))
    assert other["meta"]["all_cloudy"] == "0"


def _s2_pixel_classes(label: np.ndarray, size: int, sat: int) -> dict[tuple[int, int], int]:
    """Crop pixel -> class for S2 pixels whose aerial footprint is >= 90 % one class."""
    half = sat // 2
    k = (np.arange(size) + 0.5) * 10.24 / size + half - 5.12
    idx = np.floor(k).astype(int)
    out = {}
    for i in range(half - 5, half + 5):
        for j in range(half - 5, half + 5):
            block = label[np.ix_(idx == i, idx == j)].ravel()
            counts = np.bincount(block, minlength=13)
            if block.size and counts.max() >= 0.9 * block.size:
                out[(i, j)] = int(counts.argmax())
    return out


def test_synthetic_classes_need_the_right_modality(synth):
    """Coniferous/deciduous and herbaceous/agricultural look the same from the air but
    follow different seasonal curves in S2; brushwood differs from trees in both."""
    root, _ = synth
    source = FLAIR2(root)
    con, dec, herb, agri, brush = 5, 6, 9, 10, 7
    aerial: dict[int, list[np.ndarray]] = {c: [] for c in (con, dec, herb, agri, brush)}
    ndvi: dict[tuple[int, str], list[float]] = {}
    for it in source.discover().items:
        s = source.read(it)
        label, img = s["label"], s["arrays"]["aerial"].astype(np.float64)
        for c in aerial:
            if (label == c).sum() > 20:
                aerial[c].append(img[:4, label == c].mean(axis=1))
        s2 = s["arrays"]["s2"].astype(np.float64)
        nd = (s2[:, 6] - s2[:, 2]) / (s2[:, 6] + s2[:, 2])
        doys = s["arrays"]["s2_dates"]
        for (i, j), c in _s2_pixel_classes(label, SIZE, SAT).items():
            for season, sel in (("winter", (doys < 80) | (doys > 310)),
                                ("late", (doys > 220) & (doys < 300))):
                if sel.any():
                    ndvi.setdefault((c, season), []).append(float(np.median(nd[sel, i, j])))
    mean = {c: np.mean(v, axis=0) for c, v in aerial.items()}
    assert np.abs(mean[con] - mean[dec]).max() < 6       # same look from the air
    assert np.abs(mean[herb] - mean[agri]).max() < 6
    assert np.abs(mean[con] - mean[brush]).max() > 20    # brushwood: the aerial sees it
    med = {k: np.median(v) for k, v in ndvi.items()}
    assert med[(con, "winter")] - med[(dec, "winter")] > 0.3    # evergreen vs leaf-off
    assert med[(herb, "late")] - med[(agri, "late")] > 0.3      # grass vs harvested crop
    assert abs(med[(con, "late")] - med[(dec, "late")]) < 0.1   # both green in summer


# ---------------------------------------------------------------------------- bad inputs


def test_every_bad_patch_fails_read_naming_file_and_problem(corrupted):
    source, d, info = corrupted
    expected = {  # kind -> (item key of the file at fault, message)
        "truncated": ("aerial", "unreadable or truncated GeoTIFF"),
        "wrong_bands": ("aerial", r"has 4 bands, expected 5 \(R, G, B, NIR, elevation\)"),
        "wrong_size": ("aerial", "size 80 x 80 px, expected 64 x 64"),
        "bad_codes": ("label", r"label codes outside 1-19: \[0, 25\]"),
        "mask_crs": ("label", "CRS EPSG:27572 differs from the aerial image's EPSG:2154"),
        "mask_shift": ("label", "geotransform .* differs from the aerial image's"),
        "products_mismatch": ("s2_products", r"\d+ product lines but the data file has \d+ "
                                             "dates"),
        "nan": ("s2_data", "NaN/inf values in the crop of IMG_"),
    }
    for kind, (key, msg) in expected.items():
        (pid,) = info.corrupted[kind]
        it = _item(d, pid)
        with pytest.raises(PatchError, match=msg) as exc:
            source.read(it)
        assert exc.value.path == it[key], kind


def test_bad_pairing_is_rejected_at_discovery(corrupted):
    _, d, info = corrupted
    reasons = {r["path"]: r["reason"] for r in d.rejects}
    (pid,) = info.corrupted["missing_mask"]
    path = next(p for p in reasons if p.endswith(f"MSK_{pid[4:]}.tif"))
    assert reasons[path] == f"label mask missing for {pid}.tif"
    (pid,) = info.corrupted["no_centroid"]
    path = next(p for p in reasons if p.endswith(f"{pid}.tif"))
    assert reasons[path] == f"{pid}.tif is not in {CENTROIDS_NAME}: no Sentinel-2 position"
    assert len(d.rejects) == 2


def test_crop_at_the_border_is_padded_or_rejected(corrupted):
    source, d, info = corrupted
    (pid,) = info.corrupted["near_border"]
    it = _item(d, pid)
    s = source.read(it)
    assert s["meta"]["s2_border_padded"] == "1" and s["flags"]["s2_border_padded"]
    s2 = s["arrays"]["s2"]
    assert s2.shape[1:] == (10, SAT, SAT)
    np.testing.assert_array_equal(s2[..., :SAT // 2 - 1], s2[..., SAT // 2 - 1:SAT // 2]
                                  .repeat(SAT // 2 - 1, axis=-1))  # edge values
    strict = FLAIR2(source.root, border="reject")
    strict.discover()
    with pytest.raises(PatchError, match="too close to the border of the") as exc:
        strict.read(it)
    assert exc.value.path == it["s2_data"]
    with pytest.raises(PatchError, match=r"centroid \[500, 3\] of IMG_\d+ lies outside"):
        source.read({**it, "centroid": [500, 3]})


def test_bad_super_area_files(corrupted, tmp_path: Path):
    source, d, info = corrupted
    it = next(i for i in d.items if i["patch_id"] == sorted(info.patches)[-1])
    assert source.read(it)["patch_id"] == it["patch_id"]
    data = np.load(it["s2_data"])
    masks = np.load(it["s2_masks"])
    bad = {k: str(tmp_path / f"{k}.npy") for k in ("trunc", "bands", "masks", "prob", "neg")}
    raw = Path(it["s2_data"]).read_bytes()
    Path(bad["trunc"]).write_bytes(raw[: len(raw) // 2])
    np.save(bad["bands"], data[:, :9])
    np.save(bad["masks"], masks[:, :1])
    np.save(bad["prob"], np.where(masks > 50, 150, masks).astype(np.uint8))
    np.save(bad["neg"], data.astype(np.int32) - 30000)
    cases = [({"s2_data": bad["trunc"]}, "data file unreadable or truncated"),
             ({"s2_data": bad["bands"]}, r"shape \(\d+, 9, \d+, \d+\), expected \(T, 10, H, W\)"),
             ({"s2_masks": bad["masks"]}, r"expected \(\d+, 2, \d+, \d+\) \(snow, cloud\)"),
             ({"s2_masks": bad["prob"]}, "probabilities 0..150 outside 0..100"),
             ({"s2_data": bad["neg"]}, "is outside 0..65535")]
    for change, msg in cases:
        with pytest.raises(PatchError, match=msg) as exc:
            source.read({**it, **change})
        assert exc.value.path == next(iter(change.values()))
    products = tmp_path / "products.txt"
    products.write_text("S2A_MSIL2A_garbage\n" * data.shape[0])
    with pytest.raises(PatchError, match=r"line 1 .* is not a Sentinel-2 product name"):
        source.read({**it, "s2_products": str(products)})


def test_missing_centroid_json_and_metadata_mismatch(synth, tmp_path: Path):
    root, _ = synth
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    meta_path = copy / "flair-2_aerial_metadata.json"
    meta = json.loads(meta_path.read_text())
    first = sorted(meta)[0]
    meta[first]["zone"] = "Z99_XX"
    second = sorted(meta)[1]
    del meta[second]["date"]
    meta_path.write_text(json.dumps(meta))
    d = FLAIR2(copy).discover()
    reasons = sorted(r["reason"] for r in d.rejects)
    assert any(f"aerial metadata places {first} in " in r and "Z99_XX" in r for r in reasons)
    assert any(r == f"{second}: aerial metadata entry lacks 'date'" for r in reasons)
    assert d.info["metadata"]["invalid"] == 1 and len(d.items) == 46
    assert len(FLAIR2(copy, metadata=None).discover().items) == 48
    (copy / CENTROIDS_NAME).unlink()
    with pytest.raises(DatasetNotFoundError, match="centroid json not found"):
        FLAIR2(copy).discover()


# --------------------------------------------------------------------- Ray: prepare + stream


def test_prepare_and_stream_series_with_flags_and_padding(tmp_path: Path, ray_session):
    """All-cloudy flags, per-patch series lengths and their padding survive prepare and the
    stream (the model forward and loss are in test_dataset_contract.py)."""
    import pyarrow.parquet as pq
    import torch

    from rsray.config import DataConfig
    from rsray.data.datasets import build_datasets
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import prepare
    from rsray.data.shards import read_manifest

    raw = tmp_path / "raw"
    info = write_synthetic_flair2(raw, 16, seed=3, size=SIZE, sat_patch_size=SAT,
                                  progress=False)
    out = str(tmp_path / "shards")
    prepare(FLAIR2(raw), out, target_shard_mb=1.0)
    m = read_manifest(out)
    assert m.task == "segmentation" and m.synthetic and len(m.classes) == 13
    assert m.info["label"] == {"exclude_from_mean": ["other"], "size": SIZE}
    assert sum(m.info["flags"]["all_cloudy"].values()) == len(info.all_cloudy) == 1
    assert m.modalities["s2"]["groups"]["s2"]["kind"] == "series"
    max_len = m.modalities["s2"]["groups"]["s2"]["max_len"]
    cloudy_split = next(s for s, n in m.info["flags"]["all_cloudy"].items() if n)
    for path in m.shard_paths(cloudy_split):
        t = pq.read_table(path, columns=["meta_all_cloudy", "s2_shape", "s2_dates"])
        for flag, shape, dates in zip(*(t[c].to_pylist() for c in t.column_names), strict=True):
            if flag == "1":
                assert shape[0] <= 2 and len(dates) == shape[0]

    cfg = DataConfig(uri=out, batch_size=4, image_size=SIZE, modalities=["aerial", "s2"])
    manifest, datasets = build_datasets(cfg, splits=("train",))
    plan = make_plan(manifest, cfg)
    raw_batch = next(iter(datasets["train"].iter_torch_batches(batch_size=4)))
    batch = finalize_batch(raw_batch, plan)
    n = batch["label"].shape[0]
    assert batch["aerial"].shape == (n, 5, SIZE, SIZE)
    assert batch["s2"].shape == (n, max_len, 10, SAT, SAT)
    assert batch["s2_mask"].shape == batch["s2_dates"].shape == (n, max_len)
    assert batch["label"].shape == (n, SIZE, SIZE) and batch["label"].dtype == torch.int64
    lengths = batch["s2_mask"].sum(dim=1)
    assert (lengths >= 1).all()
    for i, t in enumerate(lengths.tolist()):
        assert (batch["s2_dates"][i, t:] == 0).all() and (batch["s2_dates"][i, :t] > 0).all()
        assert (batch["s2"][i, t:] == 0).all()  # padding stays zero after normalisation
    assert int(batch["label"].min()) >= 0 and int(batch["label"].max()) <= 12

