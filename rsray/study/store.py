"""A study folder as a URI: every record a study writes or reads, through :mod:`rsray.storage`.

A study folder is a local path or any fsspec URI (``s3://bucket/studies/x``, ``gs://...``,
``memory://...``). The driver and the trials read and write the same records there, so a
cluster whose nodes share no disk keeps every result, and ``--resume`` needs nothing but the
URI (a new driver machine continues the study). The rules:

- records are JSON documents written atomically (local: temporary file + rename; object
  stores: one PUT), so a partial record is never read as finished;
- listings are never served from fsspec's listing cache (another process may have written
  since);
- credentials come from the environment or the node's role (botocore's chain); nothing here
  writes them anywhere.

:func:`unseen_by` is the guard of a LOCAL study folder on a multi-node cluster: a probe task
on every node looks for a marker file the driver wrote, and names the nodes that cannot see
it (their results would be written to their own disks and lost).
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from pathlib import Path
from typing import Any

from rsray import storage

STUDY_JSON = "study.json"
"""The study's state document at the root of its folder."""

MIRRORED = ("study.json", "results.parquet", "results.csv", "hparams.json", "hparams.csv")
"""Top-level records a local mirror (for the report) copies."""


class StudyStore:
    """The study folder at ``uri`` (local path or fsspec URI)."""

    def __init__(self, uri: str | Path) -> None:
        loc = storage.parse(str(uri))
        self.uri = loc.uri
        self.is_remote = loc.is_remote
        self.fs, self.path = storage.get_fs(self.uri)

    def __repr__(self) -> str:
        return f"StudyStore({self.uri!r})"

    def join(self, *parts: str) -> str:
        """The URI (or local path) of ``parts`` under the study folder."""
        return storage.join(self.uri, *parts)

    def _fs_path(self, rel: str) -> str:
        return storage.join(self.path, rel)

    def _fresh(self) -> None:
        """Forget cached listings: another process (a trial) may have written since."""
        self.fs.invalidate_cache()

    def exists(self, rel: str) -> bool:
        """Whether the record ``rel`` (relative to the folder) exists."""
        self._fresh()
        return bool(self.fs.exists(self._fs_path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        """The content of ``rel``.

        Raises:
            FileNotFoundError: no such record.
        """
        return storage.read_bytes(self.join(rel))

    def read_json(self, rel: str) -> Any:
        """The JSON document ``rel``."""
        return json.loads(self.read_bytes(rel))

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write ``rel`` atomically; its URI."""
        storage.atomic_write_bytes(self.fs, self._fs_path(rel), data)
        return self.join(rel)

    def write_json(self, rel: str, doc: Any) -> str:
        """Write ``doc`` as JSON to ``rel`` atomically; its URI."""
        text = json.dumps(doc, indent=2, default=str, allow_nan=True) + "\n"
        return self.write_bytes(rel, text.encode())

    def glob(self, pattern: str) -> list[str]:
        """Paths relative to the folder matching ``pattern`` (``cells/*/seed_*/result.json``)."""
        self._fresh()
        base = self.path.rstrip("/")
        found = self.fs.glob(storage.join(base, pattern))
        return sorted(p[len(base):].lstrip("/") for p in found)

    def subdirs(self, rel: str) -> list[str]:
        """Names of the sub-folders of ``rel`` (none when it does not exist)."""
        self._fresh()
        try:
            return storage.list_subdirs(self.join(rel))
        except FileNotFoundError:
            return []

    def ray_storage(self, rel: str) -> tuple[str, Any]:
        """``(storage_path, storage_filesystem)`` of ``rel`` for a Ray Tune/Train RunConfig."""
        return storage.ray_storage(self.join(rel))

    def upload(self, local: str | Path, rel: str) -> str:
        """Copy the local file ``local`` to ``rel`` (atomically); its URI."""
        return self.write_bytes(rel, Path(local).read_bytes())

    def mirror(self, dest: str | Path, *, predictions: bool = True) -> Path:
        """Copy the records the report reads into the local folder ``dest``; returns it.

        ``study.json``, the tables, every ``search.json`` and ``result.json`` and (with
        ``predictions``) each seed's saved test predictions; a ``result.json``'s
        prediction entries are pointed at the local copies.
        """
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        for name in MIRRORED:
            if self.exists(name):
                (out / name).write_bytes(self.read_bytes(name))
        for rel in self.glob("cells/*/search.json"):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(self.read_bytes(rel))
        for rel in self.glob("cells/*/seed_*/result.json"):
            doc = self.read_json(rel)
            local_dir = out / posixpath.dirname(rel)
            local_dir.mkdir(parents=True, exist_ok=True)
            preds = dict(doc.get("predictions") or {})
            for split, uri in list(preds.items()):
                if not predictions or split != "test":
                    continue
                fs, path = storage.get_fs(str(uri))
                if fs.exists(path):
                    target = local_dir / f"pred_{split}.parquet"
                    fs.get(path.rstrip("/") + "/", str(target) + "/", recursive=True)
                    preds[split] = str(target)
            doc["predictions"] = preds
            (local_dir / "result.json").write_text(json.dumps(doc, indent=2, default=str))
        return out


def _sees(path: str) -> bool:
    """Whether this node's filesystem has ``path`` (the probe task)."""
    return os.path.exists(path)


def unseen_by(folder: str, timeout_s: float = 120.0) -> list[str]:
    """The Ray nodes (``ip (node id prefix)``) that cannot see the local ``folder``.

    Writes a marker file into ``folder`` and runs a zero-CPU probe task pinned to every
    alive node; a node whose probe does not find the marker does not share this disk (a node
    that does not answer within ``timeout_s`` is not counted). On a cluster of only this
    driver's node nothing is probed. Call with Ray initialised.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if all(n["NodeID"] == here for n in nodes):
        return []
    marker = os.path.join(folder, f".rsray-probe-{uuid.uuid4().hex}")
    Path(marker).write_text("probe\n")
    try:
        sees = ray.remote(num_cpus=0, max_retries=0)(_sees)
        refs = {sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(marker): f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})" for n in nodes}
        # a node leaving meanwhile (or too busy to answer in time) is not a verdict
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        blind = []
        for ref in done:
            try:
                if not ray.get(ref):
                    blind.append(refs[ref])
            except ray.exceptions.RayError:
                continue
    finally:
        os.remove(marker)
    return sorted(blind)


__all__ = ["MIRRORED", "STUDY_JSON", "StudyStore", "unseen_by"]
