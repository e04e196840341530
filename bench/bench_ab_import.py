"""Benchmark: importing a platform export through its column map (read, map, validate, upsert).

Writes a TikTok split-test export (ad level, by day; the column layout of
``tests/fixtures/ab_exports/tiktok_split_test.csv``, thousands separators included) with
``--videos`` x 7 arms x ``--days`` rows, registers the experiment, and times
``ingest_export(..., mapping="tiktok_split_test")`` into a fresh DuckDB file. Prints rows/s and
peak memory as JSON.

Usage: ``python bench/bench_ab_import.py [--videos 2000] [--days 14] [--workdir /tmp/bench_ab_import]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HEADER = [
    "Ad name",
    "Ad group name",
    "Campaign name",
    "Date",
    "Cost",
    "Impressions",
    "Clicks (destination)",
    "CTR (destination)",
    "Conversions",
    "Video views",
    "2-second video views",
    "6-second video views",
    "Video views at 25%",
    "Video views at 50%",
    "Video views at 75%",
    "Video views at 100%",
    "Average play time per video view",
]


def write_export(path: Path, experiment_id: str, videos: list[str], arms: list[str], days: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    rows = 0
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for day in range(days):
            date = f"2026-11-{day + 1:02d}"
            for video in videos:
                for arm in arms:
                    imp = int(rng.integers(500, 5000))
                    plays = int(imp * 0.9)
                    clicks = int(rng.binomial(imp, 0.02))
                    writer.writerow(
                        [
                            f"{experiment_id}.{video}.{arm}",
                            arm,
                            experiment_id,
                            date,
                            f"{imp * 0.006:.2f}",
                            f"{imp:,}",
                            clicks,
                            f"{100 * clicks / imp:.2f}%",
                            int(rng.binomial(clicks, 0.1)),
                            f"{plays:,}",
                            int(plays * 0.6),
                            int(plays * 0.3),
                            int(plays * 0.5),
                            int(plays * 0.3),
                            int(plays * 0.2),
                            int(plays * 0.1),
                            f"{rng.uniform(3, 8):.2f}",
                        ]
                    )
                    rows += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_ab_import"))
    args = parser.parse_args()

    from align_core.experiments.ab_results import ingest_export
    from align_core.experiments.config import ExperimentConfig, register_experiment_config
    from align_core.stimuli.plans import DEFAULT_VARIANTS, variant_names

    args.workdir.mkdir(parents=True, exist_ok=True)
    db = args.workdir / "warehouse.duckdb"
    db.unlink(missing_ok=True)
    export = args.workdir / "tiktok.csv"
    videos = [f"72{i:017d}" for i in range(args.videos)]
    t0 = time.perf_counter()
    rows = write_export(export, "bench-ab", videos, list(variant_names(DEFAULT_VARIANTS)), args.days)
    write_s = time.perf_counter() - t0
    register_experiment_config(db, ExperimentConfig("bench-ab", DEFAULT_VARIANTS))
    t0 = time.perf_counter()
    report = ingest_export(export, db, mapping="tiktok_split_test", check_catalog=False, move=False)
    import_s = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit("\n".join(report.errors[:10]))
    print(
        json.dumps(
            {
                "rows": rows,
                "export_mb": round(export.stat().st_size / 2**20, 1),
                "write_export_s": round(write_s, 2),
                "import_s": round(import_s, 2),
                "rows_per_s": round(rows / import_s),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
