"""What a study ran with: software versions, the code's commit, the shard sets' identity.

:func:`environment` is recorded in ``study.json`` when a study starts (the report prints it);
:func:`shard_set_identity` names a shard set by its manifest: the sha256 of ``manifest.json``
changes with any shard (each shard's sha256 is in it), so two studies with the same manifest
hash ran on the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("rsray", "torch", "ray", "timm", "torchmetrics", "optuna", "numpy", "scipy",
            "pandas", "pyarrow")
"""Packages whose versions a study records."""


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(where: str | Path | None = None) -> str | None:
    """The commit of the rsray checkout (``+dirty`` with uncommitted changes), or ``None``.

    ``None`` for an installed wheel (no git checkout around the package) or without ``git``.
    """
    root = Path(where) if where else Path(__file__).resolve().parents[2]
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        # a wheel inside a virtualenv inside some repository is not that repository's code
        mine = Path("rsray") / "study" / "provenance.py"
        if (Path(top) / mine).resolve() != (root / mine).resolve():
            return None
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def environment() -> dict[str, Any]:
    """Versions of Python and :data:`PACKAGES`, the git commit, the host, the time (UTC)."""
    return {
        "python": platform.python_version(),
        "packages": {p: v for p in PACKAGES if (v := _version(p)) is not None},
        "git_commit": git_commit(),
        "platform": platform.platform(terse=True),
        "recorded": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def shard_set_identity(uri: str) -> dict[str, Any]:
    """``{"uri", "manifest_sha256", "dataset", "created", "synthetic", "splits"}`` of a set.

    Raises whatever reading the manifest raises (a moved set): callers decide.
    """
    from rsray.data.shards import MANIFEST_NAME, Manifest
    from rsray.storage import get_fs, join, normalise

    fs, root = get_fs(uri)
    with fs.open(join(root, MANIFEST_NAME), "rb") as fh:
        raw = fh.read()
    m = Manifest.from_json(raw.decode(), normalise(uri))
    return {"uri": uri, "manifest_sha256": hashlib.sha256(raw).hexdigest(),
            "dataset": m.dataset, "created": m.created, "synthetic": m.synthetic,
            "splits": m.splits}


__all__ = ["PACKAGES", "environment", "git_commit", "shard_set_identity"]
