"""Shard layout: fixed-size band columns decode as views; old variable-binary shards still read.

Unit level (no Ray): ``_write_chunk`` writes a shard from a tiny in-memory source, then the
Parquet file is decoded the ways the pipeline and the benchmark do.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsray.config import DataConfig
from rsray.data.decode import decode_raw
from rsray.data.plan import make_plan
from rsray.data.prepare import _arrow_schema, _write_chunk, row_group_rows
from rsray.data.schema import (
    BandGroup,
    DatasetSpec,
    Discovery,
    ModalitySpec,
    encode_array,
    group_arrow_type,
)
from rsray.data.shards import LEGACY_STORAGE, Manifest, ShardInfo, read_manifest, write_manifest
from rsray.errors import ShardIntegrityError

CLS = DatasetSpec(
    "tiny", "multilabel", ("a", "b", "c"),
    (ModalitySpec("opt", (BandGroup("opt_hi", ("B1", "B2"), 8, "uint16"),
                          BandGroup("opt_lo", ("B3",), 4, "uint16"))),
     ModalitySpec("sar", (BandGroup("sar", ("VV",), 8, "float32"),)),
     ModalitySpec("meta", (BandGroup("meta", ("lat", "lon"), 0, "float32", kind="vector"),))),
)
SEG = DatasetSpec(
    "tinyseg", "segmentation", ("x", "y", "z"),
    (ModalitySpec("aerial", (BandGroup("aerial", ("R", "G"), 6, "uint8"),)),
     ModalitySpec("ts", (BandGroup("ts", ("B1",), 3, "uint16", kind="series", max_len=4),))),
    label_size=6,
)


class TinySource:
    """Deterministic samples of ``spec`` (a Source for ``_write_chunk``)."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec

    def discover(self) -> Discovery:
        """Not used by these tests."""
        return Discovery(items=[])

    def read(self, item: dict[str, Any]) -> dict[str, Any]:
        """Sample ``item['i']``: values depend on the index, series lengths vary."""
        i = int(item["i"])
        rng = np.random.default_rng(i)
        arrays: dict[str, np.ndarray] = {}
        for g in self.spec.groups:
            shape = g.shape if g.kind != "series" else (1 + i % g.max_len, *g.shape[1:])
            arrays[g.name] = rng.integers(0, 200, size=shape).astype(g.dtype)
            if g.kind == "series":
                arrays[f"{g.name}_dates"] = np.arange(shape[0]) * 10 + i
        if self.spec.task == "segmentation":
            label = rng.integers(0, 3, (self.spec.label_size,) * 2).astype(np.uint8)
        else:
            label = (rng.random(len(self.spec.classes)) < 0.5).astype(np.uint8)
        return {"patch_id": item["patch_id"], "split": "train", "label": label,
                "arrays": arrays, "meta": {}}


def _write(tmp_path, spec: DatasetSpec, n: int = 7, codec: str = "lz4", rows: int = 4) -> str:
    items = [{"patch_id": f"p{i:03d}", "split": "train", "i": i} for i in range(n)]
    out = _write_chunk(TinySource(spec), str(tmp_path), {"split": "train", "index": 0,
                                                         "items": items}, [], codec, rows)
    return str(tmp_path / json.loads(out["shard"])["path"])


def _plan(spec: DatasetSpec) -> Any:
    groups = {m.name: {"bands": list(m.bands), "groups": {g.name: g.to_dict() for g in m.groups}}
              for m in spec.modalities}
    stats = {m.name: {b: {"mean": 0.0, "std": 1.0} for b in m.bands} for m in spec.modalities}
    info = {"label": spec.label_info}
    m = Manifest(spec.name, spec.task, list(spec.classes), groups, [], stats, info=info, uri="x")
    return make_plan(m, DataConfig(uri="x", image_size=8 if spec.task != "segmentation" else 6))


def _expected(spec: DatasetSpec, n: int, start: int = 0) -> list[dict[str, Any]]:
    src = TinySource(spec)
    return [src.read({"patch_id": f"p{i:03d}", "i": i}) for i in range(start, start + n)]


def _legacy_table(spec: DatasetSpec, n: int) -> pa.Table:
    """The layout rsray wrote before fixed-size columns: every group variable ``binary``."""
    schema = _arrow_schema(spec, [])
    fields = [pa.field(f.name, pa.binary()) if pa.types.is_fixed_size_binary(f.type) else f
              for f in schema]
    rows: dict[str, list[Any]] = {f.name: [] for f in fields}
    for s in _expected(spec, n):
        rows["patch_id"].append(s["patch_id"])
        rows["split"].append("train")
        rows["label"].append(encode_array(s["label"], "uint8") if spec.task == "segmentation"
                             else s["label"].tolist())
        if spec.task == "segmentation":
            rows["label_shape"].append(list(s["label"].shape))
        for g in spec.groups:
            rows[g.name].append(encode_array(s["arrays"][g.name], g.dtype))
            rows[f"{g.name}_shape"].append(list(s["arrays"][g.name].shape))
            if g.kind == "series":
                rows[f"{g.name}_dates"].append(s["arrays"][f"{g.name}_dates"].tolist())
    return pa.table(rows, schema=pa.schema(fields))


def _check(out: dict[str, np.ndarray], spec: DatasetSpec, n: int, start: int = 0) -> None:
    assert len(out["label"]) == n
    for i, s in enumerate(_expected(spec, n, start)):
        np.testing.assert_array_equal(out["label"][i], s["label"])
        for g in spec.groups:
            want = s["arrays"][g.name]
            got = out[g.name][i][:want.shape[0]] if g.kind == "series" else out[g.name][i]
            assert got.dtype == np.dtype(g.dtype)
            np.testing.assert_array_equal(got, want)
            if g.kind == "series":
                assert out[f"{g.name}__mask"][i].sum() == want.shape[0]
                np.testing.assert_array_equal(out[f"{g.name}__dates"][i][:want.shape[0]],
                                              s["arrays"][f"{g.name}_dates"])


@pytest.mark.parametrize("spec", [CLS, SEG], ids=["classification", "segmentation"])
def test_fixed_size_columns_round_trip(tmp_path, spec):
    path = _write(tmp_path, spec)
    table = pq.read_table(path)
    for g in spec.groups:
        assert table.schema.field(g.name).type == group_arrow_type(g)
    if spec.task == "segmentation":
        assert table.schema.field("label").type == pa.binary(36)
    plan = _plan(spec)
    _check(decode_raw(table, plan), spec, 7)  # Arrow batch (Ray's batch_format="pyarrow")
    numpy_batch = {c: table[c].to_numpy(zero_copy_only=False) for c in table.column_names}
    _check(decode_raw(numpy_batch, plan), spec, 7)  # Ray's numpy batch format (object bytes)
    _check(decode_raw(table.slice(3, 4), plan), spec, 4, start=3)  # a slice keeps its offset


@pytest.mark.parametrize("spec", [CLS, SEG], ids=["classification", "segmentation"])
def test_old_variable_binary_shards_still_read(tmp_path, spec):
    path = tmp_path / "old.parquet"
    pq.write_table(_legacy_table(spec, 6), path, compression="zstd", row_group_size=4)
    table = pq.read_table(path)  # two row groups: columns come in two chunks
    assert pa.types.is_binary(table.schema.field(spec.groups[0].name).type)
    plan = _plan(spec)
    _check(decode_raw(table, plan), spec, 6)
    _check(decode_raw({c: table[c].to_numpy(zero_copy_only=False)
                       for c in table.column_names}, plan), spec, 6)


def test_decode_is_a_view_on_the_arrow_buffer(tmp_path):
    table = pq.read_table(_write(tmp_path, CLS, n=8, rows=8))
    plan = _plan(CLS)
    for batch in (table, table.slice(2, 5)):
        out = decode_raw(batch, plan)
        for g in ("opt_hi", "opt_lo", "sar", "meta"):
            chunk = batch[g].chunk(0)
            data = np.frombuffer(chunk.buffers()[1], dtype=np.uint8)
            assert np.shares_memory(out[g], data), g
            assert not out[g].flags.writeable  # a view on Arrow memory, not a copy
    old = _legacy_table(CLS, 4)
    out = decode_raw(old, plan)  # variable binary with equal rows: a view on its data buffer
    assert np.shares_memory(out["sar"], np.frombuffer(old["sar"].chunk(0).buffers()[2], np.uint8))


def test_bad_row_sizes_are_refused_by_column(tmp_path):
    table = _legacy_table(CLS, 3)
    col = table["sar"].to_pylist()
    col[1] = col[1][:-4]
    bad = table.set_column(table.schema.get_field_index("sar"), "sar", pa.array(col))
    with pytest.raises(ShardIntegrityError, match="column sar: row 1 has 252 bytes"):
        decode_raw(bad, _plan(CLS))


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
def test_codec_is_respected(tmp_path, codec):
    meta = pq.ParquetFile(_write(tmp_path, CLS, codec=codec, rows=4)).metadata
    assert meta.num_row_groups == 2
    want = {"none": "UNCOMPRESSED", "lz4": "LZ4", "zstd": "ZSTD"}[codec]
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    sar = meta.row_group(0).column(names.index("sar"))
    assert sar.compression == want
    assert sar.statistics is None or not sar.statistics.has_min_max  # no stats on arrays
    assert "PLAIN_DICTIONARY" not in sar.encodings and "RLE_DICTIONARY" not in sar.encodings


def test_codec_and_layout_recorded_in_manifest(tmp_path):
    storage = {"codec": "none", "layout": "fixed", "row_group_rows": 112}
    shard = ShardInfo("train/shard-00000.parquet", "train", 1, 0, "0" * 64)
    m = Manifest("t", "multilabel", ["a"], {}, [shard], {}, storage=storage, uri=str(tmp_path))
    write_manifest(str(tmp_path), m)
    assert json.loads((tmp_path / "manifest.json").read_text())["storage"] == storage
    assert read_manifest(str(tmp_path)).storage == storage
    raw = json.loads((tmp_path / "manifest.json").read_text())
    del raw["storage"]  # a manifest written before the entry existed: the old layout
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    assert read_manifest(str(tmp_path)).storage == LEGACY_STORAGE
    raw["storage"] = {"codec": "brotli"}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ShardIntegrityError, match="unknown codec"):
        read_manifest(str(tmp_path))


def test_row_groups_hold_a_few_tens_of_mb():
    assert row_group_rows(CLS) == 1024  # tiny rows: capped
    big = DatasetSpec("b", "multilabel", ("a",), (ModalitySpec("m", (
        BandGroup("g", tuple(f"b{i}" for i in range(24)), 120, "uint16"),)),))
    assert row_group_rows(big) == 16  # 691 KB rows: 8 MiB is 12.1 rows, rounded to 16
    bigearthnet = DatasetSpec("b", "multilabel", ("a",), (ModalitySpec("m", (
        BandGroup("s2", ("B02", "B03", "B04", "B08"), 120, "uint16"),
        BandGroup("s1", ("VV", "VH"), 120, "float32"))),))
    assert row_group_rows(bigearthnet) == 32  # 230 KB rows: 36 rows, rounded to 32


def test_auto_codec_depends_on_where_the_set_goes():
    from rsray.data.shards import resolve_codec

    assert resolve_codec("auto", "/data/shards") == "none"
    assert resolve_codec("auto", "s3://bucket/shards") == "zstd"
    assert resolve_codec("lz4", "s3://bucket/shards") == "lz4"
    with pytest.raises(ValueError, match="choose auto or one of none, lz4, zstd"):
        resolve_codec("gzip", "/data")


def test_bench_raw_limit_recodes_the_same_rows_per_codec(tmp_path):
    from rsray.bench.ingest import RAW_PASSES, raw_limits

    path = _write(tmp_path / "set", CLS, n=6, codec="lz4", rows=4)
    rel = "train/" + path.rsplit("/", 1)[-1]
    m = Manifest("tiny", "multilabel", list(CLS.classes), {}, [ShardInfo(rel, "train", 6, 0, "")],
                 {}, uri=str(tmp_path / "set"))
    limits = raw_limits(m, "train", _plan(CLS), 4, 1, tmp_path / "scratch")
    mmap = [k for k in limits if k.endswith("+mmap")]  # the set's own files, memory-mapped
    read = 6 * RAW_PASSES  # every timed pass reads the 6 rows (the limit is the fastest pass)
    assert len(mmap) == 1 and limits.pop(mmap[0]).samples == read
    assert set(limits) == {"none", "lz4", "zstd"}
    for codec, r in limits.items():
        assert r.samples == read and r.rate > 0 and r.bytes_per_sample > 0
        meta = pq.ParquetFile(tmp_path / "scratch" / codec / "shard-00000.parquet").metadata
        assert meta.num_rows == 6 and meta.row_group(0).num_rows == 4
        assert meta.row_group(0).column(3).compression == {"none": "UNCOMPRESSED"}.get(
            codec, codec.upper())


def test_bench_sustained_rate_counts_the_streams_run_ahead():
    """A stream whose last passes came from blocks decoded ahead is not credited twice."""
    from rsray.bench.ingest import BenchResult

    # warm-up 0.47 s (0.37 s to its first batch), then 4 timed passes of 701 rows
    r = BenchResult("stream", samples=4 * 701, seconds=0.35,
                    pass_s=[0.47, 0.26, 0.07, 0.01, 0.01], cold_first_batch_s=0.37)
    assert r.rate == pytest.approx(4 * 701 / 0.35)
    assert r.sustained_rate == pytest.approx(5 * 701 / (0.82 - 0.37))
    assert r.sustained_rate < r.rate
    assert BenchResult("x", samples=10, seconds=2.0).sustained_rate == 5.0  # no passes listed
