"""Ingest benchmark: Ray Data over rsray shards vs rasterio GeoTIFFs vs DataLoader on shards.

    python jobs/bench_ingest.py --n 1000            # synthetic BigEarthNet-MM, local disk
    python jobs/bench_ingest.py --raw DIR --shards URI   # your own prepared data

Targets: a/b >= 20, a/c >= 1.0, <= 280 KB stored per sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rsray.cli import ensure_synthetic_shards
from rsray.data.bench import run_ingest_benchmark


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="synthetic patch pairs (without --raw)")
    p.add_argument("--root", default="rsray_data/bench", help="where synthetic data goes")
    p.add_argument("--raw", help="raw BigEarthNet-MM root (BigEarthNet-S2/, BigEarthNet-S1/)")
    p.add_argument("--shards", help="shard set prepared from --raw")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for (b) and (c)")
    p.add_argument("--passes", type=int, default=2, help="timed passes per reader")
    args = p.parse_args()
    if args.raw:
        raw, shards = Path(args.raw), args.shards
    else:
        shards = ensure_synthetic_shards(args.root, args.n)
        raw = Path(args.root) / "raw"
    out = run_ingest_benchmark(raw, shards, batch_size=args.batch_size,
                               num_workers=args.workers, passes=args.passes)
    print(f"\ningest benchmark: {out['rows']} training patches, batch {args.batch_size}")
    for r in out["results"]:
        print(f"  {r.name:38s} {r.rate:9.1f} samples/s  ({r.samples} in {r.seconds:.1f} s)")
    print(f"  a/b = {out['a_over_b']:.1f}   (target >= 20)")
    print(f"  a/c = {out['a_over_c']:.2f}  (target >= 1.0)")
    print(f"  stored bytes per sample: {out['bytes_per_sample'] / 1000:.0f} KB (target <= 280)")


if __name__ == "__main__":
    main()
