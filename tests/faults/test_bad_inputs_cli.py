"""What ``rsray train`` promises for bad inputs: one line naming what is wrong, no traceback,
and no Ray started for it (issue 12: unreachable S3, a missing shard URI, corrupt shards).

Each case runs the real command in a subprocess with a private, empty ``RAY_TMPDIR``; a Ray
session folder appearing there would mean Ray was started before the input was checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rsray.data.shards import Manifest, ShardInfo, sha256_bytes, write_manifest
from rsray.storage import atomic_write_bytes, get_fs

REPO = Path(__file__).resolve().parents[2]
RSRAY = str(Path(sys.executable).with_name("rsray"))


@pytest.fixture
def ray_tmpdir():
    path = tempfile.mkdtemp(prefix="rsf", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _train(data: str, ray_tmpdir: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    full.update(RAY_TMPDIR=ray_tmpdir, PYTHONPATH=str(REPO), **env)
    proc = subprocess.run([RSRAY, "train", "--data", data], env=full, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert not list(Path(ray_tmpdir).glob("ray/session_*")), "Ray was started first"
    errors = [x for x in proc.stderr.splitlines() if x.startswith("rsray: error:")]
    assert len(errors) == 1, proc.stderr
    return proc


def test_unreachable_s3_endpoint_is_one_line(ray_tmpdir):
    proc = _train("s3://rsray-bucket/shards", ray_tmpdir,
                  AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_MAX_ATTEMPTS="1")
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("rsray: error: s3://rsray-bucket/shards (endpoint "
                           "http://127.0.0.1:9): cannot reach the store"), proc.stderr


def test_missing_shard_uri_is_reported_at_once(ray_tmpdir, tmp_path):
    proc = _train(str(tmp_path / "nowhere"), ray_tmpdir)
    assert f"{tmp_path / 'nowhere'}: no shard set here" in proc.stderr


def _shard_set(root: Path) -> Manifest:
    fs, path = get_fs(str(root))
    shards = []
    for split in ("train", "val"):
        for i in range(2):
            rel = f"{split}/shard-{i:05d}.parquet"
            data = f"{split}-{i}".encode() * 50
            atomic_write_bytes(fs, f"{path}/{rel}", data)
            shards.append(ShardInfo(rel, split, 5, len(data), sha256_bytes(data)))
    m = Manifest(dataset="t", task="multilabel", classes=["a"], modalities={}, shards=shards,
                 band_stats={}, uri=str(root))
    write_manifest(str(root), m)
    return m


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-7])


def _zero(p: Path) -> None:
    p.write_bytes(b"")


def _flip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x01
    p.write_bytes(bytes(b))


def _delete(p: Path) -> None:
    p.unlink()


@pytest.mark.slow
@pytest.mark.parametrize(("damage", "says"), [
    (_truncate, "bytes, manifest says"), (_zero, "0 bytes, manifest says"),
    (_flip, "does not match the manifest"), (_delete, "missing"),
])
def test_corrupt_shard_is_refused_by_name(damage, says, ray_tmpdir, tmp_path):
    m = _shard_set(tmp_path / "shards")
    bad = tmp_path / "shards" / "val" / "shard-00001.parquet"
    damage(bad)
    proc = _train(m.uri, ray_tmpdir)
    named = [x for x in proc.stderr.splitlines() if str(bad) in x]
    assert len(named) == 1 and says in named[0], proc.stderr
    assert "shard-00000" not in proc.stderr  # only the damaged shard is named
    assert json.loads((tmp_path / "shards" / "manifest.json").read_text())["rows"] == 20
