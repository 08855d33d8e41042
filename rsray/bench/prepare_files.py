"""The YAML route against a built-in reader: the same BigEarthNet-MM files prepared both ways.

:func:`run_prepare_benchmark` writes (or reuses) BigEarthNet-MM v1 files (the synthetic twin,
or points at real ones), describes them in YAML (S2 bands one file each at 120, 60 and 20 px,
S1 paired through ``corresponding_s2_patch``, labels from the S2 JSON files), and prepares them
alternately through :class:`~rsray.data.sources.bigearthnet.BigEarthNetMM` and through
:class:`~rsray.data.sources.files.FilesSource` in one Ray session, ``rounds`` times each. Both
read every band of every patch with rasterio inside Ray tasks and stream chunks into shards,
so neither holds the dataset in memory: the driver's resident memory is sampled during each
run and its peak rise is reported next to the size of the shards written. Reported: rows and
seconds per run, the best rate of each route, and their ratio (YAML / built-in) against the
target of :data:`TARGET_RATIO`.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

TARGET_RATIO = 0.8
"""The YAML route must reach at least this share of the built-in reader's rate."""
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


def resident_bytes() -> int:
    """Resident memory of this process (``/proc/self/statm``; psutil where there is no /proc)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


class PeakRSS:
    """Sample this process' resident memory every ``interval`` s; ``rise`` = peak - start."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, resident_bytes())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = resident_bytes()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())

    @property
    def rise(self) -> int:
        """Bytes the resident memory rose above its value at the start."""
        return self.peak - self.start


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
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                result = prepare(source, str(out), overwrite=True, codec=codec)
                seconds = time.perf_counter() - t0
            rows = sum(result.manifest.splits.values())
            runs.append({"route": route, "round": r, "rows": rows, "seconds": seconds,
                         "rate": rows / seconds, "rejects": len(result.rejects),
                         "bytes": sum(s.bytes for s in result.manifest.shards),
                         "driver_rss_rise": mem.rise})
    best = {route: max(x["rate"] for x in runs if x["route"] == route)
            for route in ("builtin", "yaml")}
    return {"runs": runs, "best_rate": best, "ratio": best["yaml"] / best["builtin"],
            "target_ratio": TARGET_RATIO,
            "files": {"s2": s2_root, "s1": s1_root}, "description": str(desc)}


def format_report(out: dict[str, Any]) -> str:
    """A small table of the runs, the memory check and the ratio against the target."""
    lines = [f"{'route':8} {'round':>5} {'rows':>6} {'seconds':>8} {'rows/s':>8} "
             f"{'shard MiB':>9} {'driver +MiB':>11}"]
    for x in out["runs"]:
        lines.append(f"{x['route']:8} {x['round']:5d} {x['rows']:6d} {x['seconds']:8.1f} "
                     f"{x['rate']:8.1f} {x['bytes'] / 2**20:9.1f} "
                     f"{x['driver_rss_rise'] / 2**20:11.1f}")
    b, ratio = out["best_rate"], out["ratio"]
    target = out.get("target_ratio", TARGET_RATIO)
    verdict = "met" if ratio >= target else "NOT met"
    lines.append(f"best rate: built-in {b['builtin']:.1f} rows/s, YAML {b['yaml']:.1f} rows/s")
    lines.append(f"RATE RATIO YAML / built-in: {ratio:.2f}x (target >= {target:.2f}x: {verdict})")
    rise = max(x["driver_rss_rise"] for x in out["runs"]) / 2**20
    data = max(x["bytes"] for x in out["runs"]) / 2**20
    lines.append(f"memory: the driver rose at most {rise:.1f} MiB while writing up to "
                 f"{data:.1f} MiB of shards per run (rows stream through Ray tasks)")
    return "\n".join(lines)


__all__ = ["TARGET_RATIO", "PeakRSS", "describe_bigearthnet", "format_report",
           "resident_bytes", "run_prepare_benchmark"]
