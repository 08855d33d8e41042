"""prepare -> shards -> Ray Data stream, locally and through a real S3 endpoint (moto)."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from rsray.config import DataConfig
from rsray.data import augment as aug
from rsray.data.datasets import build_datasets, load_shard_set
from rsray.data.decode import decode_raw
from rsray.data.finalize import finalize_batch
from rsray.data.plan import make_plan
from rsray.data.prepare import BandMoments, prepare
from rsray.data.shards import read_manifest
from rsray.data.sources.bigearthnet import BigEarthNetMM
from rsray.errors import RsrayError, ShardIntegrityError
from rsray.storage import get_fs


def test_band_moments_merge_matches_numpy():
    rng = np.random.default_rng(0)
    parts = [rng.normal(3, 2, size=n) for n in (10, 1, 500, 37)]
    total = BandMoments()
    for p in parts:
        m = BandMoments()
        m.add_array(p)
        total.merge(m)
    allv = np.concatenate(parts)
    assert total.n == allv.size
    assert total.mean == pytest.approx(allv.mean())
    assert total.std == pytest.approx(allv.std())


def test_manifest_of_synthetic_shards(synthetic_shards):
    m = read_manifest(synthetic_shards)
    assert m.synthetic is True
    assert m.dataset == "bigearthnet"
    assert len(m.classes) == 19
    assert set(m.splits) <= {"train", "val", "test"} and m.splits["train"] > 0
    assert sum(m.splits.values()) + len(m.rejects) == 96
    # statistics of the training split: S2 reflectance and S1 dB
    s2 = m.band_stats["s2"]
    assert list(m.modalities["s2"]["bands"][:4]) == ["B02", "B03", "B04", "B08"]
    assert 0 < s2["B02"]["mean"] < 10000 and s2["B02"]["std"] > 0
    assert -40 < m.band_stats["s1"]["VV"]["mean"] < 10
    # native dtypes and resolutions in the shards
    table = pq.read_table(m.shard_paths("train")[0])
    row = table.slice(0, 1).to_pylist()[0]
    assert row["s2_10m_shape"] == [4, 120, 120] and len(row["s2_10m"]) == 4 * 120 * 120 * 2
    assert row["s2_20m_shape"] == [6, 60, 60]
    assert row["s1_shape"] == [2, 120, 120] and len(row["s1"]) == 2 * 120 * 120 * 4
    assert len(row["label"]) == 19


def test_stream_batches(synthetic_shards):
    cfg = DataConfig(uri=synthetic_shards, batch_size=8)
    manifest, datasets = build_datasets(cfg)
    plan = make_plan(manifest, cfg)
    raw = next(iter(datasets["train"].iter_torch_batches(batch_size=8)))
    # what crosses the object store: native dtypes and resolutions
    assert raw["s2_10m"].shape == (8, 4, 120, 120) and str(raw["s2_10m"].dtype) == "torch.uint16"
    assert raw["s2_20m"].shape == (8, 6, 60, 60)
    batch = {k: v.numpy() for k, v in finalize_batch(raw, plan).items()}
    assert batch["s2"].shape == (8, 10, 120, 120) and batch["s2"].dtype == np.float32
    assert batch["s1"].shape == (8, 2, 120, 120)
    assert batch["label"].shape == (8, 19)
    assert set(np.unique(batch["label"])) <= {0.0, 1.0}
    # normalised with training statistics: roughly zero mean, unit variance on the train split
    rows = finalize_batch(datasets["val"].take_batch(batch_size=64, batch_format="numpy"), plan)
    assert abs(float(rows["s1"].mean())) < 1.0
    assert 0.2 < float(rows["s2"].std()) < 5


def test_augmenting_native_groups_equals_augmenting_resampled(synthetic_shards):
    """Flips/rot90 on 60 m groups then upsampling == upsampling then flips/rot90."""
    import pyarrow.parquet as pq

    manifest = read_manifest(synthetic_shards)
    plan = make_plan(manifest, DataConfig(uri=synthetic_shards))
    table = pq.read_table(manifest.shard_paths("train")[0], columns=plan.columns).slice(0, 6)
    rows = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    draw = aug.draw(np.random.default_rng(7), 6, aug.OPS, (1.0, 1.0))  # augment_raw's draw
    resampled = finalize_batch(decode_raw(rows, plan), plan)
    raw = decode_raw(rows, plan)
    for g in ("s2_10m", "s2_20m", "s1"):
        raw[g] = aug.apply(raw[g], draw)
    early = finalize_batch(raw, plan)
    assert draw.k.any() and draw.flip.any()
    for m in ("s2", "s1"):
        late = aug.dihedral(resampled[m].numpy(), draw.k, draw.flip)
        np.testing.assert_allclose(early[m].numpy(), late, rtol=1e-5, atol=1e-4)


def test_stream_with_60m_bands(synthetic_raw, tmp_path, ray_session):
    source = BigEarthNetMM(str(synthetic_raw / "BigEarthNet-S2"),
                           str(synthetic_raw / "BigEarthNet-S1"), include_60m=True,
                           s1_dtype="float16")
    out = str(tmp_path / "shards60")
    prepare(source, out)
    cfg = DataConfig(uri=out, include_60m=True, resample="nearest")
    manifest, ds = build_datasets(cfg, splits=("train",))
    batch = finalize_batch(ds["train"].take_batch(batch_size=4, batch_format="numpy"),
                           make_plan(manifest, cfg))
    assert batch["s2"].shape == (4, 12, 120, 120)
    table = pq.read_table(read_manifest(out).shard_paths("train")[0], columns=["s1"])
    assert len(table["s1"][0].as_py()) == 2 * 120 * 120 * 2  # float16


def test_prepare_refuses_to_clobber(synthetic_raw, tmp_path, ray_session):
    source = BigEarthNetMM(str(synthetic_raw / "BigEarthNet-S2"),
                           str(synthetic_raw / "BigEarthNet-S1"))
    out = str(tmp_path / "s")
    prepare(source, out, target_shard_mb=2)
    with pytest.raises(RsrayError, match="already holds a complete shard set"):
        prepare(source, out)
    prepare(source, out, overwrite=True)


def test_s3_round_trip_and_tamper(synthetic_raw, s3_bucket, ray_session):
    source = BigEarthNetMM(str(synthetic_raw / "BigEarthNet-S2"),
                           str(synthetic_raw / "BigEarthNet-S1"))
    uri = f"{s3_bucket}/bigearthnet/shards"
    prepare(source, uri, target_shard_mb=1.0)
    manifest = load_shard_set(DataConfig(uri=uri))
    assert manifest.uri == uri
    _, ds = build_datasets(DataConfig(uri=uri, batch_size=4), manifest=manifest)
    n = sum(len(b["label"]) for b in ds["train"].iter_batches(batch_size=16,
                                                             batch_format="numpy"))
    assert n == manifest.splits["train"]
    # tamper with one shard on S3: refused by name
    fs, _ = get_fs(uri)
    victim = manifest.shard_paths("train")[0]
    data = bytearray(fs.cat_file(victim))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(victim, bytes(data))
    with pytest.raises(ShardIntegrityError, match=victim.split("/")[-1]):
        load_shard_set(DataConfig(uri=uri))
