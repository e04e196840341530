"""Benchmark: calibration of the analysis by simulation (issue 22).

Simulates the demo's design (9 videos in 3 industries, 7 arms, the demo's traffic) with each
edited arm removed from 0-70 % of the videos, the low-baseline-CTR videos first, and prints how
often the report's 95 % intervals cover the planted lifts and how often the null tests reject
at 5 % (:mod:`align_demo.calibration`). Bounds: coverage 93-97 %, null rejection <= 6 %.

Usage: ``python bench/bench_analysis_calibration.py [--experiments 500] [--seed 0]``.
Prints the table and a JSON summary (exit status 1 when a bound is missed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COVERAGE_BOUNDS = (0.93, 0.97)
MAX_SIZE = 0.06


def main(argv: list[str] | None = None) -> int:
    """Run the calibration and print its table; 1 when a rate is outside its bound."""
    from align_demo.calibration import calibration_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = calibration_table(range(args.seed, args.seed + args.experiments))
    cov = table["kind"] == "coverage"
    table["within_bound"] = table["rate"].between(*COVERAGE_BOUNDS).where(cov, table["rate"] <= MAX_SIZE)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = {
        "experiments": args.experiments,
        "seconds": round(time.perf_counter() - start, 1),
        "coverage_min": float(table.loc[cov, "rate"].min()),
        "coverage_max": float(table.loc[cov, "rate"].max()),
        "size_max": float(table.loc[~cov, "rate"].max()),
        "all_within_bounds": bool(table["within_bound"].all()),
    }
    print(json.dumps(summary))
    return 0 if summary["all_within_bounds"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
