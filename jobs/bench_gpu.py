"""GPU benchmark: model rates and MFU, pipeline vs GPU, per-trial fixed cost, packed seeds.

    python jobs/bench_gpu.py                 # on a GPU machine: < 8 min in all
    python jobs/bench_gpu.py --smoke-test    # tiny sizes, runs on a CPU (the test suite's)

Prints every figure as it is measured (sections in rsray.bench.gpu); each section has
its own time limit inside --budget-s, and one that runs out or fails is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from rsray.bench.gpu import run_gpu_benchmark
from rsray.study.packing import time_packing

SECTIONS = ("models", "pipeline", "trials", "packing")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="rsray_results/bench_gpu", help="scratch folder")
    p.add_argument("--budget-s", type=float, default=450.0, help="all sections together")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset")
    p.add_argument("--smoke-test", action="store_true", help="tiny sizes (CPU)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args()
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    t0 = time.monotonic()
    sections = tuple(s for s in args.sections.split(",") if s)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    r = run_gpu_benchmark(args.out, smoke=args.smoke_test, budget_s=args.budget_s,
                          sections=sections, say=lambda line: print(line, flush=True),
                          packing=time_packing)
    print(f"[bench] done in {time.monotonic() - t0:.0f} s; sections without figures: "
          f"{r.errors or 'none'}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r.__dict__, f, indent=1, default=str)


if __name__ == "__main__":
    main()
