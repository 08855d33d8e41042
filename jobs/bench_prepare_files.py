"""The same BigEarthNet-MM files prepared through the built-in reader and described in YAML.

    python jobs/bench_prepare_files.py --n 400           # synthetic BigEarthNet-MM v1 files
    python jobs/bench_prepare_files.py --s2 DIR --s1 DIR  # real BigEarthNet-v1.0 folders

Runs both routes alternately in one Ray session (``--rounds`` times each) and prints rows/s per
run, the best rate of each and the ratio YAML / built-in (target >= 0.8).
"""

from __future__ import annotations

import argparse
import json

from rsray.bench.prepare_files import format_report, run_prepare_benchmark


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=400, help="synthetic patch pairs (without --s2)")
    p.add_argument("--work", default="rsray_data/bench_prepare_files", help="scratch folder")
    p.add_argument("--s2", help="BigEarthNet-v1.0 S2 folder (real data)")
    p.add_argument("--s1", help="BigEarthNet-S1-v1.0 folder (real data)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each route")
    p.add_argument("--json", help="also write the numbers to this file")
    args = p.parse_args()
    out = run_prepare_benchmark(args.work, n=args.n, rounds=args.rounds, s2_root=args.s2,
                                s1_root=args.s1)
    print("\n" + format_report(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
