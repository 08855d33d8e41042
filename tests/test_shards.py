"""Manifest, atomic writes and integrity checks (no Ray needed)."""

import json
import os

import pytest

from rsray.data.shards import (
    MANIFEST_NAME,
    Manifest,
    ShardInfo,
    read_manifest,
    sha256_bytes,
    verify_shards,
    write_manifest,
)
from rsray.errors import DatasetNotFoundError, ShardIntegrityError
from rsray.storage import atomic_write_bytes, get_fs


def _manifest(root, payloads: dict[str, bytes]) -> Manifest:
    fs, path = get_fs(str(root))
    shards = []
    for rel, data in payloads.items():
        atomic_write_bytes(fs, f"{path}/{rel}", data)
        shards.append(ShardInfo(rel, rel.split("/")[0], 1, len(data), sha256_bytes(data)))
    m = Manifest(dataset="t", task="multilabel", classes=["a"], modalities={}, shards=shards,
                 band_stats={}, uri=str(root))
    write_manifest(str(root), m)
    return m


def test_manifest_round_trip(tmp_path):
    _manifest(tmp_path, {"train/shard-00000.parquet": b"abc", "val/shard-00000.parquet": b"d"})
    m = read_manifest(str(tmp_path))
    assert m.splits == {"train": 1, "val": 1}
    assert m.shard_paths("train") == [f"{tmp_path}/train/shard-00000.parquet"]
    verify_shards(m)
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert raw["format"] == "rsray-shards" and raw["rows"] == 2


def test_missing_folder_and_missing_manifest(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no shard set here"):
        read_manifest(str(tmp_path / "nowhere"))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "shard-00000.parquet").write_bytes(b"x")
    with pytest.raises(ShardIntegrityError, match=r"no manifest.json.*did not finish"):
        read_manifest(str(tmp_path))


def test_tampered_shard_is_refused_by_name(tmp_path):
    m = _manifest(tmp_path, {"train/shard-00000.parquet": b"abc" * 10,
                             "train/shard-00001.parquet": b"def" * 10})
    path = tmp_path / "train" / "shard-00001.parquet"
    path.write_bytes(b"XYZ" * 10)  # same size, different content
    with pytest.raises(ShardIntegrityError) as info:
        verify_shards(m)
    assert "train/shard-00001.parquet: sha256" in str(info.value)
    assert "shard-00000" not in str(info.value)
    path.unlink()
    with pytest.raises(ShardIntegrityError, match=r"shard-00001.parquet: missing"):
        verify_shards(m)


def test_malformed_manifest(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ShardIntegrityError, match="not valid JSON"):
        read_manifest(str(tmp_path))
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": "rsray-shards", "version": 99}))
    with pytest.raises(ShardIntegrityError, match="version 99 is not supported"):
        read_manifest(str(tmp_path))


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    fs, root = get_fs(str(tmp_path))
    target = f"{root}/train/shard-00000.parquet"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(fs, target, b"payload")
    assert not os.path.exists(target)
    assert os.listdir(tmp_path / "train") == []  # no temporary file either


def test_edited_manifest_is_refused(tmp_path):
    """Issue 12: a manifest whose shard list was edited (checksum changed) is refused."""
    _manifest(tmp_path, {"train/shard-00000.parquet": b"abc" * 10})
    path = tmp_path / MANIFEST_NAME
    raw = json.loads(path.read_text())
    raw["shards"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(raw))
    with pytest.raises(ShardIntegrityError, match=r"manifest.json: the shard list was edited"):
        read_manifest(str(tmp_path))


def test_manifest_with_an_added_shard_entry_is_refused(tmp_path):
    _manifest(tmp_path, {"train/shard-00000.parquet": b"abc" * 10})
    extra = b"planted" * 3
    (tmp_path / "train" / "shard-00001.parquet").write_bytes(extra)
    path = tmp_path / MANIFEST_NAME
    raw = json.loads(path.read_text())
    raw["shards"].append({"path": "train/shard-00001.parquet", "split": "train", "rows": 1,
                          "bytes": len(extra), "sha256": sha256_bytes(extra)})
    path.write_text(json.dumps(raw))
    with pytest.raises(ShardIntegrityError, match="the shard list was edited"):
        read_manifest(str(tmp_path))


def test_shard_file_added_after_prepare_is_refused_by_name(tmp_path):
    m = _manifest(tmp_path, {"train/shard-00000.parquet": b"abc" * 10})
    (tmp_path / "train" / "shard-00007.parquet").write_bytes(b"planted")
    with pytest.raises(ShardIntegrityError) as info:
        verify_shards(read_manifest(str(tmp_path)))
    assert f"{m.uri}/train/shard-00007.parquet: not in the manifest" in str(info.value)
