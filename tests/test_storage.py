"""rsray.storage: one set of URI rules for local paths, s3:// (moto) and memory:// (no Ray)."""

from __future__ import annotations

import os
import uuid

import pyarrow.fs as pafs
import pytest

from rsray import storage
from rsray.errors import StorageError


def test_local_paths_are_absolute_and_trailing_slashes_ignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loc = storage.parse("runs/")
    assert not loc.is_remote and loc.path == loc.uri == str(tmp_path / "runs")
    assert storage.parse(f"file://{tmp_path}/x/").path == str(tmp_path / "x")
    fs, path = storage.get_fs("runs/")
    assert storage.is_local(fs) and path == str(tmp_path / "runs")
    assert storage.ray_storage("runs/") == (str(tmp_path / "runs"), None)
    assert isinstance(storage.pyarrow_fs("runs"), pafs.LocalFileSystem)


def test_join_keeps_scheme_and_skips_slashes():
    assert storage.join("s3://b/", "x/", "/y") == "s3://b/x/y"
    assert storage.join("/data/", "train", "shard.parquet") == "/data/train/shard.parquet"
    assert storage.join("memory://root", "", "a") == "memory://root/a"
    assert storage.join_url("s3://b/p", "q") == "s3://b/p/q"
    assert storage.join_url("rel", "q") == os.path.join("rel", "q")


def test_bad_uris_are_one_line_errors():
    with pytest.raises(StorageError, match="empty"):
        storage.parse("  ")
    with pytest.raises(StorageError, match="no bucket named"):
        storage.parse("s3://")


def test_memory_filesystem_round_trip():
    root = f"memory://rsray-{uuid.uuid4().hex[:8]}/"
    loc = storage.parse(root)
    assert loc.is_remote and loc.uri == root.rstrip("/")
    storage.write_bytes(storage.join(root, "a", "f.bin"), b"abc")
    assert storage.read_bytes(storage.join(root, "a", "f.bin")) == b"abc"
    assert storage.list_subdirs(root) == ["a"]
    assert storage.list_files(storage.join(root, "a")) == ["f.bin"]
    path, fs = storage.ray_storage(root)
    assert path == loc.path and isinstance(fs, pafs.PyFileSystem)
    with pytest.raises(FileNotFoundError):
        storage.list_files(storage.join(root, "nowhere"))


def test_s3_bucket_with_and_without_prefix(s3_bucket):
    bucket = s3_bucket.removeprefix("s3://")
    # the endpoint comes from AWS_ENDPOINT_URL (conftest points it at moto on 127.0.0.1)
    opts = storage.storage_options(s3_bucket)
    assert opts["client_kwargs"]["endpoint_url"] == os.environ["AWS_ENDPOINT_URL"]
    assert storage.storage_options(s3_bucket, {"client_kwargs": {"endpoint_url": "http://x"}}
                                   )["client_kwargs"]["endpoint_url"] == "http://x"
    fs, path = storage.get_fs(s3_bucket + "/")
    assert path == bucket  # a bucket without a prefix is a valid root
    assert storage.ray_storage(s3_bucket)[0] == bucket
    storage.write_bytes(f"{s3_bucket}/top.txt", b"1")
    storage.write_bytes(f"{s3_bucket}/pre/fix/deep.txt", b"2")
    assert storage.list_files(s3_bucket) == ["top.txt"]
    assert storage.list_subdirs(s3_bucket + "/") == ["pre"]
    assert storage.read_bytes(f"{s3_bucket}/pre/fix/deep.txt") == b"2"
    assert storage.exists(f"{s3_bucket}/pre/fix/") and not storage.exists(f"{s3_bucket}/nope")
    assert storage.to_uri(fs, f"{bucket}/pre") == f"{s3_bucket}/pre"
    # Ray's side: the pyarrow filesystem sees the same objects through fsspec
    pa_path, pa_fs = storage.ray_storage(f"{s3_bucket}/pre/")
    assert pa_path == f"{bucket}/pre"
    info = pa_fs.get_file_info(f"{bucket}/pre/fix/deep.txt")
    assert info.type == pafs.FileType.File and info.size == 1
    storage.check_reachable(s3_bucket)  # reachable: no error


def test_unreachable_endpoint_is_one_line(monkeypatch):
    # nothing listens on port 9 of 127.0.0.1; bounded retries keep this fast
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StorageError) as info:
        storage.check_reachable("s3://some-bucket/shards")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("s3://some-bucket/shards (endpoint http://127.0.0.1:9): cannot reach")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    fs, root = storage.get_fs(str(tmp_path))
    target = f"{root}/train/shard-00000.parquet"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        storage.atomic_write_bytes(fs, target, b"payload")
    assert not os.path.exists(target)
    assert os.listdir(tmp_path / "train") == []  # no temporary file either


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_bytes(b"old content that is longer")
    storage.write_bytes(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.json"]
