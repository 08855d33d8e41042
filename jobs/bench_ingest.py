"""Ingest benchmark: raw limit, Ray Data, DataLoader and rasterio on the same shards.

    python jobs/bench_ingest.py --n 2000            # synthetic BigEarthNet-MM, local disk
    python jobs/bench_ingest.py --raw DIR --shards URI   # your own prepared data

Prints (i) the single-process raw limit per codec, (ii) Ray Data, (iii) a DataLoader and
(iv) rasterio GeoTIFFs to native arrays with their ratio to the raw limit, finalize_batch
alone, times to the first batch and per pass, then the model-input comparison kept from
earlier rounds (a/b, a/c). Targets: Ray Data >= 50 % of the raw limit and >= the DataLoader,
>= 20x rasterio, <= 280 KB stored per sample.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsray.bench.ingest import format_report, run_ingest_benchmark
from rsray.cli import ensure_synthetic_shards
from rsray.cliargs import HelpFormatter, Parser, positive_int, run_main


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="bench_ingest", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--n", type=positive_int, default=1000,
                   help="synthetic patch pairs (without --raw)")
    p.add_argument("--root", default="rsray_data/bench", help="where synthetic data goes")
    p.add_argument("--raw", help="raw BigEarthNet-MM root (BigEarthNet-S2/, BigEarthNet-S1/)")
    p.add_argument("--shards", help="shard set prepared from --raw")
    p.add_argument("--scratch", help="where the per-codec copies of the split go "
                                     "(default: next to the shard set)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--passes", type=int, default=2, help="timed passes per reader")
    args = p.parse_args(argv)
    return run_main("bench_ingest", lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    """The benchmark itself, on the parsed flags."""
    if args.raw:
        raw, shards = Path(args.raw), args.shards
    else:
        shards = ensure_synthetic_shards(args.root, args.n)
        raw = Path(args.root) / "raw"
    out = run_ingest_benchmark(raw, shards, batch_size=args.batch_size,
                               num_workers=args.workers, passes=args.passes,
                               scratch=Path(args.scratch) if args.scratch else None)
    print("\n" + format_report(out, args.batch_size))


if __name__ == "__main__":
    sys.exit(main())
