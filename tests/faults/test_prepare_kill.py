"""``rsray prepare`` SIGKILLed mid-write, to a local folder and to S3 (moto on 127.0.0.1).

Promised (issue 12): the manifest is written last, so a killed prepare leaves no
``manifest.json``; every shard is published atomically (rename locally, one PUT on S3), so no
partial shard is ever visible under a shard's name; readers refuse the incomplete set in one
line naming it; running the same prepare again succeeds and loses nothing (same rows, same
patches, every checksum verified, nothing stale left behind).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rsray.config import DataConfig
from rsray.data.datasets import load_shard_set
from rsray.data.prepare import prepare
from rsray.data.shards import read_manifest, verify_shards
from rsray.data.sources.bigearthnet import BigEarthNetMM
from rsray.errors import ShardIntegrityError
from rsray.storage import get_fs

from .conftest import driver_log

KILL_WAIT_S = 240


def _listing(out: str) -> list[str]:
    fs, root = get_fs(out)
    fs.invalidate_cache()
    return sorted(fs.find(root)) if fs.exists(root) else []


def _patch_ids(out: str, paths: list[str]) -> set[str]:
    fs, _ = get_fs(out)
    ids: set[str] = set()
    for p in paths:
        with fs.open(p, "rb") as fh:
            ids.update(pq.read_table(fh, columns=["patch_id"]).column("patch_id").to_pylist())
    return ids


def _wait_until(cond, what: str, proc) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the prepare driver exited ({proc.returncode}) before {what}:\n"
                        + driver_log(proc))
        if time.monotonic() - t0 > KILL_WAIT_S:
            pytest.fail(f"no {what} within {KILL_WAIT_S} s:\n" + driver_log(proc))
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_prepare_killed_mid_write(where, synthetic_raw, synthetic_shards, tmp_path, request,
                                  driver):
    out = (str(tmp_path / "shards") if where == "local"
           else f"{request.getfixturevalue('s3_bucket')}/kill/shards")
    markers = tmp_path / "markers"
    markers.mkdir()
    # Local: a worker hangs inside a shard's atomic write (temporary file written, not yet
    # renamed) when the driver dies. S3: killed once some shard objects exist.
    proc = driver("prepare_until_killed.py", str(synthetic_raw), out, str(markers),
                  "block" if where == "local" else "slow")
    if where == "local":
        _wait_until(lambda: any(markers.iterdir()) and any(
            p.endswith(".parquet") for p in _listing(out)), "blocked shard write", proc)
    else:
        _wait_until(lambda: sum(p.endswith(".parquet") for p in _listing(out)) >= 2,
                    "two shards on S3", proc)
    if where == "local":
        # The machine dies mid-write: the worker in the write gets SIGKILL too (a plain
        # driver kill lets Ray stop its workers gracefully, which removes the temporary file).
        for marker in markers.iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(marker.name.split("-")[1]), signal.SIGKILL)
    proc.kill()
    proc.wait(timeout=30)
    # The dead driver's Ray workers are ended by Ray; wait until nothing changes any more.
    before, stable_since = _listing(out), time.monotonic()
    while time.monotonic() - stable_since < 3:
        time.sleep(0.5)
        now = _listing(out)
        if now != before:
            before, stable_since = now, time.monotonic()
    files = before

    # No manifest; every object under a shard's name is a complete Parquet file.
    assert not any(p.endswith("manifest.json") for p in files), files
    shards = [p for p in files if p.endswith(".parquet")]
    assert shards, files
    complete = load_shard_set(DataConfig(uri=synthetic_shards))
    assert len(_patch_ids(out, shards)) < sum(complete.splits.values())  # really mid-way
    if where == "local":  # the write it was killed in left only its temporary file behind
        assert any(".parquet.tmp-" in Path(p).name for p in files), files

    # Readers refuse the incomplete set, in one line naming it.
    for read in (read_manifest, lambda u: load_shard_set(DataConfig(uri=u))):
        with pytest.raises(ShardIntegrityError, match=r"no manifest\.json") as err:
            read(out)
        assert out in str(err.value) and "\n" not in str(err.value)

    # The same prepare again: complete, nothing lost, nothing stale left.
    source = BigEarthNetMM(str(synthetic_raw / "BigEarthNet-S2"),
                           str(synthetic_raw / "BigEarthNet-S1"))
    result = prepare(source, out, target_shard_mb=2.0)
    manifest = load_shard_set(DataConfig(uri=out))
    verify_shards(manifest)
    assert manifest.splits == complete.splits == result.manifest.splits
    _, root = get_fs(out)
    listed = sorted(f"{root}/{s.path}" for s in manifest.shards)
    assert [p for p in _listing(out) if not p.endswith("manifest.json")] == listed
    assert _patch_ids(out, listed) == _patch_ids(synthetic_shards, [
        p for p in _listing(synthetic_shards) if p.endswith(".parquet")])
