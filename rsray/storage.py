"""Where rsray reads and writes: local folders, ``s3://`` and other fsspec URLs, one set of rules.

Every place that touches storage (shards, results, raw archives, Ray Train/Tune storage) goes
through these functions, so a URI means the same thing everywhere:

- a URI with a scheme other than ``file://`` (``s3://bucket/prefix``, ``memory://x``) is
  remote; anything else is a local path, made absolute (Ray tasks may run in other folders);
- a trailing ``/`` never matters (``s3://b/p/`` is ``s3://b/p``); a bucket without a prefix
  (``s3://b``) is a valid root;
- ``s3://`` honours ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (MinIO, moto) unless the
  caller's ``storage_options`` name an endpoint; credentials come from botocore's usual chain
  and are never logged;
- writes are atomic: a file is either absent or complete.

``ray_storage(uri)`` gives the ``(storage_path, storage_filesystem)`` pair that
``ray.train.RunConfig`` and ``ray.tune.RunConfig`` take.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from rsray.errors import StorageError

StorageOptions = Mapping[str, Any] | None
"""Extra fsspec options (``{"client_kwargs": {"endpoint_url": ...}}``, ``{"anon": True}``)."""

S3_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
"""Environment variables naming an S3-compatible endpoint, most specific first."""


@dataclass(frozen=True)
class Location:
    """A parsed storage URI.

    ``protocol`` is ``""`` for local paths; ``path`` is what the filesystem sees (``bucket/key``
    for S3, an absolute path locally); ``uri`` is the normalised form to show and to join onto.
    """

    protocol: str
    path: str
    uri: str

    @property
    def is_remote(self) -> bool:
        """Whether this is not on the local filesystem."""
        return bool(self.protocol)


def is_remote_url(uri: str) -> bool:
    """Whether ``uri`` names a non-local filesystem (``s3://...``, ``memory://...``)."""
    return "://" in uri and not uri.startswith("file://")


def normalise(uri: str) -> str:
    """The URI without a trailing ``/``; local paths absolute and ``file://`` removed."""
    if is_remote_url(uri):
        protocol, rest = uri.split("://", 1)
        rest = rest.rstrip("/")
        return f"{protocol}://{rest}"
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    path = os.path.abspath(os.path.expanduser(uri))
    return path


def parse(uri: str) -> Location:
    """Split ``uri`` into protocol, filesystem path and normalised URI.

    Raises:
        StorageError: for an empty URI or a remote URI without a bucket/host part.
    """
    if not uri or not uri.strip():
        raise StorageError("storage URI: empty; give a local folder or s3://bucket/prefix")
    norm = normalise(uri)
    if not is_remote_url(norm):
        return Location("", norm, norm)
    protocol, rest = norm.split("://", 1)
    if protocol == "s3" and not rest:
        raise StorageError(f"{uri}: no bucket named; use s3://bucket or s3://bucket/prefix")
    if protocol == "memory":
        return Location(protocol, "/" + rest.lstrip("/"), norm)
    return Location(protocol, rest, norm)


def storage_options(uri: str, extra: StorageOptions = None) -> dict[str, Any]:
    """Fsspec options for ``uri``: ``extra``, plus the S3 endpoint from the environment."""
    options = dict(extra or {})
    if uri.startswith("s3://"):
        client = dict(options.get("client_kwargs", {}))
        if "endpoint_url" not in client:
            endpoint = next((os.environ[v] for v in S3_ENDPOINT_VARS if os.environ.get(v)), None)
            if endpoint:
                client["endpoint_url"] = endpoint
        if client:
            options["client_kwargs"] = client
    return options


def get_fs(uri: str, options: StorageOptions = None) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of ``uri`` and the path inside it (``s3://b/p/`` -> ``b/p``)."""
    loc = parse(uri)
    if not loc.is_remote:
        return fsspec.filesystem("file"), loc.path
    fs, _ = fsspec.core.url_to_fs(loc.uri, **storage_options(loc.uri, options))
    return fs, loc.path


def is_local(fs: AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local filesystem (os/rasterio can open its paths directly)."""
    return isinstance(fs, LocalFileSystem)


def join(base: str, *parts: str) -> str:
    """Join parts onto a local path, a filesystem path or a URI with ``/`` (scheme kept).

    ``join("s3://b/", "x/", "y")`` is ``s3://b/x/y``; empty parts are skipped.
    """
    out = base.rstrip("/") if base not in ("/", "") else base
    for p in parts:
        p = p.strip("/")
        if p:
            out = posixpath.join(out, p) if out else p
    return out


def join_url(base: str, *parts: str) -> str:
    """Join parts onto a local path (``os.path.join``) or a URL (``/``)."""
    if is_remote_url(base):
        return join(base, *parts)
    return os.path.join(base, *parts)


def to_uri(fs: AbstractFileSystem, path: str) -> str:
    """The URI of ``path`` inside ``fs`` (``bucket/key`` on S3 -> ``s3://bucket/key``)."""
    if is_local(fs):
        return path
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"{protocol}://{path.lstrip('/')}" if protocol != "memory" else f"memory://{path}"


def exists(uri: str, options: StorageOptions = None) -> bool:
    """Whether ``uri`` exists (a file, a folder, or a bucket)."""
    fs, path = get_fs(uri, options)
    return fs.exists(path)


def pyarrow_fs(uri: str, options: StorageOptions = None) -> Any:
    """A pyarrow filesystem for ``uri`` (Ray Data, Ray Train and Tune take these)."""
    import pyarrow.fs as pafs

    fs, _ = get_fs(uri, options)
    if is_local(fs):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def ray_storage(uri: str, options: StorageOptions = None) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for Ray Train / Tune ``RunConfig``.

    Local: the absolute path and ``None`` (Ray uses its local filesystem). Remote: the path
    inside the filesystem (``bucket/prefix``) and a pyarrow filesystem wrapping fsspec's, so
    the endpoint and credentials rsray resolved are the ones Ray uses.
    """
    loc = parse(uri)
    if not loc.is_remote:
        return loc.path, None
    return loc.path, pyarrow_fs(loc.uri, options)


def list_entries(uri: str, *, dirs: bool, options: StorageOptions = None) -> list[str]:
    """Names (not paths) of the sub-folders (``dirs``) or files directly inside ``uri``, sorted.

    Raises:
        FileNotFoundError: ``uri`` does not exist or is not a folder.
    """
    fs, path = get_fs(uri, options)
    if is_local(fs):
        # os.scandir reads the entry type from the listing: no stat per entry
        with os.scandir(path) as it:
            return sorted(e.name for e in it if (e.is_dir() if dirs else e.is_file()))
    if not fs.isdir(path):
        raise FileNotFoundError(uri)
    want = "directory" if dirs else "file"
    return sorted(posixpath.basename(e["name"].rstrip("/")) for e in fs.ls(path, detail=True)
                  if e.get("type") == want)


def list_subdirs(uri: str, options: StorageOptions = None) -> list[str]:
    """Names of the immediate sub-folders of ``uri``, sorted."""
    return list_entries(uri, dirs=True, options=options)


def list_files(uri: str, options: StorageOptions = None) -> list[str]:
    """Names of the files directly inside ``uri``, sorted."""
    return list_entries(uri, dirs=False, options=options)


def read_bytes(uri: str, options: StorageOptions = None) -> bytes:
    """The whole content of one (small) file.

    Raises:
        FileNotFoundError: no such file.
    """
    fs, path = get_fs(uri, options)
    if is_local(fs):
        with open(path, "rb") as f:
            return f.read()
    return fs.cat_file(path)


def atomic_write_bytes(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent or complete.

    Local: write ``.<name>.tmp-<uuid>`` in the same folder, fsync, ``os.replace``; the
    temporary file is removed whatever happens. Object stores: one PUT (the object appears only
    when the upload completes).
    """
    if is_local(fs):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        fs.pipe_file(path, data)


def write_bytes(uri: str, data: bytes, options: StorageOptions = None) -> str:
    """Atomically write ``data`` to ``uri``; returns the normalised URI."""
    fs, path = get_fs(uri, options)
    atomic_write_bytes(fs, path, data)
    return parse(uri).uri


def check_reachable(uri: str, options: StorageOptions = None) -> None:
    """Fail at once, in one line, if the store behind a remote ``uri`` cannot be reached.

    Raises:
        StorageError: naming ``uri`` and the endpoint when the connection fails or the
            credentials are refused. Local paths are not checked here.
    """
    loc = parse(uri)
    if not loc.is_remote:
        return
    try:
        fs, path = get_fs(uri, options)
        fs.exists(path)
    except Exception as exc:  # botocore/aiohttp raise many types; all mean "cannot reach"
        raise StorageError(describe_error(uri, exc)) from None


def describe_error(uri: str, exc: BaseException) -> str:
    """One line for a storage failure: the URI, the endpoint (S3) and the cause's first line."""
    endpoint = ""
    if uri.startswith("s3://"):
        ep = storage_options(uri).get("client_kwargs", {}).get("endpoint_url")
        endpoint = f" (endpoint {ep})" if ep else ""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{uri}{endpoint}: cannot reach the store: {type(exc).__name__}: {first}"


__all__ = [
    "Location",
    "StorageOptions",
    "atomic_write_bytes",
    "check_reachable",
    "describe_error",
    "exists",
    "get_fs",
    "is_local",
    "is_remote_url",
    "join",
    "join_url",
    "list_files",
    "list_subdirs",
    "normalise",
    "parse",
    "pyarrow_fs",
    "ray_storage",
    "read_bytes",
    "storage_options",
    "to_uri",
    "write_bytes",
]
