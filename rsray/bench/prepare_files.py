"""The YAML route against a built-in reader: the same BigEarthNet-MM files prepared both ways.

:func:`run_prepare_benchmark` writes (or reuses) BigEarthNet-MM v1 files (the synthetic twin,
or points at real ones), describes them in YAML (S2 bands one file each at 120, 60 and 20 px,
S1 paired through ``corresponding_s2_patch``, labels from the S2 JSON files), and prepares them
alternately through :class:`~rsray.data.sources.bigearthnet.BigEarthNetMM` and through
:class:`~rsray.data.sources.files.FilesSource` in one Ray session, ``rounds`` times each. Both
read every band of every patch with rasterio inside Ray tasks and stream chunks into shards,
so neither holds the dataset in memory. Reported: rows and seconds per run, the best rate of
each route, and their ratio (YAML / built-in).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import yaml

S2_BANDS = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09"]


def describe_bigearthnet(s2_root: str, s1_root: str, out: Path) -> Path:
    """A dataset YAML for BigEarthNet-MM v1 folders (no code): what a user would write."""
    doc = {
        "name": "bigearthnet_yaml",
        "modalities": {
            "s2": {"root": s2_root, "pattern": "{id}/{id}_{band}.tif", "bands": S2_BANDS},
            "s1": {"root": s1_root, "pattern": "{id}/{id}_{band}.tif", "bands": ["VV", "VH"],
                   "id_json": {"file": "{id}/{id}_labels_metadata.json",
                               "key": "corresponding_s2_patch"}},
        },
        "labels": {"json": {"root": s2_root, "pattern": "{id}/{id}_labels_metadata.json"},
                   "key": "labels"},
        "splits": {"random": {"seed": 0}},
    }
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def run_prepare_benchmark(work: str | Path, n: int = 400, rounds: int = 2,
                          s2_root: str | None = None, s1_root: str | None = None,
                          codec: str = "none") -> dict[str, Any]:
    """Prepare the same files through both routes, alternately; return timings and the ratio."""
    from rsray.data.prepare import prepare
    from rsray.data.sources.bigearthnet import BigEarthNetMM, write_synthetic_bigearthnet
    from rsray.data.sources.files import FilesSource
    from rsray.runtime import ensure_ray

    work = Path(work)
    if s2_root is None or s1_root is None:
        raw = work / "raw"
        if not (raw / "BigEarthNet-S2").is_dir():
            write_synthetic_bigearthnet(raw, n, seed=0, include_60m=True, progress=False)
        s2_root, s1_root = str(raw / "BigEarthNet-S2"), str(raw / "BigEarthNet-S1")
    desc = describe_bigearthnet(s2_root, s1_root, work / "bigearthnet.yaml")
    ensure_ray()
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        for route in ("builtin", "yaml"):
            source = (BigEarthNetMM(s2_root, s1_root, include_60m=True, splits="seeded")
                      if route == "builtin" else FilesSource(desc))
            out = work / f"shards_{route}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            result = prepare(source, str(out), overwrite=True, codec=codec)
            seconds = time.perf_counter() - t0
            rows = sum(result.manifest.splits.values())
            runs.append({"route": route, "round": r, "rows": rows, "seconds": seconds,
                         "rate": rows / seconds, "rejects": len(result.rejects),
                         "bytes": sum(s.bytes for s in result.manifest.shards)})
    best = {route: max(x["rate"] for x in runs if x["route"] == route)
            for route in ("builtin", "yaml")}
    return {"runs": runs, "best_rate": best, "ratio": best["yaml"] / best["builtin"],
            "files": {"s2": s2_root, "s1": s1_root}, "description": str(desc)}


def format_report(out: dict[str, Any]) -> str:
    """A small table of the runs and the ratio."""
    lines = [f"{'route':8} {'round':>5} {'rows':>6} {'seconds':>8} {'rows/s':>8} {'MiB':>7}"]
    for x in out["runs"]:
        lines.append(f"{x['route']:8} {x['round']:5d} {x['rows']:6d} {x['seconds']:8.1f} "
                     f"{x['rate']:8.1f} {x['bytes'] / 2**20:7.1f}")
    b = out["best_rate"]
    lines.append(f"best: built-in {b['builtin']:.1f} rows/s, YAML {b['yaml']:.1f} rows/s, "
                 f"ratio YAML/built-in {out['ratio']:.2f}")
    return "\n".join(lines)


__all__ = ["describe_bigearthnet", "format_report", "run_prepare_benchmark"]
