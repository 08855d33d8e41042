"""Parquet shards and their manifest, on local disk or ``s3://`` (fsspec + s3fs).

A shard set is a folder (or S3 prefix) holding::

    manifest.json                 written LAST by ``rsray prepare``: the set is complete
    train/shard-00000.parquet     one split per sub-folder
    val/shard-00000.parquet
    test/shard-00000.parquet

Readers refuse a folder without ``manifest.json`` (an interrupted prepare) and a shard whose
sha256 differs from the manifest's. Every shard is written atomically: to a temporary name then
renamed on local disks, with one single PUT on S3 (an object exists only once complete), so a
failed write never leaves a partial shard behind.

How the shards are encoded is recorded in the manifest's ``storage`` entry: the Parquet
``codec`` (``none``, ``lz4`` or ``zstd``, chosen per shard set with ``rsray prepare --codec``),
the column ``layout`` (``fixed``: image groups as ``fixed_size_binary``; ``binary``: every
group as variable binary, the layout of sets written before it was recorded) and the
``row_group_rows``. A manifest without the entry is read as the old layout.

Paths and URIs follow :mod:`rsray.storage`. S3 credentials come from the environment or the
node's IAM role (botocore's usual chain); an
S3-compatible endpoint (MinIO, moto) is taken from ``AWS_ENDPOINT_URL``. Nothing here logs them.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fsspec import AbstractFileSystem

from rsray.errors import DatasetNotFoundError, ShardIntegrityError
from rsray.storage import atomic_write_bytes, get_fs, join, normalise

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "rsray-shards"
FORMAT_VERSION = 1
HASH_CHUNK = 8 << 20
CODECS = ("none", "lz4", "zstd")
DEFAULT_CODEC = "auto"
"""``none`` on local disk, ``zstd`` on object storage (:func:`default_codec`)."""
LAYOUTS = ("fixed", "binary")
LEGACY_STORAGE: dict[str, Any] = {"codec": "zstd", "layout": "binary", "row_group_rows": 128}
"""What a manifest without a ``storage`` entry was written with (rsray before the entry)."""


def default_codec(uri: str) -> str:
    """The codec ``--codec auto`` picks for a shard set at ``uri``.

    Measured (docs/performance.md, ingest): these bands compress 1.15-1.3x with zstd and not at
    all with lz4, while zstd decodes about 3x slower than no compression. On local disk (page
    cache, NVMe) bytes are nearly free, so ``none``; on object storage each byte is network
    time (and storage cost), so ``zstd``'s ~20 % fewer bytes win when the network is the limit.
    """
    local = "://" not in uri or uri.startswith("file://")
    return "none" if local else "zstd"


def resolve_codec(codec: str, uri: str) -> str:
    """``codec`` checked, ``auto`` replaced by :func:`default_codec`."""
    if codec == "auto":
        return default_codec(uri)
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r}: choose auto or one of {', '.join(CODECS)}")
    return codec


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(fs: AbstractFileSystem, path: str) -> str:
    """Hex sha256 of a file, streamed in 8 MiB chunks."""
    h = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ShardInfo:
    """One shard as listed in the manifest."""

    path: str
    """Path relative to the shard-set root (``train/shard-00000.parquet``)."""
    split: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """The manifest of a complete shard set."""

    dataset: str
    task: str
    classes: list[str]
    modalities: dict[str, dict[str, Any]]
    """modality -> {"groups": {group: {"bands", "size", "dtype", "optional"}}, "bands": [...]}"""
    shards: list[ShardInfo]
    band_stats: dict[str, dict[str, dict[str, float]]]
    """modality -> band -> {"mean", "std"} over the training split."""
    rejects: list[dict[str, str]] = field(default_factory=list)
    synthetic: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    storage: dict[str, Any] = field(default_factory=lambda: dict(LEGACY_STORAGE))
    """``{"codec", "layout", "row_group_rows"}``: how the shards were encoded."""
    uri: str = ""
    """Where this manifest was read from (not stored)."""

    @property
    def splits(self) -> dict[str, int]:
        """Row count per split."""
        out: dict[str, int] = {}
        for s in self.shards:
            out[s.split] = out.get(s.split, 0) + s.rows
        return out

    def shard_paths(self, split: str) -> list[str]:
        """Absolute paths (or URIs) of the shards of ``split``."""
        return [join(self.uri, s.path) for s in self.shards if s.split == split]

    def to_json(self) -> str:
        """Serialise (the ``uri`` field is not stored)."""
        body = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "dataset": self.dataset,
            "synthetic": self.synthetic,
            "created": self.created,
            "task": self.task,
            "classes": self.classes,
            "modalities": self.modalities,
            "splits": self.splits,
            "rows": sum(s.rows for s in self.shards),
            "shards": [vars(s) for s in self.shards],
            "shards_sha256": shards_digest(self.shards),
            "band_stats": self.band_stats,
            "storage": self.storage,
            "info": self.info,
            "num_rejects": len(self.rejects),
            "rejects": self.rejects,
        }
        return json.dumps(body, indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, uri: str) -> Manifest:
        """Parse a manifest; a malformed one raises ShardIntegrityError naming it."""
        where = join(uri, MANIFEST_NAME)
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ShardIntegrityError(f"{where}: not valid JSON ({exc})") from exc
        if raw.get("format") != FORMAT_NAME:
            raise ShardIntegrityError(f"{where}: not an rsray shard manifest")
        if raw.get("version") != FORMAT_VERSION:
            raise ShardIntegrityError(
                f"{where}: manifest version {raw.get('version')} is not supported "
                f"(this rsray reads version {FORMAT_VERSION}); prepare the data again"
            )
        digest = raw.get("shards_sha256")
        if digest is not None:
            try:
                listed = [ShardInfo(**s) for s in raw["shards"]]
            except (KeyError, TypeError) as exc:
                raise ShardIntegrityError(f"{where}: malformed shard list ({exc})") from exc
            if shards_digest(listed) != digest:
                raise ShardIntegrityError(
                    f"{where}: the shard list was edited after prepare wrote it (its digest "
                    "does not match shards_sha256); run `rsray prepare` again")
        storage = {**LEGACY_STORAGE, **raw.get("storage", {})}
        if storage["codec"] not in CODECS or storage["layout"] not in LAYOUTS:
            raise ShardIntegrityError(
                f"{where}: storage {storage} names an unknown codec or layout (this rsray "
                f"knows codecs {', '.join(CODECS)} and layouts {', '.join(LAYOUTS)})")
        try:
            return cls(
                dataset=raw["dataset"],
                task=raw["task"],
                classes=list(raw["classes"]),
                modalities=raw["modalities"],
                shards=[ShardInfo(**s) for s in raw["shards"]],
                band_stats=raw["band_stats"],
                rejects=raw.get("rejects", []),
                synthetic=bool(raw.get("synthetic", False)),
                info=raw.get("info", {}),
                created=raw.get("created", ""),
                storage=storage,
                uri=uri,
            )
        except (KeyError, TypeError) as exc:
            raise ShardIntegrityError(f"{where}: missing or malformed field ({exc})") from exc


def shards_digest(shards: list[ShardInfo]) -> str:
    """sha256 of the canonical shard list: an edited entry or an added shard changes it."""
    canon = json.dumps([vars(s) for s in sorted(shards, key=lambda s: s.path)],
                       sort_keys=True, separators=(",", ":"))
    return sha256_bytes(canon.encode())


def write_manifest(uri: str, manifest: Manifest) -> str:
    """Write ``manifest.json`` atomically at the root of ``uri``; returns its path."""
    fs, root = get_fs(uri)
    path = join(root, MANIFEST_NAME)
    atomic_write_bytes(fs, path, manifest.to_json().encode())
    return path


def _raw_data_hint(fs: Any, root: str, limit: int = 2000) -> str:
    """What a folder without a manifest holds, when it holds no Parquet shard (else ``""``).

    A prepare that did not finish leaves ``<split>/shard-*.parquet`` files (or nothing); raw
    archives (GeoTIFF folders, ``.npy`` series, photos) leave other files. Looks at up to
    ``limit`` entries, two levels deep.
    """
    import collections
    import posixpath

    counts: collections.Counter[str] = collections.Counter()
    seen = 0
    for _dirpath, _dirs, files in fs.walk(root, maxdepth=3):
        for name in files:
            if ".parquet" in name:
                return ""
            counts[posixpath.splitext(name)[1].lower() or "(no extension)"] += 1
            seen += 1
        if seen >= limit:
            break
    if not counts:
        return ""
    kinds = ", ".join(f"{n}{'+' if seen >= limit else ''} {ext} file(s)"
                      for ext, n in counts.most_common(3))
    return f"it holds {kinds}"


def read_manifest(uri: str) -> Manifest:
    """Read the manifest of a shard set; refuse an incomplete set with a clear message."""
    fs, root = get_fs(uri)
    if not fs.exists(root):
        raise DatasetNotFoundError(
            f"{uri}: no shard set here. Create one with `rsray prepare bigearthnet ... --out {uri}`"
        )
    path = join(root, MANIFEST_NAME)
    if not fs.exists(path):
        raw = _raw_data_hint(fs, root)
        if raw:
            raise DatasetNotFoundError(
                f"{uri}: this is raw data ({raw}), not a shard set: no Parquet shards, no "
                f"{MANIFEST_NAME}. Make a shard set from it first, e.g. `rsray prepare "
                f"DATASET ... --out {uri.rstrip('/')}_shards` (`rsray prepare --help` lists "
                "the datasets), then pass that folder as --data")
        raise ShardIntegrityError(
            f"{uri}: no {MANIFEST_NAME}. The prepare that wrote this folder did not finish "
            "(the manifest is written last), so its shards may be incomplete. "
            "Run `rsray prepare` again into this location."
        )
    with fs.open(path, "rb") as fh:
        text = fh.read().decode()
    return Manifest.from_json(text, normalise(uri))


def verify_shards(
    manifest: Manifest, splits: list[str] | None = None, max_workers: int = 8
) -> None:
    """Check every shard's presence, size and sha256; raise naming each bad shard."""
    fs, root = get_fs(manifest.uri)
    todo = [s for s in manifest.shards if splits is None or s.split in splits]

    def check(info: ShardInfo) -> str | None:
        path = join(root, info.path)
        if not fs.exists(path):
            return f"{join(manifest.uri, info.path)}: missing"
        size = fs.size(path)
        if size != info.bytes:
            return f"{join(manifest.uri, info.path)}: {size} bytes, manifest says {info.bytes}"
        digest = sha256_file(fs, path)
        if digest != info.sha256:
            return (f"{join(manifest.uri, info.path)}: sha256 {digest[:12]}... does not match "
                    f"the manifest ({info.sha256[:12]}...); the shard was modified or corrupted")
        return None

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        problems = [p for p in pool.map(check, todo) if p]
    listed = {s.path for s in manifest.shards}
    for split in sorted({s.split for s in todo}):
        folder = join(root, split)
        found = fs.find(folder) if fs.exists(folder) else []
        for path in sorted(found):
            rel = f"{split}/{path.rstrip('/').rsplit('/', 1)[-1]}"
            if path.endswith(".parquet") and rel not in listed:
                problems.append(f"{join(manifest.uri, rel)}: not in the manifest "
                                "(added after prepare)")
    if problems:
        raise ShardIntegrityError(
            "refusing corrupted shard set:\n  " + "\n  ".join(problems)
            + "\nRun `rsray prepare` again to rebuild it."
        )
