"""SEN12MS source: class tables, labels, splits, synthetic twin, bad inputs, prepare + stream."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsray.data.sources.sen12ms import (
    IGBP_TO_SEN12MS,
    S2_FILE_BANDS,
    SEN12MS,
    SEN12MS_CLASSES,
    SYNTHETIC_TAG,
    TEST_SCENES,
    VAL_SCENES,
    describe_synthetic_rules,
    sen12ms_spec,
    simplify_igbp,
    write_synthetic_sen12ms,
)
from rsray.errors import ConfigError, DatasetNotFoundError, PatchError, RsrayError

FILE_RE = re.compile(r"^(ROIs\d{4}_(spring|summer|fall|winter))_(s1|s2|lc)_(\d+)_p(\d+)\.tif$")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sen12ms_synth")
    info = write_synthetic_sen12ms(root, 40, seed=2, progress=False)
    return root, info


def _lc_shares(lc_path: str) -> np.ndarray:
    """Shares of the 10 classes computed here, independently of the reader."""
    with rasterio.open(lc_path) as src:
        igbp = src.read(1)
    counts = np.zeros(10)
    for code, idx in IGBP_TO_SEN12MS.items():
        counts[idx] += (igbp == code).sum()
    return counts / counts.sum()


# ------------------------------------------------------------------------------ tables, spec


def test_simplified_igbp_matches_the_official_formula():
    assert sorted(IGBP_TO_SEN12MS) == list(range(1, 18))
    assert len(SEN12MS_CLASSES) == 10 and SEN12MS_CLASSES[5] == "Croplands"
    lc = np.random.default_rng(0).random(17)
    # SEN12MS classification/dataset.py load_sample(), written out by hand
    official = [lc[0:5].sum(), lc[5:7].sum(), lc[7:9].sum(), lc[9], lc[10], lc[11] + lc[13],
                lc[12], lc[14], lc[15], lc[16]]
    np.testing.assert_allclose(simplify_igbp(lc), official)
    with pytest.raises(ValueError, match="17 IGBP values"):
        simplify_igbp(lc[:10])


def test_official_scene_lists():
    assert len(TEST_SCENES) == 26 and len(VAL_SCENES) == 25
    assert not TEST_SCENES & VAL_SCENES
    assert ("summer", 146) not in TEST_SCENES  # the broken NaN patch lies in the training list


def test_spec_tasks_and_bands():
    single, multi = sen12ms_spec("single"), sen12ms_spec("multi", all_s2_bands=True)
    assert single.task == "multiclass" and multi.task == "multilabel"
    assert single.modality("s2").bands == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A",
                                           "B11", "B12")
    assert [g.name for g in multi.modality("s2").groups] == ["s2", "s2_60m"]
    assert multi.modality("s2").groups[1].optional
    assert multi.modality("s2").bands[-3:] == ("B1", "B9", "B10")
    assert single.modality("s1").groups[0].shape == (2, 256, 256)
    with pytest.raises(ConfigError, match="label_mode"):
        sen12ms_spec("both")


def test_constructor_checks(tmp_path: Path):
    with pytest.raises(ConfigError, match="splits"):
        SEN12MS(tmp_path, splits="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="s1_nan"):
        SEN12MS(tmp_path, s1_nan="mean")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="min_share"):
        SEN12MS(tmp_path, min_share=0)
    with pytest.raises(DatasetNotFoundError, match="SEN12MS folder not found"):
        SEN12MS(tmp_path / "nope").discover()
    with pytest.raises(DatasetNotFoundError, match="no ROIs<id>_<season> folder"):
        SEN12MS(tmp_path).discover()


def test_real_samples(real_data_dir: Path):
    root = real_data_dir / "sen12ms"
    if not root.is_dir():
        pytest.skip(f"no real SEN12MS samples: {root} does not exist (no public repository "
                    "ships SEN12MS imagery; the synthetic twin in the exact format covers the "
                    "reader)")
    src = SEN12MS(root)
    disc = src.discover()
    assert disc.items and not src.spec.synthetic
    sample = src.read(disc.items[0])
    assert sample["arrays"]["s2"].shape == (10, 256, 256)


# ------------------------------------------------------------------------------ synthetic twin


def test_synthetic_exact_layout(synth):
    root, info = synth
    files = sorted(p for p in root.rglob("*.tif"))
    assert len(files) == 3 * 40
    for f in files:
        m = FILE_RE.match(f.name)
        assert m, f.name
        roi, _, mod, scene, _ = m.groups()
        assert f.parent.name == f"{mod}_{scene}" and f.parent.parent.name == roi
    want = {"s2": (13, "uint16"), "s1": (2, "float32"), "lc": (4, "uint16")}
    for f in files[:9]:
        mod = FILE_RE.match(f.name).group(3)
        with rasterio.open(f) as src:
            assert (src.count, src.dtypes[0]) == want[mod]
            assert (src.width, src.height) == (256, 256)
            assert src.res == (10.0, 10.0) and src.crs.to_epsg() // 100 in (326, 327)
            assert src.tags()[SYNTHETIC_TAG] == "1" and src.compression is None
    assert {c: m for c, m in info.class_modality.items()} == {
        "Forest": "s2", "Savanna": "s2", "Croplands": "s2", "Snow/Ice": "s2", "Barren": "s2",
        "Shrubland": "s1", "Grassland": "s1", "Wetlands": "s1", "Urban/Built-up": "s1",
        "Water": "s1"}
    assert "visible in S2 only" in describe_synthetic_rules()
    assert "SYNTHETIC" in (root / "README.txt").read_text()


def test_synthetic_is_deterministic(tmp_path: Path):
    for name in ("a", "b"):
        write_synthetic_sen12ms(tmp_path / name, 2, seed=5, progress=False)
    rel = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tif"))
    for p in rel:
        assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes()
    with pytest.raises(ValueError, match="unknown kind"):
        write_synthetic_sen12ms(tmp_path / "c", 1, corrupt={"gremlins": 0})


def test_discover_read_labels_and_official_split(synth):
    root, _ = synth
    single, multi = SEN12MS(root, label_mode="single"), SEN12MS(root)  # default: multi, 0.1
    disc = single.discover()
    assert len(disc.items) == 40 and not disc.rejects
    assert single.spec.synthetic and disc.info["synthetic"] is True
    assert disc.info["counts"] == {"train": 24, "val": 8, "test": 8}
    multi.discover()
    for item in disc.items:
        g = item["groups"]
        scene = int(g["scene"].split("_")[1])
        want = ("test" if (g["season"], scene) in TEST_SCENES
                else "val" if (g["season"], scene) in VAL_SCENES else "train")
        assert item["split"] == want
        assert g["roi"].endswith(g["season"]) and item["patch_id"].startswith(g["roi"] + "_s2_")
        shares = _lc_shares(item["lc"])
        s = single.read(item)
        assert s["label"].dtype == np.uint8 and s["label"].sum() == 1
        assert int(s["label"].argmax()) == int(shares.argmax())
        m = multi.read(item)
        np.testing.assert_array_equal(m["label"], (shares >= 0.1).astype(np.uint8))
        assert s["arrays"]["s2"].shape == (10, 256, 256) and s["arrays"]["s2"].dtype == np.uint16
        assert s["arrays"]["s1"].dtype == np.float32 and np.isfinite(s["arrays"]["s1"]).all()
        assert s["geo"]["width"] == 256 and s["geo"]["transform"][0] == 10.0
        assert "UTM" in s["geo"]["crs"]
        assert s["meta"] == {"season": g["season"], "scene": g["scene"]}
    # the full S2 file keeps its band order: B1, B9, B10 in the optional group
    full = SEN12MS(root, all_s2_bands=True)
    s = full.read(disc.items[0])
    with rasterio.open(disc.items[0]["s2"]) as src:
        raw = src.read()
    np.testing.assert_array_equal(s["arrays"]["s2_60m"],
                                  raw[[S2_FILE_BANDS.index(b) for b in ("B1", "B9", "B10")]])
    np.testing.assert_array_equal(s["arrays"]["s2"][0], raw[1])  # B2


def test_seeded_split_keeps_scenes_together(synth):
    root, _ = synth
    disc = SEN12MS(root, splits="seeded", split_seed=3,
                   split_fractions=(0.5, 0.25, 0.25)).discover()
    by_scene: dict[str, set[str]] = {}
    for it in disc.items:
        by_scene.setdefault(it["groups"]["scene"], set()).add(it["split"])
    assert all(len(s) == 1 for s in by_scene.values())
    assert disc.info["split_source"].startswith("seeded by scene")


def test_synthetic_classes_hidden_from_one_modality(synth):
    """S2-only classes share one S1 backscatter; S1-only classes share one S2 spectrum."""
    root, info = synth
    src = SEN12MS(root)
    s2_means: dict[int, list[np.ndarray]] = {}
    s1_means: dict[int, list[np.ndarray]] = {}
    for item in src.discover().items[:24]:
        s = src.read(item)
        with rasterio.open(item["lc"]) as lc:
            igbp = lc.read(1)
        for code in np.unique(igbp):
            cls = IGBP_TO_SEN12MS[int(code)]
            mask = igbp == code
            if mask.sum() < 2000:
                continue
            s2_means.setdefault(cls, []).append(s["arrays"]["s2"][:, mask].mean(axis=1))
            s1_means.setdefault(cls, []).append(s["arrays"]["s1"][:, mask].mean(axis=1))
    s2_only = [SEN12MS_CLASSES.index(c) for c, m in info.class_modality.items() if m == "s2"]
    s1_only = [SEN12MS_CLASSES.index(c) for c, m in info.class_modality.items() if m == "s1"]

    def spread(means: dict[int, list[np.ndarray]], classes: list[int]) -> float:
        """Largest gap between class mean vectors, relative to their size."""
        vecs = [np.mean(means[c], axis=0) for c in classes if c in means]
        assert len(vecs) >= 3
        return max(float(np.abs(a - b).max()) for a in vecs for b in vecs)

    # within a hidden group the other modality sees (almost) the same values ...
    assert spread(s1_means, s2_only) < 2.0  # dB
    assert spread(s2_means, s1_only) < 250  # reflectance x 10000
    # ... while the modality that shows them separates them clearly
    assert spread(s1_means, s1_only) > 10.0
    assert spread(s2_means, s2_only) > 3000


# ------------------------------------------------------------------------------ bad inputs

READ_ERRORS = {
    "wrong_band_count": ("_s2_", "S2 file has 12 bands, expected 13"),
    "wrong_shape": ("_s1_", "S1 shape (256, 255), expected (256, 256)"),
    "crs_mismatch": ("_lc_", "differs from the S2 CRS"),
    "bounds_mismatch": ("_s1_", "by 30.0 m (> 1 m)"),
    "nan_s1": ("_s1_", "S1 has 100 NaN/inf pixels"),
    "truncated": ("_s2_", "truncated"),
    "lc_no_igbp": ("_lc_", "no valid IGBP code (1-17); values found: 0"),
}
PAIRING = ("missing_s1", "missing_lc", "s2_missing")


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sen12ms_bad")
    kinds = [*READ_ERRORS, *PAIRING]
    info = write_synthetic_sen12ms(root, len(kinds) + 2, seed=4, progress=False,
                                   corrupt={k: i for i, k in enumerate(kinds)})
    return root, info


def test_every_bad_triplet_fails_read_naming_file_and_problem(corrupted):
    root, info = corrupted
    src = SEN12MS(root)
    disc = src.discover()
    bad = {info.corrupted[k][0]: k for k in READ_ERRORS}
    good = 0
    for item in disc.items:
        kind = bad.get(item["patch_id"])
        if kind is None:
            src.read(item)
            good += 1
            continue
        part, words = READ_ERRORS[kind]
        with pytest.raises(PatchError) as exc:
            src.read(item)
        assert part in Path(exc.value.path).name, (kind, exc.value.path)
        assert words in exc.value.reason, (kind, exc.value.reason)
        assert str(exc.value).startswith(exc.value.path)
    assert good == 2
    assert set(bad) <= {it["patch_id"] for it in disc.items}


def test_missing_partners_are_rejected_while_pairing(corrupted):
    root, info = corrupted
    disc = SEN12MS(root).discover()
    reasons = [(Path(r["path"]).name, r["reason"]) for r in disc.rejects]
    s1_gone, lc_gone, s2_gone = (info.corrupted[k][0] for k in PAIRING)
    assert (f"{s1_gone}.tif", "missing S1 partner "
            f"{root / s1_gone.split('_s2_')[0]}/s1_{s1_gone.split('_')[3]}/"
            f"{s1_gone.replace('_s2_', '_s1_')}.tif") in reasons
    assert any(n == f"{lc_gone}.tif" and r.startswith("missing LC partner")
               for n, r in reasons)
    orphans = {n for n, r in reasons if "without its S2 partner" in r}
    assert orphans == {f"{s2_gone.replace('_s2_', m)}.tif" for m in ("_s1_", "_lc_")}
    assert not {s1_gone, lc_gone, s2_gone} & {it["patch_id"] for it in disc.items}


def test_s1_nan_policy_zero(corrupted):
    root, info = corrupted
    src = SEN12MS(root, s1_nan="zero")
    item = next(it for it in src.discover().items
                if it["patch_id"] == info.corrupted["nan_s1"][0])
    s1 = src.read(item)["arrays"]["s1"]
    assert np.isfinite(s1).all() and (s1[0, 10:20, 10:20] == 0).all()


def test_min_share_too_high_rejects_with_reason(synth):
    root, _ = synth
    src = SEN12MS(root, label_mode="multi", min_share=0.99)
    items = src.discover().items
    mixed = next(it for it in items if _lc_shares(it["lc"]).max() < 0.99)
    with pytest.raises(PatchError, match=r"no class reaches min_share=0\.99"):
        src.read(mixed)


def test_default_labels_are_the_toolbox_multi_label_definition(synth):
    """Issue 10: SEN12MS defaults to multi-label, threshold 0.1 (the toolbox's definition)."""
    root, _ = synth
    src = SEN12MS(root)
    assert src.label_mode == "multi" and src.min_share == 0.1
    assert src.spec.task == "multilabel" and sen12ms_spec().task == "multilabel"
    items = src.discover().items
    labels = np.stack([src.read(it)["label"] for it in items[:8]])
    assert labels.dtype == np.uint8 and (labels.sum(axis=1) >= 1).all()
    assert (labels.sum(axis=1) > 1).any()  # several classes above 10 % on a blocky map
    single = SEN12MS(root, label_mode="single")
    for it, multi in zip(items[:8], labels, strict=True):
        one = single.read(it)["label"]
        assert one.sum() == 1 and multi[int(np.argmax(one))] == 1  # majority is >= 10 %


def test_igbp_probability_pickle(synth, tmp_path: Path):
    root, _ = synth
    items = SEN12MS(root).discover().items
    probs = {}
    for i, it in enumerate(items[:-2]):
        vec = np.zeros(17)
        vec[16 if i % 2 else 14] = 0.6  # Water (17) or Snow and Ice (15) dominates
        vec[11] = 0.3  # Croplands
        vec[0] = 0.1  # Forest, exactly at the threshold
        probs[f"{it['patch_id']}.tif"] = vec
    probs[f"{items[-2]['patch_id']}.tif"] = np.ones(16) / 16  # wrong length
    pkl = tmp_path / "IGBP_probability_labels.pkl"
    pkl.write_bytes(pickle.dumps(probs))
    src = SEN12MS(root, label_mode="multi", igbp_pickle=str(pkl))
    disc = src.discover()
    assert len(disc.items) == len(items) - 2
    why = {Path(r["path"]).stem: r["reason"] for r in disc.rejects}
    assert why[items[-1]["patch_id"]].startswith("not in the IGBP probability pickle")
    assert why[items[-2]["patch_id"]].startswith("has 16 values instead of 17")
    assert disc.info["label_source"].startswith("IGBP probability pickle")
    labels = [np.flatnonzero(src.read(it)["label"]).tolist() for it in disc.items[:2]]
    assert labels == [[0, 5, 7], [0, 5, 9]]  # Forest, Croplands, Snow/Ice | Water
    single = SEN12MS(root, label_mode="single", igbp_pickle=str(pkl))
    single.discover()
    assert int(single.read(disc.items[1])["label"].argmax()) == 9
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(RsrayError, match="not a readable pickle"):
        SEN12MS(root, igbp_pickle=str(bad)).discover()
    with pytest.raises(DatasetNotFoundError, match="pickle not found"):
        SEN12MS(root, igbp_pickle=str(tmp_path / "none.pkl")).discover()


def test_remote_filesystem_root(tmp_path: Path):
    """A non-local fsspec root (memory://): listing, synthetic tag and reads go via fsspec."""
    import fsspec

    info = write_synthetic_sen12ms(tmp_path, 3, seed=6, progress=False,
                                   corrupt={"missing_lc": 2})
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path) + "/", "/sen12ms-test/", recursive=True)
    try:
        remote, local = SEN12MS("memory://sen12ms-test", num_threads=2), SEN12MS(tmp_path)
        rd, ld = remote.discover(), local.discover()
        assert [it["patch_id"] for it in rd.items] == [it["patch_id"] for it in ld.items]
        assert len(rd.items) == 2 and remote.spec.synthetic
        assert rd.rejects[0]["path"].startswith("memory://sen12ms-test/")
        assert info.corrupted["missing_lc"][0] in rd.rejects[0]["path"]
        for r_item, l_item in zip(rd.items, ld.items, strict=True):
            r, l_ = remote.read(r_item), local.read(l_item)
            np.testing.assert_array_equal(r["label"], l_["label"])
            for g in r["arrays"]:
                np.testing.assert_array_equal(r["arrays"][g], l_["arrays"][g])
    finally:
        fs.rm("/sen12ms-test", recursive=True)


# ------------------------------------------------------------------------------ Ray


def test_prepare_holdout_season_and_stream_single_labels(tmp_path: Path, ray_session):
    """Season hold-out and the single-label option streamed as one-hot rows (the default
    multi-label path and the model forward are in test_dataset_contract.py)."""
    from rsray.config import load_config
    from rsray.data.datasets import build_datasets
    from rsray.data.finalize import finalize_batch
    from rsray.data.plan import make_plan
    from rsray.data.prepare import prepare
    from rsray.data.shards import read_manifest

    raw = tmp_path / "raw"
    write_synthetic_sen12ms(raw, 20, seed=1, progress=False)
    out = str(tmp_path / "shards")
    prepare(SEN12MS(raw, label_mode="single"), out, target_shard_mb=4, holdout=["season=winter"])
    m = read_manifest(out)
    assert m.dataset == "sen12ms" and m.task == "multiclass" and m.synthetic
    assert m.classes == list(SEN12MS_CLASSES)
    assert m.splits == {"train": 9, "val": 3, "test": 3, "ood": 5}
    assert m.info["holdout"]["moved"] == 5
    cfg = load_config(None, [f"data.uri={out}", "data.image_size=64", "data.batch_size=4",
                             "data.eval_splits=[val,ood]"])
    manifest, datasets = build_datasets(cfg.data)
    plan = make_plan(manifest, cfg.data)
    for split in ("train", "val", "ood"):
        batch = finalize_batch(datasets[split].take_batch(batch_size=3, batch_format="numpy"),
                               plan)
        assert batch["s2"].shape == (3, 10, 64, 64) and batch["s1"].shape == (3, 2, 64, 64)
        assert batch["label"].shape == (3, 10) and (batch["label"].sum(dim=1) == 1).all()
